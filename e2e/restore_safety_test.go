package e2e

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgcloudbackup/pgcloudbackup/internal/pgtest"
)

// liveWAL is a running server's WAL directory: the server itself writes
// there at any time (standby snapshots), so only names, modes, owners and
// sizes of its files are compared.
var liveWAL string

// treeState describes every entry below some directories: type, mode,
// owner, size, link target and content hash. Two equal states mean nothing
// was created, removed, written, chmod-ed or chown-ed.
func treeState(t *testing.T, dirs ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, dir := range dirs {
		err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			info, err := e.Info()
			if err != nil {
				return err
			}
			st := info.Sys().(*syscall.Stat_t)
			desc := fmt.Sprintf("%v uid=%d gid=%d", info.Mode(), st.Uid, st.Gid)
			switch {
			case info.Mode()&fs.ModeSymlink != 0:
				l, _ := os.Readlink(p)
				desc += " -> " + l
			case info.Mode().IsRegular() && liveWAL != "" && strings.HasPrefix(p, liveWAL+"/"):
				desc += fmt.Sprintf(" size=%d", info.Size())
			case info.Mode().IsRegular():
				// Streamed: the trees hold sparse files of gigabytes.
				f, err := os.Open(p)
				if err != nil {
					return err
				}
				h := sha256.New()
				n, err := io.Copy(h, f)
				f.Close()
				if err != nil {
					return err
				}
				desc += fmt.Sprintf(" size=%d sha256=%x", n, h.Sum(nil)[:8])
			}
			out[p] = desc
			return nil
		})
		if err != nil && !os.IsNotExist(err) {
			t.Fatalf("walk %s: %v", dir, err)
		}
	}
	return out
}

func assertSameState(t *testing.T, before, after map[string]string) {
	t.Helper()
	var diffs []string
	for p, d := range before {
		if a, ok := after[p]; !ok {
			diffs = append(diffs, "removed: "+p)
		} else if a != d {
			diffs = append(diffs, fmt.Sprintf("changed: %s: %s -> %s", p, d, a))
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			diffs = append(diffs, "created: "+p)
		}
	}
	sort.Strings(diffs)
	if len(diffs) > 0 {
		if len(diffs) > 20 {
			diffs = append(diffs[:20], fmt.Sprintf("… and %d more", len(diffs)-20))
		}
		t.Errorf("a refused restore changed the file system:\n%s", strings.Join(diffs, "\n"))
	}
}

// safetyCluster is a running cluster whose pg_wal is a symbolic link to a
// directory outside it, with the sample tablespace, backed up into a
// file:// bucket.
type safetyCluster struct {
	c         *pgtest.Cluster
	sample    *pgtest.Sample
	walDir    string
	bucketDir string
	env       []string
	id        string
}

func newSafetyCluster(t *testing.T) *safetyCluster {
	t.Helper()
	c := pgtest.New(t, pgtest.Options{Conf: map[string]string{
		// Nothing but our restores may change the trees we hash.
		"autovacuum": "off", "checkpoint_timeout": "1d", "log_checkpoints": "off",
	}})
	s := &safetyCluster{c: c}
	c.Stop()
	s.walDir = filepath.Join(pgtest.TempDir(t, "wal-"), "wal")
	if err := os.Rename(filepath.Join(c.DataDir, "pg_wal"), s.walDir); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(s.walDir, filepath.Join(c.DataDir, "pg_wal")); err != nil {
		t.Fatal(err)
	}
	if pgtest.RunningAsRoot() {
		pgtest.ChownToServerUser(t, c.DataDir)
	}
	c.Start()
	liveWAL = s.walDir
	t.Cleanup(func() { liveWAL = "" })
	s.sample = c.LoadSample(pgtest.SampleOptions{})
	s.bucketDir = pgtest.TempDir(t, "bucket-")
	s.env = append(append([]string{}, c.Env()...), "PGCLOUDBACKUP_BUCKET=file://"+s.bucketDir)
	r := cli(t, s.env, "backup", "--fast", "--wal", "--json")
	if r.code != 0 {
		t.Fatalf("backup: %s", r)
	}
	s.id = parseManifest(t, r).ID
	c.Exec("postgres", "CHECKPOINT")
	return s
}

