package wal

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/pgcloudbackup/pgcloudbackup/internal/pgtest"
)

const seg16 = 16 << 20

func TestLSNRoundTrip(t *testing.T) {
	for _, s := range []string{"0/0", "0/2000028", "1/FF", "FFFFFFFF/FFFFFFFF", "16/B374D848"} {
		l, err := ParseLSN(s)
		if err != nil {
			t.Fatalf("ParseLSN(%q): %v", s, err)
		}
		if l.String() != s {
			t.Errorf("round trip %q -> %q", s, l.String())
		}
		b, _ := json.Marshal(l)
		var back LSN
		if err := json.Unmarshal(b, &back); err != nil || back != l {
			t.Errorf("json round trip %q: %v %v", s, back, err)
		}
	}
	for _, bad := range []string{"", "12", "0/", "/1", "G/0", "100000000/0", "0/100000000"} {
		if _, err := ParseLSN(bad); err == nil {
			t.Errorf("ParseLSN(%q) accepted", bad)
		}
	}
	if l, _ := ParseLSN("1/2"); l != 1<<32|2 {
		t.Errorf("1/2 = %d", l)
	}
}

func TestRangeSelection(t *testing.T) {
	cases := []struct {
		name        string
		start, stop string
		segSize     int64
		want        []string
	}{
		{"within one segment", "0/2000028", "0/2000138", seg16, []string{"000000010000000000000002"}},
		// stop exactly at a segment boundary: the byte before it is in the previous segment.
		{"stop on boundary", "0/2000028", "0/3000000", seg16, []string{"000000010000000000000002"}},
		{"spans segments", "0/2FFFFF0", "0/5000010", seg16, []string{
			"000000010000000000000002", "000000010000000000000003", "000000010000000000000004", "000000010000000000000005"}},
		// crossing a "log id": 256 segments of 16 MB per xlogid.
		{"crosses xlogid", "0/FF000028", "1/00000100", seg16, []string{"0000000100000000000000FF", "000000010000000100000000"}},
		{"1 GB segments", "1/40000028", "1/80000010", 1 << 30, []string{"000000010000000100000001", "000000010000000100000002"}},
	}
	for _, c := range cases {
		start, _ := ParseLSN(c.start)
		stop, _ := ParseLSN(c.stop)
		spans, err := BackupSpans([]Timeline{{TLI: 1}}, 1, start, stop)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		files := SegmentFiles(spans, c.segSize)
		var got []string
		for _, f := range files {
			got = append(got, f.Name(c.segSize))
		}
		if len(got) != len(c.want) {
			t.Fatalf("%s: got %v want %v", c.name, got, c.want)
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Errorf("%s: got %v want %v", c.name, got, c.want)
			}
			tli, seg, ok := ParseFileName(got[i], c.segSize)
			if !ok || tli != 1 || seg != files[i].Seg || seg != SegmentOf(start, c.segSize)+SegNo(i) {
				t.Errorf("%s: ParseFileName(%s) = %d %d %v", c.name, got[i], tli, seg, ok)
			}
		}
	}
	if _, err := BackupSpans([]Timeline{{TLI: 1}}, 1, 100, 100); err == nil {
		t.Error("stop == start accepted")
	}
}

func TestFileNameParsing(t *testing.T) {
	for _, bad := range []string{"00000001000000000000000", "00000001000000000000000G", "000000010000000000000002.partial", "00000001000000000000000a"} {
		if _, _, ok := ParseFileName(bad, seg16); ok {
			t.Errorf("ParseFileName(%q) accepted", bad)
		}
	}
	if !IsHistoryFileName("00000002.history") || IsHistoryFileName("0000002.history") || IsHistoryFileName("00000002.historyx") {
		t.Error("IsHistoryFileName")
	}
}

