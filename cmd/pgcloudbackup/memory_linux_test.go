package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestReadOnlyExeMappings: only the executable's private read-only
// mappings without anonymous pages are released; its writable data, other
// files, and a read-only mapping with written (anonymous) pages are not.
func TestReadOnlyExeMappings(t *testing.T) {
	smaps := `00400000-01b02000 r-xp 00000000 fe:00 42                                 /usr/bin/pgcloudbackup
Size:              23560 kB
Rss:               18000 kB
Anonymous:             0 kB
Swap:                  0 kB
01b02000-0368e000 r--p 01702000 fe:00 42                                 /usr/bin/pgcloudbackup
Size:              27000 kB
Anonymous:             0 kB
Swap:                  0 kB
0368e000-03779000 rw-p 0328e000 fe:00 42                                 /usr/bin/pgcloudbackup
Anonymous:           300 kB
03800000-03900000 r--p 03300000 fe:00 42                                 /usr/bin/pgcloudbackup
Anonymous:             4 kB
7f00000000-7f00100000 r-xp 00000000 fe:00 43                             /usr/lib/libc.so.6
Anonymous:             0 kB
7f00200000-7f00300000 r-xp 00000000 fe:01 42                             /other/device/same/inode
Anonymous:             0 kB
7f00400000-7f00500000 rw-p 00000000 00:00 0
Anonymous:          1024 kB
`
	got := readOnlyExeMappings([]byte(smaps), "fe:00", 42)
	want := []mapping{{0x400000, 0x1b02000}, {0x1b02000, 0x368e000}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %x, want %x", got, want)
	}
}

// TestReleaseStartupPages: after the release, this test binary's own code
// and read-only data are (nearly) no longer resident, and the program goes
// on running (the pages come back on use).
func TestReleaseStartupPages(t *testing.T) {
	before := exeRSS(t)
	if before < 1<<20 {
		t.Skipf("only %d KiB of the executable resident: nothing to show", before>>10)
	}
	releaseStartupPages()
	after := exeRSS(t)
	t.Logf("executable's read-only pages resident: %d KiB before, %d KiB after", before>>10, after>>10)
	if after > before/2 {
		t.Errorf("%d KiB resident after the release, %d KiB before: not released", after>>10, before>>10)
	}
	if got := strings.Repeat("x", 3); got != "xxx" { // code runs again after the release
		t.Fatal(got)
	}
}

// exeRSS returns the resident bytes of this executable's read-only mappings.
func exeRSS(t *testing.T) int64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/exe", &st); err != nil {
		t.Fatal(err)
	}
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	dev := fmt.Sprintf("%02x:%02x", unix.Major(st.Dev), unix.Minor(st.Dev))
	var total int64
	in := false
	for _, line := range strings.Split(string(smaps), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if !strings.HasSuffix(f[0], ":") {
			in = len(f) >= 6 && (f[1] == "r-xp" || f[1] == "r--p") && f[3] == dev && f[4] == strconv.FormatUint(st.Ino, 10)
			continue
		}
		if in && f[0] == "Rss:" {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			total += n << 10
		}
	}
	if total == 0 {
		t.Fatal("no resident read-only mapping of the executable found in /proc/self/smaps")
	}
	return total
}

// TestReadOnlyExeMappingsNeedsProof: a mapping is released only when its
// smaps entry shows it holds no anonymous page, resident or swapped out.
// A written page of a read-only mapping that was swapped out counts under
// Swap, not Anonymous: MADV_DONTNEED would throw it away and the file's
// bytes would come back in its place. An entry without the counters (a
// truncated read, a kernel that does not print them) proves nothing.
func TestReadOnlyExeMappingsNeedsProof(t *testing.T) {
	smaps := `00400000-01b02000 r-xp 00000000 fe:00 42                                 /usr/bin/pgcloudbackup
Rss:               18000 kB
Anonymous:             0 kB
Swap:                  0 kB
01b02000-0368e000 r--p 01702000 fe:00 42                                 /usr/bin/pgcloudbackup
Rss:                   0 kB
Anonymous:             0 kB
Swap:                  8 kB
03800000-03900000 r--p 03300000 fe:00 42                                 /usr/bin/pgcloudbackup
Rss:                 100 kB
03900000-03a00000 r--p 03400000 fe:00 42                                 /usr/bin/pgcloudbackup
Anonymous:             0 kB
`
	got := readOnlyExeMappings([]byte(smaps), "fe:00", 42)
	want := []mapping{{0x400000, 0x1b02000}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %x, want %x", got, want)
	}
}
