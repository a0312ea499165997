package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgcloudbackup/pgcloudbackup/internal/pgtest"
)

// loadAvg is the 1-minute load average, to note how busy the shared
// machine was while a figure was taken.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Fields(string(b))[0] + fmt.Sprintf(" on %d cores", runtime.NumCPU())
}

// TestBenchWALRecovery times a real recovery: a base backup without WAL,
// then N segments of pgbench WAL archived by the server itself through
// wal-push into MinIO over TLS; the backup is restored with --recovery
// and PostgreSQL replays the whole archive through restore_command =
// wal-fetch, once with --prefetch 8 (the default) and once with
// --prefetch 0. The time is from the server's start to its promotion.
// A measurement, not a check: it runs only with PGCB_WAL_BENCH=N.
func TestBenchWALRecovery(t *testing.T) {
	want, _ := strconv.Atoi(os.Getenv("PGCB_WAL_BENCH"))
	if want <= 0 {
		t.Skip("set PGCB_WAL_BENCH=<segments> to run the WAL benchmark")
	}
	a := newMinIOArchive(t)
	c := pgtest.New(t, pgtest.Options{Conf: map[string]string{
		"archive_mode": "on", "archive_command": a.cmd, "max_wal_size": "4GB"}})
	env := append(c.Env(), a.env...)
	env = append(env, "PGCLOUDBACKUP_BUCKET="+a.url)
	c.Pgbench(want/6 + 1)
	r := cli(t, env, "backup", "--fast", "--no-wal", "--json")
	if r.code != 0 {
		t.Fatalf("backup: %s", r)
	}
	id := parseManifest(t, r).ID
	first := c.QueryString("postgres", "SELECT pg_walfile_name(pg_current_wal_lsn())")
	for {
		cur := c.QueryString("postgres", "SELECT pg_walfile_name(pg_current_wal_lsn())")
		if segDistance(t, first, cur) >= int64(want) {
			break
		}
		c.Exec("postgres", "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid % 3 = 0")
	}
	c.Exec("postgres", "CREATE TABLE bench_end AS SELECT 1 AS x")
	last := switchAndWaitArchived(t, c)
	n := segDistance(t, first, last) + 1
	t.Logf("archived %d segments (%s .. %s) after backup %s; load %s", n, first, last, id, loadAvg())
	c.Stop()

	for _, prefetch := range []int{8, 0} {
		root := pgtest.TempDir(t, "walbench-rec-")
		target := filepath.Join(root, "data")
		cmd := fmt.Sprintf("%s wal-fetch --prefetch %d --config %s %%f %%p", binary, prefetch, a.conf)
		if r := cli(t, env, "restore", id, "--target", target, "--recovery", "--restore-command", cmd); r.code != 0 {
			t.Fatalf("restore: %s", r)
		}
		if pgtest.RunningAsRoot() {
			pgtest.ChownToServerUser(t, root)
		}
		began := time.Now()
		rc := pgtest.Adopt(t, target)
		waitQuery(t, rc, "SELECT (NOT pg_is_in_recovery())::text", "true", 30*time.Minute)
		took := time.Since(began)
		if got := rc.QueryString("postgres", "SELECT count(*) FROM bench_end"); got != "1" {
			t.Fatalf("recovery did not reach the end of the archive (bench_end: %q)", got)
		}
		t.Logf("%-26s %d segments replayed in %6.1fs: %5.1f segments/s (server start to promotion; load %s)",
			fmt.Sprintf("recovery --prefetch %d", prefetch), n, took.Seconds(), float64(n)/took.Seconds(), loadAvg())
		rc.Stop()
	}
}

