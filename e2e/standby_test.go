package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgcloudbackup/pgcloudbackup/internal/pg/wal"
	"github.com/pgcloudbackup/pgcloudbackup/internal/pgtest"
)

// TestStandbyBackups backs up a streaming standby (PostgreSQL 15 and 17)
// while its primary takes a steady stream of committed writes, with --wal
// and without (then the WAL comes from the primary's archive). Each restore
// starts, and holds every row committed up to the backup's stop point, with
// no gap: the data is that of one consistent instant at or after the stop.
func TestStandbyBackups(t *testing.T) {
	for _, major := range []int{15, 17} {
		t.Run(strconv.Itoa(major), func(t *testing.T) {
			t.Parallel()
			testStandby(t, major)
		})
	}
}

func testStandby(t *testing.T, major int) {
	archive := pgtest.TempDir(t, "walarchive-")
	primary := pgtest.New(t, pgtest.Options{Major: major, Conf: map[string]string{
		"archive_mode":    "on",
		"archive_command": fmt.Sprintf("'test ! -f %s/%%f && cp %%p %s/%%f'", archive, archive),
	}})
	primary.Exec("postgres", `CREATE TABLE ticks (id bigint PRIMARY KEY, payload text);
		INSERT INTO ticks SELECT g, md5(g::text) FROM generate_series(1, 1000) g`)
	// The backups run as a role with only the grants the README lists,
	// made on the primary (the standby is read-only).
	primary.Exec("postgres", `CREATE ROLE backup LOGIN REPLICATION;
		GRANT EXECUTE ON FUNCTION pg_backup_start(text, boolean) TO backup;
		GRANT EXECUTE ON FUNCTION pg_backup_stop(boolean) TO backup;
		GRANT pg_read_all_settings TO backup;
		CREATE ROLE nobody LOGIN`)
	standby := primary.Standby(t)
	if v := standby.QueryString("postgres", "SELECT pg_is_in_recovery()::text"); v != "true" {
		t.Fatalf("the standby is not in recovery: %s", v)
	}
	w := startWriter(t, primary, 1001)
	defer w.stop(t)
	eventually(t, 2*time.Minute, "the standby replays the primary's writes", func() bool {
		w.check(t)
		n, _ := strconv.Atoi(standby.QueryString("postgres", "SELECT count(*)::text FROM ticks"))
		return n >= 1100
	})

	bucket := "file://" + pgtest.TempDir(t, "bucket-")
	env := append(append([]string{}, standby.Env()...), "PGCLOUDBACKUP_BUCKET="+bucket, "PGUSER=backup")
	// Without the grants: refused before anything starts.
	assertOneLineError(t, cli(t, append(env, "PGUSER=nobody"), "backup", "--wal"), 3, "may not run pg_backup_start")
	for _, withWAL := range []bool{true, false} {
		name, args := "with --no-wal", []string{"backup", "--fast", "--json", "--no-wal"}
		if withWAL {
			name, args = "with --wal", []string{"backup", "--fast", "--json", "--wal"}
		}
		before := w.committed()
		r := cli(t, env, args...)
		if r.code != 0 {
			t.Fatalf("%s: backup of the standby: %s", name, r)
		}
		during := w.committed() - before
		w.check(t)
		if withWAL && strings.Contains(r.stderr, "not reserved") {
			t.Errorf("%s: the temporary slot that keeps the WAL could not be made on the standby:\n%s", name, r.stderr)
		}
		m := parseManifest(t, r)
		if m.PGVersionNum/10000 != major || m.WALIncluded != withWAL {
			t.Fatalf("%s: manifest says version %d, WAL %v", name, m.PGVersionNum, m.WALIncluded)
		}
		if during == 0 {
			t.Fatalf("%s: the primary committed nothing while the backup ran", name)
		}
		// Every row whose commit record ends at or before the stop point
		// must be in the restore.
		mustHave := w.lastCommittedBy(m.StopLSN)
		if mustHave <= 1000 {
			t.Fatalf("%s: no row of the writer committed before the stop point %s", name, m.StopLSN)
		}

		root := pgtest.TempDir(t, "restore-")
		target := filepath.Join(root, "data")
		rargs := []string{"restore", m.ID, "--target", target}
		if !withWAL {
			// The standby does not wait for the archive (archive_mode is
			// not "always" there): have the primary archive past the stop.
			waitArchived(t, primary, m.StopLSN)
			rargs = append(rargs, "--recovery", "--restore-command", "cp "+archive+"/%f %p")
		}
		if r := cli(t, env, rargs...); r.code != 0 {
			t.Fatalf("%s: restore: %s", name, r)
		}
		// The restore must not archive into the primary's archive.
		pgtest.AppendConf(t, target, map[string]string{"archive_mode": "off"})
		if pgtest.RunningAsRoot() {
			pgtest.ChownToServerUser(t, root)
		}
		restored := pgtest.AdoptMajor(t, target, major)
		label, err := os.ReadFile(filepath.Join(target, "backup_label.old"))
		if err != nil || !strings.Contains(string(label), "BACKUP FROM: standby") {
			t.Errorf("%s: backup_label.old does not say the backup came from a standby: %v\n%s", name, err, label)
		}
		// It accepts (read-only) connections during archive recovery: wait
		// until it has promoted itself at the end of the archive.
		eventually(t, 2*time.Minute, "the restored server ends recovery", func() bool {
			return restored.QueryString("postgres", "SELECT pg_is_in_recovery()::text") == "false"
		})
		maxID, _ := strconv.ParseInt(restored.QueryString("postgres", "SELECT coalesce(max(id), 0)::text FROM ticks"), 10, 64)
		count, _ := strconv.ParseInt(restored.QueryString("postgres", "SELECT count(*)::text FROM ticks"), 10, 64)
		if count != maxID {
			t.Errorf("%s: restored ticks has %d rows up to id %d: a gap", name, count, maxID)
		}
		if maxID < mustHave {
			t.Errorf("%s: restored ticks ends at id %d, but id %d was committed before the stop point %s", name, maxID, mustHave, m.StopLSN)
		}
		if sum := restored.QueryString("postgres", "SELECT md5(string_agg(payload, ',' ORDER BY id)) FROM ticks"); sum !=
			primary.QueryString("postgres", fmt.Sprintf("SELECT md5(string_agg(payload, ',' ORDER BY id)) FROM ticks WHERE id <= %d", maxID)) {
			t.Errorf("%s: restored rows differ from the primary's", name)
		}
		t.Logf("%s: %d rows committed during the backup; stop %s; restored up to id %d (required %d)", name, during, m.StopLSN, maxID, mustHave)
		restored.Stop()
	}
}

