package restore

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestFetchCommandQuoting(t *testing.T) {
	// A path with a quote and a space, a URL with & and %-escapes: the
	// shell must see each as one word, and PostgreSQL's %-substitution
	// must leave them alone.
	dir := t.TempDir()
	bin := filepath.Join(dir, "it's a bin")
	script := "#!/bin/sh\nfor a in \"$@\"; do printf '[%s]' \"$a\"; done\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	url := "s3://b/p%2Fq?endpoint=https://h:9000&region=us-east-1"
	cmd, err := FetchCommand(bin, "--bucket", url)
	if err != nil {
		t.Fatal(err)
	}
	// What PostgreSQL does to it: %f and %p replaced, %% becomes %.
	run := strings.NewReplacer("%f", "000000010000000000000003", "%p", "pg_wal/RECOVERYXLOG", "%%", "%").Replace(cmd)
	out, err := exec.Command("/bin/sh", "-c", run).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", run, err, out)
	}
	want := "[wal-fetch][--bucket][" + url + "][000000010000000000000003][pg_wal/RECOVERYXLOG]"
	if string(out) != want {
		t.Fatalf("the shell got %s, want %s", out, want)
	}
	for _, bad := range []string{`C:\bin`, "a\nb"} {
		if _, err := FetchCommand(bad); err == nil {
			t.Errorf("FetchCommand(%q) accepted", bad)
		}
	}
}

func TestRecoveryTarget(t *testing.T) {
	ts, err := ParseTargetTime("2026-11-29 15:02:03.5+01")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range (RecoveryTarget{Time: ts, Action: "promote", Timeline: "2"}).Settings() {
		got = append(got, s.Line())
	}
	want := []string{"recovery_target_time = '2026-11-29 14:02:03.500000+00'", "recovery_target_action = 'promote'", "recovery_target_timeline = '2'"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("settings %q, want %q", got, want)
	}
	if got := (RecoveryTarget{Name: `it's a \ point`}).Settings()[0].Line(); got != `recovery_target_name = 'it''s a \\ point'` {
		t.Errorf("name quoted as %s", got)
	}
	for _, s := range []string{"2026-11-29 14:02:03", "yesterday", "2026-11-29"} {
		if _, err := ParseTargetTime(s); err == nil {
			t.Errorf("ParseTargetTime(%q) accepted a time without a zone", s)
		}
	}
	if tt, err := ParseTargetTime("2026-11-29T14:02:03Z"); err != nil || !tt.Equal(time.Date(2026, 11, 29, 14, 2, 3, 0, time.UTC)) {
		t.Errorf("RFC 3339: %v %v", tt, err)
	}
	for _, bad := range []RecoveryTarget{
		{LSN: "0/1", XID: "5"},
		{LSN: "zz"},
		{XID: "-1"},
		{XID: "1"},
		{Name: strings.Repeat("x", 64)},
		{Name: "a\nb"},
		{Action: "promote"},
		{XID: "5", Action: "explode"},
		{Timeline: "0"},
		{Timeline: "newest"},
	} {
		if err := bad.Validate(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	for _, good := range []RecoveryTarget{{}, {LSN: "0/3000060", Action: "shutdown"}, {XID: "745", Timeline: "current"}, {Timeline: "latest"}} {
		if err := good.Validate(); err != nil {
			t.Errorf("%+v: %v", good, err)
		}
	}
}

func TestAppendAutoConfAfterExisting(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "postgresql.auto.conf")
	if err := os.WriteFile(p, []byte("# Do not edit\nwork_mem = '8MB'"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := AppendAutoConf(dir, "added", []Setting{{"archive_mode", "off"}}); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(p)
	if string(got) != "# Do not edit\nwork_mem = '8MB'\n# added\narchive_mode = 'off'\n" {
		t.Errorf("postgresql.auto.conf:\n%s", got)
	}
	// A symlink planted in place of the file is not followed.
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(victim, nil, 0o600)
	if err := os.Symlink(victim, p); err != nil {
		t.Fatal(err)
	}
	if err := AppendAutoConf(dir, "added", []Setting{{"x", "1"}}); err == nil {
		t.Error("followed a symlink")
	}
	if b, _ := os.ReadFile(victim); len(b) != 0 {
		t.Error("wrote through a symlink")
	}
}