// TestBenchWALKeepUp: can archiving through wal-push into MinIO over TLS
// keep up with a write-heavy pgbench? pgbench -c 4 runs for
// PGCB_WAL_KEEPUP seconds on a cluster whose archive_command is wal-push
// --push-ahead 4; at the end: WAL written, WAL archived, the .ready files
// still waiting, and how long the archiver then needs to catch up.
func TestBenchWALKeepUp(t *testing.T) {
	secs, _ := strconv.Atoi(os.Getenv("PGCB_WAL_KEEPUP"))
	if secs <= 0 {
		t.Skip("set PGCB_WAL_KEEPUP=<seconds> to run the archiving keep-up benchmark")
	}
	a := newMinIOArchive(t)
	c := pgtest.New(t, pgtest.Options{Conf: map[string]string{
		"archive_mode": "on", "archive_command": a.cmd, "max_wal_size": "4GB"}})
	c.Pgbench(20)
	c.Exec("postgres", "CREATE TABLE bulk (id int, pad text)")
	bulk := filepath.Join(pgtest.TempDir(t, "keepup-"), "bulk.sql")
	// 1000 rows of 500 bytes per transaction: about 0.6 MiB of WAL each.
	if err := os.WriteFile(bulk, []byte("INSERT INTO bulk SELECT g, repeat(md5(g::text), 16) FROM generate_series(1, 1000) g;\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, w := range []struct{ name, args string }{
		{"tpcb (pgbench default)", ""},
		{"bulk insert (-f bulk.sql)", "-f " + bulk},
	} {
		keepUp(t, c, secs, w.name, w.args)
	}
}

// keepUp runs one pgbench workload for secs and reports what the archiver
// did meanwhile.
func keepUp(t *testing.T, c *pgtest.Cluster, secs int, name, extra string) {
	switchAndWaitArchived(t, c)
	startLSN := c.QueryString("postgres", "SELECT pg_current_wal_lsn()")
	startSeg := c.QueryString("postgres", "SELECT pg_walfile_name(pg_current_wal_lsn())")
	startCount, _ := strconv.ParseInt(c.QueryString("postgres", "SELECT archived_count FROM pg_stat_archiver"), 10, 64)
	load0 := loadAvg()
	args := []string{"-c", "4", "-j", "2", "-T", strconv.Itoa(secs), "-n"}
	args = append(args, strings.Fields(extra)...)
	out, err := c.Client("pgbench", append(args, "postgres")...).CombinedOutput()
	if err != nil {
		t.Fatalf("pgbench: %v\n%s", err, out)
	}
	tps := ""
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "tps") {
			tps = l
		}
	}
	end := time.Now()
	cur := c.QueryString("postgres", "SELECT pg_walfile_name(pg_current_wal_lsn())")
	walBytes := c.QueryString("postgres", "SELECT pg_current_wal_lsn() - '"+startLSN+"'::pg_lsn")
	lastArchived := c.QueryString("postgres", "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
	failed := c.QueryString("postgres", "SELECT failed_count FROM pg_stat_archiver")
	countNow, _ := strconv.ParseInt(c.QueryString("postgres", "SELECT archived_count FROM pg_stat_archiver"), 10, 64)
	ready := readyFiles(t, c.DataDir)
	written := segDistance(t, startSeg, cur) // completed segments since the start
	lag := int64(0)
	if len(lastArchived) == 24 {
		lag = segDistance(t, lastArchived, cur) - 1 // completed but not yet archived
	}
	t.Logf("keep-up %s: pgbench -c 4 -j 2 -T %d: %s (load before %s, after %s)", name, secs, tps, load0, loadAvg())
	t.Logf("keep-up %s: WAL written %s bytes = %d completed segments (%.1f/s); archived meanwhile %d (failed_count %d); at the end last archived %s, current %s: lag %d segments, %d .ready files",
		name, walBytes, written, float64(written)/float64(secs), countNow-startCount, mustAtoi(failed), lastArchived, cur, lag, ready)
	// Catch-up: switch once and time until the last completed segment is archived.
	seg := c.QueryString("postgres", "SELECT pg_walfile_name(pg_switch_wal())")
	waitQuery(t, c, "SELECT coalesce(last_archived_wal >= '"+seg+"', false)::text FROM pg_stat_archiver", "true", 30*time.Minute)
	t.Logf("keep-up %s: archiver caught up with %s %.1fs after pgbench ended", name, seg, time.Since(end).Seconds())
}

func mustAtoi(s string) int64 { n, _ := strconv.ParseInt(s, 10, 64); return n }

// segDistance is the number of segments from a to b (names on one
// timeline, 16 MiB segments: 256 per "xlogid").
func segDistance(t *testing.T, a, b string) int64 {
	t.Helper()
	num := func(s string) int64 {
		hi, err1 := strconv.ParseInt(s[8:16], 16, 64)
		lo, err2 := strconv.ParseInt(s[16:24], 16, 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("bad segment name %q", s)
		}
		return hi*256 + lo
	}
	return num(b) - num(a)
}

// readyFiles counts pg_wal/archive_status/*.ready (run as root or as the
// server's user).
func readyFiles(t *testing.T, dataDir string) int {
	out, err := exec.Command("sh", "-c", "ls "+filepath.Join(dataDir, "pg_wal", "archive_status")+" | grep -c '\\.ready$' || true").Output()
	if err != nil {
		t.Logf("count .ready files: %v", err)
		return -1
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	return n
}
