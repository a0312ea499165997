package restore

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgcloudbackup/pgcloudbackup/codec"
	"github.com/pgcloudbackup/pgcloudbackup/engine"
	"github.com/pgcloudbackup/pgcloudbackup/internal/pg/backupmanifest"
	"github.com/pgcloudbackup/pgcloudbackup/internal/pg/wal"
	"github.com/pgcloudbackup/pgcloudbackup/internal/pgtest"
	"github.com/pgcloudbackup/pgcloudbackup/internal/progress"
	"github.com/pgcloudbackup/pgcloudbackup/manifest"
	"github.com/pgcloudbackup/pgcloudbackup/storage"
	"github.com/pgcloudbackup/pgcloudbackup/uploader"
)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func fileStore(t *testing.T) *storage.Store {
	t.Helper()
	store, err := storage.Open(context.Background(), "file://"+pgtest.TempDir(t, "bucket-"), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return store
}

func walRanges(t *testing.T, store *storage.Store, m *manifest.Backup) []backupmanifest.WALRange {
	t.Helper()
	raw, err := store.ReadAll(context.Background(), store.BackupKey(m.ID, storage.PGManifestName), 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	pgm, err := backupmanifest.Read(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("backup_manifest: %v", err)
	}
	return pgm.WALRanges
}

// TestStandbyBackupAcrossPromotion backs up a cascading standby (primary →
// standby 1 → standby 2) while standby 1 is promoted: standby 2 follows it
// to timeline 2 in the middle of the backup. The backup that includes its
// WAL holds it on both timelines with the history file, names both in
// backup_manifest (pg_verifybackup replays them), restores and starts with
// no other source of WAL; the one without WAL names both timelines too.
func TestStandbyBackupAcrossPromotion(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	primary := pgtest.New(t, pgtest.Options{})
	primary.Pgbench(3)
	s1 := primary.Standby(t)
	s2 := s1.Standby(t)
	if got := s2.QueryString("postgres", "SELECT pg_is_in_recovery()::text"); got != "true" {
		t.Fatalf("standby 2 in recovery: %s", got)
	}
	accounts := primary.QueryString("postgres", "SELECT sum(abalance)::text || '/' || count(*)::text FROM pgbench_accounts")

	store := fileStore(t)
	z, _ := codec.Lookup("zstd")
	type result struct {
		m   *manifest.Backup
		err error
	}
	start := func(noWAL bool, prog *progress.Counter) chan result {
		ch := make(chan result, 1)
		go func() {
			m, err := engine.Backup(context.Background(), store, uploader.New(store, uploader.Options{Codec: z}), engine.Options{
				DSN: s2.ConnString("postgres"), PGData: s2.DataDir, Fast: true, IncludeWAL: !noWAL, NoWAL: noWAL,
				MaxRate: 4 << 20, Jobs: 1, Progress: prog, Logger: logger(t), ToolVersion: "test",
			})
			ch <- result{m, err}
		}()
		return ch
	}
	progWAL, progNoWAL := &progress.Counter{}, &progress.Counter{}
	withWAL, withoutWAL := start(false, progWAL), start(true, progNoWAL)
	copying := func(p *progress.Counter) bool {
		done, _, phase := p.Snapshot()
		return phase == "copy" && done > 1<<20
	}
	waitFor(t, 2*time.Minute, "both backups to be copying", func() bool { return copying(progWAL) && copying(progNoWAL) })

	s1.Promote()
	s1.Exec("postgres", "CREATE TABLE after_promotion AS SELECT g FROM generate_series(1, 1000) g")
	switchLSN := s1.QueryString("postgres", "SELECT pg_current_wal_lsn()::text")
	waitFor(t, time.Minute, "standby 2 to replay timeline 2", func() bool {
		return s2.QueryString("postgres", fmt.Sprintf("SELECT (pg_last_wal_replay_lsn() >= '%s')::text", switchLSN)) == "true"
	})
	// A restartpoint flushes the pages replayed on timeline 2, which moves
	// the standby's minimum recovery point (its backup stop point) there.
	s2.Exec("postgres", "CHECKPOINT")
	for _, p := range []*progress.Counter{progWAL, progNoWAL} {
		if _, _, phase := p.Snapshot(); phase != "copy" {
			t.Fatalf("a backup reached %q before the standby changed timeline: the test proves nothing (make it slower)", phase)
		}
	}
	r1, r2 := <-withWAL, <-withoutWAL
	if r1.err != nil || r2.err != nil {
		hist, _ := os.ReadFile(filepath.Join(s2.DataDir, "pg_wal", wal.HistoryFileName(2)))
		ls, _ := exec.Command("ls", "-l", filepath.Join(s2.DataDir, "pg_wal")).CombinedOutput()
		t.Logf("history of timeline 2: %s\npg_wal:\n%s", hist, ls)
		t.Fatalf("backups: with WAL %v; without WAL %v", r1.err, r2.err)
	}
	for _, r := range []result{r1, r2} {
		ranges := walRanges(t, store, r.m)
		if len(ranges) != 2 || ranges[0].Timeline != 2 || ranges[1].Timeline != 1 ||
			ranges[1].Start != r.m.StartLSN || ranges[0].End != r.m.StopLSN || ranges[0].Start != ranges[1].End {
			t.Errorf("backup %s (WAL included %v): WAL-Ranges %+v, want timeline 2 then 1 from %s to %s", r.m.ID, r.m.WALIncluded, ranges, r.m.StartLSN, r.m.StopLSN)
		}
	}
	if !r1.m.WALIncluded || r2.m.WALIncluded || r2.m.WALArchive != manifest.WALArchiveOff {
		t.Errorf("wal_included %v / %v, wal_archive of the --no-wal backup %q (a standby that does not archive: off)",
			r1.m.WALIncluded, r2.m.WALIncluded, r2.m.WALArchive)
	}
	if rep, err := Verify(context.Background(), store, r1.m, VerifyOptions{Jobs: 2}); err != nil || !rep.SelfContained {
		t.Errorf("verify of the backup with WAL: %v %+v", err, rep)
	}
	rep, err := Verify(context.Background(), store, r2.m, VerifyOptions{Jobs: 2})
	if err == nil || !rep.NeedsWALArchive || !strings.Contains(err.Error(), "nothing can restore it") {
		t.Errorf("verify of a backup without WAL from a server that does not archive: %v %+v", err, rep)
	}

	// The promoted standby itself: a backup on timeline 2 alone. (Standby
	// 2's timeline-2 copy of the switch segment, in the backups above,
	// begins with pages timeline 1 wrote: its history allows them.)
	m3, err := engine.Backup(context.Background(), store, uploader.New(store, uploader.Options{Codec: z}), engine.Options{
		DSN: s1.ConnString("postgres"), PGData: s1.DataDir, Fast: true, Jobs: 2, Logger: logger(t), ToolVersion: "test",
	})
	if err != nil {
		t.Fatalf("backup of the promoted standby: %v", err)
	}
	if ranges := walRanges(t, store, m3); !m3.WALIncluded || m3.Timeline != 2 || len(ranges) != 1 || ranges[0].Timeline != 2 {
		t.Errorf("backup of the promoted standby: WAL included %v, timeline %d, WAL-Ranges %+v", m3.WALIncluded, m3.Timeline, ranges)
	}
	hist, err := os.ReadFile(filepath.Join(s1.DataDir, "pg_wal", wal.HistoryFileName(2)))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("timeline 2 history %q; backup of the promoted standby from %s to %s", hist, m3.StartLSN, m3.StopLSN)

	// Nothing else may supply WAL to the restored copy.
	s1.Crash()
	primary.Crash()
	root := pgtest.TempDir(t, "restore-")
	target := filepath.Join(root, "data")
	if _, err := Restore(context.Background(), store, r1.m, Options{Target: target, Jobs: 2, Logger: logger(t)}); err != nil {
		t.Fatalf("restore: %v", err)
	}
	for _, name := range []string{wal.HistoryFileName(2), wal.FileName(1, wal.SegmentOf(r1.m.StartLSN, 16<<20), 16<<20),
		wal.FileName(2, wal.SegmentBefore(r1.m.StopLSN, 16<<20), 16<<20)} {
		if _, err := os.Stat(filepath.Join(target, "pg_wal", name)); err != nil {
			t.Errorf("restored pg_wal lacks %s", name)
		}
	}
	out, err := s2.Client("pg_verifybackup", target).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "backup successfully verified") {
		t.Fatalf("pg_verifybackup (replays the WAL of both timelines): %v\n%s", err, out)
	}
	// The copy of standby 2 starts as a standby (standby.signal came with
	// it), reaches consistency from its own WAL and serves reads.
	restored := pgtest.Adopt(t, target)
	if got := restored.QueryString("postgres", "SELECT count(*)::text FROM after_promotion"); got != "1000" {
		t.Errorf("rows written on timeline 2 before the backup stopped: %s, want 1000", got)
	}
	if got := restored.QueryString("postgres", "SELECT sum(abalance)::text || '/' || count(*)::text FROM pgbench_accounts"); got != accounts {
		t.Errorf("pgbench_accounts %s, want %s", got, accounts)
	}
}
