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
		r, err := RangeFor(1, start, stop, c.segSize)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		got := r.Names(c.segSize)
		if len(got) != len(c.want) {
			t.Fatalf("%s: got %v want %v", c.name, got, c.want)
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Errorf("%s: got %v want %v", c.name, got, c.want)
			}
			tli, seg, ok := ParseFileName(got[i], c.segSize)
			if !ok || tli != 1 || seg != r.First+SegNo(i) {
				t.Errorf("%s: ParseFileName(%s) = %d %d %v", c.name, got[i], tli, seg, ok)
			}
		}
	}
	if _, err := RangeFor(1, 100, 100, seg16); err == nil {
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
	if err := conn.QueryRow(t.Context(), "SELECT pg_current_wal_insert_lsn()::text").Scan(&lsnText); err != nil {
		t.Fatal(err)
	}
	lsn, _ := ParseLSN(lsnText)
	seg := SegmentOf(lsn, seg16)
	page := make([]byte, 8192)
	f, err := os.Open(filepath.Join(c.DataDir, "pg_wal", FileName(1, seg, seg16)))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.ReadAt(page, 0); err != nil {
		t.Fatal(err)
	}
	var id uint64
	for _, ch := range sysid {
		id = id*10 + uint64(ch-'0')
	}
	if err := CheckSegment(page, seg, seg16, id); err != nil {
		t.Fatalf("current segment rejected: %v", err)
	}
	if err := CheckSegment(page, seg+1, seg16, id); err == nil {
		t.Fatal("segment accepted under the wrong segment number (recycled file not detected)")
	}
	if err := CheckSegment(page, seg, seg16, id+1); err == nil {
		t.Fatal("segment of another cluster accepted")
	}
}
