package pgtest

import (
	"strconv"
	"testing"
)

// TestMajors starts a cluster of every supported major (and the refused old
// one) and checks that it runs the version asked for with data checksums on;
// on 18, whose initdb enables them by default, NoChecksums turns them off.
func TestMajors(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server per major")
	}
	for _, major := range append([]int{OldMajor}, Majors...) {
		t.Run(strconv.Itoa(major), func(t *testing.T) {
			t.Parallel()
			modes := []bool{false}
			if major >= 18 {
				modes = append(modes, true)
			}
			for _, noSums := range modes {
				c := New(t, Options{Major: major, NoChecksums: noSums})
				if c.Major != major || c.Version() != major {
					t.Fatalf("asked for %d: binaries %d, server %d", major, c.Major, c.Version())
				}
				want := "on"
				if noSums {
					want = "off"
				}
				if got := c.QueryString("postgres", "SHOW data_checksums"); got != want {
					t.Errorf("NoChecksums=%v: data_checksums = %s, want %s", noSums, got, want)
				}
				c.Stop()
			}
		})
	}
}
