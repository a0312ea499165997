package pagecheck

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/pgcloudbackup/pgcloudbackup/internal/pgtest"
)

// pgCluster is a stopped throw-away cluster with a few thousand rows in a
// heap table (and its index), plus a table in an in-place tablespace.
type pgCluster struct {
	c             *pgtest.Cluster
	relPath       string // data-directory-relative path of the heap's main fork
	original      []byte // the heap file as PostgreSQL wrote it
	segmentBlocks uint32 // RELSEG_SIZE from pg_controldata
}

// TestWithPostgres checks everything against a real server and the real
// pg_checksums: PostgreSQL is the only oracle for checksum values.
func TestWithPostgres(t *testing.T) {
	c := pgtest.New(t, pgtest.Options{})
	c.Exec("postgres", `CREATE TABLESPACE ts LOCATION ''`) // in-place: pg_tblspc/<oid> is a directory
	c.Exec("postgres", `
		CREATE TABLE t (id int PRIMARY KEY, payload text);
		INSERT INTO t SELECT g, repeat(md5(g::text), 3) FROM generate_series(1, 5000) g;
		CREATE TABLE t_ts (id int, payload text) TABLESPACE ts;
		INSERT INTO t_ts SELECT g, md5(g::text) FROM generate_series(1, 2000) g;
		CHECKPOINT;`)
	c.Exec("postgres", `VACUUM t`) // writes the free space and visibility map forks
	c.Exec("postgres", `CHECKPOINT`)
	pc := &pgCluster{c: c, relPath: c.RelationPath("postgres", "t")}
	c.Stop()

	var err error
	pc.original, err = os.ReadFile(filepath.Join(c.DataDir, pc.relPath))
	if err != nil {
		t.Fatal(err)
	}
	if len(pc.original) < 10*BlockSize || len(pc.original)%BlockSize != 0 {
		t.Fatalf("%s: %d bytes, want at least 10 whole pages", pc.relPath, len(pc.original))
	}
	pc.segmentBlocks = controlDataBlocksPerSegment(t, c)

	// Order matters: the clean check runs before the corruption subtests
	// alter the heap file.
	t.Run("EveryPageOfClusterMatches", pc.testEveryPage)
	t.Run("FileRules", pc.testFileRules)
	t.Run("CorruptionAsPgChecksums", pc.testCorruption)
	t.Run("SegmentOffsetAsPgChecksums", pc.testSegmentOffset)
	t.Run("NewPagesWithDataAsPgChecksums", pc.testNewPagesWithData)
}

// testNewPagesWithData zeroes pd_upper of one page and the whole header of
// another, and corrupts a third: PostgreSQL (pg_checksums, like the backup)
// skips pages with pd_upper == 0, so its only failure is the third page;
// File counts exactly that failure and reports the two others apart.
func (pc *pgCluster) testNewPagesWithData(t *testing.T) {
	path := filepath.Join(pc.c.DataDir, pc.relPath)
	data := slices.Clone(pc.original)
	page := func(n int) []byte { return data[n*BlockSize : (n+1)*BlockSize] }
	binary.NativeEndian.PutUint16(page(2)[offUpper:], 0)
	clear(page(5)[:24])
	page(8)[BlockSize/2] ^= 0x5a
	writeInPlace(t, path, data)
	defer writeInPlace(t, path, pc.original)

	reports := pgChecksumFailures(t, pc.c)
	var theirs []uint32
	for _, r := range reports[filepath.Clean(path)] {
		theirs = append(theirs, r.block)
	}
	if len(reports) != 1 || !slices.Equal(theirs, []uint32{8}) {
		t.Fatalf("pg_checksums reports %v; want block 8 of %s only", reports, path)
	}
	f := (&Verifier{SegmentBlocks: pc.segmentBlocks}).NewFile(0)
	checkInChunks(t, f, data, 3, rereadFrom(data))
	if n, blocks := f.Failures(); n != 1 || !slices.Equal(blocks, theirs) {
		t.Errorf("File reports %d failures at %v; pg_checksums 1 at %v", n, blocks, theirs)
	}
	if n, blocks := f.NewPagesWithData(); n != 2 || !slices.Equal(blocks, []uint32{2, 5}) {
		t.Errorf("File reports %d new pages with data at %v, want blocks 2 and 5", n, blocks)
	}
}

