package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgcloudbackup/pgcloudbackup/internal/pgtest"
)

type checkLine struct {
	Check, Status, Detail, Hint string
}

// runCheck runs check --json and returns its exit code and the wal-archive line.
func runCheckWAL(t *testing.T, env []string, args ...string) (int, checkLine) {
	t.Helper()
	r := cli(t, env, append([]string{"check", "--json"}, args...)...)
	var rep struct {
		Status string
		Checks []checkLine
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("check --json: %v\n%s", err, r)
	}
	for _, c := range rep.Checks {
		if c.Check == "wal-archive" {
			return r.code, c
		}
	}
	t.Fatalf("no wal-archive line: %s", r)
	return 0, checkLine{}
}

// metricValue reads one unlabelled sample from a textfile.
func metricValue(t *testing.T, path, name string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^` + name + `(?:\{[^}]*\})? (\S+)$`).FindStringSubmatch(string(b))
	if m == nil {
		t.Fatalf("%s missing from %s:\n%s", name, path, b)
	}
	return m[1]
}

// writeAndSwitch completes n segments, each holding a little data.
func writeAndSwitch(t *testing.T, c *pgtest.Cluster, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		c.Exec("postgres", "INSERT INTO t SELECT 1; SELECT pg_switch_wal()")
	}
}

// TestCheckWALPushArchive: check compares the wal-push archive in the
// bucket with the server. Healthy → ok with lag 0; archive_command
// failing while segments complete → fail naming the lag; archive_command
// that "succeeds" without writing to this bucket (pg_stat_archiver looks
// healthy) → fail: the last archived file is not in the bucket; a forged
// segment name beyond the server's WAL in the bucket does not hide a lag;
// archiving restored → ok again.
func TestCheckWALPushArchive(t *testing.T) {
	bucketDir := pgtest.TempDir(t, "checkwal-bucket-")
	bucket := "file://" + bucketDir
	push := "'" + binary + " wal-push --bucket " + bucket + " %p'"
	c := pgtest.New(t, pgtest.Options{Conf: map[string]string{"archive_mode": "on", "archive_command": push}})
	env := append(c.Env(), "PGCLOUDBACKUP_BUCKET="+bucket)
	prom := filepath.Join(t.TempDir(), "check.prom")
	c.Exec("postgres", "CREATE TABLE t (x int)")
	writeAndSwitch(t, c, 3)
	switchAndWaitArchived(t, c)

	code, w := runCheckWAL(t, env, "--metrics-file", prom)
	if code != 0 || w.Status != "ok" || !strings.Contains(w.Detail, "bucket archive: newest") || !strings.Contains(w.Detail, " 0 completed segments behind") {
		t.Fatalf("healthy wal-push archive: exit %d %+v", code, w)
	}
	if v := metricValue(t, prom, "pgcloudbackup_check_wal_archive_lag_segments"); v != "0" {
		t.Errorf("lag_segments %s, want 0", v)
	}
	if v := metricValue(t, prom, "pgcloudbackup_check_wal_archive_lag_seconds"); v != "0" {
		t.Errorf("lag_seconds %s, want 0", v)
	}

	// check pointed at another bucket than archive_command's: the server's
	// last archived segment is not there.
	otherEnv := append(c.Env(), "PGCLOUDBACKUP_BUCKET=file://"+t.TempDir())
	code, w = runCheckWAL(t, otherEnv)
	if code != 3 || w.Status != "fail" || !strings.Contains(w.Detail, "is not in") || !strings.Contains(w.Hint, "another bucket") {
		t.Fatalf("check on another bucket than wal-push's: exit %d %+v", code, w)
	}

	// A forged segment from the future in the bucket (untrusted input).
	forged := filepath.Join(bucketDir, "wal", "00000001", "0000000100000000000000F0.zst")
	if err := os.WriteFile(forged, []byte("not wal"), 0o644); err != nil {
		t.Fatal(err)
	}

	// Archiving breaks; 20 segments complete.
	c.Exec("postgres", "ALTER SYSTEM SET archive_command = 'false'")
	c.Exec("postgres", "SELECT pg_reload_conf()")
	writeAndSwitch(t, c, 20)
	waitArchiver(t, c, "last_failed_time > last_archived_time")
	code, w = runCheckWAL(t, env, "--metrics-file", prom)
	if code != 3 || w.Status != "fail" || !regexp.MustCompile(`2[0-9] completed segments behind`).MatchString(w.Detail) {
		t.Fatalf("archive_command failing, 20 segments: exit %d %+v", code, w)
	}
	if v, _ := strconv.ParseFloat(metricValue(t, prom, "pgcloudbackup_check_wal_archive_lag_segments"), 64); v < 20 {
		t.Errorf("lag_segments %v, want >= 20", v)
	}
	if v := metricValue(t, prom, "pgcloudbackup_check_wal_archive_lag_seconds"); v == "0" {
		t.Errorf("lag_seconds 0 while segments wait")
	}

	// archive_command "succeeds" without writing here: pg_stat_archiver
	// looks healthy, the bucket says otherwise.
	c.Exec("postgres", "ALTER SYSTEM SET archive_command = 'true'")
	c.Exec("postgres", "SELECT pg_reload_conf()")
	switchAndWaitArchived(t, c)
	if got := c.QueryString("postgres", "SELECT (last_archived_time > last_failed_time)::text FROM pg_stat_archiver"); got != "true" {
		t.Fatalf("the server does not see archiving as healthy: %s", got)
	}
	code, w = runCheckWAL(t, env)
	if code != 3 || w.Status != "fail" || !strings.Contains(w.Detail, "is not in "+bucket) {
		t.Fatalf("archive_command writing elsewhere: exit %d %+v", code, w)
	}

	// Back to wal-push: the server re-archives nothing it already marked
	// done, so the archive has a gap behind; the newest segment is current
	// again, which is what this check measures (verify --wal names gaps).
	c.Exec("postgres", "ALTER SYSTEM SET archive_command = "+push)
	c.Exec("postgres", "SELECT pg_reload_conf()")
	// The archiver reads the reload when it gets to it: switch until a
	// segment lands in the bucket.
	var last string
	for deadline := time.Now().Add(time.Minute); ; {
		c.Exec("postgres", "INSERT INTO t SELECT 1")
		last = switchAndWaitArchived(t, c)
		if _, err := os.Stat(filepath.Join(bucketDir, "wal", "00000001", last+".zst")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("wal-push never archived into the bucket after the reload")
		}
	}
	code, w = runCheckWAL(t, env, "--max-wal-lag", "1000")
	if code != 0 || w.Status != "ok" || !strings.Contains(w.Detail, last) {
		t.Fatalf("archiving restored (gap behind, newest %s present): exit %d %+v", last, code, w)
	}
	// With 0 allowed, the current archive passes only when nothing waits.
	code, w = runCheckWAL(t, env, "--max-wal-lag", "0")
	if code != 0 {
		t.Fatalf("--max-wal-lag 0 with nothing waiting: exit %d %+v", code, w)
	}
	assertOneLineError(t, cli(t, env, "check", "--max-wal-lag=-3"), 2, "--max-wal-lag")
	assertOneLineError(t, cli(t, env, "check", "--max-wal-lag", "soon"), 2, "--max-wal-lag")
}

// TestCheckWALArchiveStalled: an archiver that is stuck, not failing
// (archive_command waits on a gate), looks healthy to pg_stat_archiver;
// check fails on the lag in the bucket by segment count and by age, and
// passes again once the archive catches up.
func TestCheckWALArchiveStalled(t *testing.T) {
	dir := pgtest.TempDir(t, "checkwal-stall-")
	bucketDir := filepath.Join(dir, "bucket")
	gate := filepath.Join(dir, "gate")
	script := filepath.Join(dir, "archive.sh")
	bucket := "file://" + bucketDir
	body := "#!/bin/sh\nwhile [ ! -e " + gate + " ]; do sleep 0.1; done\nexec " + binary + " wal-push --bucket " + bucket + " \"$1\"\n"
	if err := os.MkdirAll(bucketDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if pgtest.RunningAsRoot() {
		pgtest.ChownToServerUser(t, dir)
	}
	c := pgtest.New(t, pgtest.Options{Conf: map[string]string{"archive_mode": "on", "archive_command": "'" + script + " %p'"}})
	env := append(c.Env(), "PGCLOUDBACKUP_BUCKET="+bucket)
	c.Exec("postgres", "CREATE TABLE t (x int)")
	switchAndWaitArchived(t, c)
	if code, w := runCheckWAL(t, env); code != 0 {
		t.Fatalf("healthy: exit %d %+v", code, w)
	}

	// Close the gate: the archiver waits, nothing fails.
	if err := os.Remove(gate); err != nil {
		t.Fatal(err)
	}
	writeAndSwitch(t, c, 20)
	code, w := runCheckWAL(t, env)
	if code != 3 || w.Status != "fail" || !regexp.MustCompile(`lags the server by (19|2[0-9]) completed segments \(more than --max-wal-lag 16 segments\)`).MatchString(w.Detail) {
		t.Fatalf("stalled archiver, 20 segments waiting: exit %d %+v", code, w)
	}
	if got := c.QueryString("postgres", "SELECT failed_count FROM pg_stat_archiver"); got != "0" {
		t.Fatalf("the stalled archiver reported failures (%s): the test no longer shows a lag the server does not see", got)
	}
	if code, w := runCheckWAL(t, env, "--max-wal-lag", "1h"); code != 0 {
		t.Fatalf("--max-wal-lag 1h with segments waiting a few seconds: exit %d %+v", code, w)
	}
	code, w = runCheckWAL(t, env, "--max-wal-lag", "1ns")
	if code != 3 || !strings.Contains(w.Detail, "more than --max-wal-lag 1ns") {
		t.Fatalf("--max-wal-lag 1ns with segments waiting: exit %d %+v", code, w)
	}

	// Open the gate: the archive catches up.
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	switchAndWaitArchived(t, c)
	if code, w := runCheckWAL(t, env, "--max-wal-lag", "0"); code != 0 || !strings.Contains(w.Detail, " 0 completed segments behind") {
		t.Fatalf("caught up: exit %d %+v", code, w)
	}
}
