package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"runtime/metrics"
	"runtime/pprof"
	"sync"
	"time"
)

// memProfileEnv names a file that receives a heap profile taken when the
// Go runtime's memory was at its peak (a diagnostic for scripts/bench.sh
// and memory work, not a user feature). At exit a line on stderr gives the
// peaks that runtime/metrics saw.
const memProfileEnv = "PGCLOUDBACKUP_MEMPROFILE"

// startMemProfile samples runtime/metrics every 10 ms and, each time the
// runtime's total memory grows by 5% past its peak, replaces the profile.
// The returned stop writes the last peak profile and the summary line.
func startMemProfile(stderr io.Writer) (stop func()) {
	path := os.Getenv(memProfileEnv)
	if path == "" {
		return func() {}
	}
	samples := []metrics.Sample{
		{Name: "/memory/classes/total:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/gc/cycles/total:gc-cycles"},
	}
	var (
		mu                  sync.Mutex
		peakTotal, peakHeap uint64
		prof                bytes.Buffer
	)
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
			metrics.Read(samples)
			total, heap := samples[0].Value.Uint64(), samples[1].Value.Uint64()
			mu.Lock()
			peakHeap = max(peakHeap, heap)
			if total > peakTotal+peakTotal/20 {
				peakTotal = total
				prof.Reset()
				_ = pprof.Lookup("heap").WriteTo(&prof, 0)
			}
			peakTotal = max(peakTotal, total)
			mu.Unlock()
		}
	}()
	return func() {
		close(done)
		wg.Wait()
		metrics.Read(samples)
		if err := os.WriteFile(path, prof.Bytes(), 0o600); err != nil {
			fmt.Fprintf(stderr, "memprofile: %v\n", err)
		}
		fmt.Fprintf(stderr, "memprofile: peak runtime total %d MiB, peak heap objects %d MiB, %d GC cycles\n",
			peakTotal>>20, peakHeap>>20, samples[2].Value.Uint64())
	}
}
