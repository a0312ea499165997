package restore

import (
	"archive/tar"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
	"github.com/pgcloudbackup/pgcloudbackup/internal/pg/backupmanifest"
	"github.com/pgcloudbackup/pgcloudbackup/manifest"
	"github.com/pgcloudbackup/pgcloudbackup/storage"
)

func TestCheckLocation(t *testing.T) {
	for _, c := range []struct {
		p  string
		ok bool
	}{
		{"/srv/ts", true},
		{"/srv/ts/", false},
		{"srv/ts", false},
		{"./ts", false},
		{"/srv/../etc", false},
		{"/srv//ts", false},
		{"/", false},
		{"", false},
		{"/srv/t\x00s", false},
		{"/" + strings.Repeat("a", 1024), false},
	} {
		if err := checkLocation(c.p); (err == nil) != c.ok {
			t.Errorf("checkLocation(%q) = %v, want ok=%v", c.p, err, c.ok)
		}
	}
}

func backupWith(locations ...string) *manifest.Backup {
	m := &manifest.Backup{ID: "20260101T000000Z", PGVersionNum: 150000, Tablespaces: []manifest.Tablespace{{OID: 0, Name: "base"}}}
	for i, l := range locations {
		m.Tablespaces = append(m.Tablespaces, manifest.Tablespace{OID: uint32(16384 + i), Name: fmt.Sprint("ts", i), Location: l})
	}
	return m
}

func TestCheckBackupLocations(t *testing.T) {
	for _, c := range []struct {
		locs []string
		want string
	}{
		{[]string{"/a/ts", "/b/ts"}, ""},
		{[]string{"/a/ts", "/a/ts2"}, ""},
		{[]string{"ts"}, "not an absolute path"},
		{[]string{"/a/ts", "/a/ts/x"}, "nested"},
		{[]string{"/a/ts/x", "/a/ts"}, "nested"},
		{[]string{"/a", "/a"}, "nested"},
		{[]string{"/"}, "root directory"},
	} {
		err := CheckBackup(backupWith(c.locs...))
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("CheckBackup(%v) = %v, want %q", c.locs, err, c.want)
		}
		if err != nil && failure.KindOf(err) != failure.Failed {
			t.Errorf("CheckBackup(%v): kind %v, want failed (the backup is at fault)", c.locs, failure.KindOf(err))
		}
	}
}

// TestPlanRefusesOverlaps: no location inside another, also through a
// symbolic link; map values must be absolute and clean.
func TestPlanRefusesOverlaps(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "data")
	if err := os.MkdirAll(filepath.Join(dir, "real"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "real"), filepath.Join(dir, "alias")); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		target string
		loc    string
		tsMap  map[uint32]string
		kind   failure.Kind
		ok     bool
	}{
		{"apart", target, filepath.Join(dir, "ts"), nil, 0, true},
		{"inside the target", target, filepath.Join(target, "ts"), nil, failure.Precondition, false},
		{"the target's pg_wal", target, filepath.Join(target, "pg_wal"), nil, failure.Precondition, false},
		{"above the target", target, dir, nil, failure.Precondition, false},
		{"mapped inside the target", target, "/x", map[uint32]string{16384: filepath.Join(target, "ts")}, failure.Usage, false},
		{"mapped relative", target, "/x", map[uint32]string{16384: "ts"}, failure.Usage, false},
		{"mapped unclean", target, "/x", map[uint32]string{16384: dir + "/ts/"}, failure.Usage, false},
		{"through a link", filepath.Join(dir, "alias", "data"), filepath.Join(dir, "real", "data", "ts"), nil, failure.Precondition, false},
		{"root target", "/", "/x", nil, failure.Usage, false},
	} {
		_, _, err := plan(backupWith(c.loc), Options{Target: c.target, TablespaceMap: c.tsMap})
		if c.ok != (err == nil) || (!c.ok && failure.KindOf(err) != c.kind) {
			t.Errorf("%s: plan = %v (kind %v), want ok=%v kind %v", c.name, err, failure.KindOf(err), c.ok, c.kind)
		}
	}
}

