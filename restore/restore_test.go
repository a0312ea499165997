package restore

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgcloudbackup/pgcloudbackup/codec"
	"github.com/pgcloudbackup/pgcloudbackup/engine"
	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
	"github.com/pgcloudbackup/pgcloudbackup/internal/pg/backupmanifest"
	"github.com/pgcloudbackup/pgcloudbackup/internal/pgtest"
	"github.com/pgcloudbackup/pgcloudbackup/manifest"
	"github.com/pgcloudbackup/pgcloudbackup/storage"
	"github.com/pgcloudbackup/pgcloudbackup/uploader"
)

func TestMemberName(t *testing.T) {
	cases := []struct {
		name string
		ok   bool
		why  string
	}{
		{"base/1/1259", true, "ordinary relation file"},
		{"global/", true, "directory with trailing slash"},
		{"PG_15_202209061/16384/16385", true, "tablespace member"},
		{"../evil", false, "parent directory"},
		{"base/../../evil", false, "climbs out after a component"},
		{"/etc/passwd", false, "absolute path"},
		{"./base/1", false, "not clean"},
		{"base//1", false, "not clean"},
		{"", false, "empty"},
		{".", false, "the root itself"},
		{"..", false, "parent"},
		{"a/\x00b", false, "NUL byte"},
	}
	for _, c := range cases {
		_, err := memberName(c.name)
		if (err == nil) != c.ok {
			t.Errorf("memberName(%q): err %v, want ok=%v (%s)", c.name, err, c.ok, c.why)
		}
	}
}

// backedUp is a cluster with sample data and a backup of it in a file://
// bucket.
type backedUp struct {
	c      *pgtest.Cluster
	sample *pgtest.Sample
	store  *storage.Store
	dir    string // the bucket directory
	m      *manifest.Backup
}

func takeBackup(t *testing.T, wal bool) *backedUp {
	t.Helper()
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	c := pgtest.New(t, pgtest.Options{})
	sample := c.LoadSample(pgtest.SampleOptions{})
	dir := pgtest.TempDir(t, "bucket-")
	store, err := storage.Open(context.Background(), "file://"+dir, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	z, _ := codec.Lookup("zstd")
	up := uploader.New(store, uploader.Options{Codec: z})
	m, err := engine.Backup(context.Background(), store, up, engine.Options{
		DSN: c.ConnString("postgres"), Fast: true, IncludeWAL: wal, Jobs: 2, ToolVersion: "test",
	})
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	return &backedUp{c: c, sample: sample, store: store, dir: dir, m: m}
}

func logger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, nil))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestRestoreStartsAndVerifies restores with the tablespace moved, checks
// pg_verifybackup on the result, starts it and compares the data.
func TestRestoreStartsAndVerifies(t *testing.T) {
	b := takeBackup(t, true)
	root := pgtest.TempDir(t, "restore-")
	target := filepath.Join(root, "data")
	tsDir := filepath.Join(root, "moved-ts")
	var oid uint32
	fmt.Sscan(b.sample.TablespaceOID, &oid)
	res, err := Restore(context.Background(), b.store, b.m, Options{
		Target: target, TablespaceMap: map[uint32]string{oid: tsDir}, Jobs: 2, Logger: logger(t),
	})
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	if res.Tablespaces[b.sample.TablespaceOID] != tsDir {
		t.Errorf("result tablespaces %v", res.Tablespaces)
	}
	if link, err := os.Readlink(filepath.Join(target, "pg_tblspc", b.sample.TablespaceOID)); err != nil || link != tsDir {
		t.Errorf("pg_tblspc link %q %v, want %s", link, err, tsDir)
	}
	if data, err := os.ReadFile(filepath.Join(target, "tablespace_map")); err != nil || string(data) != b.sample.TablespaceOID+" "+tsDir+"\n" {
		t.Errorf("tablespace_map %q %v", data, err)
	}
	if st, err := os.Stat(target); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("target mode %v %v, want 0700", st.Mode(), err)
	}
	out, err := b.c.Client("pg_verifybackup", target).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "backup successfully verified") {
		t.Fatalf("pg_verifybackup on the restored directory: %v\n%s", err, out)
	}
	restored := pgtest.Adopt(t, target)
	if diff := pgtest.Compare(b.c, restored, b.sample.CompareQueries); diff != "" {
		t.Fatalf("restored data differs: %s", diff)
	}
	if n := restored.QueryString("postgres", "SELECT count(*)::text FROM scratch"); n != "0" {
		t.Errorf("unlogged table has %s rows, want 0", n)
	}
}

