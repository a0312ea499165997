package engine

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gocloud.dev/blob"
	"gocloud.dev/blob/memblob"

	"github.com/pgcloudbackup/pgcloudbackup/codec"
	"github.com/pgcloudbackup/pgcloudbackup/internal/faultyblob"
	"github.com/pgcloudbackup/pgcloudbackup/internal/pg/backupmanifest"
	"github.com/pgcloudbackup/pgcloudbackup/internal/pg/control"
	"github.com/pgcloudbackup/pgcloudbackup/internal/pgtest"
	"github.com/pgcloudbackup/pgcloudbackup/internal/progress"
	"github.com/pgcloudbackup/pgcloudbackup/manifest"
	"github.com/pgcloudbackup/pgcloudbackup/storage"
	"github.com/pgcloudbackup/pgcloudbackup/uploader"
)

// member is one tar member read back from the bucket.
type member struct {
	hdr  tar.Header
	data []byte
}

// readBackup reads every volume of a backup back from the bucket,
// decompresses it with the codec its name says and returns the members by
// archive-qualified path ("base/..." or "<oid>/...").
func readBackup(t *testing.T, b *storage.Store, prefix string, m *manifest.Backup) map[string]member {
	t.Helper()
	out := map[string]member{}
	for _, ts := range m.Tablespaces {
		arch := "base"
		if ts.OID != 0 {
			arch = fmt.Sprint(ts.OID)
		}
		for _, o := range ts.Objects {
			data, err := b.ReadAll(context.Background(), prefix+o.Key, 1<<40)
			if err != nil {
				t.Fatalf("read %s: %v", o.Key, err)
			}
			if int64(len(data)) != o.Size {
				t.Fatalf("%s: stored %d bytes, manifest says %d", o.Key, len(data), o.Size)
			}
			vol, err := storage.ParseVolumeName(o.Key)
			if err != nil {
				t.Fatal(err)
			}
			if vol.OID() != ts.OID {
				t.Errorf("%s listed under tablespace %d", o.Key, ts.OID)
			}
			r, err := vol.Codec.NewReader(bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			tr := tar.NewReader(r)
			for {
				h, err := tr.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("%s: %v", o.Key, err)
				}
				body, err := io.ReadAll(tr)
				if err != nil {
					t.Fatal(err)
				}
				name := arch + "/" + strings.TrimSuffix(h.Name, "/")
				if _, dup := out[name]; dup {
					t.Errorf("member %s appears twice", name)
				}
				out[name] = member{hdr: *h, data: body}
			}
			r.Close()
		}
	}
	return out
}