// writer commits one row at a time on the primary and records, for each, a
// WAL position at or after the end of its commit record.
type writer struct {
	mu     sync.Mutex
	ids    []int64
	lsns   []wal.LSN
	err    error // why the writer stopped early
	cancel context.CancelFunc
	done   chan struct{}
}

func startWriter(t *testing.T, c *pgtest.Cluster, firstID int64) *writer {
	ctx, cancel := context.WithCancel(context.Background())
	conn, err := pgx.Connect(ctx, c.ConnString("postgres"))
	if err != nil {
		t.Fatalf("writer: connect: %v", err)
	}
	w := &writer{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		defer conn.Close(context.Background())
		fail := func(err error) {
			w.mu.Lock()
			w.err = ctxErr(ctx, err)
			w.mu.Unlock()
		}
		tick := time.NewTicker(5 * time.Millisecond) // a steady load, not a flood on 2 cores
		defer tick.Stop()
		for id := firstID; ; id++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if _, err := conn.Exec(ctx, "INSERT INTO ticks VALUES ($1::bigint, md5($1::bigint::text))", id); err != nil {
				fail(fmt.Errorf("insert %d: %w", id, err))
				return
			}
			var s string
			if err := conn.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&s); err != nil {
				fail(fmt.Errorf("read the WAL position: %w", err))
				return
			}
			lsn, err := wal.ParseLSN(s)
			if err != nil {
				fail(err)
				return
			}
			w.mu.Lock()
			w.ids, w.lsns = append(w.ids, id), append(w.lsns, lsn)
			w.mu.Unlock()
		}
	}()
	return w
}

func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func (w *writer) committed() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.ids)
}

// lastCommittedBy is the highest id whose commit ended at or before lsn
// (1000 when none: the rows loaded before the writer started).
func (w *writer) lastCommittedBy(lsn wal.LSN) int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	last := int64(1000)
	for i, l := range w.lsns {
		if l <= lsn {
			last = w.ids[i]
		}
	}
	return last
}

// check fails the test if the writer stopped on an error.
func (w *writer) check(t *testing.T) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		t.Fatalf("writer: %v", w.err)
	}
}

func (w *writer) stop(t *testing.T) {
	w.cancel()
	<-w.done
	if w.err != nil {
		t.Errorf("writer: %v", w.err)
	}
}

// waitArchived switches WAL on the primary and waits until the segment
// holding lsn is archived.
func waitArchived(t *testing.T, primary *pgtest.Cluster, lsn wal.LSN) {
	t.Helper()
	seg := primary.QueryString("postgres", fmt.Sprintf("SELECT pg_walfile_name('%s')", lsn))
	primary.Exec("postgres", "SELECT pg_switch_wal()")
	eventually(t, 2*time.Minute, "the primary archives "+seg, func() bool {
		last := primary.QueryString("postgres", "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
		return len(last) == len(seg) && last >= seg
	})
}

// eventually polls an observable condition until it holds or the deadline
// passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting until %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestStandbyPromotedDuringBackup: the standby is promoted while its backup
// runs. PostgreSQL refuses to stop such a backup (its files may mix states of
// two timelines): the backup fails with one line saying why, exit 1, and
// leaves nothing in the bucket.
func TestStandbyPromotedDuringBackup(t *testing.T) {
	primary := pgtest.New(t, pgtest.Options{Major: 17})
	standby := primary.Standby(t)
	bucketDir := pgtest.TempDir(t, "bucket-")
	p := startCLI(t, standby.Env(), "backup", "--bucket", "file://"+bucketDir, "--wal", "--fast", "--max-rate", "2M")
	p.waitFor(t, "backup started", time.Minute)
	if v := standby.QueryString("postgres", "SELECT pg_promote(true, 60)::text"); v != "true" {
		t.Fatalf("pg_promote: %s", v)
	}
	r := p.wait(t)
	assertOneLineError(t, r, 1, "promoted")
	if files := listFiles(t, bucketDir); len(files) != 0 {
		t.Errorf("the failed backup left %v in the bucket", files)
	}
}
