package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgcloudbackup/pgcloudbackup/internal/pgtest"
	"github.com/pgcloudbackup/pgcloudbackup/internal/testsvc"
	"github.com/pgcloudbackup/pgcloudbackup/storage"
)

// archive is a WAL archive in a bucket, set up so that the server (which
// runs as the postgres OS user when the tests run as root) can push and
// fetch: a configuration file naming the bucket, readable by that user, and
// the store's credentials in the environment the server inherits.
type archive struct {
	url    string
	conf   string   // configuration file: bucket = url
	env    []string // for our own runs of the binary
	stop   func()   // make the store unreachable (nil: cannot)
	start  func()
	cmd    string // archive_command
	prefix string
}

// newMinIOArchive starts MinIO over TLS. Its CA goes into a file the
// server's user may read; the AWS variables are set in the test process, so
// every server started from here inherits them.
func newMinIOArchive(t *testing.T) *archive {
	m := testsvc.StartMinIO(t, testsvc.MinIOOptions{TLS: true})
	m.CreateBucket(t, "pitr")
	dir := pgtest.TempDir(t, "archive-conf-")
	ca, err := os.ReadFile(m.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	caCopy := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caCopy, ca, 0o644); err != nil {
		t.Fatal(err)
	}
	m.SetEnv(t)
	t.Setenv("AWS_CA_BUNDLE", caCopy)
	a := &archive{url: m.BucketURL("pitr", "prod/db1"), prefix: "prod/db1/"}
	a.env = append(m.Env(), "AWS_CA_BUNDLE="+caCopy)
	a.stop = func() { m.Stop(t) }
	a.start = func() { m.Start(t) }
	a.writeConf(t, dir)
	return a
}

