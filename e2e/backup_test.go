package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgcloudbackup/pgcloudbackup/internal/pgtest"
	"github.com/pgcloudbackup/pgcloudbackup/manifest"
	"github.com/pgcloudbackup/pgcloudbackup/storage"
)

// serverChecksumFailures runs pg_basebackup against the cluster and returns
// the page checksum failures the SERVER reports (file -> block numbers)
// and its total: the oracle for ours.
func serverChecksumFailures(t *testing.T, c *pgtest.Cluster) (map[string][]uint32, int64) {
	t.Helper()
	dir := t.TempDir()
	out, err := c.Client("pg_basebackup", "-D", dir, "-Ft", "-X", "none", "--no-manifest", "-c", "fast").CombinedOutput()
	if err == nil {
		t.Logf("pg_basebackup found no checksum failures:\n%s", out)
	}
	blocks := map[string][]uint32{}
	re := regexp.MustCompile(`checksum verification failed in file "\./([^"]+)", block (\d+)`)
	for _, m := range re.FindAllStringSubmatch(string(out), -1) {
		n, _ := strconv.ParseUint(m[2], 10, 32)
		blocks[m[1]] = append(blocks[m[1]], uint32(n))
	}
	total := int64(0)
	if m := regexp.MustCompile(`(\d+) total checksum verification failures`).FindStringSubmatch(string(out)); m != nil {
		total, _ = strconv.ParseInt(m[1], 10, 64)
	}
	return blocks, total
}

func parseManifest(t *testing.T, r result) *manifest.Backup {
	t.Helper()
	var m manifest.Backup
	if err := json.Unmarshal([]byte(r.stdout), &m); err != nil {
		t.Fatalf("--json output is not a manifest: %v\n%s", err, r)
	}
	return &m
}