func TestRestoreRefusesNonEmptyTarget(t *testing.T) {
	b := takeBackup(t, false)
	target := pgtest.TempDir(t, "target-")
	keep := filepath.Join(target, "precious")
	if err := os.WriteFile(keep, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	tsMap := map[uint32]string{tsOID(t, b): filepath.Join(t.TempDir(), "ts")}
	_, err := Restore(context.Background(), b.store, b.m, Options{Target: target, TablespaceMap: tsMap})
	if failure.KindOf(err) != failure.Precondition || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("restore into a non-empty target: %v, want a precondition error", err)
	}
	if _, err := os.Stat(keep); err != nil {
		t.Fatalf("refused restore touched the target: %v", err)
	}
	// The original tablespace location is in use by the source cluster.
	_, err = Restore(context.Background(), b.store, b.m, Options{Target: filepath.Join(t.TempDir(), "new")})
	if failure.KindOf(err) != failure.Precondition || !strings.Contains(err.Error(), "tablespace") {
		t.Fatalf("restore onto the live tablespace location: %v, want a precondition error", err)
	}
	// --overwrite never replaces a directory with a server on it.
	_, err = Restore(context.Background(), b.store, b.m, Options{Target: b.c.DataDir, TablespaceMap: tsMap, Overwrite: true})
	if failure.KindOf(err) != failure.Precondition || !strings.Contains(err.Error(), "running PostgreSQL server") {
		t.Fatalf("overwrite of a running cluster: %v", err)
	}
	// --overwrite of an ordinary non-empty directory works; standby
	// settings are written as asked.
	res, err := Restore(context.Background(), b.store, b.m, Options{Target: target, TablespaceMap: tsMap, Overwrite: true,
		Standby: true, RestoreCommand: "cp '/archive/%f' %p"})
	if err != nil {
		t.Fatalf("restore --overwrite: %v", err)
	}
	if _, err := os.Stat(keep); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("--overwrite kept an old file: %v", err)
	}
	if _, err := os.Stat(filepath.Join(target, "standby.signal")); err != nil || res.Signal != "standby.signal" {
		t.Errorf("standby.signal: %v (result %q)", err, res.Signal)
	}
	if _, err := os.Stat(filepath.Join(target, "recovery.signal")); err == nil {
		t.Error("recovery.signal written for a standby")
	}
	conf, err := os.ReadFile(filepath.Join(target, "postgresql.auto.conf"))
	if err != nil || !strings.Contains(string(conf), "restore_command = 'cp ''/archive/%f'' %p'") {
		t.Errorf("postgresql.auto.conf lacks the restore_command (quotes doubled): %v\n%s", err, conf)
	}
	// PostgreSQL parses what we wrote.
	if pgtest.RunningAsRoot() {
		pgtest.ChownToServerUser(t, target)
	}
	out, err := pgtest.ServerCommand(filepath.Join(b.c.BinDir, "postgres"), "-C", "restore_command", "-D", target).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "cp '/archive/%f' %p" {
		t.Errorf("postgres -C restore_command: %v %q", err, out)
	}
}

func tsOID(t *testing.T, b *backedUp) uint32 {
	var oid uint32
	if _, err := fmt.Sscan(b.sample.TablespaceOID, &oid); err != nil {
		t.Fatal(err)
	}
	return oid
}

