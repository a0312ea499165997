package pagecheck

import "testing"

func TestShouldVerify(t *testing.T) {
	tests := []struct {
		path    string
		inTS    bool
		verify  bool
		segno   uint32
		because string
	}{
		{"global/1262", false, true, 0, "shared catalog relation under global/"},
		{"base/5/16384", false, true, 0, "relation in a database directory"},
		{"./base/5/16384", false, true, 0, "a leading ./ (as basebackup.c spells paths) is the same path"},
		{"base/5/16384.2", false, true, 2, "third 1 GB segment: its block numbers are offset by 2 × RELSEG_SIZE"},
		{"base/5/16384_fsm", false, true, 0, "free space map fork pages carry checksums too"},
		{"base/5/16384_vm.1", false, true, 1, "segment suffix after a fork suffix"},
		{"base/5/16384_init", false, true, 0, "init fork of an unlogged relation"},
		{"global/pg_control", false, false, 0, "pg_control is a control struct, not pages (has its own CRC)"},
		{"global/pg_filenode.map", false, false, 0, "relation mapper file, not pages"},
		{"base/5/pg_filenode.map", false, false, 0, "per-database relation mapper file"},
		{"global/pg_internal.init", false, false, 0, "relcache init file, rebuilt at start-up"},
		{"base/5/pg_internal.init.12345", false, false, 0, "pg_internal.init is a prefix match (its temporary files)"},
		{"base/5/PG_VERSION", false, false, 0, "version text file"},
		{"PG_VERSION", false, false, 0, "top-level version file is outside global/ and base/"},
		{"pg_xact/0000", false, false, 0, "SLRU files have no page checksums"},
		{"pg_multixact/offsets/0000", false, false, 0, "SLRU files have no page checksums"},
		{"postgresql.conf", false, false, 0, "configuration file"},
		{"pg_wal/000000010000000000000001", false, false, 0, "WAL has its own per-record CRCs"},
		{"basement/16384", false, false, 0, "base/ must be a whole directory name, not a prefix"},
		{"base/5/16384.0", false, false, 0, "segment 0 never has a suffix: PostgreSQL rejects .0 as invalid"},
		{"base/5/16384.x", false, false, 0, "non-numeric segment suffix: not a relation segment"},
		{"base/5/16384.", false, false, 0, "empty segment suffix"},
		{"base/5/16384.1.2", false, false, 0, "two dots: not a segment number"},
		{"base/5/16384.99999999999", false, false, 0, "segment number beyond 32 bits"},
		{"base/5/", false, false, 0, "a directory, not a file"},
		{"PG_15_202209061/5/16384", true, true, 0, "relation in a tablespace"},
		{"PG_15_202209061/5/16384.3", true, true, 3, "tablespace relation segment"},
		{"PG_15_202209061/5/PG_VERSION", true, false, 0, "version file inside a tablespace database directory"},
		{"PG_15_202209061/5/pg_filenode.map", true, false, 0, "mapper file in a tablespace"},
	}
	for _, tt := range tests {
		verify, segno := ShouldVerify(tt.path, tt.inTS)
		if verify != tt.verify || segno != tt.segno {
			t.Errorf("ShouldVerify(%q, %v) = %v, %d; want %v, %d (%s)",
				tt.path, tt.inTS, verify, segno, tt.verify, tt.segno, tt.because)
		}
	}
}
