package wal

import (
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
)

func lsn(t *testing.T, s string) LSN {
	t.Helper()
	l, err := ParseLSN(s)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestParseHistory(t *testing.T) {
	// As the server writes it (timeline.c writeTimeLineHistory), reasons and all.
	data := "1\t0/3000158\tno recovery target specified\n\n# comment\n2\t0/5000000\tat restore point \"x\"\n"
	h, err := ParseHistory(3, []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	want := []Timeline{{TLI: 3, Begin: lsn(t, "0/5000000")}, {TLI: 2, Begin: lsn(t, "0/3000158"), End: lsn(t, "0/5000000")}, {TLI: 1, End: lsn(t, "0/3000158")}}
	if fmt.Sprint(h) != fmt.Sprint(want) {
		t.Fatalf("history %v, want %v", h, want)
	}
	for name, bad := range map[string]string{
		"not increasing":    "2\t0/1\tx\n1\t0/2\tx\n",
		"switch goes back":  "1\t0/5\tx\n2\t0/4\tx\n",
		"own timeline":      "1\t0/5\tx\n3\t0/6\tx\n",
		"bad LSN":           "1\tzz\tx\n",
		"missing LSN":       "1\n",
		"timeline zero":     "0\t0/5\tx\n",
		"timeline not hex?": "x1\t0/5\tx\n",
	} {
		if _, err := ParseHistory(3, []byte(bad)); err == nil {
			t.Errorf("%s: history %q accepted", name, bad)
		}
	}
	if h, err := ParseHistory(1, nil); err != nil || len(h) != 1 || h[0] != (Timeline{TLI: 1}) {
		t.Errorf("empty history: %v %v", h, err)
	}
}

func TestBackupSpans(t *testing.T) {
	hist, err := ParseHistory(3, []byte("1\t0/3000158\tx\n2\t0/5000100\tx\n"))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name      string
		startTLI  uint32
		start     string
		stop      string
		want      string // spans newest first
		wantFiles []string
	}{
		{"within timeline 3", 3, "0/6000028", "0/7000100", "[{3 0/6000028 0/7000100}]",
			[]string{"000000030000000000000006", "000000030000000000000007"}},
		{"from 1 to 3", 1, "0/2000028", "0/6000010", "[{3 0/5000100 0/6000010} {2 0/3000158 0/5000100} {1 0/2000028 0/3000158}]",
			[]string{"000000010000000000000002", "000000010000000000000003", "000000020000000000000003",
				"000000020000000000000004", "000000020000000000000005", "000000030000000000000005", "000000030000000000000006"}},
		// The backup ended on timeline 2 before 3 began: 3 is not its end timeline.
		{"ends before the newest timeline", 2, "0/4000028", "0/5000000", "[{2 0/4000028 0/5000000}]",
			[]string{"000000020000000000000004"}},
	}
	for _, c := range cases {
		spans, err := BackupSpans(hist, c.startTLI, lsn(t, c.start), lsn(t, c.stop))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := fmt.Sprint(spans); got != c.want {
			t.Errorf("%s: spans %s, want %s", c.name, got, c.want)
		}
		var names []string
		for _, f := range SegmentFiles(spans, seg16) {
			names = append(names, f.Name(seg16))
		}
		if fmt.Sprint(names) != fmt.Sprint(c.wantFiles) {
			t.Errorf("%s: files %v, want %v", c.name, names, c.wantFiles)
		}
	}
	// The switch segment's limits: timeline 1's copy is needed up to the switch only.
	spans, _ := BackupSpans(hist, 1, lsn(t, "0/2000028"), lsn(t, "0/6000010"))
	files := SegmentFiles(spans, seg16)
	if files[1].Limit != 0x158 || files[2].Limit != seg16 || files[len(files)-1].Limit != 0x10 {
		t.Errorf("limits %+v", files)
	}
	if _, err := BackupSpans(hist, 4, lsn(t, "0/6000028"), lsn(t, "0/7000000")); err == nil {
		t.Error("start timeline outside the history accepted")
	}
	// Timeline 2 began before the backup started on timeline 1: impossible.
	if _, err := BackupSpans(hist, 1, lsn(t, "0/4000028"), lsn(t, "0/6000000")); err == nil {
		t.Error("backup starting on timeline 1 after timeline 2 began accepted")
	}
}

// segmentBytes builds a synthetic segment of pages with valid headers.
func segmentBytes(tli func(page int) uint32, seg SegNo, segSize int64, sysID uint64) []byte {
	data := make([]byte, segSize)
	le := binary.LittleEndian
	for off := int64(0); off < segSize; off += 8192 {
		h := data[off:]
		le.PutUint16(h[0:], 0xD110)
		le.PutUint32(h[4:], tli(int(off/8192)))
		le.PutUint64(h[8:], uint64(seg)*uint64(segSize)+uint64(off))
		if off == 0 {
			le.PutUint16(h[2:], xlpLongHeader)
			le.PutUint64(h[24:], sysID)
			le.PutUint32(h[32:], uint32(segSize))
			le.PutUint32(h[36:], 8192)
		}
	}
	return data
}

func TestPageChecker(t *testing.T) {
	const size = 1 << 20 // the smallest wal_segment_size
	const sys = 7301234567890123457
	f := SegmentFile{TLI: 2, Seg: 5, Limit: size}
	run := func(data []byte, f SegmentFile, chunk int) error {
		pc := NewPageChecker(PageCheck{File: f, SegSize: size, PageSize: 8192, SysID: sys, Timelines: []uint32{1, 2}})
		for rest := data; len(rest) > 0; {
			n := min(chunk, len(rest))
			if _, err := pc.Write(rest[:n]); err != nil {
				return err
			}
			rest = rest[n:]
		}
		return pc.Done()
	}
	// A segment holding a switch point: timeline 1's pages copied, then 2's.
	good := segmentBytes(func(p int) uint32 { return uint32(1 + p/64) }, 5, size, sys)
	for _, chunk := range []int{1, 13, 8192, 256 << 10, size} {
		if err := run(good, f, chunk); err != nil {
			t.Fatalf("chunk %d: valid segment rejected: %v", chunk, err)
		}
	}
	le := binary.LittleEndian
	mutate := func(name string, change func(d []byte), wantErr string) {
		t.Helper()
		d := append([]byte(nil), good...)
		change(d)
		err := run(d, f, 4096)
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("%s: error %v, want %q", name, err, wantErr)
		}
	}
	mutate("recycled mid-file", func(d []byte) { le.PutUint64(d[70*8192+8:], 0x2000000) }, "recycled")
	mutate("other cluster", func(d []byte) { le.PutUint64(d[24:], sys+1) }, "another cluster")
	mutate("timeline goes back", func(d []byte) { le.PutUint32(d[100*8192+4:], 1) }, "after a page of timeline 2")
	mutate("timeline from the future", func(d []byte) { le.PutUint32(d[100*8192+4:], 3) }, "timeline 3")
	mutate("magic changes", func(d []byte) { le.PutUint16(d[3*8192:], 0xD106) }, "magic")
	mutate("no long header", func(d []byte) { le.PutUint16(d[2:], 0) }, "long header")
	mutate("zeroed page in the middle", func(d []byte) { clear(d[9*8192 : 10*8192]) }, "a written page after zeroed ones")
	mutate("zeroed first page", func(d []byte) { clear(d[:8192]) }, "page address 0/0")
	// After a WAL switch record the server zeroes the headers of the rest
	// of the segment: valid, as long as the backup's WAL does not end there.
	switched := append([]byte(nil), good...)
	for off := 100 * 8192; off < size; off += 8192 {
		clear(switched[off : off+shortHeaderSize])
	}
	if err := run(switched, f, 4096); err != nil {
		t.Errorf("segment ended by a WAL switch rejected: %v", err)
	}
	if err := run(switched, SegmentFile{TLI: 2, Seg: 5, Limit: 110 * 8192}, 4096); err == nil {
		t.Error("backup WAL ending inside zeroed pages accepted")
	}
	// Past the limit nothing is checked: the segment's unwritten tail.
	tail := append([]byte(nil), good...)
	for i := 64 * 8192; i < size; i++ {
		tail[i] = 0x5A // leftovers of a recycled segment
	}
	if err := run(tail, SegmentFile{TLI: 2, Seg: 5, Limit: 64*8192 - 100}, 4096); err != nil {
		t.Errorf("recycled leftovers past the limit rejected: %v", err)
	}
	if err := run(tail, SegmentFile{TLI: 2, Seg: 5, Limit: 64*8192 + 1}, 4096); err == nil {
		t.Error("a recycled page the backup needs accepted")
	}
	if err := run(good[:size/2], f, 8192); err == nil || !strings.Contains(err.Error(), "only") {
		t.Errorf("short segment: %v", err)
	}
}

// BenchmarkPageChecker: the cost of checking a 16 MiB segment as it streams
// in 256 KiB chunks (the copy's chunk size).
func BenchmarkPageChecker(b *testing.B) {
	data := segmentBytes(func(int) uint32 { return 1 }, 7, seg16, 1)
	b.SetBytes(seg16)
	for i := 0; i < b.N; i++ {
		pc := NewPageChecker(PageCheck{File: SegmentFile{TLI: 1, Seg: 7, Limit: seg16}, SegSize: seg16, PageSize: 8192, SysID: 1, Timelines: []uint32{1}})
		for off := 0; off < seg16; off += 256 << 10 {
			if _, err := pc.Write(data[off : off+256<<10]); err != nil {
				b.Fatal(err)
			}
		}
		if err := pc.Done(); err != nil {
			b.Fatal(err)
		}
	}
}