func TestCheckOptions(t *testing.T) {
	err := CheckOptions(Options{RestoreCommand: "cp /a/%f %p"})
	if failure.KindOf(err) != failure.Usage || !strings.Contains(err.Error(), "--recovery or --standby") {
		t.Errorf("--restore-command alone: %v, want a usage error", err)
	}
	for _, o := range []Options{{RestoreCommand: "x", Recovery: true}, {RestoreCommand: "x", Standby: true}, {}} {
		if err := CheckOptions(o); err != nil {
			t.Errorf("CheckOptions(%+v) = %v", o, err)
		}
	}
	if err := CheckOptions(Options{Recovery: true, Standby: true}); failure.KindOf(err) != failure.Usage {
		t.Errorf("--recovery with --standby: %v", err)
	}
}

// TestPIDFiles: a postmaster.pid counts as live unless its PID is gone or
// runs another program.
func TestPIDFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(content string) string {
		p := filepath.Join(dir, "postmaster.pid")
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	done := exec.Command("true")
	if err := done.Run(); err != nil {
		t.Fatal(err)
	}
	if _, live := pidFileLive(write(strconv.Itoa(done.Process.Pid) + "\n/data\n")); live {
		t.Errorf("a PID that exited counts as live")
	}
	// This test process is alive but not postgres: the PID was reused.
	if _, live := pidFileLive(write(strconv.Itoa(os.Getpid()) + "\n/data\n")); live {
		t.Errorf("a PID running another program counts as live")
	}
	if _, live := pidFileLive(write("garbage\n")); !live {
		t.Errorf("an unreadable postmaster.pid must count as live (cannot prove otherwise)")
	}
	sleep := exec.Command("sleep", "30")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sleep.Process.Kill(); sleep.Wait() }()
	// A postgres process: a copy of sleep named postgres.
	bin := filepath.Join(dir, "postgres")
	if out, err := exec.Command("cp", "/bin/sleep", bin).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	pg := exec.Command(bin, "30")
	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { pg.Process.Kill(); pg.Wait() }()
	if _, live := pidFileLive(write(strconv.Itoa(pg.Process.Pid) + "\n/data\n")); !live {
		t.Errorf("a live postgres PID counts as stale")
	}
	// Negative: a single-user backend.
	if _, live := pidFileLive(write("-" + strconv.Itoa(pg.Process.Pid) + "\n/data\n")); !live {
		t.Errorf("a live single-user postgres PID counts as stale")
	}

	// A restore into a directory with a stale postmaster.pid and
	// --overwrite is allowed; with a live one it is refused.
	write(strconv.Itoa(done.Process.Pid) + "\n")
	u, err := findServers([]string{dir}, logger(t))
	if err != nil || u.check("target directory", dir) != nil {
		t.Errorf("stale postmaster.pid refused: %v %v", err, u.check("target directory", dir))
	}
	write(strconv.Itoa(pg.Process.Pid) + "\n")
	u, err = findServers([]string{filepath.Join(dir, "sub", "new")}, logger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := u.check("target directory", filepath.Join(dir, "sub", "new")); failure.KindOf(err) != failure.Precondition || !strings.Contains(err.Error(), "is inside the data directory") {
		t.Errorf("target below a live postmaster.pid: %v", err)
	}
	u, err = findServers([]string{filepath.Dir(dir)}, logger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := u.check("target directory", filepath.Dir(dir)); failure.KindOf(err) != failure.Precondition || !strings.Contains(err.Error(), "holds the data directory") {
		t.Errorf("target above a live postmaster.pid: %v", err)
	}
}

// TestVerifyAgreesWithRestore: what restore refuses in an archive, verify
// reports, before anything is written.
func TestVerifyAgreesWithRestore(t *testing.T) {
	store, err := storage.Open(context.Background(), "mem://", storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		members []tar.Header
		want    string
	}{
		{"directory named backup_manifest", []tar.Header{{Name: "backup_manifest/", Typeflag: tar.TypeDir, Mode: 0o700}}, "backup_manifest"},
		{"file named backup_manifest", []tar.Header{{Name: "backup_manifest", Typeflag: tar.TypeReg, Mode: 0o600}}, "backup_manifest"},
		{"directory named tablespace_map", []tar.Header{{Name: "tablespace_map/", Typeflag: tar.TypeDir, Mode: 0o700}}, "regular file"},
		{"directory where a file is listed", []tar.Header{
			{Name: "PG_VERSION", Typeflag: tar.TypeReg, Mode: 0o600},
			{Name: "PG_VERSION/", Typeflag: tar.TypeDir, Mode: 0o700},
		}, "lists it as one"},
		{"file below a file", []tar.Header{
			{Name: "PG_VERSION", Typeflag: tar.TypeReg, Mode: 0o600},
			{Name: "PG_VERSION/x", Typeflag: tar.TypeReg, Mode: 0o600},
		}, "below PG_VERSION"},
		{"directory at a tablespace link", []tar.Header{{Name: "pg_tblspc/16385/", Typeflag: tar.TypeDir, Mode: 0o700}}, "not a symbolic link"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := craftBackup(t, store, fmt.Sprintf("2026020%dT000000Z", i), c.members)
			target := filepath.Join(t.TempDir(), "data")
			_, err := Restore(context.Background(), store, m, Options{Target: target, TablespaceMap: map[uint32]string{16385: t.TempDir()}})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("restore: %v, want an error about %q", err, c.want)
			}
			if _, err := os.Stat(target); !os.IsNotExist(err) {
				t.Errorf("refused restore left %s", target)
			}
			if _, err := Verify(context.Background(), store, m, VerifyOptions{}); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("verify: %v, want an error about %q", err, c.want)
			}
		})
	}
}

