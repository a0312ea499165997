package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRestorePITRRefusals: bad recovery flags are usage errors found before
// the bucket is opened or the target created; a bucket URL with secret
// parameters is never written into restore_command.
func TestRestorePITRRefusals(t *testing.T) {
	t.Setenv(configEnv, "")
	dir := filepath.Join(t.TempDir(), "target")
	b := newTestBucket(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--target-time", "yesterday"}, "--target-time"},
		{[]string{"--target-lsn", "0/1", "--target-xid", "100"}, "at most one"},
		{[]string{"--target-action", "promote"}, "needs a target"},
		{[]string{"--target-timeline", "0"}, "--target-timeline"},
		{[]string{"--target-name", "x", "--standby"}, "exclude each other"},
		{[]string{"--archive-mode", "on"}, "--archive-mode"},
		{[]string{"--target-name", "x", "--bucket", "s3://b/p?region=us-east-1&sas_token=TOPSECRET"}, "may be secret"},
		{[]string{"--recovery", "--bucket", "s3://user:TOPSECRET@b/p"}, "may be secret"},
	} {
		args := append([]string{"restore", "latest", "--target", dir, "--bucket", b.url}, c.args...)
		r := runCLI(args...)
		if r.code != exitUsage || !strings.Contains(r.stderr, c.want) || strings.Contains(r.stderr, "TOPSECRET") {
			t.Errorf("%v: %+v, want exit 2 mentioning %q", c.args, r, c.want)
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("a refused restore created %s", dir)
	}
}
