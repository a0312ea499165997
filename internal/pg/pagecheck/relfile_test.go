package pagecheck

import (
	"encoding/binary"
	"fmt"
	"testing"
)

// TestShouldVerifyRelation: PostgreSQL 17's rule verifies exactly the files
// whose names parse as relation files in a relation directory; the rows
// marked "differs" are where it parts from the rule of 13-16 (ShouldVerify).
func TestShouldVerifyRelation(t *testing.T) {
	tests := []struct {
		path    string
		inTS    bool
		verify  bool
		segno   uint32
		because string
	}{
		{"global/1262", false, true, 0, "shared catalog relation"},
		{"base/5/16384", false, true, 0, "relation in a database directory"},
		{"./base/5/16384", false, true, 0, "leading ./"},
		{"base/5/16384.2", false, true, 2, "third segment"},
		{"base/5/16384_fsm", false, true, 0, "fsm fork"},
		{"base/5/16384_vm.1", false, true, 1, "vm fork, second segment"},
		{"base/5/16384_init", false, true, 0, "init fork"},
		{"base/5/16384.0", false, true, 0, "differs: parse_filename_for_nontemp_relation takes .0 as segment 0 (16 refuses it)"},
		{"base/5/stray", false, false, 0, "differs: not a relation file name (16 verifies it)"},
		{"base/5/16384_foo", false, false, 0, "differs: unknown fork (16 verifies it)"},
		{"base/5/16384_vmx", false, false, 0, "fork name must end where it ends"},
		{"base/5/0", false, false, 0, "differs: relfilenumber 0 is invalid (16 verifies it)"},
		{"base/5/12345678901", false, false, 0, "differs: more than 10 digits (OIDCHARS)"},
		{"base/5/16384.x", false, false, 0, "non-numeric segment"},
		{"base/5/16384.", false, false, 0, "empty segment"},
		{"base/5/16384.1.2", false, false, 0, "two dots"},
		{"base/5/t3_16384", false, false, 0, "temporary relation (skipped by the walk anyway)"},
		{"base/16384", false, false, 0, "differs: a file directly in base/ is in no database directory"},
		{"base/5/sub/16384", false, false, 0, "differs: a subdirectory of a database directory holds no relations"},
		{"global/pg_control", false, false, 0, "not a relation file name"},
		{"global/pg_filenode.map", false, false, 0, "not a relation file name"},
		{"base/5/pg_internal.init", false, false, 0, "not a relation file name"},
		{"base/5/PG_VERSION", false, false, 0, "not a relation file name"},
		{"pg_xact/0000", false, false, 0, "not a relation directory"},
		{"PG_17_202406281/5/16384", true, true, 0, "relation in a tablespace"},
		{"PG_17_202406281/5/16384.3", true, true, 3, "tablespace relation segment"},
		{"PG_17_202406281/5/PG_VERSION", true, false, 0, "version file in a tablespace"},
		{"PG_17_202406281/16384", true, false, 0, "differs: not in a database directory"},
		{"global/1262", true, false, 0, "a tablespace has no global/"},
	}
	for _, tt := range tests {
		verify, segno := ShouldVerifyRelation(tt.path, tt.inTS)
		if verify != tt.verify || segno != tt.segno {
			t.Errorf("ShouldVerifyRelation(%q, %v) = %v, %d; want %v, %d (%s)",
				tt.path, tt.inTS, verify, segno, tt.verify, tt.segno, tt.because)
		}
	}
}

// TestRelationBlockNumbers: a bad page in segment 2 is reported as block
// 2 × RELSEG_SIZE + n with RelationBlockNumbers (PostgreSQL 17+), as n
// without (13-16); the checksum itself always mixes in the relation-wide
// number.
func TestRelationBlockNumbers(t *testing.T) {
	const segBlocks, segno = 1024, 2
	data := make([]byte, 4*BlockSize)
	for blk := uint32(0); blk < 4; blk++ {
		page := data[blk*BlockSize : (blk+1)*BlockSize]
		binary.LittleEndian.PutUint64(page[0:], 0x10)  // pd_lsn
		binary.LittleEndian.PutUint16(page[12:], 24)   // pd_lower
		binary.LittleEndian.PutUint16(page[14:], 8000) // pd_upper
		copy(page[100:], fmt.Sprintf("page %d", blk))  // content
		sum := Checksum(page, segno*segBlocks+blk)     // relation-wide
		binary.LittleEndian.PutUint16(page[8:], sum)   // pd_checksum
	}
	data[3*BlockSize+200] ^= 0xff // corrupt block 3 of this segment
	for _, tt := range []struct {
		relWide bool
		want    uint32
	}{{false, 3}, {true, segno*segBlocks + 3}} {
		v := Verifier{StartLSN: 1 << 40, SegmentBlocks: segBlocks, RelationBlockNumbers: tt.relWide}
		f := v.NewFile(segno)
		if err := f.Check(data, 0, nil); err != nil {
			t.Fatal(err)
		}
		n, blocks := f.Failures()
		if n != 1 || len(blocks) != 1 || blocks[0] != tt.want {
			t.Errorf("RelationBlockNumbers=%v: %d failures at %v, want 1 at %d", tt.relWide, n, blocks, tt.want)
		}
	}
}

func TestAllDigits(t *testing.T) {
	for s, want := range map[string]bool{
		"": false, "0": true, "16384": true, "1_vm": false, "-1": false,
		"12 ": false, "١٢": false, // Arabic-Indic digits are not OIDs
	} {
		if got := AllDigits(s); got != want {
			t.Errorf("AllDigits(%q) = %v, want %v", s, got, want)
		}
	}
}