// damage modifies a stored object; the verify and restore that follow must
// name it, and the restore must leave nothing behind.
func TestDamagedBackups(t *testing.T) {
	b := takeBackup(t, false)
	base := b.m.Tablespaces[0].Objects[0]
	path := filepath.Join(b.dir, "backups", b.m.ID, base.Key)
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		damage func() error
		want   string
	}{
		{"one byte flipped", func() error {
			d := bytes.Clone(orig)
			d[len(d)/2] ^= 0x40
			return os.WriteFile(path, d, 0o600)
		}, base.Key},
		{"object deleted", func() error { return os.Remove(path) }, base.Key + " is missing"},
		{"object truncated", func() error { return os.WriteFile(path, orig[:len(orig)/3], 0o600) }, base.Key},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := c.damage(); err != nil {
				t.Fatal(err)
			}
			defer os.WriteFile(path, orig, 0o600)
			rep, err := Verify(context.Background(), b.store, b.m, VerifyOptions{Jobs: 2})
			if err == nil || rep.OK() || !strings.Contains(err.Error(), c.want) {
				t.Errorf("verify: %v (report %+v), want an error naming %s", err, rep, c.want)
			}
			target := filepath.Join(pgtest.TempDir(t, "restore-"), "data")
			_, err = Restore(context.Background(), b.store, b.m, Options{
				Target: target, TablespaceMap: map[uint32]string{tsOID(t, b): target + "-ts"}, Jobs: 2,
			})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("restore: %v, want an error naming %s", err, c.want)
			}
			for _, d := range []string{target, target + "-ts"} {
				if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("failed restore left %s behind", d)
				}
			}
		})
	}
	if rep, err := Verify(context.Background(), b.store, b.m, VerifyOptions{}); err != nil || !rep.OK() {
		t.Fatalf("undamaged backup fails verification: %v", err)
	}
}

// craftBackup stores a hand-made archive as a backup whose manifests are
// consistent with it, as an attacker with write access to the bucket could.
func craftBackup(t *testing.T, store *storage.Store, id string, members []tar.Header) *manifest.Backup {
	t.Helper()
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	var pgm bytes.Buffer
	w, err := backupmanifest.NewWriter(&pgm, backupmanifest.Options{Version: 1})
	if err != nil {
		t.Fatal(err)
	}
	var files int64
	for _, h := range members {
		h := h
		data := []byte("evil")
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(data))
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write(data)
			crc := backupmanifest.NewCRC32C()
			crc.Write(data)
			if err := w.AddFile(strings.TrimPrefix(h.Name, "/"), h.Size, h.ModTime, crc.Sum32()); err != nil {
				t.Fatal(err)
			}
			files++
		}
	}
	tw.Close()
	if err := w.Finish([]backupmanifest.WALRange{{Timeline: 1, Start: 0x1000000, End: 0x1000100}}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	put := func(name string, data []byte) manifest.Object {
		if err := store.WriteAll(ctx, store.BackupKey(id, name), data, storage.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		return manifest.Object{Key: name, Size: int64(len(data)), RawSize: int64(len(data)), SHA256: hex.EncodeToString(sum[:])}
	}
	return &manifest.Backup{
		FormatVersion: manifest.FormatVersion, ID: id, Status: manifest.StatusComplete,
		Tablespaces: []manifest.Tablespace{
			{Name: "pg_default", Files: files, Objects: []manifest.Object{put("base.00001.tar", tarBuf.Bytes())}},
			// A legitimate tablespace, so pg_tblspc/16385 is an allowed link.
			{OID: 16385, Name: "spc", Location: "/nonexistent/original"},
		},
		BackupManifest: put("backup_manifest", pgm.Bytes()),
	}
}

func TestHostileArchivesAreRefused(t *testing.T) {
	store, err := storage.Open(context.Background(), "mem://", storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	outside := t.TempDir()
	victim := filepath.Join(outside, "victim")
	cases := []struct {
		name    string
		members []tar.Header
		want    string
	}{
		{"dot-dot", []tar.Header{{Name: "../victim", Typeflag: tar.TypeReg, Mode: 0o600}}, "not a clean relative path"},
		{"deep dot-dot", []tar.Header{{Name: "base/../../victim", Typeflag: tar.TypeReg, Mode: 0o600}}, "not a clean relative path"},
		{"absolute", []tar.Header{{Name: victim, Typeflag: tar.TypeReg, Mode: 0o600}}, "absolute path"},
		{"symlink then write through it", []tar.Header{
			{Name: "base/link", Typeflag: tar.TypeSymlink, Linkname: outside},
			{Name: "base/link/victim", Typeflag: tar.TypeReg, Mode: 0o600},
		}, "symbolic link"},
		{"tablespace link of an unknown tablespace", []tar.Header{
			{Name: "pg_tblspc/99999", Typeflag: tar.TypeSymlink, Linkname: outside},
			{Name: "pg_tblspc/99999/victim", Typeflag: tar.TypeReg, Mode: 0o600},
		}, "symbolic link"},
		{"write through an allowed tablespace link", []tar.Header{
			{Name: "pg_tblspc/16385", Typeflag: tar.TypeSymlink, Linkname: "/nonexistent/original"},
			{Name: "pg_tblspc/16385/victim", Typeflag: tar.TypeReg, Mode: 0o600},
		}, "through the tablespace link"},
		{"hard link", []tar.Header{{Name: "hl", Typeflag: tar.TypeLink, Linkname: "/etc/passwd"}}, "type"},
		{"device", []tar.Header{{Name: "dev", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3}}, "type"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := craftBackup(t, store, fmt.Sprintf("2026010%dT000000Z", i), c.members)
			target := filepath.Join(t.TempDir(), "data")
			// The tablespace is "restored" to outside: a link the archive
			// may create, but never write through.
			_, err := Restore(context.Background(), store, m, Options{Target: target, TablespaceMap: map[uint32]string{16385: outside}})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("restore of a hostile archive: %v, want an error about %q", err, c.want)
			}
			if _, err := os.Lstat(victim); err == nil {
				t.Fatalf("a file was written outside the target: %s", victim)
			}
			if _, err := os.Stat(target); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("refused restore left %s", target)
			}
			if _, err := Verify(context.Background(), store, m, VerifyOptions{}); err == nil {
				t.Errorf("verify accepted the hostile archive")
			}
		})
	}
}

