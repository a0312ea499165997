package main

import (
	"testing"
	"time"
)

// The formatters people read in every command's output; pinned so that
// gathering them in one file changed nothing.
func TestFormatters(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{humanBytes(0), "0 B"},
		{humanBytes(1023), "1023 B"},
		{humanBytes(1536), "1.5 KiB"},
		{humanBytes(5 << 30), "5.0 GiB"},
		{sizeString(64 << 20), "64MiB"},
		{sizeString(1000), "1000 bytes"},
		{humanDuration(1234567 * time.Microsecond), "1.2s"},
		{humanDuration(12345 * time.Microsecond), "12ms"},
		{humanAge(42 * time.Second), "42s"},
		{humanAge(26*time.Hour + 5*time.Minute + 20*time.Second), "1d2h5m"},
		{humanAge(3 * time.Hour), "3h0m"},
		{formatTime(time.Date(2026, 11, 24, 18, 30, 26, 0, time.FixedZone("x", 3600))), "2026-11-24 17:30:26"},
		{oneLine(""), "-"},
		{oneLine("a\nb\tc\x7f"), "a b c"},
		{shortVersion("15.18 (Debian 15.18-0+deb12u1)"), "15.18"},
		{plural(1, "backup", "backups"), "1 backup"},
		{plural(0, "backup", "backups"), "0 backups"},
		{yesNo(true) + onOff(false), "yesoff"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}
