package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/pgcloudbackup/pgcloudbackup/internal/metricsfile"
	"github.com/pgcloudbackup/pgcloudbackup/internal/pgtest"
)

// checkJSON runs check --json and returns the exit code and each check's
// status by name.
func checkJSON(t *testing.T, b *testBucket, args ...string) (int, map[string]checkResult) {
	t.Helper()
	r := b.cli(append([]string{"check", "--json"}, args...)...)
	var rep checkReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("check --json output does not parse: %v\n%s\nstderr: %s", err, r.stdout, r.stderr)
	}
	byName := map[string]checkResult{}
	for _, c := range rep.Checks {
		byName[c.Check] = c
	}
	if (rep.Status == "ok") != (r.code == 0) {
		t.Fatalf("status %q with exit %d", rep.Status, r.code)
	}
	return r.code, byName
}

func wantStatus(t *testing.T, got map[string]checkResult, want map[string]string) {
	t.Helper()
	for name, st := range want {
		if got[name].Status != st {
			t.Errorf("check %s: %s (%s), want %s", name, got[name].Status, got[name].Detail, st)
		}
	}
}

// gaugeValue reads one sample (matching labels) back from a metrics file.
func gaugeValue(t *testing.T, path, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	mfs, err := metricsfile.Read(path)
	if err != nil {
		t.Fatalf("metrics file: %v", err)
	}
	mf := mfs[name]
	if mf == nil {
		return 0, false
	}
next:
	for _, m := range mf.GetMetric() {
		for k, v := range labels {
			if labelValue(m, k) != v {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		}
	}
	return 0, false
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func mustGauge(t *testing.T, path, name string, labels map[string]string) float64 {
	t.Helper()
	v, ok := gaugeValue(t, path, name, labels)
	if !ok {
		b, _ := os.ReadFile(path)
		t.Fatalf("%s%v missing from %s:\n%s", name, labels, path, b)
	}
	return v
}

func TestCheckAgainstServer(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	c := pgtest.New(t, pgtest.Options{})
	b := newTestBucket(t)
	dsn := c.ConnString("")
	metricsDir := t.TempDir()
	checkProm := filepath.Join(metricsDir, "check.prom")

	// A fresh setup: everything reachable, no backup yet.
	code, got := checkJSON(t, b, "--dsn", dsn, "--pgdata", c.DataDir, "--max-age", "1h", "--metrics-file", checkProm)
	if code != exitPrecondition {
		t.Fatalf("exit %d with no backup and --max-age, want 3", code)
	}
	wantStatus(t, got, map[string]string{"server": "ok", "pgdata": "ok", "bucket": "ok", "backups": "fail", "wal-archive": "skip"})
	if v := mustGauge(t, checkProm, "pgcloudbackup_check_up", map[string]string{"check": "backups"}); v != 0 {
		t.Errorf("check_up{backups} = %v, want 0", v)
	}
	if v := mustGauge(t, checkProm, "pgcloudbackup_check_up", map[string]string{"check": "server"}); v != 1 {
		t.Errorf("check_up{server} = %v, want 1", v)
	}
	if v := mustGauge(t, checkProm, "pgcloudbackup_check_last_run_exit_code", nil); v != 3 {
		t.Errorf("exit code gauge %v, want 3", v)
	}
	if _, ok := gaugeValue(t, checkProm, "pgcloudbackup_check_last_success_timestamp_seconds", nil); ok {
		t.Error("a failed first check recorded a last success time")
	}
	if ids := b.ids(); len(ids) != 0 {
		t.Fatalf("check left something under backups/: %v", ids)
	}
	if ents, _ := os.ReadDir(filepath.Join(b.dir, "check")); len(ents) != 0 {
		t.Fatalf("probe objects left behind: %v", ents)
	}

	// A backup without WAL, with metrics, by a binary stamped with a
	// version (as the Makefile and goreleaser do): the manifest records it.
	oldVersion := version
	version = "v0.0.0-stamped"
	backupProm := filepath.Join(metricsDir, "backup.prom")
	r := b.cli("backup", "--dsn", dsn, "--pgdata", c.DataDir, "--fast", "--no-wal", "--metrics-file", backupProm, "-q")
	version = oldVersion
	if r.code != 0 {
		t.Fatalf("backup: exit %d\n%s", r.code, r.stderr)
	}
	if ids := b.ids(); len(ids) != 1 {
		t.Fatalf("backups %v", ids)
	} else if mj, err := os.ReadFile(filepath.Join(b.dir, "backups", ids[0], "manifest.json")); err != nil ||
		!strings.Contains(string(mj), `"tool_version": "v0.0.0-stamped"`) && !strings.Contains(string(mj), `"tool_version":"v0.0.0-stamped"`) {
		t.Errorf("manifest.json does not record the stamped version: %v\n%.400s", err, mj)
	}
	if v := mustGauge(t, backupProm, "pgcloudbackup_backup_read_bytes", nil); v < 1<<20 {
		t.Errorf("read_bytes = %v, want the cluster's size", v)
	}
	stored := mustGauge(t, backupProm, "pgcloudbackup_backup_stored_bytes", nil)
	if stored <= 0 {
		t.Errorf("stored_bytes = %v", stored)
	}
	if v := mustGauge(t, backupProm, "pgcloudbackup_backup_checksum_failures", nil); v != 0 {
		t.Errorf("checksum_failures = %v", v)
	}
	lastOK := mustGauge(t, backupProm, "pgcloudbackup_backup_last_success_timestamp_seconds", nil)
	if time.Since(time.Unix(int64(lastOK), 0)) > time.Minute {
		t.Errorf("last success %v is not now", lastOK)
	}

	// The backup has no WAL and the server does not archive: check says
	// it cannot be restored consistently.
	code, got = checkJSON(t, b, "--dsn", dsn, "--max-age", "1h", "--metrics-file", checkProm)
	if code != exitPrecondition {
		t.Fatalf("exit %d, want 3 (backup relies on a WAL archive that is off)", code)
	}
	wantStatus(t, got, map[string]string{"server": "ok", "pgdata": "ok", "backups": "ok", "wal-archive": "fail"})
	if v := mustGauge(t, checkProm, "pgcloudbackup_check_backups", nil); v != 1 {
		t.Errorf("check_backups = %v, want 1", v)
	}
	if v := mustGauge(t, checkProm, "pgcloudbackup_check_newest_backup_age_seconds", nil); v < 0 || v > 600 {
		t.Errorf("newest backup age %v s", v)
	}
	if v := mustGauge(t, checkProm, "pgcloudbackup_check_runs_total", map[string]string{"result": "failure"}); v != 2 {
		t.Errorf("failure runs %v, want 2 (carried across runs)", v)
	}

	// A backup with WAL: self-contained, so archive_mode=off is fine.
	if r := b.cli("backup", "--dsn", dsn, "--fast", "--wal", "-q"); r.code != 0 {
		t.Fatalf("backup --wal: exit %d\n%s", r.code, r.stderr)
	}
	code, got = checkJSON(t, b, "--dsn", dsn, "--max-age", "1h", "--metrics-file", checkProm)
	if code != 0 {
		t.Fatalf("exit %d, want 0: %+v", code, got)
	}
	wantStatus(t, got, map[string]string{"server": "ok", "pgdata": "ok", "bucket": "ok", "backups": "ok", "wal-archive": "skip"})
	if v := mustGauge(t, checkProm, "pgcloudbackup_check_last_run_success", nil); v != 1 {
		t.Errorf("last_run_success %v", v)
	}

	// Another cluster's data directory is refused.
	other := pgtest.New(t, pgtest.Options{})
	code, got = checkJSON(t, b, "--dsn", dsn, "--pgdata", other.DataDir)
	if code != exitPrecondition {
		t.Fatalf("exit %d with another cluster's --pgdata, want 3", code)
	}
	wantStatus(t, got, map[string]string{"server": "ok", "pgdata": "fail"})
	if !strings.Contains(got["pgdata"].Detail, "belongs to cluster") {
		t.Errorf("pgdata detail: %s", got["pgdata"].Detail)
	}

	// A role that may not start a backup.
	c.Exec("postgres", "CREATE ROLE watcher LOGIN")
	code, got = checkJSON(t, b, "--dsn", strings.Replace(dsn, "user=postgres", "user=watcher", 1))
	if code != exitPrecondition {
		t.Fatalf("exit %d for an unprivileged role, want 3", code)
	}
	wantStatus(t, got, map[string]string{"server": "fail", "pgdata": "skip", "bucket": "ok", "wal-archive": "skip"})

	// Archiving on, archive_command failing: check notices.
	c.Stop()
	c.AppendConf(map[string]string{"archive_mode": "on", "archive_command": "'false'"})
	c.Start()
	c.Exec("postgres", "CREATE TABLE t AS SELECT 1 AS x; SELECT pg_switch_wal()")
	deadline := time.Now().Add(60 * time.Second)
	for c.QueryString("postgres", "SELECT failed_count FROM pg_stat_archiver") == "0" {
		if time.Now().After(deadline) {
			t.Fatal("the archiver never reported a failure")
		}
		time.Sleep(200 * time.Millisecond)
	}
	code, got = checkJSON(t, b, "--dsn", dsn)
	if code != exitPrecondition {
		t.Fatalf("exit %d with failing archiving, want 3", code)
	}
	wantStatus(t, got, map[string]string{"wal-archive": "fail"})
}

func TestCheckUsage(t *testing.T) {
	b := newTestBucket(t)
	r := b.cli("check", "--no-server", "--max-age", "soon")
	wantOneLineError(t, r, exitUsage, "--max-age")
	r = b.cli("check", "--no-server", "--metrics-file", filepath.Join(b.dir, "no", "such", "dir", "m.prom"))
	wantOneLineError(t, r, exitUsage, "--metrics-file")
	r = runCLI("check", "--no-server", "--bucket", "")
	wantOneLineError(t, r, exitUsage, "no bucket")
}

// The backups check against --max-age, on a bucket alone (--no-server).
func TestCheckMaxAge(t *testing.T) {
	b := newTestBucket(t)
	now := time.Now()
	b.addBackup("20261120T010000Z", now.Add(-50*time.Hour), nil)
	b.addBackup("20261122T010000Z", now.Add(-3*time.Hour), nil)
	b.put("20261122T050000Z", "base.00001.tar.zst", []byte("a running backup"), now) // incomplete: not "newest"
	before := b.files()
	prom := filepath.Join(t.TempDir(), "check.prom")

	code, got := checkJSON(t, b, "--no-server", "--max-age", "2h", "--metrics-file", prom)
	if code != exitPrecondition {
		t.Fatalf("exit %d, want 3", code)
	}
	wantStatus(t, got, map[string]string{"server": "skip", "pgdata": "skip", "bucket": "ok", "backups": "fail", "wal-archive": "skip"})
	if !strings.Contains(got["backups"].Detail, "20261122T010000Z") {
		t.Errorf("detail names the wrong newest backup: %s", got["backups"].Detail)
	}
	if age := mustGauge(t, prom, "pgcloudbackup_check_newest_backup_age_seconds", nil); age < 3*3600-60 || age > 3*3600+600 {
		t.Errorf("newest backup age %v s, want about 3h", age)
	}
	if v := mustGauge(t, prom, "pgcloudbackup_check_backups", nil); v != 2 {
		t.Errorf("backups gauge %v, want 2 (the incomplete one is not counted)", v)
	}

	code, got = checkJSON(t, b, "--no-server", "--max-age", "4h", "--metrics-file", prom)
	if code != 0 {
		t.Fatalf("exit %d, want 0: %+v", code, got)
	}
	if v := mustGauge(t, prom, "pgcloudbackup_check_runs_total", map[string]string{"result": "success"}); v != 1 {
		t.Errorf("success runs %v", v)
	}
	if v := mustGauge(t, prom, "pgcloudbackup_check_runs_total", map[string]string{"result": "failure"}); v != 1 {
		t.Errorf("failure runs %v (carried from the previous file)", v)
	}
	// The probe is written and removed beside backups/: nothing there
	// changed.
	if after := b.files(); after != before {
		t.Errorf("check changed the backups:\nbefore %s\nafter  %s", before, after)
	}

	// Text output: one line per check.
	r := b.cli("check", "--no-server", "--max-age", "2h")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[3], "FAIL  backups") {
		t.Errorf("text report:\n%s", r.stdout)
	}
}

// delete --metrics-file reports what retention kept.
func TestDeleteMetrics(t *testing.T) {
	b := newTestBucket(t)
	now := time.Now()
	for i, id := range []string{"20261120T010000Z", "20261121T010000Z", "20261122T010000Z"} {
		b.addBackup(id, now.Add(time.Duration(i-3)*24*time.Hour), nil)
	}
	prom := filepath.Join(t.TempDir(), "delete.prom")
	if r := b.cli("delete", "--retain", "2", "--metrics-file", prom); r.code != 0 {
		t.Fatalf("delete: exit %d\n%s", r.code, r.stderr)
	}
	if v := mustGauge(t, prom, "pgcloudbackup_delete_backups_retained", nil); v != 2 {
		t.Errorf("backups_retained %v, want 2", v)
	}
	if v := mustGauge(t, prom, "pgcloudbackup_delete_deleted_backups", nil); v != 1 {
		t.Errorf("deleted_backups %v, want 1", v)
	}
	if v := mustGauge(t, prom, "pgcloudbackup_delete_newest_backup_timestamp_seconds", nil); int64(v) != now.Add(-24*time.Hour).Unix() {
		t.Errorf("newest backup time %v", v)
	}
	// A refused run changes nothing in the bucket and records a failure,
	// keeping the last success time.
	last := mustGauge(t, prom, "pgcloudbackup_delete_last_success_timestamp_seconds", nil)
	r := b.cli("delete", "20261122T010000Z", "--metrics-file", prom)
	if r.code != exitPrecondition {
		t.Fatalf("deleting the newest without --force: exit %d", r.code)
	}
	if v := mustGauge(t, prom, "pgcloudbackup_delete_last_run_success", nil); v != 0 {
		t.Errorf("last_run_success %v after a refused run", v)
	}
	if v := mustGauge(t, prom, "pgcloudbackup_delete_last_success_timestamp_seconds", nil); v != last {
		t.Errorf("last success time %v, want %v carried forward", v, last)
	}
}

// A failed backup keeps what the file said about the last good one and
// records the failure with its exit code.
func TestBackupMetricsOnFailure(t *testing.T) {
	b := newTestBucket(t)
	prom := filepath.Join(t.TempDir(), "backup.prom")
	prev := fmt.Sprintf(`# TYPE pgcloudbackup_backup_last_success_timestamp_seconds gauge
pgcloudbackup_backup_last_success_timestamp_seconds{bucket=%q} 1.7e+09
# TYPE pgcloudbackup_backup_read_bytes gauge
pgcloudbackup_backup_read_bytes{bucket=%q} 4242
# TYPE pgcloudbackup_backup_runs_total counter
pgcloudbackup_backup_runs_total{bucket=%q,result="success"} 5
`, b.url, b.url, b.url)
	if err := os.WriteFile(prom, []byte(prev), 0o644); err != nil {
		t.Fatal(err)
	}
	port := pgtest.FreePort(t) // nothing listens there
	r := b.cli("backup", "--dsn", fmt.Sprintf("host=127.0.0.1 port=%d user=postgres sslmode=disable", port), "--metrics-file", prom)
	if r.code != exitPrecondition {
		t.Fatalf("backup against no server: exit %d\n%s", r.code, r.stderr)
	}
	for name, want := range map[string]float64{
		"pgcloudbackup_backup_last_success_timestamp_seconds": 1.7e9,
		"pgcloudbackup_backup_read_bytes":                     4242,
		"pgcloudbackup_backup_last_run_success":               0,
		"pgcloudbackup_backup_last_run_exit_code":             3,
	} {
		if v := mustGauge(t, prom, name, nil); v != want {
			t.Errorf("%s = %v, want %v", name, v, want)
		}
	}
	if v := mustGauge(t, prom, "pgcloudbackup_backup_runs_total", map[string]string{"result": "success"}); v != 5 {
		t.Errorf("success runs %v, want 5 (carried)", v)
	}
	if v := mustGauge(t, prom, "pgcloudbackup_backup_runs_total", map[string]string{"result": "failure"}); v != 1 {
		t.Errorf("failure runs %v, want 1", v)
	}
}

// A run stopped by a signal is recorded with exit code 130, as the
// command exits.
func TestMetricsInterruptedExitCode(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	g := &globalOptions{bucket: "mem://", stderr: io.Discard, logFormat: "text"}
	if err := g.setup(); err != nil {
		t.Fatal(err)
	}
	prom := filepath.Join(t.TempDir(), "m.prom")
	m, err := startMetrics(ctx, g, prom, "backup")
	if err != nil {
		t.Fatal(err)
	}
	m.finish(errors.New("upload aborted"))
	if v := mustGauge(t, prom, "pgcloudbackup_backup_last_run_exit_code", nil); v != exitInterrupted {
		t.Fatalf("exit code gauge %v, want %d", v, exitInterrupted)
	}
}