func versionDir(t *testing.T, s *pgtest.Sample) string {
	t.Helper()
	d, err := s.VersionDir()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func memStore(t *testing.T) *storage.Store {
	t.Helper()
	s, err := storage.Open(context.Background(), "mem://", storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func backupOptions(t *testing.T, c *pgtest.Cluster) Options {
	return Options{
		DSN:         c.ConnString("postgres"),
		Fast:        true,
		Jobs:        2,
		Logger:      testLogger(t),
		ToolVersion: "test",
	}
}

// newUploader compresses with zstd, the default.
func newUploader(s *storage.Store) *uploader.Uploader {
	return uploader.New(s, uploader.Options{Codec: codec.Zstd})
}

func TestBackupContents(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	c := pgtest.New(t, pgtest.Options{})
	f := c.LoadSample(pgtest.SampleOptions{Corrupt: true})
	// A temporary table held open during the backup: its files exist in
	// the data directory and must not be copied.
	hold := c.Connect("postgres")
	if _, err := hold.Exec(context.Background(), "CREATE TEMP TABLE tmp_rel AS SELECT g FROM generate_series(1,1000) g"); err != nil {
		t.Fatal(err)
	}
	var tempPath string
	if err := hold.QueryRow(context.Background(), "SELECT pg_relation_filepath('tmp_rel')").Scan(&tempPath); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(c.DataDir, tempPath)); err != nil {
		t.Fatalf("temp relation file should exist during the test: %v", err)
	}

	store := memStore(t)
	opts := backupOptions(t, c)
	opts.IncludeWAL = true
	m, err := Backup(context.Background(), store, newUploader(store), opts)
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	members := readBackup(t, store, store.BackupKey(m.ID, ""), m)

	mustHave := []string{
		"base/PG_VERSION", "base/global/pg_control", "base/backup_label", "base/tablespace_map",
		"base/pg_wal", "base/pg_wal/archive_status", "base/pg_stat_tmp", "base/pg_replslot",
		"base/postgresql.conf", "base/" + f.Unlogged + "_init",
		"base/pg_tblspc/" + f.TablespaceOID,
		f.TablespaceOID + "/" + versionDir(t, f),
	}
	for _, name := range mustHave {
		if _, ok := members[name]; !ok {
			t.Errorf("missing member %s", name)
		}
	}
	mustNot := map[string]string{
		"base/postmaster.pid":                      "lock file of the running server",
		"base/postmaster.opts":                     "options of the running server",
		"base/pg_stat_tmp/junk.stat":               "stats temp contents",
		"base/base/pgsql_tmp":                      "temporary files directory",
		"base/base/pgsql_tmp/pgsql_tmp123.0":       "temporary file",
		"base/" + f.Unlogged:                       "main fork of an unlogged table",
		"base/" + strings.TrimPrefix(tempPath, ""): "temporary relation",
	}
	for name, why := range mustNot {
		if _, ok := members[name]; ok {
			t.Errorf("member %s must not be in the backup (%s)", name, why)
		}
	}
	for name := range members {
		if strings.HasPrefix(name, "base/pg_wal/") && !strings.HasPrefix(name, "base/pg_wal/archive_status") {
			continue
		}
		if strings.Contains(name, "/pg_internal.init") {
			t.Errorf("relcache init file copied: %s", name)
		}
	}
	if link := members["base/pg_tblspc/"+f.TablespaceOID]; link.hdr.Typeflag != tar.TypeSymlink || link.hdr.Linkname != f.TablespaceDir {
		t.Errorf("pg_tblspc/%s: type %c link %q, want symlink to %s", f.TablespaceOID, link.hdr.Typeflag, link.hdr.Linkname, f.TablespaceDir)
	}
	// pg_control is byte-identical to the file (the server does not change it
	// without a checkpoint, and the backup's checkpoint came before the copy).
	if ctl := members["base/global/pg_control"]; len(ctl.data) != control.FileSize {
		t.Errorf("pg_control has %d bytes", len(ctl.data))
	}
	label := string(members["base/backup_label"].data)
	if !strings.Contains(label, "START WAL LOCATION: "+m.StartLSN.String()) || !strings.Contains(label, "LABEL: pgcloudbackup "+m.ID) {
		t.Errorf("backup_label does not describe this backup:\n%s", label)
	}
	if !strings.Contains(string(members["base/tablespace_map"].data), f.TablespaceOID+" "+f.TablespaceDir) {
		t.Errorf("tablespace_map: %q", members["base/tablespace_map"].data)
	}
	// WAL from start to stop, each with a .done marker.
	wals := 0
	for name := range members {
		if rest, ok := strings.CutPrefix(name, "base/pg_wal/"); ok && len(rest) == 24 {
			wals++
			if _, ok := members["base/pg_wal/archive_status/"+rest+".done"]; !ok {
				t.Errorf("WAL %s has no .done marker", rest)
			}
		}
	}
	if wals == 0 {
		t.Error("--wal backup has no WAL segments")
	}

	// Checksum failures are those we made.
	if m.ChecksumFailuresTotal != int64(len(f.CorruptBlocks)) || len(m.ChecksumFailures) != 1 ||
		m.ChecksumFailures[0].Path != f.Corrupt || fmt.Sprint(m.ChecksumFailures[0].Blocks) != fmt.Sprint(f.CorruptBlocks) {
		t.Errorf("checksum failures = %+v (total %d), want %s blocks %v", m.ChecksumFailures, m.ChecksumFailuresTotal, f.Corrupt, f.CorruptBlocks)
	}

	// backup_manifest lists every file of the archives (not WAL), with the
	// right size and CRC32C.
	raw, err := store.ReadAll(context.Background(), store.BackupKey(m.ID, storage.PGManifestName), 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	pgm, err := backupmanifest.Read(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("backup_manifest: %v", err)
	}
	listed := map[string]bool{}
	for _, pf := range pgm.Files {
		listed[pf.Path] = true
		name := "base/" + pf.Path
		if rest, ok := strings.CutPrefix(pf.Path, "pg_tblspc/"+f.TablespaceOID+"/"); ok {
			name = f.TablespaceOID + "/" + rest
		}
		mem, ok := members[name]
		if !ok {
			t.Errorf("backup_manifest lists %s, not in the archives", pf.Path)
			continue
		}
		crc := backupmanifest.NewCRC32C()
		crc.Write(mem.data)
		if pf.Size != int64(len(mem.data)) || pf.Checksum != backupmanifest.CRC32CChecksum(crc.Sum32()) {
			t.Errorf("%s: manifest size %d checksum %s, archive %d %s", pf.Path, pf.Size, pf.Checksum, len(mem.data), backupmanifest.CRC32CChecksum(crc.Sum32()))
		}
	}
	for name, mem := range members {
		if mem.hdr.Typeflag != tar.TypeReg || strings.HasPrefix(name, "base/pg_wal/") {
			continue
		}
		p := strings.TrimPrefix(name, "base/")
		if strings.HasPrefix(name, f.TablespaceOID+"/") {
			p = "pg_tblspc/" + name
		}
		if !listed[p] {
			t.Errorf("archive file %s is not in backup_manifest", p)
		}
	}
	if len(pgm.WALRanges) != 1 || pgm.WALRanges[0].Start != m.StartLSN || pgm.WALRanges[0].End != m.StopLSN {
		t.Errorf("WAL ranges %+v, want %s-%s", pgm.WALRanges, m.StartLSN, m.StopLSN)
	}
	if got, err := store.ReadAll(context.Background(), store.BackupKey(m.ID, storage.ManifestName), 1<<30); err != nil {
		t.Errorf("manifest.json missing: %v", err)
	} else if back, err := manifest.Unmarshal(got); err != nil || back.ID != m.ID {
		t.Errorf("manifest.json unreadable: %v", err)
	}
	assertNoBackupSession(t, c)
}

// assertNoBackupSession checks the backup's session is gone: a
// non-exclusive backup lives only as long as its session, so this is how we
// know the server is not left in backup mode.
func assertNoBackupSession(t *testing.T, c *pgtest.Cluster) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := c.QueryString("postgres", "SELECT count(*)::text FROM pg_stat_activity WHERE application_name = 'pgcloudbackup'")
		if n == "0" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s pgcloudbackup sessions still open: the server may still be in backup mode", n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestBackupBucketRefusesWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	c := pgtest.New(t, pgtest.Options{})
	c.Pgbench(1)
	inner := memblob.OpenBucket(nil)
	faults := &faultyblob.Faults{}
	faults.FailWrite(0, 1<<20, errors.New("injected: bucket refuses writes"))
	store := storage.NewStore(faultyblob.New(inner, faults), "mem")
	opts := backupOptions(t, c)
	_, err := Backup(context.Background(), store, newUploader(store), opts)
	if err == nil || !strings.Contains(err.Error(), "injected") {
		t.Fatalf("backup error = %v, want the injected write error", err)
	}
	assertEmptyBucket(t, inner)
	assertNoBackupSession(t, c)
}

func TestBackupServerStopsMidway(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	c := pgtest.New(t, pgtest.Options{})
	c.Pgbench(2)
	inner, faults, store := observedMemStore()
	opts := backupOptions(t, c)
	opts.MaxRate = 2 << 20 // ~15 s for this cluster: time to stop the server
	opts.Progress = &progress.Counter{}
	errc := make(chan error, 1)
	go func() {
		_, err := Backup(context.Background(), store, newUploader(store), opts)
		errc <- err
	}()
	waitForUploadedBytes(t, faults, opts.Progress, errc)
	c.Crash()
	err := <-errc
	if err == nil || !strings.Contains(err.Error(), "lost the backup session") {
		t.Fatalf("backup error = %v, want the lost session", err)
	}
	assertEmptyBucket(t, inner)
}

func TestBackupCancelled(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	c := pgtest.New(t, pgtest.Options{})
	c.Pgbench(2)
	inner, faults, store := observedMemStore()
	opts := backupOptions(t, c)
	opts.MaxRate = 2 << 20
	opts.Progress = &progress.Counter{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		_, err := Backup(ctx, store, newUploader(store), opts)
		errc <- err
	}()
	waitForUploadedBytes(t, faults, opts.Progress, errc)
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("backup error = %v, want cancellation", err)
	}
	assertEmptyBucket(t, inner)
	assertNoBackupSession(t, c)
}

// observedMemStore is a mem:// store whose calls are counted (no faults),
// so a test can see when the backup has started sending data.
func observedMemStore() (*blob.Bucket, *faultyblob.Faults, *storage.Store) {
	inner := memblob.OpenBucket(nil)
	faults := &faultyblob.Faults{}
	return inner, faults, storage.NewStore(faultyblob.New(inner, faults), "mem")
}

// waitForUploadedBytes waits until the backup copies data (so
// pg_backup_start has run) and has written archive bytes to the bucket
// beyond its ID reservation (one write, made before the server is
// touched), so an upload is in flight; it fails if the backup ends first.
func waitForUploadedBytes(t *testing.T, faults *faultyblob.Faults, p *progress.Counter, errc <-chan error) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		if done, _, _ := p.Snapshot(); done > 0 && faults.Calls(faultyblob.Write) >= 2 {
			break
		}
		select {
		case err := <-errc:
			t.Fatalf("backup ended (%v) before it uploaded anything", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the backup uploaded nothing within a minute")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := faults.Calls(faultyblob.Close); n != 0 {
		t.Logf("note: %d objects already closed when the fault hit", n)
	}
}

func assertEmptyBucket(t *testing.T, b *blob.Bucket) {
	t.Helper()
	assertEmptyStore(t, storage.NewStore(b, "mem"))
}

// assertEmptyStore fails for every object left in s.
func assertEmptyStore(t *testing.T, s *storage.Store) {
	t.Helper()
	iter := s.List("")
	for {
		obj, err := iter.Next(context.Background())
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Errorf("object left behind by a failed backup: %s", obj.Key)
	}
}

// TestBackupRollsOverAndThrottles: with a backend that allows few parts per
// object, an archive continues in further volumes, each within the
// limit; and --max-rate holds the copy to the given rate.
func TestBackupRollsOverAndThrottles(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	c := pgtest.New(t, pgtest.Options{})
	c.Pgbench(1)
	store := storage.NewStore(memblob.OpenBucket(nil), "mem")
	// 4 parts of 5 MiB: an object may hold about 19 MB of raw tar.
	store.Limits = storage.Limits{MaxParts: 4, MinPartSize: 5 << 20, MaxPartSize: 5 << 20}
	opts := backupOptions(t, c)
	opts.Jobs = 1
	const rate = 8 << 20
	opts.MaxRate = rate
	up := newUploader(store)
	limit := up.MaxRawBytes(1)
	began := time.Now()
	m, err := Backup(context.Background(), store, up, opts)
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	elapsed := time.Since(began)
	base := m.Tablespaces[0]
	if len(base.Objects) < 3 { // at least two rolled volumes plus the final one
		t.Fatalf("base archive in %d objects; %d bytes with a limit of %d per object should roll over", len(base.Objects), base.Size, limit)
	}
	for _, o := range base.Objects {
		if o.RawSize > limit {
			t.Errorf("%s holds %d raw bytes, over the %d limit", o.Key, o.RawSize, limit)
		}
	}
	// Every volume is a complete tar stream and together they hold the cluster.
	members := readBackup(t, store, store.BackupKey(m.ID, ""), m)
	if _, ok := members["base/global/pg_control"]; !ok {
		t.Error("pg_control missing from the rolled-over archive")
	}
	if min := time.Duration(float64(m.TotalSize()) / rate * 0.8 * float64(time.Second)); elapsed < min {
		t.Errorf("%d bytes at --max-rate %d B/s took %v, less than %v", m.TotalSize(), rate, elapsed, min)
	}
}

// TestBackupTablespaceInsideDataDir: a tablespace located inside the data
// directory is archived once, as its own archive (its directory stays in
// base, empty); an in-place tablespace (a directory in pg_tblspc) stays in
// base. Both restore as tablespaces.
func TestBackupTablespaceInsideDataDir(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	c := pgtest.New(t, pgtest.Options{})
	inside := filepath.Join(c.DataDir, "inside_ts")
	if err := os.Mkdir(inside, 0o700); err != nil {
		t.Fatal(err)
	}
	if pgtest.RunningAsRoot() {
		pgtest.ChownToServerUser(t, inside)
	}
	c.Exec("postgres", fmt.Sprintf(`CREATE TABLESPACE inside LOCATION '%s'`, inside))
	c.Exec("postgres", `CREATE TABLESPACE inplace LOCATION ''`)
	c.Exec("postgres", `CREATE TABLE t_inside TABLESPACE inside AS SELECT g FROM generate_series(1, 10000) g;
		CREATE TABLE t_inplace TABLESPACE inplace AS SELECT g FROM generate_series(1, 10000) g;
		CHECKPOINT`)
	insideOID := c.QueryString("postgres", "SELECT oid::text FROM pg_tablespace WHERE spcname = 'inside'")
	inplaceOID := c.QueryString("postgres", "SELECT oid::text FROM pg_tablespace WHERE spcname = 'inplace'")
	insidePath := c.RelationPath("postgres", "t_inside")   // pg_tblspc/<oid>/PG_*/5/<rel>
	inplacePath := c.RelationPath("postgres", "t_inplace") // pg_tblspc/<oid>/PG_*/5/<rel>

	store := memStore(t)
	opts := backupOptions(t, c)
	m, err := Backup(context.Background(), store, newUploader(store), opts)
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	if len(m.Tablespaces) != 2 || fmt.Sprint(m.Tablespaces[1].OID) != insideOID {
		t.Fatalf("archives %+v: want base and tablespace %s only (the in-place one stays in base)", m.Tablespaces, insideOID)
	}
	members := readBackup(t, store, store.BackupKey(m.ID, ""), m)
	rel := strings.TrimPrefix(insidePath, "pg_tblspc/"+insideOID+"/")
	if _, ok := members[insideOID+"/"+rel]; !ok {
		t.Errorf("tablespace archive lacks %s", rel)
	}
	if _, ok := members["base/inside_ts"]; !ok {
		t.Error("the tablespace's directory inside the data directory is not kept in base")
	}
	for name := range members {
		if strings.HasPrefix(name, "base/inside_ts/") {
			t.Errorf("tablespace inside the data directory archived twice: %s", name)
		}
	}
	if mem, ok := members["base/"+inplacePath]; !ok || mem.hdr.Size == 0 {
		t.Errorf("in-place tablespace file %s missing from base", inplacePath)
	}
	if _, ok := members["base/pg_tblspc/"+inplaceOID]; !ok {
		t.Errorf("in-place tablespace directory missing from base")
	}
}
