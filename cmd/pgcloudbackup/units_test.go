package main

import (
	"strings"
	"testing"

	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
)

func isUsage(err error) bool {
	return err != nil && failure.KindOf(err) == failure.Usage
}

// TestSizeFlagsNeverWrap: values whose byte count overflows int64 used to
// wrap around into the accepted range (17592186044417M throttled to about
// 1 MiB/s; 17179869185G became 1 GiB; 9223372036854775807GiB went
// negative). Each is a usage error naming the flag and its range.
func TestSizeFlagsNeverWrap(t *testing.T) {
	for _, s := range []string{"17592186044417M", "9223372036854775807", "9223372036854775808", "99999999999999999999M", "4194305k", "1025M", "31k", "31"} {
		_, err := parseRate(s)
		if err == nil || !isUsage(err) || !strings.Contains(err.Error(), "--max-rate") || !strings.Contains(err.Error(), "32k to 1024M") {
			t.Errorf("--max-rate %s: %v, want a usage error naming the range", s, err)
		}
	}
	for s, want := range map[string]int64{"32": 32 << 10, "32k": 32 << 10, "1024M": 1 << 30, "1048576": 1 << 30, "8M": 8 << 20} {
		if got, err := parseRate(s); err != nil || got != want {
			t.Errorf("--max-rate %s = %d, %v; want %d", s, got, err, want)
		}
	}
	for _, s := range []string{"17179869185G", "9223372036854775807GiB", "9223372036854775808", "8589934592GiB", "5121MiB", "6GiB"} {
		_, err := parsePartSize(s)
		if err == nil || !isUsage(err) || !strings.Contains(err.Error(), "--part-size") || !strings.Contains(err.Error(), "1 to 5GiB") {
			t.Errorf("--part-size %s: %v, want a usage error naming the range", s, err)
		}
	}
	for s, want := range map[string]int64{"": 0, "5MiB": 5 << 20, "5GiB": 5 << 30, "5120M": 5 << 30, "16M": 16 << 20, "1048576": 1 << 20} {
		if got, err := parsePartSize(s); err != nil || got != want {
			t.Errorf("--part-size %q = %d, %v; want %d", s, got, err, want)
		}
	}
	for _, s := range []string{"-5MiB", "0", "abc", "5XB"} {
		if _, err := parsePartSize(s); err == nil || !isUsage(err) {
			t.Errorf("--part-size %q: %v, want a usage error", s, err)
		}
	}
}
