package main

import (
	"fmt"
	"strconv"
	"strings"
)

// checkJobs bounds --jobs: each job holds an archive part (and its upload
// buffers) in memory.
func checkJobs(n int) error {
	if n < 1 || n > 64 {
		return usageError("--jobs must be between 1 and 64, not %d", n)
	}
	return nil
}

// parseRate parses --max-rate as pg_basebackup does: kilobytes per second,
// an optional suffix k (no effect) or M (megabytes), from 32 kB/s to
// 1024 MB/s. It returns bytes per second (0 when empty: unlimited).
func parseRate(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	num, mult := s, int64(1024)
	switch {
	case strings.HasSuffix(s, "M"):
		num, mult = strings.TrimSuffix(s, "M"), 1024*1024
	case strings.HasSuffix(s, "k"):
		num = strings.TrimSuffix(s, "k")
	}
	v, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
	if err != nil || v <= 0 {
		return 0, usageError("--max-rate %q: want a positive number of kB/s, optionally with suffix k or M", s)
	}
	rate := v * mult
	if rate < 32*1024 || rate > 1024*1024*1024 {
		return 0, usageError("--max-rate %q is out of range: 32k to 1024M", s)
	}
	return rate, nil
}

// parseSize parses a byte size such as "16MiB", "16M", "512KiB" or "1048576"
// (binary units). Empty means 0.
func parseSize(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	t := strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   int64
	}{
		{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
		{"GB", 1 << 30}, {"MB", 1 << 20}, {"KB", 1 << 10}, {"kB", 1 << 10},
		{"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"k", 1 << 10}, {"B", 1},
	}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	v, err := strconv.ParseInt(t, 10, 64)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("%q is not a size (examples: 16MiB, 512KiB)", s)
	}
	return v * mult, nil
}