func TestTablespaceMapChecked(t *testing.T) {
	m := backupWith("/srv/ts")
	for _, c := range []struct {
		data string
		ok   bool
	}{
		{"16384 /srv/ts\n", true},
		{"16384 /srv/with\\\nnewline\n", true},
		{"16384 /elsewhere\n", true}, // moved: the restore rewrites it
		{"99999 /srv/ts\n", false},
		{"16384 relative\n", false},
		{"16384\n", false},
		{"16384 /srv/../root/.ssh\n", false},
	} {
		err := checkTablespaceMap(m, "base.tar", []byte(c.data))
		if (err == nil) != c.ok {
			t.Errorf("checkTablespaceMap(%q) = %v, want ok=%v", c.data, err, c.ok)
		}
	}
}

func TestLookupOwner(t *testing.T) {
	if uid, gid, err := lookupOwner("root"); err != nil || uid != 0 || gid != 0 {
		t.Errorf("root: %d:%d %v", uid, gid, err)
	}
	// A uid without a passwd entry, as in containers.
	if uid, gid, err := lookupOwner("54321"); err != nil || uid != 54321 || gid != 54321 {
		t.Errorf("54321: %d:%d %v", uid, gid, err)
	}
	if uid, gid, err := lookupOwner("54321:7"); err != nil || uid != 54321 || gid != 7 {
		t.Errorf("54321:7: %d:%d %v", uid, gid, err)
	}
	for _, bad := range []string{"no-such-user-here", "root:no-such-group-here", "-1"} {
		if _, _, err := lookupOwner(bad); err == nil {
			t.Errorf("lookupOwner(%q) accepted", bad)
		}
	}
}

// TestWALBounded: WAL members (not in backup_manifest) are bounded per
// file and in total by the backup's LSN range; none without WAL.
func TestWALBounded(t *testing.T) {
	empty, err := backupmanifest.NewIndexBuilder(0, 0).Finish()
	if err != nil {
		t.Fatal(err)
	}
	x := &fileIndex{idx: empty}
	if err := x.expect("pg_wal/000000010000000000000001", 16<<20); err == nil {
		t.Error("WAL in a backup without WAL accepted")
	}
	if err := x.expect("pg_wal/archive_status/000000010000000000000001.done", 0); err != nil {
		t.Errorf("empty marker refused: %v", err)
	}
	x = &fileIndex{idx: empty, walLimit: 3 * maxWALMember}
	if err := x.expect("pg_wal/000000010000000000000001", maxWALMember+1); err == nil {
		t.Error("a WAL file over 1 GiB accepted")
	}
	for i := 0; i < 3; i++ {
		if err := x.expect(fmt.Sprintf("pg_wal/%024X", i), maxWALMember); err != nil {
			t.Fatalf("segment %d: %v", i, err)
		}
	}
	if err := x.expect("pg_wal/000000010000000000000009", 1); err == nil {
		t.Error("WAL beyond the LSN range accepted")
	}
}

