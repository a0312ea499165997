package main

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// checkJobs bounds --jobs: each job holds an archive volume (and its upload
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
	if errors.Is(err, strconv.ErrRange) && !strings.HasPrefix(strings.TrimSpace(num), "-") {
		return 0, usageError("--max-rate %q is out of range: 32k to 1024M", s)
	}
	if err != nil || v <= 0 {
		return 0, usageError("--max-rate %q: want a positive number of kB/s, optionally with suffix k or M", s)
	}
	// Compare before multiplying: v * mult could wrap around int64 and land
	// inside the range.
	if v < 32*1024/mult || v > 1024*1024*1024/mult || v*mult < 32*1024 {
		return 0, usageError("--max-rate %q is out of range: 32k to 1024M", s)
	}
	return v * mult, nil
}

// Bounds of --part-size: the largest part any backend takes (S3's 5 GiB);
// each backend's own minimum and maximum are checked by the uploader.
const (
	minPartSizeFlag = 1
	maxPartSizeFlag = 5 << 30
)

// parsePartSize parses --part-size within its range.
func parsePartSize(s string) (int64, error) {
	v, err := parseSize(s)
	if errors.Is(err, errSizeRange) || err == nil && s != "" && (v < minPartSizeFlag || v > maxPartSizeFlag) {
		return 0, usageError("--part-size %q is out of range: 1 to 5GiB", s)
	}
	if err != nil {
		return 0, usageError("--part-size: %v", err)
	}
	return v, nil
}

// errSizeRange: a size too large for an int64 of bytes.
var errSizeRange = errors.New("size out of range")

// parseSize parses a byte size such as "16MiB", "16M", "512KiB" or "1048576"
// (binary units). Empty means 0. A size past 2^63-1 bytes is errSizeRange
// (never a wrapped-around value).
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
	if errors.Is(err, strconv.ErrRange) && !strings.HasPrefix(t, "-") {
		return 0, errSizeRange
	}
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("%q is not a size (examples: 16MiB, 512KiB)", s)
	}
	if v > math.MaxInt64/mult {
		return 0, errSizeRange
	}
	return v * mult, nil
}
