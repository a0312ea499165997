package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "pgcloudbackup.conf")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestConfigFile: the file supplies the bucket for wal-push and wal-fetch;
// the environment and then the command line override it; mistakes in it
// are usage errors naming the line.
func TestConfigFile(t *testing.T) {
	t.Setenv("PGCLOUDBACKUP_BUCKET", "")
	t.Setenv(configEnv, "")
	b := newTestBucket(t)
	other := newTestBucket(t)
	conf := writeConfig(t, "# archive settings\n\nbucket = '"+b.url+"'\nlog-format = json\njobs = 2\n")
	name := "00000002.history"
	src := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(src, []byte("1\t0/3000000\tno recovery target specified\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := runCLI("wal-push", "--config", conf, src)
	if r.code != 0 {
		t.Fatalf("wal-push with --config: %+v", r)
	}
	if _, err := os.Stat(filepath.Join(b.dir, "wal", "00000002", name+".zst")); err != nil {
		t.Fatalf("not archived into the configured bucket: %v", err)
	}
	// The other bucket holds an archive too, without that file.
	src3 := filepath.Join(t.TempDir(), "00000003.history")
	if err := os.WriteFile(src3, []byte("1\t0/3000000\tx\n2\t0/4000000\ty\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := runCLI("wal-push", "--bucket", other.url, src3); r.code != 0 {
		t.Fatalf("wal-push into the other bucket: %+v", r)
	}
	// PGCLOUDBACKUP_CONFIG finds the file too; a flag wins over it.
	t.Setenv(configEnv, conf)
	dest := filepath.Join(t.TempDir(), "f")
	if r := runCLI("wal-fetch", name, dest); r.code != 0 {
		t.Fatalf("wal-fetch via PGCLOUDBACKUP_CONFIG: %+v", r)
	}
	if r := runCLI("wal-fetch", name, dest, "--bucket", other.url); r.code != exitWALAbsent || r.stderr != "" {
		t.Fatalf("--bucket does not override the file: %+v", r)
	}
	t.Setenv("PGCLOUDBACKUP_BUCKET", other.url)
	if r := runCLI("wal-fetch", name, dest); r.code != exitWALAbsent {
		t.Fatalf("PGCLOUDBACKUP_BUCKET does not override the file: %+v", r)
	}
	t.Setenv("PGCLOUDBACKUP_BUCKET", "")

	for _, c := range []struct{ text, want string }{
		{"bukket = x\n", `line 1: unknown setting "bukket"`},
		{"bucket = " + b.url + "\nnonsense\n", "line 2: want name = value"},
		{"dsn = host=db password=secret\n", "may not hold a password"},
		{"bucket = a\nbucket = b\n", "already set on line 1"},
		{"config = /etc/other\n", "unknown setting"},
	} {
		r := runCLI("list", "--config", writeConfig(t, c.text))
		if r.code != exitUsage || !strings.Contains(r.stderr, c.want) || strings.Contains(r.stderr, "secret") {
			t.Errorf("config %q: %+v, want exit 2 mentioning %q", c.text, r, c.want)
		}
	}
	// A named file must exist.
	t.Setenv(configEnv, "")
	if r := runCLI("list", "--config", "/nonexistent/pgcloudbackup.conf"); r.code != exitUsage || !strings.Contains(r.stderr, "/nonexistent/pgcloudbackup.conf") {
		t.Errorf("missing --config file: %+v", r)
	}
	t.Setenv(configEnv, "/nonexistent/env.conf")
	if r := runCLI("list", "--bucket", b.url); r.code != exitUsage {
		t.Errorf("missing PGCLOUDBACKUP_CONFIG file: %+v", r)
	}
	// wal-fetch turns any error, a usage error included, into a status
	// that stops recovery.
	if r := runCLI("wal-fetch", name, dest); r.code != exitWALFetchFailed {
		t.Errorf("wal-fetch with a bad configuration: exit %d, want %d", r.code, exitWALFetchFailed)
	}
	t.Setenv(configEnv, "")
	if r := runCLI("wal-fetch", "--bucket", b.url, "../x", dest); r.code != exitWALFetchFailed || !strings.Contains(r.stderr, "not a WAL file name") {
		t.Errorf("wal-fetch of a bad name: %+v", r)
	}
	if r := runCLI("wal-fetch", "--bucket", b.url, name); r.code != exitWALFetchFailed {
		t.Errorf("wal-fetch with one argument: %+v", r)
	}
}