func (a *archive) writeConf(t *testing.T, dir string) {
	a.conf = filepath.Join(dir, "pgcloudbackup.conf")
	if err := os.WriteFile(a.conf, []byte("# WAL archive of db1\nbucket = "+a.url+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if pgtest.RunningAsRoot() {
		pgtest.ChownToServerUser(t, dir)
	}
	a.cmd = "'" + binary + " wal-push --push-ahead 4 --config " + a.conf + " %p'"
}

// batch inserts rows tagged tag in one transaction and returns its xid.
func batch(t *testing.T, c *pgtest.Cluster, tag string, rows int) string {
	t.Helper()
	ctx := context.Background()
	conn := c.Connect("postgres")
	defer conn.Close(ctx)
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO events SELECT $1, g FROM generate_series(1, $2::int) g", tag, rows); err != nil {
		t.Fatal(err)
	}
	var xid string
	if err := tx.QueryRow(ctx, "SELECT pg_current_xact_id()::text").Scan(&xid); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	return xid
}

// switchAndWaitArchived ends the current segment and waits until the
// server reports it archived.
func switchAndWaitArchived(t *testing.T, c *pgtest.Cluster) string {
	t.Helper()
	seg := c.QueryString("postgres", "SELECT pg_walfile_name(pg_switch_wal())")
	waitQuery(t, c, "SELECT coalesce(last_archived_wal >= '"+seg+"', false)::text FROM pg_stat_archiver", "true", 60*time.Second)
	return seg
}

// waitQuery polls a one-value query until it returns want.
func waitQuery(t *testing.T, c *pgtest.Cluster, q, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	got := ""
	for time.Now().Before(deadline) {
		if got = c.QueryString("postgres", q); got == want {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: %q after %s, want %q\n--- server log ---\n%s", q, got, timeout, want, c.Log())
}

// batches summarises the events table: "A:1000 B:500".
func batches(t *testing.T, c *pgtest.Cluster) string {
	t.Helper()
	return c.QueryString("postgres", "SELECT coalesce(string_agg(tag || ':' || n, ' ' ORDER BY tag), '') FROM (SELECT tag, count(*) n FROM events GROUP BY tag) s")
}

// restoreAndStart restores with args into a new directory, starts the
// server and waits until recovery has promoted it.
func restoreAndStart(t *testing.T, env []string, args ...string) (*pgtest.Cluster, result) {
	t.Helper()
	root := pgtest.TempDir(t, "pitr-")
	target := filepath.Join(root, "data")
	r := cli(t, env, append([]string{"restore", "--target", target, "--json"}, args...)...)
	if r.code != 0 {
		t.Fatalf("restore %v: %s", args, r)
	}
	if pgtest.RunningAsRoot() {
		pgtest.ChownToServerUser(t, root)
	}
	c := pgtest.Adopt(t, target)
	waitQuery(t, c, "SELECT (NOT pg_is_in_recovery())::text", "true", 120*time.Second)
	return c, r
}

func restoredID(t *testing.T, r result) string {
	var out struct{ ID string }
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("restore --json: %v\n%s", err, r)
	}
	return out.ID
}

// TestPITROnMinIO is point-in-time recovery end to end: the server archives
// through wal-push into MinIO over TLS; a base backup without WAL; batch A;
// the time, LSN, a restore point and A's xid recorded; batch B and a second
// backup; then a restore to each kind of target reaches exactly batch A,
// and one without a target reaches A and B.
func TestPITROnMinIO(t *testing.T) {
	testPITR(t, newMinIOArchive(t))
}

// TestPITROnFile is the same with a directory bucket.
func TestPITROnFile(t *testing.T) {
	dir := pgtest.TempDir(t, "archive-")
	a := &archive{url: "file://" + filepath.Join(dir, "bucket")}
	// The server's user creates the WAL directories inside it.
	if err := os.Mkdir(filepath.Join(dir, "bucket"), 0o700); err != nil {
		t.Fatal(err)
	}
	a.writeConf(t, dir)
	testPITR(t, a)
}

func testPITR(t *testing.T, a *archive) {
	c := pgtest.New(t, pgtest.Options{Conf: map[string]string{"archive_mode": "on", "archive_command": a.cmd}})
	env := append(append(append([]string{}, c.Env()...), a.env...), "PGCLOUDBACKUP_BUCKET="+a.url)
	c.Exec("postgres", "CREATE TABLE events (tag text, n int)")
	// Archiving works before anything waits on it.
	switchAndWaitArchived(t, c)

	r := cli(t, env, "backup", "--fast", "--json")
	if r.code != 0 {
		t.Fatalf("backup: %s", r)
	}
	first := parseManifest(t, r)
	if first.WALIncluded {
		t.Log("note: the backup includes WAL; recovery below still needs the archive for anything after it")
	}
	xidA := batch(t, c, "A", 1000)
	lsnA := c.QueryString("postgres", "SELECT pg_current_wal_lsn()::text")
	timeA := c.QueryString("postgres", "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'")
	c.Exec("postgres", "SELECT pg_create_restore_point('before_b')")
	// B commits strictly after timeA (the clock has moved on).
	waitQuery(t, c, "SELECT (clock_timestamp() > '"+timeA+"'::timestamptz + interval '10 ms')::text", "true", 10*time.Second)
	batch(t, c, "B", 500)
	switchAndWaitArchived(t, c)
	r = cli(t, env, "backup", "--fast", "--json")
	if r.code != 0 {
		t.Fatalf("second backup: %s", r)
	}
	second := parseManifest(t, r)
	switchAndWaitArchived(t, c)
	if got := batches(t, c); got != "A:1000 B:500" {
		t.Fatalf("source has %q", got)
	}

	cases := []struct {
		name string
		args []string
		want string
		id   string
	}{
		// latest + a time: the newest backup that ended before it.
		{"time", []string{"latest", "--target-time", timeA, "--target-action", "promote"}, "A:1000", first.ID},
		{"lsn", []string{"latest", "--target-lsn", lsnA, "--target-action", "promote"}, "A:1000", first.ID},
		{"xid", []string{first.ID, "--target-xid", xidA, "--target-action", "promote"}, "A:1000", first.ID},
		{"name", []string{first.ID, "--target-name", "before_b", "--target-action", "promote"}, "A:1000", first.ID},
		// No target: replay the whole archive.
		{"end of archive", []string{first.ID, "--recovery"}, "A:1000 B:500", first.ID},
		{"latest to the end", []string{"latest", "--recovery"}, "A:1000 B:500", second.ID},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rc, r := restoreAndStart(t, env, tc.args...)
			if id := restoredID(t, r); id != tc.id {
				t.Errorf("restored backup %s, want %s", id, tc.id)
			}
			if got := batches(t, rc); got != tc.want {
				t.Errorf("restored copy has %q, want %q\n%s", got, tc.want, rc.Log())
			}
			// Prefetched segments do not outlive recovery in pg_wal.
			spool := filepath.Join(rc.DataDir, "pg_wal", ".pgcloudbackup-prefetch")
			if _, err := os.Stat(filepath.Join(spool, ".lock")); err != nil {
				t.Errorf("no prefetch ran during recovery: %v", err)
			}
			deadline := time.Now().Add(30 * time.Second)
			for {
				left := segmentsIn(t, spool)
				if len(left) == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("prefetched segments left in pg_wal after recovery: %v", left)
				}
				time.Sleep(100 * time.Millisecond)
			}
			// --archive-mode off is the default: a drill never archives
			// into production's prefix.
			if m := rc.QueryString("postgres", "SHOW archive_mode"); m != "off" {
				t.Errorf("archive_mode %s on the restored copy", m)
			}
			rc.Stop()
		})
	}

	t.Run("archive contract", func(t *testing.T) { testArchiveContract(t, env, "000000010000000000000002") })
	t.Run("verify wal", func(t *testing.T) { testVerifyWAL(t, a, env, first.ID, second.ID) })
	if a.stop != nil {
		t.Run("store down during recovery", func(t *testing.T) { testStoreDown(t, a, env, first.ID, "A:1000 B:500") })
	}
	t.Run("timelines", func(t *testing.T) { testTimelines(t, env, first.ID) })
	// The newer backup is off timeline 2's history: named, it is refused.
	assertOneLineError(t, cli(t, env, "restore", second.ID, "--target", filepath.Join(t.TempDir(), "x"), "--recovery"), 3, "not on the history of timeline 2")

	t.Run("retention", func(t *testing.T) { testWALRetention(t, env, first.ID, second.ID) })

	// A backup that ended after the target cannot reach it: refused
	// before anything is written.
	dir := filepath.Join(t.TempDir(), "never")
	assertOneLineError(t, cli(t, env, "restore", second.ID, "--target", dir, "--target-time", timeA), 3, "not before --target-time")
	assertOneLineError(t, cli(t, env, "restore", "latest", "--target", dir, "--target-time", "2000-01-01T00:00:00Z"), 3, "no complete backup")
	assertOneLineError(t, cli(t, env, "restore", "latest", "--target", dir, "--target-time", "2026-11-29 10:00"), 2, "zone")
	assertOneLineError(t, cli(t, env, "restore", "latest", "--target", dir, "--target-xid", "5", "--target-name", "x"), 2, "at most one")
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("a refused restore created %s", dir)
	}
}

