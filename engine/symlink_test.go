package engine_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/pgcloudbackup/pgcloudbackup/codec"
	"github.com/pgcloudbackup/pgcloudbackup/engine"
	"github.com/pgcloudbackup/pgcloudbackup/internal/pgtest"
	"github.com/pgcloudbackup/pgcloudbackup/restore"
	"github.com/pgcloudbackup/pgcloudbackup/storage"
	"github.com/pgcloudbackup/pgcloudbackup/uploader"
)

type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// moveAndLink moves dataDir/name to a directory outside the data directory
// and leaves a symbolic link in its place (the server is stopped).
func moveAndLink(t *testing.T, dataDir, name string) string {
	t.Helper()
	dst := filepath.Join(pgtest.TempDir(t, "linked-"), name)
	if err := os.Rename(filepath.Join(dataDir, name), dst); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(dst, filepath.Join(dataDir, name)); err != nil {
		t.Fatal(err)
	}
	if pgtest.RunningAsRoot() {
		pgtest.ChownToServerUser(t, filepath.Dir(dst))
		pgtest.ChownToServerUser(t, filepath.Join(dataDir, name))
	}
	return dst
}

// TestSymlinkedExcludedDirectories: pg_replslot and pg_stat_tmp as symbolic
// links (PostgreSQL's own tests link pg_replslot; pg_stat_tmp on tmpfs is
// common) are stored as empty directories, as basebackup.c does: they used
// to be dropped, and a restored cluster without pg_replslot does not start.
func TestSymlinkedExcludedDirectories(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	c := pgtest.New(t, pgtest.Options{})
	c.Exec("postgres", "CREATE TABLE kept AS SELECT g FROM generate_series(1, 1000) g")
	c.Stop()
	slots := moveAndLink(t, c.DataDir, "pg_replslot")
	stats := moveAndLink(t, c.DataDir, "pg_stat_tmp")
	c.Start()
	// Content that must stay out of the backup: a slot and a stats file.
	c.Exec("postgres", "SELECT pg_create_physical_replication_slot('kept_slot', true)")
	if err := os.WriteFile(filepath.Join(stats, "junk.stat"), []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(slots, "kept_slot")); err != nil {
		t.Fatalf("the slot should live behind the link: %v", err)
	}

	dir := pgtest.TempDir(t, "bucket-")
	store, err := storage.Open(context.Background(), "file://"+dir, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	z, _ := codec.Lookup("zstd")
	logger := slog.New(slog.NewTextHandler(logWriter{t}, nil))
	m, err := engine.Backup(context.Background(), store, uploader.New(store, uploader.Options{Codec: z}), engine.Options{
		DSN: c.ConnString("postgres"), Fast: true, IncludeWAL: true, Jobs: 2, ToolVersion: "test", Logger: logger,
	})
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	target := filepath.Join(pgtest.TempDir(t, "restore-"), "data")
	if _, err := restore.Restore(context.Background(), store, m, restore.Options{Target: target, Jobs: 2, Logger: logger}); err != nil {
		t.Fatalf("restore: %v", err)
	}
	for _, name := range []string{"pg_replslot", "pg_stat_tmp"} {
		st, err := os.Lstat(filepath.Join(target, name))
		if err != nil || !st.IsDir() {
			t.Fatalf("restored %s: %v %v, want a directory", name, st, err)
		}
		if st.Mode().Perm() != 0o700 {
			t.Errorf("restored %s has mode %v, want 0700", name, st.Mode().Perm())
		}
		ents, err := os.ReadDir(filepath.Join(target, name))
		if err != nil || len(ents) != 0 {
			t.Errorf("restored %s holds %v (%v), want it empty", name, ents, err)
		}
	}
	restored := pgtest.Adopt(t, target)
	if n := restored.QueryString("postgres", "SELECT count(*)::text FROM kept"); n != "1000" {
		t.Errorf("restored table has %s rows, want 1000", n)
	}
	if n := restored.QueryString("postgres", "SELECT count(*)::text FROM pg_replication_slots"); n != "0" {
		t.Errorf("restored cluster has %s replication slots, want none", n)
	}
}

// TestTablespaceDroppedDuringBackup: a tablespace dropped after the backup
// listed pg_tblspc is archived empty, as basebackup.c does; it used to abort
// the whole backup. The backup restores and starts (WAL replay drops the
// tablespace again).
func TestTablespaceDroppedDuringBackup(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	c := pgtest.New(t, pgtest.Options{})
	loc := filepath.Join(pgtest.TempDir(t, "ts-"), "dropme")
	if err := os.Mkdir(loc, 0o700); err != nil {
		t.Fatal(err)
	}
	if pgtest.RunningAsRoot() {
		pgtest.ChownToServerUser(t, loc)
	}
	c.Exec("postgres", "CREATE TABLESPACE dropme LOCATION '"+loc+"'")
	c.Exec("postgres", "CREATE TABLE kept AS SELECT g FROM generate_series(1, 1000) g")
	oid := c.QueryString("postgres", "SELECT oid::text FROM pg_tablespace WHERE spcname = 'dropme'")

	dir := pgtest.TempDir(t, "bucket-")
	store, err := storage.Open(context.Background(), "file://"+dir, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	z, _ := codec.Lookup("zstd")
	logger := slog.New(slog.NewTextHandler(logWriter{t}, nil))
	opts := engine.Options{DSN: c.ConnString("postgres"), Fast: true, IncludeWAL: true, Jobs: 2, ToolVersion: "test", Logger: logger}
	dropped := false
	engine.SetAfterDiscovery(&opts, func() {
		c.Exec("postgres", "DROP TABLESPACE dropme")
		dropped = true
	})
	m, err := engine.Backup(context.Background(), store, uploader.New(store, uploader.Options{Codec: z}), opts)
	if err != nil {
		t.Fatalf("backup with a tablespace dropped meanwhile: %v", err)
	}
	if !dropped {
		t.Fatal("the tablespace was not dropped during the backup")
	}
	if _, err := os.Stat(filepath.Join(loc, "PG_"+strconv.Itoa(c.Version()))); err == nil {
		t.Fatal("the tablespace directory still exists")
	}
	found := false
	for _, ts := range m.Tablespaces {
		if strconv.FormatUint(uint64(ts.OID), 10) == oid {
			found = true
			if ts.Files != 0 || ts.Size != 0 {
				t.Errorf("dropped tablespace archived with %d files, %d bytes", ts.Files, ts.Size)
			}
		}
	}
	if !found {
		t.Errorf("dropped tablespace %s not in the manifest (listed before the drop): %+v", oid, m.Tablespaces)
	}
	root := pgtest.TempDir(t, "restore-")
	target := filepath.Join(root, "data")
	if _, err := restore.Restore(context.Background(), store, m, restore.Options{
		Target: target, Jobs: 2, Logger: logger,
		TablespaceMap: map[uint32]string{uint32(mustAtoi(t, oid)): filepath.Join(root, "ts")},
	}); err != nil {
		t.Fatalf("restore: %v", err)
	}
	if pgtest.RunningAsRoot() {
		// An empty archive carries no owner for the restore to give the
		// tablespace directory; the restore runs as root here.
		pgtest.ChownToServerUser(t, filepath.Join(root, "ts"))
	}
	restored := pgtest.Adopt(t, target)
	if n := restored.QueryString("postgres", "SELECT count(*)::text FROM kept"); n != "1000" {
		t.Errorf("restored table has %s rows, want 1000", n)
	}
	if n := restored.QueryString("postgres", "SELECT count(*)::text FROM pg_tablespace WHERE spcname = 'dropme'"); n != "0" {
		t.Errorf("restored cluster still has the dropped tablespace")
	}
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
