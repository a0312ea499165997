// Package deploy holds the deployment examples (systemd units, Kubernetes
// manifests); its tests check that they are valid and say what the README
// says they do.
package deploy

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgcloudbackup/pgcloudbackup/internal/testenv"
)

const installedBinary = "/usr/local/bin/pgcloudbackup"

func unitFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	for _, pat := range []string{"systemd/*.service", "systemd/*.timer"} {
		m, err := filepath.Glob(pat)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) < 7 {
		t.Fatalf("found %d unit files, want the 7 in deploy/systemd", len(files))
	}
	return files
}

// systemdAnalyze runs `systemd-analyze verify` on the units, copied with the
// binary's path pointing at an executable that exists here (verify refuses a
// missing ExecStart program). Any message at all counts as a failure:
// verify only warns, exit 0, about unknown keys.
func systemdAnalyze(t *testing.T, files []string, edit func(name, text string) string) (string, error) {
	t.Helper()
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		testenv.Unavailable(t, "systemd-analyze not installed (apt-get install systemd)")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var names []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		text := strings.ReplaceAll(string(b), installedBinary, self)
		if edit != nil {
			text = edit(filepath.Base(f), text)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		names = append(names, filepath.Base(f))
	}
	cmd := exec.Command(sa, append([]string{"verify", "--man=no"}, names...)...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestSystemdUnitsVerify(t *testing.T) {
	files := unitFiles(t)
	out, err := systemdAnalyze(t, files, nil)
	if err != nil || strings.TrimSpace(out) != "" {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	// The check can fail: a unit with an unknown key or a bad calendar
	// is reported.
	out, _ = systemdAnalyze(t, files, func(name, text string) string {
		if name == "pgcloudbackup-check.timer" {
			return strings.Replace(text, "OnCalendar=hourly", "OnCalendar=every tuesdayish", 1)
		}
		return text
	})
	if !strings.Contains(out, "calendar") {
		t.Fatalf("a broken timer passed systemd-analyze verify:\n%s", out)
	}
}

// What the README promises about the units, read from the files.
func TestSystemdUnitsContent(t *testing.T) {
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join("systemd", name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	backup := read("pgcloudbackup-backup.service")
	bi := strings.Index(backup, "ExecStart="+installedBinary+" backup ")
	di := strings.Index(backup, "ExecStart="+installedBinary+" delete --retain")
	if bi < 0 || di < 0 || di < bi {
		t.Error("backup.service must run backup, then retention, as separate ExecStart= lines (retention only after a backup exiting 0)")
	}
	if strings.Contains(backup, "SuccessExitStatus") {
		t.Error("backup.service must not treat exit 4 (checksum failures) as success: retention would run")
	}
	for _, name := range []string{"pgcloudbackup-backup.service", "pgcloudbackup-verify.service", "pgcloudbackup-check.service"} {
		u := read(name)
		for _, want := range []string{"Type=oneshot", "User=postgres", "EnvironmentFile=/etc/pgcloudbackup/pgcloudbackup.env", "OnFailure=pgcloudbackup-failure@%N.service"} {
			if !strings.Contains(u, want+"\n") {
				t.Errorf("%s lacks %s", name, want)
			}
		}
	}
	if !strings.Contains(read("pgcloudbackup-verify.service"), " verify latest") {
		t.Error("verify.service does not verify latest")
	}
	if !strings.Contains(read("pgcloudbackup-verify.timer"), "OnCalendar=Sun ") {
		t.Error("verify.timer is not weekly")
	}
}

// The example environment file keeps a bucket URL's `&` whether systemd or a
// shell reads it: single quotes, which both treat alike.
func TestEnvironmentFileQuoting(t *testing.T) {
	const want = "s3://backups/prod-db?endpoint=https://minio.internal:9000&use_path_style=true&region=us-east-1"
	env, err := os.ReadFile("systemd/pgcloudbackup.env.example")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(env, []byte("PGCLOUDBACKUP_BUCKET='"+want+"'\n")) {
		t.Fatalf("the example bucket line is not the single-quoted URL %s", want)
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	cmd := exec.Command(sh, "-c", `set -a; . ./systemd/pgcloudbackup.env.example; printf '%s' "$PGCLOUDBACKUP_BUCKET"`)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	out, err := cmd.CombinedOutput()
	if err != nil || string(out) != want {
		t.Fatalf("sourced by sh: %q (%v), want %q", out, err, want)
	}
	// Every assignment is quoted: systemd and sh read the same value.
	for _, line := range strings.Split(string(env), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		_, v, ok := strings.Cut(line, "=")
		if !ok || len(v) < 2 || v[0] != '\'' || v[len(v)-1] != '\'' || strings.Count(v, "'") != 2 {
			t.Errorf("not a single-quoted assignment: %s", line)
		}
	}
}