func (s *safetyCluster) backupDir() string { return filepath.Join(s.bucketDir, "backups", s.id) }

// TestRestoreNeverTouchesRunningClusters: whatever the target, the
// tablespace map and --overwrite, nothing of a running cluster (data
// directory, tablespace, symlinked WAL directory) is removed or written,
// and the refused command changes nothing at all.
func TestRestoreNeverTouchesRunningClusters(t *testing.T) {
	s := newSafetyCluster(t)
	c, oid := s.c, s.sample.TablespaceOID
	root := pgtest.TempDir(t, "safety-")
	alias := filepath.Join(root, "alias")
	if err := os.Symlink(c.DataDir, alias); err != nil {
		t.Fatal(err)
	}
	rows := c.QueryString("postgres", "SELECT count(*)::text FROM in_spc")
	elsewhere := filepath.Join(root, "ts")
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"tablespace at its original location", []string{"--target", filepath.Join(root, "new")}, "tablespace " + oid},
		{"tablespace at its original location, --overwrite", []string{"--target", filepath.Join(root, "new"), "--overwrite"}, "tablespace " + oid},
		{"target is the parent of a running data directory", []string{"--target", c.Root, "--overwrite", "-T", oid + "=" + elsewhere}, "running PostgreSQL server"},
		{"target is a running data directory", []string{"--target", c.DataDir, "--overwrite", "-T", oid + "=" + elsewhere}, "is the data directory of the running PostgreSQL server"},
		{"target is a symbolic link to a running data directory", []string{"--target", alias, "--overwrite", "-T", oid + "=" + elsewhere}, "running PostgreSQL server"},
		{"target inside a running data directory", []string{"--target", filepath.Join(c.DataDir, "restored"), "-T", oid + "=" + elsewhere}, "is inside the data directory"},
		{"target is a running tablespace", []string{"--target", s.sample.TablespaceDir, "--overwrite", "-T", oid + "=" + elsewhere}, "tablespace " + oid},
		{"target holds a running tablespace", []string{"--target", filepath.Dir(s.sample.TablespaceDir), "--overwrite", "-T", oid + "=" + elsewhere}, "holds tablespace " + oid},
		{"target is a running WAL directory", []string{"--target", s.walDir, "--overwrite", "-T", oid + "=" + elsewhere}, "WAL directory"},
		{"target holds a running WAL directory", []string{"--target", filepath.Dir(s.walDir), "--overwrite", "-T", oid + "=" + elsewhere}, "WAL directory"},
		{"--tablespace-map into a running data directory", []string{"--target", filepath.Join(root, "new"), "-T", oid + "=" + filepath.Join(c.DataDir, "base", "ts")}, "running PostgreSQL server"},
		{"--tablespace-map onto a running tablespace, --overwrite", []string{"--target", filepath.Join(root, "new"), "--overwrite", "-T", oid + "=" + s.sample.TablespaceDir}, "running PostgreSQL server"},
		{"--tablespace-map onto a running WAL directory, --overwrite", []string{"--target", filepath.Join(root, "new"), "--overwrite", "-T", oid + "=" + s.walDir}, "WAL directory"},
	}
	trees := []string{c.DataDir, filepath.Dir(s.sample.TablespaceDir), filepath.Dir(s.walDir), root}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := treeState(t, trees...)
			r := cli(t, s.env, append([]string{"restore", "latest"}, tc.args...)...)
			assertOneLineError(t, r, 3, tc.want)
			assertSameState(t, before, treeState(t, trees...))
		})
	}
	// As the server's own user (no root privileges) the same holds.
	if pgtest.RunningAsRoot() {
		pgtest.ChownToServerUser(t, s.bucketDir)
		for _, tc := range cases {
			t.Run("as "+pgtest.OSUser+": "+tc.name, func(t *testing.T) {
				before := treeState(t, trees...)
				cmd := pgtest.ServerCommand(binary, append([]string{"restore", "latest"}, tc.args...)...)
				cmd.Env = append(append(cleanEnv(), "HOME=/tmp"), s.env...)
				r := runCmd(t, cmd)
				assertOneLineError(t, r, 3, tc.want)
				assertSameState(t, before, treeState(t, trees...))
			})
		}
	}
	if got := c.QueryString("postgres", "SELECT count(*)::text FROM in_spc"); got != rows {
		t.Errorf("live table in the tablespace has %s rows, had %s", got, rows)
	}
	// The hint for an original tablespace location names --tablespace-map,
	// never --overwrite.
	other := pgtest.TempDir(t, "orig-")
	if err := os.WriteFile(filepath.Join(other, "keep"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	editManifest(t, s, func(m map[string]any) { tablespace(m, 1)["location"] = other })
	before := treeState(t, other, root)
	r := cli(t, s.env, "restore", s.id, "--target", filepath.Join(root, "new"), "--overwrite")
	assertOneLineError(t, r, 3, "is not empty")
	if !strings.Contains(r.stderr, "--tablespace-map "+oid+"=DIR") || strings.Contains(r.stderr, "pass --overwrite") {
		t.Errorf("the hint should point at --tablespace-map, not --overwrite:\n%s", r.stderr)
	}
	assertSameState(t, before, treeState(t, other, root))
	restoreManifest(t, s)

	// With everything checked, the restore beside the running cluster works.
	r = cli(t, s.env, "restore", "latest", "--target", filepath.Join(root, "new"), "-T", oid+"="+elsewhere)
	if r.code != 0 {
		t.Fatalf("restore beside the running cluster: %s", r)
	}
}

// editManifest rewrites the backup's manifest.json as a hostile bucket
// writer would; restoreManifest puts the original back.
func editManifest(t *testing.T, s *safetyCluster, edit func(m map[string]any)) {
	t.Helper()
	path := filepath.Join(s.backupDir(), "manifest.json")
	orig := path + ".orig"
	if _, err := os.Stat(orig); os.IsNotExist(err) {
		data := mustRead(t, path)
		if err := os.WriteFile(orig, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var m map[string]any
	if err := json.Unmarshal(mustRead(t, orig), &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func restoreManifest(t *testing.T, s *safetyCluster) {
	t.Helper()
	path := filepath.Join(s.backupDir(), "manifest.json")
	if err := os.Rename(path+".orig", path); err != nil {
		t.Fatal(err)
	}
}

func tablespace(m map[string]any, i int) map[string]any {
	return m["tablespaces"].([]any)[i].(map[string]any)
}

// putObject stores a hand-made object in the backup's directory and
// returns its manifest.json entry.
func putObject(t *testing.T, s *safetyCluster, name string, data []byte) map[string]any {
	t.Helper()
	if err := os.WriteFile(filepath.Join(s.backupDir(), name), data, 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	return map[string]any{"key": name, "size": len(data), "raw_size": len(data), "sha256": hex.EncodeToString(sum[:])}
}

func tarOf(t *testing.T, members ...tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range members {
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write(bytes.Repeat([]byte("k"), int(h.Size)))
		}
	}
	tw.Close()
	return buf.Bytes()
}

// TestRestoreHostileBucket: someone who can write to the bucket cannot make
// a restore write outside what the user chose, nor fill the disk: every
// case is refused before anything is written, and verify reports it too.
func TestRestoreHostileBucket(t *testing.T) {
	s := newSafetyCluster(t)
	oid := s.sample.TablespaceOID
	root := pgtest.TempDir(t, "hostile-")
	target := filepath.Join(root, "data")
	ssh := filepath.Join(root, "home", ".ssh")
	if err := os.MkdirAll(ssh, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ssh, "authorized_keys"), []byte("ssh-ed25519 AAAA owner\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	emptyHome := filepath.Join(root, "home2", ".ssh")

	// A sparse file of 3 GiB with 2 KB of data, archived by GNU tar in
	// both sparse formats.
	sparseDir := t.TempDir()
	sh(t, fmt.Sprintf(`cd %s && mkdir -p base/1 && head -c 2048 /dev/urandom > base/1/99999 && truncate -s 3G base/1/99999 &&
		tar --sparse --format=pax -cf pax.tar base/1/99999 && tar --sparse --format=gnu -cf gnu.tar base/1/99999`, sparseDir))
	// A member whose header declares 3 GiB while backup_manifest says
	// 8192 bytes: only 2 KB follow.
	var lying bytes.Buffer
	tw := tar.NewWriter(&lying)
	if err := tw.WriteHeader(&tar.Header{Name: "global/pg_control", Typeflag: tar.TypeReg, Mode: 0o600, Size: 3 << 30}); err != nil {
		t.Fatal(err)
	}
	tw.Write(make([]byte, 2048))

	big := func(n int) func(m map[string]any) {
		return func(m map[string]any) { m["label"] = strings.Repeat("x", n) }
	}
	cases := []struct {
		name  string
		edit  func(m map[string]any)
		args  []string
		code  int
		want  string
		check bool // verify must report it too
	}{
		{"relative location", func(m map[string]any) { tablespace(m, 1)["location"] = "relative/ts" }, nil, 1, "not an absolute path", true},
		{"unclean location", func(m map[string]any) { tablespace(m, 1)["location"] = root + "/x/../ts" }, nil, 1, "not a clean path", true},
		{"root directory", func(m map[string]any) { tablespace(m, 1)["location"] = "/" }, nil, 1, "root directory", true},
		{"location inside the target", func(m map[string]any) { tablespace(m, 1)["location"] = filepath.Join(target, "ts") }, nil, 3, "overlap", false},
		{"location is the target's pg_wal", func(m map[string]any) { tablespace(m, 1)["location"] = filepath.Join(target, "pg_wal") }, nil, 3, "overlap", false},
		{"location is the target", func(m map[string]any) { tablespace(m, 1)["location"] = target }, nil, 3, "overlap", false},
		{"location above the target", func(m map[string]any) { tablespace(m, 1)["location"] = root }, []string{"--overwrite"}, 3, "overlap", false},
		{"nested locations", func(m map[string]any) {
			ts := tablespace(m, 1)
			m["tablespaces"] = append(m["tablespaces"].([]any), map[string]any{
				"oid": 99999, "name": "nested", "location": filepath.Join(ts["location"].(string), "sub"), "size": 0, "files": 0, "objects": []any{}})
		}, nil, 1, "nested", true},
		{"non-empty location outside, --overwrite", func(m map[string]any) { tablespace(m, 1)["location"] = ssh }, []string{"--overwrite"}, 3, "not empty", false},
		{"tablespace archive drops authorized_keys", func(m map[string]any) {
			ts := tablespace(m, 1)
			ts["location"] = emptyHome
			ts["objects"] = []any{putObject(t, s, oid+".00001.tar", tarOf(t, tar.Header{Name: "authorized_keys", Typeflag: tar.TypeReg, Mode: 0o600, Size: 30}))}
		}, nil, 1, "outside the tablespace's PG_15_<catversion> directory", true},
		{"sparse member (pax)", func(m map[string]any) {
			tablespace(m, 0)["objects"] = []any{putObject(t, s, "base.00001.tar", mustRead(t, filepath.Join(sparseDir, "pax.tar")))}
		}, []string{"-T", oid + "=" + filepath.Join(root, "ts")}, 1, "sparse", true},
		{"sparse member (gnu)", func(m map[string]any) {
			tablespace(m, 0)["objects"] = []any{putObject(t, s, "base.00001.tar", mustRead(t, filepath.Join(sparseDir, "gnu.tar")))}
		}, []string{"-T", oid + "=" + filepath.Join(root, "ts")}, 1, "type", true},
		{"member larger than backup_manifest says", func(m map[string]any) {
			tablespace(m, 0)["objects"] = []any{putObject(t, s, "base.00001.tar", lying.Bytes())}
		}, []string{"-T", oid + "=" + filepath.Join(root, "ts")}, 1, "declares 3221225472 bytes, backup_manifest says 8192", true},
		{"label over 1024 bytes", big(1025), nil, 1, "label", false},
		{"manifest.json over 16 MiB", big(17 << 20), nil, 1, "more than", false},
		{"backup_manifest over 1 GiB", func(m map[string]any) {
			m["backup_manifest"].(map[string]any)["size"] = 2 << 30
		}, []string{"-T", oid + "=" + filepath.Join(root, "ts")}, 1, "more than", true},
	}
	trees := []string{root, s.c.DataDir, filepath.Dir(s.sample.TablespaceDir), filepath.Dir(s.walDir), s.bucketDir}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			editManifest(t, s, tc.edit)
			defer restoreManifest(t, s)
			before := treeState(t, trees...)
			r := cli(t, s.env, append([]string{"restore", s.id, "--target", target}, tc.args...)...)
			assertOneLineError(t, r, tc.code, tc.want)
			assertSameState(t, before, treeState(t, trees...))
			if tc.check {
				assertOneLineError(t, cli(t, s.env, "verify", s.id), 1, tc.want)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(emptyHome, "authorized_keys")); !os.IsNotExist(err) {
		t.Errorf("authorized_keys written by a hostile tablespace archive: %v", err)
	}

	// list with a 300 MB manifest.json stays small: the object is refused
	// by its size, never read.
	editManifest(t, s, big(300<<20))
	defer restoreManifest(t, s)
	cmd := exec.Command("/usr/bin/time", "-f", "maxrss=%M", binary, "list", "--all")
	cmd.Env = append(cleanEnv(), s.env...)
	r := runCmd(t, cmd)
	if r.code != 0 || !strings.Contains(r.stdout, s.id) {
		t.Fatalf("list with a huge manifest.json: %s", r)
	}
	var rssKB int
	if i := strings.LastIndex(r.stderr, "maxrss="); i >= 0 {
		rssKB, _ = strconv.Atoi(strings.TrimSpace(r.stderr[i+len("maxrss="):]))
	}
	t.Logf("list with a 300 MB manifest.json: peak RSS %d KiB", rssKB)
	if rssKB == 0 || rssKB > 100<<10 {
		t.Errorf("list with a 300 MB manifest.json used %d KiB of memory", rssKB)
	}
}

// TestRestoreModesOwnerInterrupt: a group-access cluster (initdb -g
// modes) restores with its modes and starts; as root the files go to the
// owner of the target's parent or to --owner; --restore-command alone is a
// usage error; an interrupted restore exits 130 and leaves nothing.
func TestRestoreModesOwnerInterrupt(t *testing.T) {
	c := pgtest.New(t, pgtest.Options{InitdbArgs: []string{"-g"}}) // group access: 0750 directories, 0640 files
	if st, err := os.Stat(c.DataDir); err != nil || st.Mode().Perm() != 0o750 {
		t.Fatalf("initdb -g made %v %v", st.Mode(), err)
	}
	sample := c.LoadSample(pgtest.SampleOptions{})
	bucketDir := pgtest.TempDir(t, "bucket-")
	env := append(append([]string{}, c.Env()...), "PGCLOUDBACKUP_BUCKET=file://"+bucketDir)
	r := cli(t, env, "backup", "--fast", "--wal", "--json")
	if r.code != 0 {
		t.Fatalf("backup: %s", r)
	}
	id := parseManifest(t, r).ID
	root := pgtest.TempDir(t, "modes-")
	target, tsDir := filepath.Join(root, "data"), filepath.Join(root, "ts")

	assertOneLineError(t, cli(t, env, "restore", id, "--target", target, "--restore-command", "cp /a/%f %p"), 2, "--restore-command does nothing without --recovery or --standby")
	if _, err := os.Stat(target); !os.IsNotExist(err) {
		t.Fatalf("a usage error created %s", target)
	}

	r = cli(t, env, "restore", id, "--target", target, "-T", sample.TablespaceOID+"="+tsDir)
	if r.code != 0 {
		t.Fatalf("restore: %s", r)
	}
	for _, d := range []string{target, tsDir} {
		if st, err := os.Stat(d); err != nil || st.Mode().Perm() != 0o750 {
			t.Errorf("%s has mode %v (%v), want 0750 like the source", d, st.Mode().Perm(), err)
		}
	}
	var checked, differ int
	filepath.WalkDir(c.DataDir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		rel, _ := filepath.Rel(c.DataDir, p)
		src, err1 := os.Lstat(p)
		dst, err2 := os.Lstat(filepath.Join(target, rel))
		if err1 != nil || err2 != nil || rel == "." || strings.HasPrefix(rel, "pg_wal") {
			return nil
		}
		checked++
		if src.Mode() != dst.Mode() {
			differ++
			if differ < 5 {
				t.Errorf("%s: source mode %v, restored %v", rel, src.Mode(), dst.Mode())
			}
		}
		return nil
	})
	if checked < 500 || differ > 0 {
		t.Errorf("%d of %d entries have other modes than the source", differ, checked)
	}
	// (backup_label keeps the mode the backup gave it.)
	for _, f := range []string{"backup_manifest", "tablespace_map"} {
		if st, err := os.Stat(filepath.Join(target, f)); err != nil || st.Mode().Perm() != 0o640 {
			t.Errorf("%s: mode %v %v, want 0640 in a group-access cluster", f, st.Mode().Perm(), err)
		}
	}
	if pgtest.RunningAsRoot() {
		pg, err := user.Lookup(pgtest.OSUser)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(r.stderr, "the owner of "+root) {
			t.Errorf("the log does not say whose the files are:\n%s", r.stderr)
		}
		assertOwner(t, pg.Uid, target, tsDir)
		// A root-owned parent: --owner decides.
		rootOwned := t.TempDir()
		t2 := filepath.Join(rootOwned, "data")
		r2 := cli(t, env, "restore", id, "--target", t2, "-T", sample.TablespaceOID+"="+t2+"-ts", "--owner", "nobody")
		if r2.code != 0 || !strings.Contains(r2.stderr, "nobody (--owner)") {
			t.Fatalf("restore --owner nobody: %s", r2)
		}
		nobody, _ := user.Lookup("nobody")
		assertOwner(t, nobody.Uid, t2, t2+"-ts")
		assertOneLineError(t, cli(t, env, "restore", id, "--target", filepath.Join(rootOwned, "x"), "--owner", "no-such-user-here"), 2, "no such user")
	}
	// The restored server starts with group access.
	if pgtest.RunningAsRoot() {
		pgtest.ChownToServerUser(t, root)
	}
	rc := &pgtest.Cluster{BinDir: c.BinDir, DataDir: target, SockDir: root, LogFile: filepath.Join(root, "server.log"), Port: pgtest.FreePort(t)}
	if err := pgtest.StartServer(rc.BinDir, target, rc.Port, root, rc.LogFile); err != nil {
		t.Fatal(err)
	}
	defer pgtest.StopServer(rc.BinDir, target, "immediate")
	out, err := exec.Command(filepath.Join(c.BinDir, "psql"), "-h", "127.0.0.1", "-p", strconv.Itoa(rc.Port), "-U", pgtest.DBUser, "-Atc", "SHOW data_directory_mode", "postgres").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "0750" {
		t.Errorf("restored server: data_directory_mode %q %v, want 0750", out, err)
	}

	t.Run("interrupted", func(t *testing.T) { testRestoreInterrupted(t, env, bucketDir, id, sample.TablespaceOID) })
	t.Run("killed", func(t *testing.T) { testRestoreKilled(t, env, bucketDir, id, sample.TablespaceOID, c.BinDir) })
}

// holdsOpen reports whether a process (its /proc/<pid>/fd) has path open.
func holdsOpen(fds, path string) bool {
	ents, _ := os.ReadDir(fds)
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join(fds, e.Name())); err == nil && l == path {
			return true
		}
	}
	return false
}

func assertOwner(t *testing.T, uid string, dirs ...string) {
	t.Helper()
	want, _ := strconv.Atoi(uid)
	for _, d := range dirs {
		filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			info, _ := os.Lstat(p)
			if got := int(info.Sys().(*syscall.Stat_t).Uid); got != want {
				t.Errorf("%s belongs to uid %d, want %d", p, got, want)
				return filepath.SkipAll
			}
			return nil
		})
	}
}

// fifoObject replaces the first object of tablespace entry i by a FIFO
// (its manifest.json size 0, so it is read last with --jobs 1); undo puts
// the backup back.
func fifoObject(t *testing.T, bucketDir, id string, i int) (string, func()) {
	t.Helper()
	dir := filepath.Join(bucketDir, "backups", id)
	path := filepath.Join(dir, "manifest.json")
	orig := mustRead(t, path)
	var m map[string]any
	if err := json.Unmarshal(orig, &m); err != nil {
		t.Fatal(err)
	}
	o := m["tablespaces"].([]any)[i].(map[string]any)["objects"].([]any)[0].(map[string]any)
	o["size"] = 0
	data, _ := json.Marshal(m)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	obj := filepath.Join(dir, o["key"].(string))
	if err := os.Rename(obj, obj+".saved"); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(obj, 0o600); err != nil {
		t.Fatal(err)
	}
	return obj, func() {
		os.Remove(obj)
		os.Rename(obj+".saved", obj)
		os.WriteFile(path, orig, 0o600)
	}
}

// testRestoreKilled: kill -9 while the tablespace is still being read,
// after the data directory (pg_control included) was written: the
// directory does not start, and a second restore with --overwrite does.
func testRestoreKilled(t *testing.T, env []string, bucketDir, id, oid, binDir string) {
	obj, undo := fifoObject(t, bucketDir, id, 1)
	w, err := os.OpenFile(obj, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	root := pgtest.TempDir(t, "killed-")
	target, tsDir := filepath.Join(root, "data"), filepath.Join(root, "ts")
	p := startCLI(t, env, "restore", id, "--target", target, "-T", oid+"="+tsDir, "--jobs", "1")
	deadline := time.Now().Add(time.Minute)
	for !holdsOpen(fmt.Sprintf("/proc/%d/fd", p.cmd.Process.Pid), obj) {
		if time.Now().After(deadline) {
			t.Fatalf("the restore did not open %s:\n%s", obj, p.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.signal(t, syscall.SIGKILL)
	p.wait(t)
	undo()
	if _, err := os.Stat(filepath.Join(target, "global", "pg_control.pgcloudbackup-partial")); err != nil {
		t.Fatalf("pg_control was not restored under its temporary name: %v", err)
	}
	if _, err := os.Stat(filepath.Join(target, "global", "pg_control")); !os.IsNotExist(err) {
		t.Fatalf("pg_control in place in a killed restore: %v", err)
	}
	if pgtest.RunningAsRoot() {
		pgtest.ChownToServerUser(t, root)
	}
	err = pgtest.StartServer(binDir, target, pgtest.FreePort(t), root, filepath.Join(root, "server.log"))
	if err == nil {
		pgtest.StopServer(binDir, target, "immediate")
		t.Fatal("PostgreSQL started on a killed restore")
	}
	if !strings.Contains(err.Error(), "pg_control") {
		t.Errorf("the server refused for another reason than the missing pg_control: %v", err)
	}
	r := cli(t, env, "restore", id, "--target", target, "-T", oid+"="+tsDir, "--overwrite")
	if r.code != 0 {
		t.Fatalf("restore --overwrite after a killed restore: %s", r)
	}
}

// testRestoreInterrupted replaces the base archive by a FIFO the restore
// blocks on (after the tablespace archive is written), sends SIGINT, then
// lets the read go on: exit 130 "interrupted", nothing left.
func testRestoreInterrupted(t *testing.T, env []string, bucketDir, id, oid string) {
	obj, undo := fifoObject(t, bucketDir, id, 0)
	defer undo()
	// Held open as the FIFO's writer: the restore's open succeeds and its
	// reads block until this end closes.
	w, err := os.OpenFile(obj, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()

	root := pgtest.TempDir(t, "intr-")
	target, tsDir := filepath.Join(root, "data"), filepath.Join(root, "ts")
	p := startCLI(t, env, "restore", id, "--target", target, "-T", oid+"="+tsDir, "--jobs", "1")
	deadline := time.Now().Add(time.Minute)
	fds := fmt.Sprintf("/proc/%d/fd", p.cmd.Process.Pid)
	for !holdsOpen(fds, obj) {
		if time.Now().After(deadline) {
			t.Fatalf("the restore did not open %s:\n%s", obj, p.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if m, _ := filepath.Glob(filepath.Join(tsDir, "PG_*")); len(m) == 0 {
		t.Fatalf("the tablespace was not restored before the base archive")
	}
	p.signal(t, syscall.SIGINT)
	w.Close() // the blocked read sees the end of the stream
	r := p.wait(t)
	assertOneLineError(t, r, 130, "restore interrupted")
	if strings.Contains(r.stderr, "context canceled") {
		t.Errorf("the error says context canceled:\n%s", r.stderr)
	}
	if ents, _ := os.ReadDir(root); len(ents) != 0 {
		t.Errorf("an interrupted restore left %v in %s", ents, root)
	}
}