// benign is a crafted backup that restores: one file.
func benign(t *testing.T, store *storage.Store, id string) *manifest.Backup {
	return craftBackup(t, store, id, []tar.Header{{Name: "PG_VERSION", Typeflag: tar.TypeReg, Mode: 0o600}})
}

// TestConcurrentRestoreRefused: a second restore into a directory another
// restore is writing into is refused before it removes anything.
func TestConcurrentRestoreRefused(t *testing.T) {
	store, err := storage.Open(context.Background(), "mem://", storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	m := benign(t, store, "20260301T000000Z")
	target := t.TempDir()
	if err := os.WriteFile(filepath.Join(target, "theirs"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	other := &location{dir: target, oid: 0}
	if err := lockDir(other); err != nil { // the first restore
		t.Fatal(err)
	}
	opts := Options{Target: target, Overwrite: true, TablespaceMap: map[uint32]string{16385: filepath.Join(t.TempDir(), "ts")}}
	_, err = Restore(context.Background(), store, m, opts)
	if failure.KindOf(err) != failure.Precondition || !strings.Contains(err.Error(), "another restore") {
		t.Fatalf("second restore: %v", err)
	}
	if _, err := os.Stat(filepath.Join(target, "theirs")); err != nil {
		t.Fatalf("the second restore removed the first one's file: %v", err)
	}
	other.lock.Close()
	if _, err := Restore(context.Background(), store, m, opts); err != nil {
		t.Fatalf("restore once the lock is free: %v", err)
	}
	if _, err := os.Stat(filepath.Join(target, "PG_VERSION")); err != nil {
		t.Fatal(err)
	}
}

// TestPGControlLast: pg_control is written under another name and put in
// place only by release, so a killed restore leaves no startable directory.
func TestPGControlLast(t *testing.T) {
	dir := t.TempDir()
	s, err := newDirSink(dir, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	s.hold = "global/pg_control"
	if err := s.file("global/pg_control", &tar.Header{Mode: 0o600, Size: 4}, strings.NewReader("ctrl")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "global", "pg_control")); !os.IsNotExist(err) {
		t.Fatalf("pg_control in place before release: %v", err)
	}
	if err := s.release(); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(filepath.Join(dir, "global", "pg_control")); err != nil || string(data) != "ctrl" {
		t.Fatalf("pg_control after release: %q %v", data, err)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "global")); len(ents) != 1 {
		t.Errorf("global holds %v", ents)
	}
}

// TestOverwriteStaysOnOneFilesystem: --overwrite refuses a target with a
// mount point inside, and leaves the mounted file system alone.
func TestOverwriteStaysOnOneFilesystem(t *testing.T) {
	store, err := storage.Open(context.Background(), "mem://", storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	m := benign(t, store, "20260302T000000Z")
	target := t.TempDir()
	mnt := filepath.Join(target, "mnt")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs (needs CAP_SYS_ADMIN): %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	if err := os.WriteFile(filepath.Join(mnt, "precious"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Restore(context.Background(), store, m, Options{Target: target, Overwrite: true,
		TablespaceMap: map[uint32]string{16385: filepath.Join(t.TempDir(), "ts")}})
	if failure.KindOf(err) != failure.Precondition || !strings.Contains(err.Error(), "mount point") {
		t.Fatalf("overwrite over a mount point: %v", err)
	}
	if _, err := os.Stat(filepath.Join(mnt, "precious")); err != nil {
		t.Fatalf("file on the mounted file system removed: %v", err)
	}
}
