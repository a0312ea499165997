package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgcloudbackup/pgcloudbackup/internal/pgtest"
	"github.com/pgcloudbackup/pgcloudbackup/manifest"
)

// TestMajors runs the whole cycle through the binary on every supported
// PostgreSQL major (13-18), each with its own server binaries: a cluster with
// data, a tablespace, an unlogged table and corrupted pages, plus files the
// version rules of that major's basebackup.c treat differently; a backup with
// --wal and one without (its WAL comes from the cluster's archive); verify;
// restore with the tablespace moved; the same major's server starts on both
// restores; data equal, unlogged table empty, and the checksum failures are
// exactly the pages the test damaged, numbered as that major reports them.
// Majors run two at a time (go test -parallel, 2 on this machine's 2 cores).
func TestMajors(t *testing.T) {
	for _, major := range pgtest.Majors {
		t.Run(strconv.Itoa(major), func(t *testing.T) {
			t.Parallel()
			testMajor(t, major)
		})
	}
}

// majorFixture is a cluster of one major set up for TestMajors.
type majorFixture struct {
	c       *pgtest.Cluster
	sample  *pgtest.Sample
	archive string // WAL archive directory (archive_command copies there)
	// wantFailures: file -> block numbers the backup must report.
	wantFailures map[string][]uint32
	// statsDir is stats_temp_directory (13-14), relative to the data
	// directory; "" on later majors.
	statsDir string
}

func newMajorFixture(t *testing.T, major int) *majorFixture {
	archive := pgtest.TempDir(t, "walarchive-")
	conf := map[string]string{
		"archive_mode":    "on",
		"archive_command": fmt.Sprintf("'test ! -f %s/%%f && cp %%p %s/%%f'", archive, archive),
	}
	f := &majorFixture{archive: archive}
	if major < 15 {
		// stats_temp_directory exists up to 14; its contents are skipped
		// like pg_stat_tmp's.
		f.statsDir = "stats_custom"
		conf["stats_temp_directory"] = "'" + f.statsDir + "'"
	}
	if major >= 17 {
		// Real WAL summaries in pg_wal/summaries, which the backup keeps
		// empty; the restored server summarizes its own WAL afresh.
		conf["summarize_wal"] = "on"
	}
	f.c = pgtest.New(t, pgtest.Options{Major: major, Conf: conf})
	if f.c.Major != major || f.c.Version() != major {
		t.Fatalf("asked for PostgreSQL %d, runs %d", major, f.c.Version())
	}
	if f.statsDir != "" {
		mustMkdir(t, filepath.Join(f.c.DataDir, f.statsDir))
	}
	f.sample = f.c.LoadSample(pgtest.SampleOptions{Corrupt: true})
	dbDir := filepath.Dir(f.sample.Corrupt) // base/<dboid>
	data := f.c.DataDir

	// The pages LoadSample corrupted.
	f.wantFailures = map[string][]uint32{f.sample.Corrupt: f.sample.CorruptBlocks}
	// A second segment of the damaged table whose only page is a copy of its
	// block 0: sound, but its checksum was computed for block 0, not for
	// block RELSEG_SIZE where it now sits. Before 17 PostgreSQL reports it
	// as block 0 of that file, from 17 on as block 131072 of the relation.
	victim := mustRead(t, filepath.Join(data, f.sample.Corrupt))
	writeFile(t, filepath.Join(data, f.sample.Corrupt+".1"), victim[:8192])
	seg1 := uint32(0)
	if major >= 17 {
		seg1 = 131072
	}
	f.wantFailures[f.sample.Corrupt+".1"] = []uint32{seg1}
	// A page-sized file in the database directory that is no relation
	// file: verified (and failing) before 17, not verified from 17 on. Its
	// page LSN is zero, or it would be skipped as written during the backup.
	stray := append(make([]byte, 8), bytes.Repeat([]byte("stray page "), 8192/11+1)...)[:8192]
	writeFile(t, filepath.Join(data, dbDir, "stray"), stray)
	if major < 17 {
		f.wantFailures[dbDir+"/stray"] = []uint32{0}
	}
	// macOS Finder litter: skipped from 17 on.
	writeFile(t, filepath.Join(data, ".DS_Store"), []byte("finder"))
	if major >= 17 {
		eventually(t, 2*time.Minute, "the server writes WAL summaries", func() bool {
			return f.c.QueryString("postgres", "SELECT count(*)::text FROM pg_available_wal_summaries()") != "0"
		})
		writeFile(t, filepath.Join(data, dbDir, ".DS_Store"), []byte("finder"))
		// WAL summaries belong to this server: pg_wal/summaries is kept
		// empty, like archive_status.
		writeFile(t, filepath.Join(data, "pg_wal", "summaries", "junk.summary"), []byte("summary"))
	}
	if f.statsDir != "" {
		writeFile(t, filepath.Join(data, f.statsDir, "junk.stat"), []byte("stats"))
	}
	if pgtest.RunningAsRoot() {
		pgtest.ChownToServerUser(t, data)
	}
	return f
}

