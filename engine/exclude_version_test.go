package engine

import "testing"

// TestExcludeForVersion: .DS_Store is skipped from PostgreSQL 17 on (as its
// basebackup.c does), copied by older servers' rules; other names never.
func TestExcludeForVersion(t *testing.T) {
	for _, tt := range []struct {
		name    string
		version int
		want    exclusion
	}{
		{".DS_Store", 170000, skipEntry},
		{".DS_Store", 180004, skipEntry},
		{".DS_Store", 160014, include},
		{".DS_Store", 130023, include},
		{".ds_store", 170000, include}, // exact name, as strcmp
		{"x.DS_Store", 170000, include},
		{"16384", 170000, include},
	} {
		if got, _ := excludeForVersion(tt.name, tt.version); got != tt.want {
			t.Errorf("excludeForVersion(%q, %d) = %v, want %v", tt.name, tt.version, got, tt.want)
		}
	}
}
