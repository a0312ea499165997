package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
	"github.com/pgcloudbackup/pgcloudbackup/manifest"
)

// Formatting of values for people: sizes, durations, times, words and
// block lists. Machine output is JSON (json.go).

// humanBytes formats a byte count for people.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// sizeString prints a size the way flags take it (whole MiB as "64MiB",
// anything else in bytes), for messages that suggest a flag value.
func sizeString(n int64) string {
	if n%(1<<20) == 0 {
		return fmt.Sprintf("%dMiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}

// humanDuration is an elapsed time: milliseconds under a second, else
// tenths of a second.
func humanDuration(d time.Duration) string {
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(100 * time.Millisecond).String()
}

// humanAge prints an age in days, hours and minutes.
func humanAge(d time.Duration) string {
	if d < time.Minute {
		return d.Round(time.Second).String()
	}
	d = d.Round(time.Minute)
	days := d / (24 * time.Hour)
	d -= days * 24 * time.Hour
	s := strings.TrimSuffix(d.String(), "0s")
	if days > 0 {
		s = fmt.Sprintf("%dd%s", days, s)
	}
	return s
}

// formatTime is a time in UTC, to the second, as the tables print it.
func formatTime(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05") }

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// plural is "1 backup", "2 backups".
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// oneLine keeps a user-supplied label from breaking table rows ("-" for
// none).
func oneLine(s string) string {
	if s = failure.OneLineText(s); s == "" {
		return "-"
	}
	return s
}

// shortVersion drops a packager's suffix ("15.18 (Debian 15.18-0+deb12u1)")
// for the table; --json and show keep the whole string.
func shortVersion(v string) string {
	short, _, _ := strings.Cut(v, " ")
	return short
}

// tablespaceLabel is "base" for the main data directory, else the OID.
func tablespaceLabel(ts manifest.Tablespace) string {
	if ts.OID == 0 {
		return "base"
	}
	return fmt.Sprint(ts.OID)
}