func testMajor(t *testing.T, major int) {
	f := newMajorFixture(t, major)
	c := f.c
	bucket := "file://" + pgtest.TempDir(t, "bucket-")
	env := append(append([]string{}, c.Env()...), "PGCLOUDBACKUP_BUCKET="+bucket)

	r := cli(t, env, "backup", "--wal", "--fast", "--json")
	if r.code != 4 {
		t.Fatalf("backup --wal of a cluster with damaged pages: exit %d, want 4\n%s", r.code, r)
	}
	withWAL := parseManifest(t, r)
	if withWAL.PGVersionNum/10000 != major || !withWAL.WALIncluded || !withWAL.ChecksumsVerified {
		t.Fatalf("manifest: version %d, wal %v, verified %v", withWAL.PGVersionNum, withWAL.WALIncluded, withWAL.ChecksumsVerified)
	}
	checkFailures(t, withWAL.ChecksumFailures, withWAL.ChecksumFailuresTotal, f.wantFailures)
	if major == 15 {
		// The server's own verification (pg_basebackup) agrees.
		want, total := serverChecksumFailures(t, c)
		checkFailures(t, withWAL.ChecksumFailures, withWAL.ChecksumFailuresTotal, want)
		if total != withWAL.ChecksumFailuresTotal {
			t.Errorf("pg_basebackup counts %d failures, we %d", total, withWAL.ChecksumFailuresTotal)
		}
	}

	r = cli(t, env, "backup", "--no-wal", "--fast", "--json")
	if r.code != 4 {
		t.Fatalf("backup with --no-wal: exit %d, want 4\n%s", r.code, r)
	}
	noWAL := parseManifest(t, r)
	if noWAL.WALIncluded {
		t.Errorf("backup without --wal says WAL included")
	}
	checkFailures(t, noWAL.ChecksumFailures, noWAL.ChecksumFailuresTotal, f.wantFailures)

	// backup_manifest: version 2 with the system identifier from 17 on;
	// our verify reads it back (and checks every file against it).
	for _, m := range []string{withWAL.ID, noWAL.ID} {
		pgm := mustRead(t, filepath.Join(strings.TrimPrefix(bucket, "file://"), "backups", m, "backup_manifest"))
		wantVersion := `"PostgreSQL-Backup-Manifest-Version": 1`
		if major >= 17 {
			wantVersion = `"PostgreSQL-Backup-Manifest-Version": 2`
			if !bytes.Contains(pgm, []byte(`"System-Identifier": `+withWAL.SystemIdentifier)) {
				t.Errorf("backup_manifest of %s lacks System-Identifier %s", m, withWAL.SystemIdentifier)
			}
		}
		if !bytes.Contains(pgm, []byte(wantVersion)) {
			t.Errorf("backup_manifest of %s is not %s:\n%.200s", m, wantVersion, pgm)
		}
		if r := cli(t, env, "verify", m); r.code != 0 || !strings.Contains(r.stdout, "verified") {
			t.Fatalf("verify %s: %s", m, r)
		}
	}

	// Restore the --wal backup, tablespace moved; the same major starts.
	root := pgtest.TempDir(t, "restore-")
	target, tsDir := filepath.Join(root, "data"), filepath.Join(root, "ts")
	r = cli(t, env, "restore", withWAL.ID, "--target", target, "--tablespace-map", f.sample.TablespaceOID+"="+tsDir)
	if r.code != 0 {
		t.Fatalf("restore: %s", r)
	}
	f.checkVersionRules(t, target, major)
	if major == 15 {
		out, err := c.Client("pg_verifybackup", target).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "backup successfully verified") {
			t.Fatalf("pg_verifybackup on the restored directory: %v\n%s", err, out)
		}
	}
	// A restore must not archive into the source's archive (its WAL
	// would shadow the source's segments of the same names).
	pgtest.AppendConf(t, target, map[string]string{"archive_mode": "off"})
	if pgtest.RunningAsRoot() {
		pgtest.ChownToServerUser(t, root)
	}
	f.checkRestored(t, pgtest.AdoptMajor(t, target, major), tsDir)

	// Restore the backup without WAL: recovery fetches it from the
	// archive, then promotes.
	root2 := pgtest.TempDir(t, "restore-nowal-")
	target2, tsDir2 := filepath.Join(root2, "data"), filepath.Join(root2, "ts")
	r = cli(t, env, "restore", noWAL.ID, "--target", target2, "--tablespace-map", f.sample.TablespaceOID+"="+tsDir2,
		"--recovery", "--restore-command", "cp "+f.archive+"/%f %p")
	if r.code != 0 {
		t.Fatalf("restore of the backup without WAL: %s", r)
	}
	pgtest.AppendConf(t, target2, map[string]string{"archive_mode": "off"})
	if pgtest.RunningAsRoot() {
		pgtest.ChownToServerUser(t, root2)
	}
	f.checkRestored(t, pgtest.AdoptMajor(t, target2, major), tsDir2)
}

