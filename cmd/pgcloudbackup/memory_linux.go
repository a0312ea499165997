package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// releaseStartupPages unmaps from this process the pages of its own
// executable's read-only mappings (code, read-only data, the function table)
// that are resident, so that only what the run itself uses comes back.
//
// Why: package initialisation runs the init code of every linked SDK (AWS,
// GCS with gRPC and its xDS protos, Azure) and touches their tables; the
// kernel maps 64 KiB of the file around every page touched (fault-around).
// Measured: ~30 MiB of the executable resident after start, of which a
// backup to S3 uses about 22 MiB again; the other ~10 MiB would sit in the
// process's resident set for the whole run. The pages stay in the page
// cache (clean, shared with any other process that maps the binary): this
// only drops our page-table entries, and a page used again is mapped back by
// a minor fault. Nothing is lost: a private mapping that was never writable
// holds only the file's bytes. A mapping with anonymous pages (written
// before being made read-only, as a dynamic loader's relocations are) is
// left alone.
func releaseStartupPages() {
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/exe", &st); err != nil {
		return
	}
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		return
	}
	dev := fmt.Sprintf("%02x:%02x", unix.Major(st.Dev), unix.Minor(st.Dev))
	for _, m := range readOnlyExeMappings(smaps, dev, st.Ino) {
		// The raw call: these addresses are not Go memory, so no []byte.
		_, _, _ = unix.Syscall(unix.SYS_MADVISE, m.start, m.end-m.start, unix.MADV_DONTNEED)
	}
}

type mapping struct{ start, end uintptr }

// readOnlyExeMappings returns, from /proc/self/smaps, the private mappings
// of the file dev ("fd:01", as smaps shows it) and inode ino that are not
// writable and provably hold no anonymous pages: their entry says
// "Anonymous: 0 kB" (none resident) and "Swap: 0 kB" (none swapped out: a
// written page that was swapped out counts there, and MADV_DONTNEED would
// replace it with the file's bytes). An entry without both lines, or smaps
// that cannot be read to its end, releases nothing.
func readOnlyExeMappings(smaps []byte, dev string, ino uint64) []mapping {
	var out []mapping
	var cur *mapping
	var noAnon, noSwap bool
	done := func() {
		if cur != nil && noAnon && noSwap {
			out = append(out, *cur)
		}
		cur = nil
	}
	sc := bufio.NewScanner(bytes.NewReader(smaps))
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if !strings.HasSuffix(f[0], ":") { // a mapping's header line
			done()
			// start-end perms offset dev inode path
			if len(f) < 6 || (f[1] != "r-xp" && f[1] != "r--p") {
				continue
			}
			if n, err := strconv.ParseUint(f[4], 10, 64); err != nil || n != ino || n == 0 || f[3] != dev {
				continue
			}
			lo, hi, ok := strings.Cut(f[0], "-")
			if !ok {
				continue
			}
			a, err1 := strconv.ParseUint(lo, 16, 64)
			b, err2 := strconv.ParseUint(hi, 16, 64)
			if err1 != nil || err2 != nil || b <= a {
				continue
			}
			cur, noAnon, noSwap = &mapping{uintptr(a), uintptr(b)}, false, false
			continue
		}
		if cur == nil {
			continue
		}
		zero := len(f) >= 2 && f[1] == "0"
		switch f[0] {
		case "Anonymous:":
			noAnon = zero
		case "Swap:":
			noSwap = zero
		}
	}
	if sc.Err() != nil {
		return nil
	}
	done()
	return out
}