// testArchiveContract is archive_command's contract on real archived WAL:
// pushing a file already archived with the same content succeeds (the
// server's retry after a crash); different content under that name fails
// and the archived file is untouched; an absent file is exit 1, silently.
func testArchiveContract(t *testing.T, env []string, seg string) {
	dir := t.TempDir()
	path := filepath.Join(dir, seg)
	if r := cli(t, env, "wal-fetch", "--prefetch", "0", seg, path); r.code != 0 {
		t.Fatalf("wal-fetch %s: %s", seg, r)
	}
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	r := cli(t, env, "wal-push", "-v", path)
	if r.code != 0 || !strings.Contains(r.stderr, "already archived") {
		t.Fatalf("second push of the same segment: %s", r)
	}
	bad := bytes.Clone(orig)
	bad[len(bad)/2] ^= 0x40
	if err := os.WriteFile(path, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	assertOneLineError(t, cli(t, env, "wal-push", path), 1, "refusing to overwrite")
	again := filepath.Join(dir, "again")
	if r := cli(t, env, "wal-fetch", "--prefetch", "0", seg, again); r.code != 0 {
		t.Fatalf("wal-fetch after the refused push: %s", r)
	}
	if got, _ := os.ReadFile(again); !bytes.Equal(got, orig) {
		t.Fatal("the archived segment changed after a refused push")
	}
	// An incompressible segment is uploaded in several parts: the
	// conditional create must hold for a multipart upload too.
	// (On timeline 15, so that it is no gap in the real timelines.)
	big := filepath.Join(dir, "0000000F00000000000000F0")
	for i, want := range []int{0, 1} {
		noise := make([]byte, 16<<20)
		if _, err := rand.Read(noise); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(big, noise, 0o600); err != nil {
			t.Fatal(err)
		}
		r := cli(t, env, "wal-push", big)
		if r.code != want || (i == 1 && !strings.Contains(r.stderr, "refusing to overwrite")) {
			t.Fatalf("push %d of a 16 MiB incompressible segment: %s", i+1, r)
		}
	}
	r = cli(t, env, "wal-fetch", "--prefetch", "0", "0000000100000000000000FF", filepath.Join(dir, "absent"))
	if r.code != 1 || r.stderr != "" || r.stdout != "" {
		t.Fatalf("wal-fetch of an absent segment: %s", r)
	}
	if _, err := os.Stat(filepath.Join(dir, "absent")); !os.IsNotExist(err) {
		t.Error("an absent fetch created its destination")
	}
	r = cli(t, env, "wal-fetch", "--prefetch", "0", "../../../etc/passwd", filepath.Join(dir, "x"))
	if r.code != 128 || !strings.Contains(r.stderr, "not a WAL file name") {
		t.Fatalf("wal-fetch of a path-like name: %s", r)
	}
}

// testStoreDown: the store becomes unreachable in the middle of recovery.
// A gate in restore_command holds the server's third call until the store
// is stopped; the server must then stop with an error rather than take the
// end of what it could read for the end of the archive and promote. Once
// the store is back, recovery completes.
func testStoreDown(t *testing.T, a *archive, env []string, id, want string) {
	root := pgtest.TempDir(t, "pitr-down-")
	target := filepath.Join(root, "data")
	gateDir := pgtest.TempDir(t, "gate-")
	gate := filepath.Join(gateDir, "gate.sh")
	script := "#!/bin/sh\nd=" + gateDir + "\n" +
		"n=$(cat $d/count 2>/dev/null || echo 0); n=$((n+1)); echo $n > $d/count\n" +
		"if [ \"$n\" -eq 3 ]; then : > $d/reached; while [ ! -e $d/go ]; do sleep 0.05; done; fi\n" +
		"exec " + binary + " wal-fetch --config " + a.conf + " \"$1\" \"$2\"\n"
	if err := os.WriteFile(gate, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	if r := cli(t, env, "restore", id, "--target", target, "--recovery", "--restore-command", gate+" %f %p"); r.code != 0 {
		t.Fatalf("restore: %s", r)
	}
	if pgtest.RunningAsRoot() {
		pgtest.ChownToServerUser(t, root)
		pgtest.ChownToServerUser(t, gateDir)
	}
	bin, err := pgtest.BinDir()
	if err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(root, "down.log")
	started := make(chan error, 1)
	go func() { started <- pgtest.StartServer(bin, target, pgtest.FreePort(t), root, logFile) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(gateDir, "reached")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logFile)
			t.Fatalf("recovery never reached its third restore_command call:\n%s", log)
		}
		time.Sleep(50 * time.Millisecond)
	}
	a.stop()
	defer a.start() // also when the test fails: later subtests need the store
	if err := os.WriteFile(filepath.Join(gateDir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// pg_ctl start -w returns as soon as recovery has started (the
	// postmaster then reports "standby"), so wait for the outcome itself:
	// the server exits, or it promotes (which must not happen).
	<-started
	var logText []byte
	deadline = time.Now().Add(120 * time.Second)
	for {
		logText, _ = os.ReadFile(logFile)
		for _, bad := range []string{"selected new timeline", "archive recovery complete", "ready to accept connections"} {
			if strings.Contains(string(logText), bad) {
				_ = pgtest.StopServer(bin, target, "immediate")
				t.Fatalf("with the store down the server logged %q:\n%s", bad, logText)
			}
		}
		if _, err := os.Stat(filepath.Join(target, "postmaster.pid")); os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			_ = pgtest.StopServer(bin, target, "immediate")
			t.Fatalf("the server neither stopped nor promoted with the store down:\n%s", logText)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(string(logText), "restored log file") {
		t.Errorf("recovery made no progress before the store went down:\n%s", logText)
	}
	if !strings.Contains(string(logText), "exit code 128") || !strings.Contains(string(logText), "due to startup process failure") {
		t.Errorf("the server log does not show recovery stopped by wal-fetch's fatal status:\n%s", logText)
	}
	a.start()
	rc := pgtest.Adopt(t, target)
	waitQuery(t, rc, "SELECT (NOT pg_is_in_recovery())::text", "true", 120*time.Second)
	if got := batches(t, rc); got != want {
		t.Errorf("after the store came back: %q, want %q", got, want)
	}
	rc.Stop()
}

// testTimelines: a point-in-time restore promoted with --archive-mode
// preserve archives its new timeline into the same prefix; a later restore
// follows the history file to a point on that timeline.
func testTimelines(t *testing.T, env []string, id string) {
	tl2, _ := restoreAndStart(t, env, id, "--target-name", "before_b", "--target-action", "promote", "--archive-mode", "preserve")
	if m := tl2.QueryString("postgres", "SHOW archive_mode"); m != "on" {
		t.Fatalf("--archive-mode preserve: archive_mode %s", m)
	}
	if f := tl2.QueryString("postgres", "SELECT pg_walfile_name(pg_current_wal_lsn())"); !strings.HasPrefix(f, "00000002") {
		t.Fatalf("promoted copy writes %s, want timeline 2", f)
	}
	batch(t, tl2, "C", 300)
	timeC := tl2.QueryString("postgres", "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'")
	waitQuery(t, tl2, "SELECT (clock_timestamp() > '"+timeC+"'::timestamptz + interval '10 ms')::text", "true", 10*time.Second)
	batch(t, tl2, "D", 200)
	switchAndWaitArchived(t, tl2)
	tl2.Stop()

	// "latest" must skip the newer backup: it ended on timeline 1 after
	// timeline 2 forked off, so it cannot reach timeline 2.
	rc, r := restoreAndStart(t, env, "latest", "--target-time", timeC, "--target-timeline", "latest", "--target-action", "promote")
	if got := restoredID(t, r); got != id {
		t.Errorf("restored backup %s, want %s (the one before the fork)", got, id)
	}
	if got := batches(t, rc); got != "A:1000 C:300" {
		t.Errorf("restore to a point on timeline 2: %q, want \"A:1000 C:300\"\n%s", got, rc.Log())
	}
	rc.Stop()
}

// testWALRetention: delete --retain 1 removes the older backup and the WAL
// only it needed (--dry-run first shows it and removes nothing); the kept
// backup still restores to the newest point.
func testWALRetention(t *testing.T, env []string, older, newer string) {
	type report struct {
		Deleted []struct{ ID string }
		WAL     *struct {
			Files    int
			KeepFrom string `json:"keep_from"`
			First    string
		}
	}
	run := func(args ...string) report {
		t.Helper()
		r := cli(t, env, append([]string{"delete", "--retain", "1", "--json"}, args...)...)
		if r.code != 0 {
			t.Fatalf("delete: %s", r)
		}
		var rep report
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
			t.Fatalf("delete --json: %v\n%s", err, r)
		}
		return rep
	}
	// The first segment the older backup needed.
	oldSeg := "000000010000000000000002"
	dry := run("--dry-run")
	if len(dry.Deleted) != 1 || dry.Deleted[0].ID != older || dry.WAL == nil || dry.WAL.Files == 0 || dry.WAL.First > oldSeg {
		t.Fatalf("dry run: %+v %+v", dry, dry.WAL)
	}
	if r := cli(t, env, "wal-fetch", "--prefetch", "0", oldSeg, filepath.Join(t.TempDir(), "x")); r.code != 0 {
		t.Fatalf("a dry run removed WAL: %s", r)
	}
	rep := run()
	if len(rep.Deleted) != 1 || rep.Deleted[0].ID != older || rep.WAL == nil || rep.WAL.Files != dry.WAL.Files {
		t.Fatalf("delete: %+v %+v", rep, rep.WAL)
	}
	if r := cli(t, env, "wal-fetch", "--prefetch", "0", oldSeg, filepath.Join(t.TempDir(), "x")); r.code != 1 {
		t.Fatalf("WAL only the deleted backup needed is still archived: %s", r)
	}
	if r := cli(t, env, "wal-fetch", "--prefetch", "0", "00000002.history", filepath.Join(t.TempDir(), "h")); r.code != 0 {
		t.Fatalf("a history file was removed: %s", r)
	}
	rc, r := restoreAndStart(t, env, "latest", "--recovery", "--target-timeline", "current")
	if id := restoredID(t, r); id != newer {
		t.Errorf("restored %s, want %s", id, newer)
	}
	if got := batches(t, rc); got != "A:1000 B:500" {
		t.Errorf("after retention the kept backup restores to %q, want \"A:1000 B:500\"", got)
	}
	rc.Stop()
}

// testVerifyWAL: verify --wal reports each backup's recoverable window and
// names a gap in the archived WAL after it.
func testVerifyWAL(t *testing.T, a *archive, env []string, older, newer string) {
	r := cli(t, env, "verify", older, "--wal", "--json")
	var out struct {
		Status string
		WAL    struct {
			Segments    int
			ReachesStop bool `json:"reaches_stop"`
			Gap         string
		}
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || r.code != 0 || out.Status != "ok" || !out.WAL.ReachesStop || out.WAL.Gap != "" || out.WAL.Segments < 3 {
		t.Fatalf("verify --wal of a sound archive: %v %+v\n%s", err, out, r)
	}
	// Take one segment out: the older backup's window has a gap, the
	// newer one (which starts after it) does not.
	seg := "000000010000000000000003"
	saved := filepath.Join(t.TempDir(), seg)
	if r := cli(t, env, "wal-fetch", "--prefetch", "0", seg, saved); r.code != 0 {
		t.Fatalf("wal-fetch: %s", r)
	}
	ctx := context.Background()
	store, err := storage.Open(ctx, a.url, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if err := store.Delete(ctx, store.WALKey(seg)); err != nil {
		t.Fatal(err)
	}
	assertOneLineError(t, cli(t, env, "verify", older, "--wal"), 1, "gap at "+seg)
	if r := cli(t, env, "verify", newer, "--wal"); r.code != 0 || !strings.Contains(r.stdout, "contiguous segments") {
		t.Errorf("verify --wal of the newer backup: %s", r)
	}
	r = cli(t, env, "list", "--wal", "--json")
	var listed []struct {
		ID  string
		WAL *struct{ Gap string }
	}
	if err := json.Unmarshal([]byte(r.stdout), &listed); err != nil || r.code != 0 || len(listed) != 2 {
		t.Fatalf("list --wal --json: %v\n%s", err, r)
	}
	for _, b := range listed {
		want := ""
		if b.ID == older {
			want = seg
		}
		if b.WAL == nil || b.WAL.Gap != want {
			t.Errorf("list --wal: backup %s window %+v, want gap %q", b.ID, b.WAL, want)
		}
	}
	if r := cli(t, env, "show", older); r.code != 0 || !strings.Contains(r.stdout, "GAP at "+seg) {
		t.Errorf("show does not name the gap: %s", r)
	}
	// Put it back (as the server's retry would) and the window closes.
	if pgtest.RunningAsRoot() {
		pgtest.ChownToServerUser(t, filepath.Dir(saved))
	}
	if r := cli(t, env, "wal-push", saved); r.code != 0 {
		t.Fatalf("re-push: %s", r)
	}
	if r := cli(t, env, "verify", older, "--wal"); r.code != 0 {
		t.Errorf("verify --wal after the segment came back: %s", r)
	}
}