// checkVersionRules looks at what the restore put in the data directory.
func (f *majorFixture) checkVersionRules(t *testing.T, target string, major int) {
	t.Helper()
	_, err := os.Lstat(filepath.Join(target, ".DS_Store"))
	if major >= 17 && err == nil {
		t.Errorf(".DS_Store restored: PostgreSQL %d's rules skip it", major)
	}
	if major < 17 && err != nil {
		t.Errorf(".DS_Store missing: PostgreSQL %d's rules copy it: %v", major, err)
	}
	dirs := map[string]bool{"pg_wal/archive_status": true, "pg_stat_tmp": true}
	if major >= 17 {
		dirs["pg_wal/summaries"] = true
	}
	if f.statsDir != "" {
		dirs[f.statsDir] = true
	}
	for d := range dirs {
		ents, err := os.ReadDir(filepath.Join(target, d))
		if err != nil {
			t.Errorf("%s: %v (must be restored, empty)", d, err)
			continue
		}
		if d == "pg_wal/archive_status" {
			continue // holds the .done markers of the WAL the backup carries
		}
		if len(ents) != 0 {
			t.Errorf("%s restored with %d entries, want none", d, len(ents))
		}
	}
	if _, err := os.Stat(filepath.Join(target, filepath.Dir(f.sample.Corrupt), "stray")); err != nil {
		t.Errorf("the stray file is data and must be restored: %v", err)
	}
}

// checkRestored compares a started restore with the source.
func (f *majorFixture) checkRestored(t *testing.T, restored *pgtest.Cluster, tsDir string) {
	t.Helper()
	if v := restored.Version(); v != f.c.Major {
		t.Fatalf("restored server runs %d, want %d", v, f.c.Major)
	}
	if diff := pgtest.Compare(f.c, restored, f.sample.CompareQueries); diff != "" {
		t.Fatalf("restored data differs: %s", diff)
	}
	if n := restored.QueryString("postgres", "SELECT count(*)::text FROM scratch"); n != "0" {
		t.Errorf("unlogged table has %s rows after restore, want 0", n)
	}
	if loc := restored.QueryString("postgres", "SELECT pg_tablespace_location(oid) FROM pg_tablespace WHERE spcname = 'spc'"); loc != tsDir {
		t.Errorf("restored tablespace at %s, want %s", loc, tsDir)
	}
	restored.Stop()
}

// checkFailures compares reported checksum failures with the expected ones
// (file -> blocks) and checks the total.
func checkFailures(t *testing.T, got []manifest.ChecksumFailure, total int64, want map[string][]uint32) {
	t.Helper()
	gotMap := map[string][]uint32{}
	var sum int64
	for _, f := range got {
		gotMap[f.Path] = f.Blocks
		sum += f.Count
	}
	wantTotal := int64(0)
	for _, b := range want {
		wantTotal += int64(len(b))
	}
	if fmt.Sprint(sortedFailures(gotMap)) != fmt.Sprint(sortedFailures(want)) || total != wantTotal || sum != total {
		t.Errorf("checksum failures: got %v (total %d, sum %d), want %v (total %d)",
			sortedFailures(gotMap), total, sum, sortedFailures(want), wantTotal)
	}
}

func sortedFailures(m map[string][]uint32) []string {
	var out []string
	for p, b := range m {
		out = append(out, fmt.Sprintf("%s:%v", p, b))
	}
	sort.Strings(out)
	return out
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func mustMkdir(t *testing.T, path string) {
	t.Helper()
	if err := os.MkdirAll(path, 0o700); err != nil {
		t.Fatal(err)
	}
	if pgtest.RunningAsRoot() {
		pgtest.ChownToServerUser(t, path)
	}
}

// TestOldMajorRefused: a PostgreSQL 12 server is refused before anything is
// written: exit 3, one line naming the version and what is required.
func TestOldMajorRefused(t *testing.T) {
	c := pgtest.New(t, pgtest.Options{Major: pgtest.OldMajor})
	bucketDir := pgtest.TempDir(t, "bucket-")
	r := cli(t, c.Env(), "backup", "--bucket", "file://"+bucketDir, "--wal")
	assertOneLineError(t, r, 3, "PostgreSQL 12.")
	if !strings.Contains(r.stderr, "version 13 or later is required") {
		t.Errorf("the refusal does not say what is required:\n%s", r.stderr)
	}
	if files := listFiles(t, bucketDir); len(files) != 0 {
		t.Errorf("a refused backup wrote %v", files)
	}
	if n := c.QueryString("postgres", "SELECT count(*)::text FROM pg_stat_activity WHERE backend_type = 'client backend' AND application_name = 'pgcloudbackup'"); n != "0" {
		t.Errorf("%s sessions of ours left on the server", n)
	}
}
