package main

import (
	"testing"
	"time"
)

func TestParseWALLag(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want walLagLimit
		ok   bool
	}{
		{"16", walLagLimit{segments: 16}, true},
		{"0", walLagLimit{}, true},
		{"1h", walLagLimit{age: time.Hour}, true},
		{"90s", walLagLimit{age: 90 * time.Second}, true},
		{"-1", walLagLimit{}, false},
		{"0s", walLagLimit{}, false},
		{"-5m", walLagLimit{}, false},
		{"soon", walLagLimit{}, false},
		{"", walLagLimit{}, false},
	} {
		got, err := parseWALLag(tc.in)
		if (err == nil) != tc.ok || tc.ok && got != tc.want {
			t.Errorf("parseWALLag(%q) = %+v, %v; want %+v ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
		if err != nil && exitCodeFor(err) != exitUsage {
			t.Errorf("parseWALLag(%q): exit %d, want usage", tc.in, exitCodeFor(err))
		}
	}
}