// TestBackupExtractByHand is the user's path without our restore: back up a
// cluster with data, a tablespace, an unlogged table, a temp file and a
// corrupted page into a file:// bucket; extract the archives with zstd and
// tar; check them with pg_verifybackup; start PostgreSQL on them and compare
// the data.
func TestBackupExtractByHand(t *testing.T) {
	c := pgtest.New(t, pgtest.Options{})
	sample := c.LoadSample(pgtest.SampleOptions{Corrupt: true})
	bucketDir := pgtest.TempDir(t, "bucket-")

	r := cli(t, c.Env(), "backup", "--bucket", "file://"+bucketDir, "--wal", "--fast", "--json")
	if r.code != 4 {
		t.Fatalf("backup with corrupted pages: exit %d, want 4 (complete, checksum failures)\n%s", r.code, r)
	}
	m := parseManifest(t, r)
	if m.Status != "complete" || !m.WALIncluded || !m.ChecksumsVerified {
		t.Fatalf("manifest: status %q wal %v verified %v", m.Status, m.WALIncluded, m.ChecksumsVerified)
	}
	if !strings.Contains(r.stderr, "page checksum verification failed") {
		t.Errorf("no checksum warning on stderr:\n%s", r.stderr)
	}

	// Our failures equal what the server reports for the same cluster.
	want, wantTotal := serverChecksumFailures(t, c)
	got := map[string][]uint32{}
	for _, f := range m.ChecksumFailures {
		got[f.Path] = f.Blocks
		if f.Count != int64(len(f.Blocks)) {
			t.Errorf("%s: count %d but %d blocks", f.Path, f.Count, len(f.Blocks))
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) || m.ChecksumFailuresTotal != wantTotal || wantTotal == 0 {
		t.Fatalf("checksum failures: ours %v (total %d), server's %v (total %d)", got, m.ChecksumFailuresTotal, want, wantTotal)
	}

	// --no-verify-checksums: the same corrupted cluster backs up with
	// exit 0, no checksum warning, and a manifest saying nothing was
	// verified (not "no failures").
	nv := cli(t, c.Env(), "backup", "--bucket", "file://"+pgtest.TempDir(t, "bucket-"), "--fast", "--no-verify-checksums", "--json")
	if nv.code != 0 || strings.Contains(nv.stderr, "page checksum verification failed") {
		t.Errorf("backup --no-verify-checksums of a corrupted cluster: %s", nv)
	} else if m2 := parseManifest(t, nv); m2.ChecksumsVerified || m2.ChecksumFailuresTotal != 0 || len(m2.ChecksumFailures) != 0 {
		t.Errorf("--no-verify-checksums manifest: verified %v, failures %d %v", m2.ChecksumsVerified, m2.ChecksumFailuresTotal, m2.ChecksumFailures)
	}

	// The bucket holds exactly the objects the manifest names, with their
	// SHA-256, plus the two manifests.
	dir := filepath.Join(bucketDir, "backups", m.ID)
	stored := listFiles(t, dir)
	wantObjects := []string{"backup_manifest", "manifest.json"}
	for _, ts := range m.Tablespaces {
		for _, o := range ts.Objects {
			wantObjects = append(wantObjects, o.Key)
			sum := sha256.Sum256(mustRead(t, filepath.Join(dir, o.Key)))
			if hex.EncodeToString(sum[:]) != o.SHA256 {
				t.Errorf("%s: SHA-256 differs from manifest.json", o.Key)
			}
		}
	}
	wantObjects = append(wantObjects, storage.MarkerName) // the ID's reservation
	sort.Strings(wantObjects)
	if fmt.Sprint(stored) != fmt.Sprint(wantObjects) {
		t.Errorf("objects in bucket %v, want %v", stored, wantObjects)
	}

	// Extract by hand with ordinary tools.
	root := pgtest.TempDir(t, "extract-")
	data, tsDir := filepath.Join(root, "data"), filepath.Join(root, "ts")
	for _, d := range []string{data, tsDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for _, ts := range m.Tablespaces {
		dest := data
		if ts.OID != 0 {
			dest = tsDir
		}
		for _, o := range ts.Objects {
			sh(t, fmt.Sprintf("zstd -dc %q | tar -xf - -C %q", filepath.Join(dir, o.Key), dest))
		}
	}
	for _, name := range []string{"postmaster.pid", "pg_stat_tmp/junk.stat", "base/pgsql_tmp", sample.Unlogged} {
		if _, err := os.Lstat(filepath.Join(data, name)); err == nil {
			t.Errorf("%s must not be in the backup", name)
		}
	}
	if _, err := os.Stat(filepath.Join(data, sample.Unlogged+"_init")); err != nil {
		t.Errorf("init fork of the unlogged table missing: %v", err)
	}
	// Put the tablespace in its new place.
	link := filepath.Join(data, "pg_tblspc", sample.TablespaceOID)
	if target, err := os.Readlink(link); err != nil || target != sample.TablespaceDir {
		t.Fatalf("pg_tblspc/%s: %q %v, want a link to %s", sample.TablespaceOID, target, err, sample.TablespaceDir)
	}
	if err := os.Remove(link); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(tsDir, link); err != nil {
		t.Fatal(err)
	}

	// PostgreSQL's own verifier accepts the extracted backup with our
	// backup_manifest, WAL included (parsed with pg_waldump).
	out, err := c.Client("pg_verifybackup", "-m", filepath.Join(dir, "backup_manifest"), data).CombinedOutput()
	if err != nil {
		t.Fatalf("pg_verifybackup: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "backup successfully verified") {
		t.Fatalf("pg_verifybackup: %s", out)
	}

	// tablespace_map would send the server back to the original location.
	if err := os.WriteFile(filepath.Join(data, "tablespace_map"), []byte(sample.TablespaceOID+" "+tsDir+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	restored := startRestored(t, c, sample, root, data)
	if n := restored.QueryString("postgres", "SELECT count(*)::text FROM scratch"); n != "0" {
		t.Errorf("unlogged table has %s rows after restore, want 0 (reset from its init fork)", n)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBackupInterrupted: SIGINT mid-backup stops cleanly: its own exit
// code, a clear message, nothing left in the bucket, and the backup
// session gone (a non-exclusive backup ends with its session).
func TestBackupInterrupted(t *testing.T) {
	c := pgtest.New(t, pgtest.Options{})
	c.Pgbench(2)
	bucketDir := pgtest.TempDir(t, "bucket-")
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			p := startCLI(t, c.Env(), "backup", "--bucket", "file://"+bucketDir, "--fast", "--max-rate", "2M")
			p.waitFor(t, "backup started", time.Minute)
			waitForFileIn(t, p, bucketDir) // an upload is in flight
			p.signal(t, sig)
			r := p.wait(t)
			assertOneLineError(t, r, 130, "interrupted")
			if files := listFiles(t, bucketDir); len(files) != 0 {
				t.Errorf("objects left after an interrupted backup: %v", files)
			}
			assertNoBackupSessions(t, c)
		})
	}
	// The server takes the next backup as if nothing happened.
	r := cli(t, c.Env(), "backup", "--bucket", "file://"+bucketDir, "--fast")
	if r.code != 0 {
		t.Fatalf("backup after interruption: %s", r)
	}
}

// TestBackupServerStops: the server dies mid-backup; the backup fails with
// a clear error and no manifest.json.
func TestBackupServerStops(t *testing.T) {
	c := pgtest.New(t, pgtest.Options{})
	c.Pgbench(2)
	bucketDir := pgtest.TempDir(t, "bucket-")
	p := startCLI(t, c.Env(), "backup", "--bucket", "file://"+bucketDir, "--fast", "--max-rate", "2M")
	p.waitFor(t, "backup started", time.Minute)
	c.Crash()
	r := p.wait(t)
	assertOneLineError(t, r, 1, "lost the backup session")
	for _, f := range listFiles(t, bucketDir) {
		if strings.HasSuffix(f, "manifest.json") {
			t.Errorf("manifest.json written for a failed backup: %s", f)
		}
	}
}

// TestBackupPreconditions: each unmet precondition is one line naming the
// fix, with exit code 3 (2 for usage errors).
func TestBackupPreconditions(t *testing.T) {
	c := pgtest.New(t, pgtest.Options{})
	other := pgtest.New(t, pgtest.Options{})
	minimal := pgtest.New(t, pgtest.Options{Conf: map[string]string{"wal_level": "minimal", "max_wal_senders": "0"}})
	bucket := "file://" + pgtest.TempDir(t, "bucket-")
	// Usage errors are found before anything is touched: this bucket stays
	// empty and the server sees no backup.
	untouchedDir := pgtest.TempDir(t, "untouched-")
	untouched := "file://" + untouchedDir

	cases := []struct {
		name     string
		env      []string
		args     []string
		code     int
		contains string
	}{
		{"server unreachable", []string{"PGHOST=127.0.0.1", fmt.Sprintf("PGPORT=%d", pgtest.FreePort(t)), "PGUSER=postgres"},
			[]string{"backup", "--bucket", bucket}, 3, "cannot connect to PostgreSQL"},
		{"data directory of another cluster", c.Env(), []string{"backup", "--bucket", bucket, "--pgdata", other.DataDir}, 3, "belongs to cluster"},
		{"not a data directory", c.Env(), []string{"backup", "--bucket", bucket, "--pgdata", t.TempDir()}, 3, "not a PostgreSQL data directory"},
		{"wal_level minimal", minimal.Env(), []string{"backup", "--bucket", bucket}, 3, "wal_level is minimal"},
		{"no bucket", c.Env(), []string{"backup"}, 2, "no bucket"},
		{"bad bucket URL", c.Env(), []string{"backup", "--bucket", "ftp://x"}, 2, "ftp"},
		{"bad max-rate", c.Env(), []string{"backup", "--bucket", bucket, "--max-rate", "10"}, 2, "out of range"},
		{"bad compression", c.Env(), []string{"backup", "--bucket", bucket, "--compression", "brotli"}, 2, "brotli"},
		{"max-rate overflow", c.Env(), []string{"backup", "--bucket", untouched, "--max-rate", "17592186044417M"}, 2, "--max-rate \"17592186044417M\" is out of range: 32k to 1024M"},
		{"part-size overflow", c.Env(), []string{"backup", "--bucket", untouched, "--part-size", "17179869185G"}, 2, "--part-size \"17179869185G\" is out of range: 1 to 5GiB"},
		{"part-size wraps negative", c.Env(), []string{"backup", "--bucket", untouched, "--part-size", "9223372036854775807GiB"}, 2, "out of range: 1 to 5GiB"},
		{"label too long", c.Env(), []string{"backup", "--bucket", untouched, "--label", strings.Repeat("L", 1025)}, 2, "at most 1024"},
		{"unknown flag", c.Env(), []string{"backup", "--bucket", bucket, "--frobnicate"}, 2, "frobnicate"},
		{"unknown command", c.Env(), []string{"backpu"}, 2, "backpu"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assertOneLineError(t, cli(t, tc.env, tc.args...), tc.code, tc.contains)
		})
	}
	if ents, err := os.ReadDir(untouchedDir); err != nil || len(ents) != 0 {
		t.Errorf("usage errors touched the bucket: %v %v", ents, err)
	}
	// A password never shows, whatever fails.
	for _, dsn := range []string{
		fmt.Sprintf("host=127.0.0.1 port=%d user=postgres password=SECRETPW1", pgtest.FreePort(t)),
		fmt.Sprintf("postgres://postgres:SECRETPW1@127.0.0.1:%d/postgres", pgtest.FreePort(t)),
		"host=127.0.0.1 port= password=SECRETPW1 bogus",
	} {
		r := cli(t, nil, "backup", "--bucket", bucket, "--dsn", dsn, "--json", "-v")
		if r.code == 0 || strings.Contains(r.stdout+r.stderr, "SECRETPW1") {
			t.Errorf("--dsn %q: exit %d, password printed?\n%s", dsn, r.code, r)
		}
	}
	// --json: scripts get the error as JSON on stdout too.
	r := cli(t, minimal.Env(), "backup", "--bucket", bucket, "--json")
	var e struct {
		Status   string `json:"status"`
		Error    string `json:"error"`
		ExitCode int    `json:"exit_code"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &e); err != nil || e.Status != "error" || e.ExitCode != 3 || !strings.Contains(e.Error, "wal_level") {
		t.Errorf("--json error output: %v %+v\n%s", err, e, r)
	}
}

// TestUnreadableFileBucket: a file:// bucket the user may not read is an
// error (exit 3), never an empty listing.
func TestUnreadableFileBucket(t *testing.T) {
	if !pgtest.RunningAsRoot() {
		t.Skip("needs root to run the binary as another user")
	}
	dir := t.TempDir() // 0700, owned by root
	if err := os.MkdirAll(filepath.Join(dir, "backups", "20260101T000000Z"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "backups", "20260101T000000Z", "manifest.json"), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	r := runCmd(t, pgtest.ServerCommand(binary, "list", "--bucket", "file://"+dir))
	assertOneLineError(t, r, 3, "permission denied")
}
