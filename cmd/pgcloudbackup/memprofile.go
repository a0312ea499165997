package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"time"
)

// memProfileEnv names a file that receives a heap profile taken when the
// Go runtime's memory was at its peak (a diagnostic for scripts/bench.sh
// and memory work, not a user feature). At exit two lines on stderr give the
// peaks that runtime/metrics and /proc/self/status saw.
const memProfileEnv = "PGCLOUDBACKUP_MEMPROFILE"

// memClasses are the runtime/metrics memory classes the summary shows, by
// short name.
var memClasses = []struct{ short, name string }{
	{"objects", "/memory/classes/heap/objects:bytes"},
	{"heap-free", "/memory/classes/heap/free:bytes"},
	{"heap-unused", "/memory/classes/heap/unused:bytes"},
	{"stacks", "/memory/classes/heap/stacks:bytes"},
	{"metadata", "/memory/classes/metadata/other:bytes"},
	{"mspan", "/memory/classes/metadata/mspan/inuse:bytes"},
	{"other", "/memory/classes/other:bytes"},
	{"profiling", "/memory/classes/profiling/buckets:bytes"},
}

// startMemProfile samples runtime/metrics every 10 ms and, each time the
// runtime's memory not released to the OS grows by 5% past its peak,
// replaces the profile. The returned stop writes the last peak profile (and
// one taken at exit, to the same path plus ".exit"), and
// the summary: the runtime's classes at their peak, and the process's peak
// resident set split into anonymous and file-backed pages (the executable's
// code and data mapped from its file).
func startMemProfile(stderr io.Writer) (stop func()) {
	path := os.Getenv(memProfileEnv)
	if path == "" {
		return func() {}
	}
	samples := []metrics.Sample{
		{Name: "/memory/classes/total:bytes"},
		{Name: "/memory/classes/heap/released:bytes"},
		{Name: "/gc/cycles/total:gc-cycles"},
		{Name: "/gc/heap/goal:bytes"},
	}
	for _, c := range memClasses {
		samples = append(samples, metrics.Sample{Name: c.name})
	}
	var (
		mu        sync.Mutex
		peakHeld  uint64   // total − released
		peakClass []uint64 // memClasses at peakHeld
		peakGoal  uint64
		peakRSS   [2]uint64 // anon, file at the highest anon+file
		prof      bytes.Buffer
	)
	sample := func() {
		metrics.Read(samples)
		held := samples[0].Value.Uint64() - samples[1].Value.Uint64()
		anon, file := procRSS()
		mu.Lock()
		defer mu.Unlock()
		peakGoal = max(peakGoal, samples[3].Value.Uint64())
		if anon+file > peakRSS[0]+peakRSS[1] {
			peakRSS = [2]uint64{anon, file}
		}
		if held > peakHeld {
			if held > peakHeld+peakHeld/20 {
				prof.Reset()
				_ = pprof.Lookup("heap").WriteTo(&prof, 0)
			}
			peakHeld = held
			peakClass = peakClass[:0]
			for _, s := range samples[4:] {
				peakClass = append(peakClass, s.Value.Uint64())
			}
		}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			sample()
		}
	}()
	return func() {
		close(done)
		wg.Wait()
		sample()
		if err := os.WriteFile(path, prof.Bytes(), 0o600); err != nil {
			fmt.Fprintf(stderr, "memprofile: %v\n", err)
		}
		// At exit too: its alloc_space shows what the whole run allocated.
		if f, err := os.OpenFile(path+".exit", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600); err == nil {
			_ = pprof.Lookup("heap").WriteTo(f, 0)
			_ = f.Close()
		}
		var classes strings.Builder
		for i, c := range memClasses {
			if i < len(peakClass) {
				fmt.Fprintf(&classes, " %s %.1f", c.short, float64(peakClass[i])/(1<<20))
			}
		}
		fmt.Fprintf(stderr, "memprofile: peak runtime memory held %.1f MiB (%s), peak heap goal %.1f MiB, %d GC cycles\n",
			float64(peakHeld)/(1<<20), strings.TrimSpace(classes.String()), float64(peakGoal)/(1<<20), samples[2].Value.Uint64())
		fmt.Fprintf(stderr, "memprofile: peak RSS seen %.1f MiB: anonymous %.1f MiB, file-backed %.1f MiB\n",
			float64(peakRSS[0]+peakRSS[1])/(1<<20), float64(peakRSS[0])/(1<<20), float64(peakRSS[1])/(1<<20))
	}
}

// procRSS returns the process's resident anonymous and file-backed bytes
// (/proc/self/status; zeros where there is none).
func procRSS() (anon, file uint64) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "RssAnon" && k != "RssFile") {
			continue
		}
		n, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if k == "RssAnon" {
			anon = n << 10
		} else {
			file = n << 10
		}
	}
	return anon, file
}