// TestRestoreDiskFull restores onto a small tmpfs: a restore that cannot
// fit is refused before anything is written; one that fits by the figures
// but fills the disk on the way fails cleanly and leaves nothing.
func TestRestoreDiskFull(t *testing.T) {
	b := takeBackup(t, false)
	mount := func(opts string) string {
		mnt := pgtest.TempDir(t, "tmpfs-")
		if out, err := exec.Command("mount", "-t", "tmpfs", "-o", opts, "tmpfs", mnt).CombinedOutput(); err != nil {
			// Not a missing server but a missing privilege (CAP_SYS_ADMIN):
			// skip even in CI rather than fail on a locked-down runner.
			t.Skipf("cannot mount a small tmpfs to fill (needs root with CAP_SYS_ADMIN): %v %s", err, out)
		}
		t.Cleanup(func() { exec.Command("umount", mnt).Run() })
		return mnt
	}
	mnt := mount("size=4m")
	_, err := Restore(context.Background(), b.store, b.m, Options{Target: filepath.Join(mnt, "data"), TablespaceMap: map[uint32]string{tsOID(t, b): filepath.Join(mnt, "ts")}})
	if failure.KindOf(err) != failure.Precondition || !strings.Contains(err.Error(), "not enough space") {
		t.Fatalf("restore onto a far too small disk: %v", err)
	}
	if ents, _ := os.ReadDir(mnt); len(ents) != 0 {
		t.Errorf("refused restore wrote %v", ents)
	}
	// Room for the data, not for the number of files: the disk fills on
	// the way.
	mnt = mount(fmt.Sprintf("size=%dk,nr_inodes=300", 2*b.m.TotalSize()/1024))
	_, err = Restore(context.Background(), b.store, b.m, Options{Target: filepath.Join(mnt, "data"), TablespaceMap: map[uint32]string{tsOID(t, b): filepath.Join(mnt, "ts")}})
	if err == nil || !strings.Contains(err.Error(), "no space left on device") || !strings.Contains(failure.HintOf(err), "free space") {
		t.Fatalf("restore onto a full disk: %v (hint %q)", err, failure.HintOf(err))
	}
	if ents, _ := os.ReadDir(mnt); len(ents) != 0 {
		t.Errorf("failed restore left %v on the full filesystem", ents)
	}
}

// TestSinkNeverWritesThroughLinks: even a link the sink did not create (one
// already in the target) is not followed out of the target.
func TestSinkNeverWritesThroughLinks(t *testing.T) {
	target, outside := t.TempDir(), t.TempDir()
	if err := os.Symlink(outside, filepath.Join(target, "evil")); err != nil {
		t.Fatal(err)
	}
	s, err := newDirSink(target, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	err = s.file("evil/victim", &tar.Header{Name: "evil/victim", Mode: 0o600, Size: 1}, strings.NewReader("x"))
	if err == nil {
		t.Fatal("wrote through a symbolic link that leads out of the target")
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Fatalf("file created outside the target: %v", ents)
	}
}