// testEveryPage verifies every file of the cluster that ShouldVerify picks
// and compares: the stored checksum of each heap page, the set of files with
// the set pg_checksums -v verifies, and the block count it reports.
func (pc *pgCluster) testEveryPage(t *testing.T) {
	// Every non-new page of the heap, checked directly.
	verified := 0
	for blk := 0; blk < len(pc.original)/BlockSize; blk++ {
		page := pc.original[blk*BlockSize : (blk+1)*BlockSize]
		if IsNew(page) {
			continue
		}
		if got, want := Checksum(page, uint32(blk)), StoredChecksum(page); got != want {
			t.Errorf("%s block %d: Checksum %04X, page holds %04X", pc.relPath, blk, got, want)
		}
		verified++
	}
	if verified < 10 {
		t.Fatalf("only %d heap pages verified", verified)
	}

	// The whole cluster, through File as the engine uses it.
	v := &Verifier{SegmentBlocks: pc.segmentBlocks}
	var f File
	ours := map[string]bool{}
	var blocks, pages int64
	dataDir := pc.c.DataDir
	err := filepath.WalkDir(dataDir, func(path string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(dataDir, path)
		inTS := false
		if strings.HasPrefix(rel, "pg_tblspc/") {
			// pg_tblspc/<oid>/<rest>: rest is relative to the tablespace location.
			parts := strings.SplitN(rel, "/", 3)
			rel, inTS = parts[2], true
		}
		ok, segno := ShouldVerify(rel, inTS)
		if !ok {
			return nil
		}
		ours[path] = true
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		blocks += int64(len(data) / BlockSize)
		for i := 0; i+BlockSize <= len(data); i += BlockSize {
			if !IsAllZero(data[i : i+BlockSize]) {
				pages++
			}
		}
		f.Reset(v, segno)
		if err := f.Check(data, 0, nil); err != nil {
			return err
		}
		if n, bad := f.Failures(); n != 0 {
			t.Errorf("%s: %d failures at blocks %v in a cleanly shut down cluster", rel, n, bad)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if pages < 100 {
		t.Fatalf("only %d pages verified across the cluster", pages)
	}

	out, code := pgChecksums(t, pc.c, "-v")
	if code != 0 {
		t.Fatalf("pg_checksums --check failed on the clean cluster (exit %d):\n%s", code, out)
	}
	theirs := map[string]bool{}
	for _, m := range regexp.MustCompile(`checksums verified in file "([^"]+)"`).FindAllStringSubmatch(out, -1) {
		theirs[filepath.Clean(m[1])] = true
	}
	for p := range ours {
		if !theirs[p] {
			t.Errorf("we verify %s, pg_checksums does not", p)
		}
	}
	sawTablespace := false
	for p := range theirs {
		if !ours[p] {
			t.Errorf("pg_checksums verifies %s, we do not", p)
		}
		sawTablespace = sawTablespace || strings.Contains(p, "/pg_tblspc/")
	}
	if !sawTablespace {
		t.Errorf("no tablespace file among the %d verified files: the tablespace rule was not exercised", len(theirs))
	}
	m := regexp.MustCompile(`Blocks scanned:\s+(\d+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no block count in pg_checksums output:\n%s", out)
	}
	if n, _ := strconv.ParseInt(m[1], 10, 64); n != blocks {
		t.Errorf("pg_checksums scanned %d blocks, our files hold %d", n, blocks)
	}
	t.Logf("%d files, %d blocks (%d not all-zero) verified; pg_checksums agrees", len(ours), blocks, pages)
}

// failureReport is one "checksum verification failed" line of pg_checksums.
type failureReport struct {
	block      uint32
	calculated uint16
	contains   uint16
}

var failureLine = regexp.MustCompile(`checksum verification failed in file "([^"]+)", block (\d+): calculated checksum ([0-9A-F]+) but block contains ([0-9A-F]+)`)

// pgChecksumFailures runs pg_checksums --check and returns its failure
// reports by file path.
func pgChecksumFailures(t *testing.T, c *pgtest.Cluster) map[string][]failureReport {
	t.Helper()
	out, code := pgChecksums(t, c)
	if code == 0 {
		t.Fatalf("pg_checksums --check found nothing wrong:\n%s", out)
	}
	reports := map[string][]failureReport{}
	for _, m := range failureLine.FindAllStringSubmatch(out, -1) {
		blk, _ := strconv.ParseUint(m[2], 10, 32)
		calc, _ := strconv.ParseUint(m[3], 16, 16)
		has, _ := strconv.ParseUint(m[4], 16, 16)
		p := filepath.Clean(m[1])
		reports[p] = append(reports[p], failureReport{uint32(blk), uint16(calc), uint16(has)})
	}
	if len(reports) == 0 {
		t.Fatalf("pg_checksums failed without failure reports:\n%s", out)
	}
	return reports
}

// testCorruption flips bytes inside three heap pages (away from the header)
// and requires the same verdicts as pg_checksums: its "calculated" values
// from Checksum, exactly its block numbers from File.
func (pc *pgCluster) testCorruption(t *testing.T) {
	path := filepath.Join(pc.c.DataDir, pc.relPath)
	corrupted := []uint32{1, 4, 7}
	data := slices.Clone(pc.original)
	for _, blk := range corrupted {
		off := int(blk)*BlockSize + BlockSize/2
		for i := off; i < off+16; i++ {
			data[i] ^= 0xA5
		}
	}
	writeInPlace(t, path, data)
	defer writeInPlace(t, path, pc.original)

	reports := pgChecksumFailures(t, pc.c)
	got := reports[filepath.Clean(path)]
	if len(reports) != 1 || len(got) != len(corrupted) {
		t.Fatalf("pg_checksums reports %v; want blocks %v of %s only", reports, corrupted, path)
	}
	var theirBlocks []uint32
	for _, r := range got {
		theirBlocks = append(theirBlocks, r.block)
		page := data[int(r.block)*BlockSize : int(r.block+1)*BlockSize]
		if c := Checksum(page, r.block); c != r.calculated {
			t.Errorf("block %d: Checksum %X, pg_checksums calculated %X", r.block, c, r.calculated)
		}
		if s := StoredChecksum(page); s != r.contains {
			t.Errorf("block %d: StoredChecksum %X, pg_checksums says the block contains %X", r.block, s, r.contains)
		}
	}
	if !slices.Equal(theirBlocks, corrupted) {
		t.Fatalf("pg_checksums reports blocks %v, we corrupted %v", theirBlocks, corrupted)
	}

	// File, fed in engine-sized chunks (3 pages, so chunks straddle the
	// corrupted blocks differently), with a re-read that finds the same bytes.
	f := (&Verifier{StartLSN: 0, SegmentBlocks: pc.segmentBlocks}).NewFile(0)
	checkInChunks(t, f, data, 3, rereadFrom(data))
	n, blocks := f.Failures()
	if n != int64(len(theirBlocks)) || !slices.Equal(blocks, theirBlocks) {
		t.Errorf("File reports %d failures at %v; pg_checksums %d at %v", n, blocks, len(theirBlocks), theirBlocks)
	}
	if f.Rereads() != int64(len(theirBlocks)) {
		t.Errorf("%d re-reads, want one per failed block (%d)", f.Rereads(), len(theirBlocks))
	}
}

// testSegmentOffset makes a second segment out of the heap's pages: in
// segment 1 every page is checked as block blkno + RELSEG_SIZE, so its stored
// checksums no longer match, and pg_checksums reports the checksums it
// calculated with the offset block numbers.
func (pc *pgCluster) testSegmentOffset(t *testing.T) {
	rel := pc.relPath + ".1"
	ok, segno := ShouldVerify(rel, false)
	if !ok || segno != 1 {
		t.Fatalf("ShouldVerify(%q) = %v, %d; want true, 1", rel, ok, segno)
	}
	path := filepath.Join(pc.c.DataDir, rel)
	if err := os.WriteFile(path, pc.original, 0o600); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(path)
	pgtest.ChownToServerUser(t, path)

	reports := pgChecksumFailures(t, pc.c)
	got := reports[filepath.Clean(path)]
	if len(reports) != 1 || len(got) < 10 {
		t.Fatalf("pg_checksums reports %d failures in %d files; want most pages of %s only", len(got), len(reports), path)
	}
	var theirBlocks []uint32
	for _, r := range got {
		theirBlocks = append(theirBlocks, r.block)
		page := pc.original[int(r.block)*BlockSize : int(r.block+1)*BlockSize]
		if c := Checksum(page, r.block+segno*pc.segmentBlocks); c != r.calculated {
			t.Errorf("segment 1 block %d: Checksum %X, pg_checksums calculated %X", r.block, c, r.calculated)
		}
	}

	f := (&Verifier{SegmentBlocks: pc.segmentBlocks}).NewFile(segno)
	checkInChunks(t, f, slices.Clone(pc.original), 4, nil)
	n, blocks := f.Failures()
	if n != int64(len(theirBlocks)) || !slices.Equal(blocks, theirBlocks) {
		t.Errorf("File (segment 1) reports %d failures at %v; pg_checksums %d at %v", n, blocks, len(theirBlocks), theirBlocks)
	}

	// Store pg_checksums' calculated values in the pages: now the segment is
	// valid in PostgreSQL's eyes, and File must pass every page of it (which
	// it can only do by offsetting block numbers by segno × RELSEG_SIZE).
	fixed := slices.Clone(pc.original)
	for _, r := range got {
		binary.NativeEndian.PutUint16(fixed[int(r.block)*BlockSize+offChecksum:], r.calculated)
	}
	writeInPlace(t, path, fixed)
	if out, code := pgChecksums(t, pc.c); code != 0 {
		t.Fatalf("pg_checksums still fails after storing its calculated checksums (exit %d):\n%s", code, out)
	}
	f.Reset(&Verifier{SegmentBlocks: pc.segmentBlocks}, segno)
	checkInChunks(t, f, fixed, 4, nil)
	if n, blocks := f.Failures(); n != 0 {
		t.Errorf("File (segment 1) reports %d failures at %v in a segment pg_checksums accepts", n, blocks)
	}
}

// testFileRules checks the skip and re-read rules on real pages.
func (pc *pgCluster) testFileRules(t *testing.T) {
	const blk = 3
	good := slices.Clone(pc.original[blk*BlockSize : (blk+1)*BlockSize])
	if IsNew(good) || Checksum(good, blk) != StoredChecksum(good) {
		t.Fatal("heap block 3 is not a valid page")
	}
	lsn := PageLSN(good)
	bad := slices.Clone(good)
	bad[5000] ^= 0xff
	if Checksum(bad, blk) == StoredChecksum(bad) {
		t.Fatal("corrupting a byte did not change the checksum")
	}
	// A page whose pd_upper is zero but which holds data: not a valid new page.
	upperZero := slices.Clone(good)
	binary.NativeEndian.PutUint16(upperZero[offUpper:], 0)
	if !IsNew(upperZero) || IsAllZero(upperZero) {
		t.Fatal("upperZero page is not what the test needs")
	}

	type result struct {
		count    int64
		blocks   []uint32
		rereads  int64
		newPages []uint32 // pd_upper == 0 pages with data, reported apart
	}
	run := func(v Verifier, page []byte, reread func(uint32, []byte) error) (result, error) {
		f := v.NewFile(0)
		err := f.Check(slices.Clone(page), blk, reread)
		n, b := f.Failures()
		nn, nb := f.NewPagesWithData()
		if int(nn) != len(nb) {
			t.Errorf("NewPagesWithData: count %d, %d blocks", nn, len(nb))
		}
		return result{n, slices.Clone(b), f.Rereads(), slices.Clone(nb)}, err
	}
	serve := func(p []byte) func(uint32, []byte) error {
		return func(n uint32, dst []byte) error {
			if n != blk {
				return fmt.Errorf("re-read of block %d, want %d", n, blk)
			}
			copy(dst, p)
			return nil
		}
	}
	past := slices.Clone(bad) // torn on first read; on re-read, rewritten during the backup
	binary.NativeEndian.PutUint32(past[offLSN:], uint32(lsn>>32)+1)
	if PageLSN(past) <= lsn {
		t.Fatal("past page LSN not advanced")
	}

	tests := []struct {
		name   string
		v      Verifier
		page   []byte
		reread func(uint32, []byte) error
		want   result
	}{
		{"good page", Verifier{}, good, serve(bad), result{}},
		{"torn page, good on re-read", Verifier{}, bad, serve(good), result{rereads: 1}},
		{"bad twice is one failure", Verifier{}, bad, serve(bad), result{1, []uint32{blk}, 1, nil}},
		{"bad, no re-read available", Verifier{}, bad, nil, result{1, []uint32{blk}, 0, nil}},
		{"re-read shows LSN past backup start", Verifier{StartLSN: lsn + 1}, bad, serve(past), result{rereads: 1}},
		{"LSN equal to backup start is skipped", Verifier{StartLSN: lsn}, bad, serve(bad), result{}},
		{"LSN before backup start is verified", Verifier{StartLSN: lsn + 1}, bad, serve(bad), result{1, []uint32{blk}, 1, nil}},
		{"all-zero page is skipped", Verifier{}, make([]byte, BlockSize), serve(bad), result{}},
		{"pd_upper zero but not all zero is reported apart", Verifier{}, upperZero, serve(upperZero), result{rereads: 1, newPages: []uint32{blk}}},
		{"pd_upper zero on first read, whole on re-read", Verifier{}, upperZero, serve(good), result{rereads: 1}},
		{"pd_upper zero, then a bad checksum on re-read", Verifier{}, upperZero, serve(bad), result{1, []uint32{blk}, 1, nil}},
		{"pd_upper zero with LSN past backup start is skipped", Verifier{StartLSN: lsn}, upperZero, serve(upperZero), result{}},
		{"truncated before the re-read", Verifier{}, bad, func(uint32, []byte) error { return io.EOF }, result{rereads: 1}},
	}
	for _, tt := range tests {
		got, err := run(tt.v, tt.page, tt.reread)
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if got.count != tt.want.count || !slices.Equal(got.blocks, tt.want.blocks) || got.rereads != tt.want.rereads ||
			!slices.Equal(got.newPages, tt.want.newPages) {
			t.Errorf("%s: got %+v, want %+v", tt.name, got, tt.want)
		}
	}

	t.Run("re-read page replaces the torn one in the chunk", func(t *testing.T) {
		chunk := slices.Concat(good, bad, good)
		f := (&Verifier{}).NewFile(0)
		if err := f.Check(chunk, blk-1, func(n uint32, dst []byte) error {
			copy(dst, pc.original[int(n)*BlockSize:]) // the file now holds block n whole
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if n, _ := f.Failures(); n != 0 || !bytes.Equal(chunk[BlockSize:2*BlockSize], good) {
			t.Fatalf("failures %d; chunk holds re-read page: %v", n, bytes.Equal(chunk[BlockSize:2*BlockSize], good))
		}
	})

	t.Run("SegmentBlocks is honoured", func(t *testing.T) {
		// A server built with 1000 blocks per segment: block 3 of segment 2
		// is relation block 2003.
		page := slices.Clone(good)
		binary.NativeEndian.PutUint16(page[offChecksum:], Checksum(page, 2*1000+blk))
		for _, tt := range []struct {
			segBlocks uint32
			want      int64
		}{{1000, 0}, {0, 1}} {
			f := (&Verifier{SegmentBlocks: tt.segBlocks}).NewFile(2)
			if err := f.Check(slices.Clone(page), blk, nil); err != nil {
				t.Fatal(err)
			}
			if n, _ := f.Failures(); n != tt.want {
				t.Errorf("SegmentBlocks %d: %d failures, want %d", tt.segBlocks, n, tt.want)
			}
		}
	})

	t.Run("re-read error is returned", func(t *testing.T) {
		boom := errors.New("disk on fire")
		_, err := run(Verifier{}, bad, func(uint32, []byte) error { return boom })
		if !errors.Is(err, boom) {
			t.Fatalf("error %v, want %v", err, boom)
		}
	})

	t.Run("EOF on re-read stops that chunk only", func(t *testing.T) {
		f := (&Verifier{}).NewFile(0)
		chunk := slices.Concat(bad, bad)
		if err := f.Check(chunk, 0, func(uint32, []byte) error { return io.EOF }); err != nil {
			t.Fatal(err)
		}
		if n, _ := f.Failures(); n != 0 || f.Rereads() != 1 {
			t.Fatalf("%d failures, %d re-reads after EOF; want 0, 1 (rest of chunk not verified)", n, f.Rereads())
		}
		// The file may have grown back: later chunks are verified again.
		if err := f.Check(bad, blk, nil); err != nil {
			t.Fatal(err)
		}
		if n, _ := f.Failures(); n != 1 {
			t.Fatalf("%d failures in the chunk after the truncation, want 1", n)
		}
	})

	t.Run("partial last page is not verified and ends verification", func(t *testing.T) {
		f := (&Verifier{}).NewFile(0)
		chunk := slices.Concat(good, bad[:BlockSize/2])
		if err := f.Check(chunk, blk, nil); err != nil {
			t.Fatal(err)
		}
		if at, ok := f.Partial(); !ok || at != blk+1 {
			t.Fatalf("Partial() = %d, %v; want %d, true", at, ok, blk+1)
		}
		if err := f.Check(bad, blk+2, nil); err != nil {
			t.Fatal(err)
		}
		if n, _ := f.Failures(); n != 0 {
			t.Fatalf("%d failures; nothing after a partial page may be verified", n)
		}
	})

	t.Run("block list capped, count kept", func(t *testing.T) {
		const pages = MaxFailedBlocks + 50
		chunk := bytes.Repeat(bad, pages)
		f := (&Verifier{}).NewFile(0)
		if err := f.Check(chunk, 0, nil); err != nil {
			t.Fatal(err)
		}
		// Every copy sits at another block number, so each one fails
		// (except by a 1-in-65535 chance where the stored value happens to
		// match that block number: count those with Checksum).
		var want int64
		for i := 0; i < pages; i++ {
			if Checksum(bad, uint32(i)) != StoredChecksum(bad) {
				want++
			}
		}
		n, blocks := f.Failures()
		if n != want || len(blocks) != MaxFailedBlocks {
			t.Fatalf("count %d (want %d), %d block numbers kept (want %d)", n, want, len(blocks), MaxFailedBlocks)
		}
		f.Reset(&Verifier{}, 0)
		if n, blocks := f.Failures(); n != 0 || len(blocks) != 0 {
			t.Fatalf("after Reset: %d failures, %d blocks", n, len(blocks))
		}
	})

	t.Run("Check does not allocate", func(t *testing.T) {
		chunk := bytes.Repeat(good, 16)
		for i := 0; i < 16; i++ {
			binary.NativeEndian.PutUint16(chunk[i*BlockSize+offChecksum:], Checksum(good, uint32(i)))
		}
		v := &Verifier{StartLSN: lsn + 1}
		var f File
		reread := func(uint32, []byte) error { return nil }
		allocs := testing.AllocsPerRun(100, func() {
			f.Reset(v, 0)
			if err := f.Check(chunk, 0, reread); err != nil {
				t.Fatal(err)
			}
		})
		if n, _ := f.Failures(); n != 0 || allocs != 0 {
			t.Fatalf("%v allocations per Check, %d failures; want 0, 0", allocs, n)
		}
	})
}

// checkInChunks feeds data to f in chunks of the given number of pages.
func checkInChunks(t *testing.T, f *File, data []byte, pages int, reread func(uint32, []byte) error) {
	t.Helper()
	step := pages * BlockSize
	for off := 0; off < len(data); off += step {
		end := min(off+step, len(data))
		if err := f.Check(data[off:end], uint32(off/BlockSize), reread); err != nil {
			t.Fatal(err)
		}
	}
}

// rereadFrom re-reads blocks from an in-memory copy of the file.
func rereadFrom(file []byte) func(uint32, []byte) error {
	return func(blk uint32, dst []byte) error {
		off := int(blk) * BlockSize
		if off >= len(file) {
			return io.EOF
		}
		copy(dst, file[off:off+BlockSize])
		return nil
	}
}

// writeInPlace rewrites an existing file, keeping its owner.
func writeInPlace(t *testing.T, path string, data []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// pgChecksums runs pg_checksums --check (offline) as the server's user and
// returns its combined output and exit code.
func pgChecksums(t *testing.T, c *pgtest.Cluster, args ...string) (string, int) {
	t.Helper()
	cmd := pgtest.ServerCommand(filepath.Join(c.BinDir, "pg_checksums"), append([]string{"--check", "-D", c.DataDir}, args...)...)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &exit):
		return string(out), exit.ExitCode()
	default:
		t.Fatalf("run pg_checksums: %v\n%s", err, out)
		return "", -1
	}
}

// controlDataBlocksPerSegment reads RELSEG_SIZE from pg_controldata.
func controlDataBlocksPerSegment(t *testing.T, c *pgtest.Cluster) uint32 {
	t.Helper()
	out, err := pgtest.ServerCommand(filepath.Join(c.BinDir, "pg_controldata"), "-D", c.DataDir).CombinedOutput()
	if err != nil {
		t.Fatalf("pg_controldata: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Blocks per segment of large relation:\s+(\d+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no segment size in pg_controldata output:\n%s", out)
	}
	n, err := strconv.ParseUint(string(m[1]), 10, 32)
	if err != nil {
		t.Fatal(err)
	}
	return uint32(n)
}
