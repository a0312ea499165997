package catalog

import (
	"strings"
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	// What Go parses must parse the same; days and weeks are multiples of
	// Go's hours.
	for _, s := range []string{"0", "0s", "36h", "90m", "1h30m", "1.5h", "500ms", "10us", "10µs", "2h45m30.5s"} {
		want, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("time.ParseDuration(%q): %v", s, err)
		}
		if got, err := ParseDuration(s); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	hours := func(s string) time.Duration {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	for s, want := range map[string]time.Duration{
		"7d":      7 * hours("24h"),
		"1d":      hours("24h"),
		"2w":      14 * hours("24h"),
		"1.5d":    hours("36h"),
		"1w3d12h": hours("252h"),
		"1d30m":   hours("24h30m"),
		" 7d ":    7 * hours("24h"),
	} {
		if got, err := ParseDuration(s); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	for _, s := range []string{"", "d", "7", "-1d", "+1d", "7D", "7days", "1y", "1mo", "7d-1h", "1..2d", "1 d", "200000w"} {
		if d, err := ParseDuration(s); err == nil {
			t.Errorf("ParseDuration(%q) = %v, want an error", s, d)
		} else if !strings.Contains(err.Error(), "duration") {
			t.Errorf("ParseDuration(%q): error %q does not say what was wrong", s, err)
		}
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                                 "0s",
		400 * time.Millisecond:            "0s",
		42 * time.Second:                  "42s",
		90 * time.Second:                  "1m30s",
		36 * time.Hour:                    "1d12h",
		3*24*time.Hour + 5*time.Minute:    "3d",
		10*24*time.Hour + 4*time.Hour + 1: "10d4h",
		-2 * time.Hour:                    "-2h",
	} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%v) = %q, want %q", d, got, want)
		}
	}
	// What it writes reads back, to the precision it writes.
	for _, d := range []time.Duration{time.Second, 59 * time.Minute, 36 * time.Hour, 9 * 24 * time.Hour} {
		if back, err := ParseDuration(FormatDuration(d)); err != nil || back != d {
			t.Errorf("round trip of %v: %v, %v", d, back, err)
		}
	}
}
