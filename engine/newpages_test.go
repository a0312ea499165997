package engine

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"testing"

	"github.com/pgcloudbackup/pgcloudbackup/internal/pg/pagecheck"
	"github.com/pgcloudbackup/pgcloudbackup/internal/pgtest"
)

// pgBasebackupFindings runs pg_basebackup against the cluster and returns
// the page checksum failures the server reports (file -> blocks) and the
// files it could not verify past a partial page: the oracle for ours.
func pgBasebackupFindings(t *testing.T, c *pgtest.Cluster) (map[string][]uint32, []string) {
	t.Helper()
	out, err := c.Client("pg_basebackup", "-D", t.TempDir(), "-Ft", "-X", "none", "--no-manifest", "-c", "fast").CombinedOutput()
	t.Logf("pg_basebackup (err %v):\n%s", err, out)
	failures := map[string][]uint32{}
	for _, m := range regexp.MustCompile(`checksum verification failed in file "\./([^"]+)", block (\d+)`).FindAllStringSubmatch(string(out), -1) {
		n, _ := strconv.ParseUint(m[2], 10, 32)
		failures[m[1]] = append(failures[m[1]], uint32(n))
	}
	var partial []string
	for _, m := range regexp.MustCompile(`could not verify checksum in file "\./([^"]+)", block \d+: read buffer size`).FindAllStringSubmatch(string(out), -1) {
		partial = append(partial, m[1])
	}
	return failures, partial
}

// TestPageFindingsAsPgBasebackup: a heap file with a corrupted page, a page
// whose pd_upper alone was zeroed and a page whose whole header was zeroed,
// and another file ending in half a page. Our checksum failures are exactly
// pg_basebackup's on the same cluster (PostgreSQL skips pd_upper == 0 pages;
// we used to count them as failures); the two "new" pages holding data are
// reported apart; the partial page is warned about and recorded, as
// basebackup.c warns.
func TestPageFindingsAsPgBasebackup(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	c := pgtest.New(t, pgtest.Options{Conf: map[string]string{"autovacuum": "off"}})
	c.Exec("postgres", `CREATE TABLE heap (id int, v text);
		INSERT INTO heap SELECT g, repeat('h', 200) FROM generate_series(1, 3000) g;
		CREATE TABLE tail (id int, v text);
		INSERT INTO tail SELECT g, repeat('t', 200) FROM generate_series(1, 1000) g;
		CHECKPOINT`)
	heapPath := c.RelationPath("postgres", "heap")
	tailPath := c.RelationPath("postgres", "tail")
	c.Stop()

	path := filepath.Join(c.DataDir, heapPath)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) < 10*pagecheck.BlockSize {
		t.Fatalf("heap has %d bytes, want 10 pages", len(data))
	}
	page := func(n int) []byte { return data[n*pagecheck.BlockSize : (n+1)*pagecheck.BlockSize] }
	page(4)[5000] ^= 0xff                          // bad checksum
	binary.NativeEndian.PutUint16(page(2)[14:], 0) // pd_upper zeroed, data kept
	clear(page(6)[:24])                            // whole header zeroed
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(c.DataDir, tailPath), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	tailInfo, _ := f.Stat()
	if _, err := f.Write(make([]byte, pagecheck.BlockSize/2)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if pgtest.RunningAsRoot() {
		pgtest.ChownToServerUser(t, path)
	}
	c.Start()

	theirs, theirPartial := pgBasebackupFindings(t, c)
	if len(theirs) == 0 {
		t.Fatal("pg_basebackup reported no checksum failure: the oracle did not run")
	}

	store := memStore(t)
	opts := backupOptions(t, c)
	m, err := Backup(context.Background(), store, newUploader(store), opts)
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	ours := map[string][]uint32{}
	var total int64
	for _, cf := range m.ChecksumFailures {
		ours[cf.Path] = cf.Blocks
		total += cf.Count
	}
	theirTotal := 0
	for _, b := range theirs {
		theirTotal += len(b)
	}
	if m.ChecksumFailuresTotal != int64(theirTotal) || total != m.ChecksumFailuresTotal || len(ours) != len(theirs) {
		t.Errorf("checksum failures: ours %d %v, pg_basebackup's %d %v", m.ChecksumFailuresTotal, ours, theirTotal, theirs)
	}
	for p, b := range theirs {
		if !slices.Equal(ours[p], b) {
			t.Errorf("%s: our failed blocks %v, pg_basebackup's %v", p, ours[p], b)
		}
	}
	if m.NewPagesWithDataTotal != 2 || len(m.NewPagesWithData) != 1 || m.NewPagesWithData[0].Path != heapPath ||
		!slices.Equal(m.NewPagesWithData[0].Blocks, []uint32{2, 6}) {
		t.Errorf("new pages with data: %+v (total %d), want %s blocks [2 6]", m.NewPagesWithData, m.NewPagesWithDataTotal, heapPath)
	}
	if m.PageProblems() != int64(theirTotal)+2 {
		t.Errorf("PageProblems %d, want %d (decides exit code 4)", m.PageProblems(), theirTotal+2)
	}
	wantBlock := uint32(tailInfo.Size() / pagecheck.BlockSize)
	if len(m.PartialPages) != 1 || m.PartialPages[0].Path != tailPath || m.PartialPages[0].Block != wantBlock {
		t.Errorf("partial pages %+v, want %s block %d", m.PartialPages, tailPath, wantBlock)
	}
	sort.Strings(theirPartial)
	if !slices.Equal(theirPartial, []string{tailPath}) {
		t.Errorf("pg_basebackup warned of partial pages in %v, we recorded %+v", theirPartial, m.PartialPages)
	}
}