// The server itself is the oracle for segment naming and segment headers.
func TestAgainstServer(t *testing.T) {
	c := pgtest.New(t, pgtest.Options{})
	c.Exec("postgres", "CREATE TABLE w AS SELECT g FROM generate_series(1, 200000) g; SELECT pg_switch_wal(); CREATE TABLE w2 AS SELECT 1")
	conn := c.Connect("postgres")
	rows, err := conn.Query(t.Context(), `SELECT l::text, pg_walfile_name(l) FROM (VALUES (pg_current_wal_lsn()), ('0/2000028'::pg_lsn), ('0/FF000000'::pg_lsn), ('1/FFFFFF'::pg_lsn), ('5/0'::pg_lsn)) v(l)`)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rows.Next() {
		var lsnText, name string
		if err := rows.Scan(&lsnText, &name); err != nil {
			t.Fatal(err)
		}
		lsn, err := ParseLSN(lsnText)
		if err != nil {
			t.Fatal(err)
		}
		// pg_walfile_name uses the previous segment at an exact boundary, like XLByteToPrevSeg.
		if got := FileName(1, SegmentBefore(lsn, seg16), seg16); got != name {
			t.Errorf("LSN %s: FileName %s, server says %s", lsnText, got, name)
		}
		n++
	}
	if rows.Err() != nil || n != 5 {
		t.Fatalf("rows: %v, %d", rows.Err(), n)
	}
	var sysid string
	if err := conn.QueryRow(t.Context(), "SELECT system_identifier::text FROM pg_control_system()").Scan(&sysid); err != nil {
		t.Fatal(err)
	}
	var lsnText string
	if err := conn.QueryRow(t.Context(), "SELECT pg_current_wal_flush_lsn()::text").Scan(&lsnText); err != nil {
		t.Fatal(err)
	}
	lsn, _ := ParseLSN(lsnText)
	seg := SegmentOf(lsn, seg16)
	data, err := os.ReadFile(filepath.Join(c.DataDir, "pg_wal", FileName(1, seg, seg16)))
	if err != nil {
		t.Fatal(err)
	}
	var id uint64
	for _, ch := range sysid {
		id = id*10 + uint64(ch-'0')
	}
	limit := int64(uint64(lsn) - uint64(seg)*seg16)
	check := func(f SegmentFile, sys uint64, tlis []uint32) error {
		pc := NewPageChecker(PageCheck{File: f, SegSize: seg16, PageSize: 8192, SysID: sys, Timelines: tlis})
		// Odd-sized writes: headers split across writes must still be checked.
		for rest := data; len(rest) > 0; {
			n := min(len(rest), 7777)
			if _, err := pc.Write(rest[:n]); err != nil {
				return err
			}
			rest = rest[n:]
		}
		return pc.Done()
	}
	if err := check(SegmentFile{TLI: 1, Seg: seg, Limit: limit}, id, []uint32{1}); err != nil {
		t.Fatalf("current segment rejected: %v", err)
	}
	if err := check(SegmentFile{TLI: 1, Seg: seg + 1, Limit: limit}, id, []uint32{1}); err == nil {
		t.Fatal("segment accepted under the wrong segment number (recycled file not detected)")
	}
	if err := check(SegmentFile{TLI: 1, Seg: seg, Limit: limit}, id+1, []uint32{1}); err == nil {
		t.Fatal("segment of another cluster accepted")
	}
	if err := check(SegmentFile{TLI: 2, Seg: seg, Limit: limit}, id, []uint32{2}); err == nil {
		t.Fatal("pages of timeline 1 accepted where the history has only timeline 2")
	}
	// The rest of the current segment is not written yet (zeros, or a
	// recycled segment's leftovers): WAL said to end there is refused.
	if limit+3*8192 < seg16 {
		if err := check(SegmentFile{TLI: 1, Seg: seg, Limit: limit + 3*8192}, id, []uint32{1}); err == nil {
			t.Fatal("unwritten pages accepted as valid WAL")
		}
	}
}
