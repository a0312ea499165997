package restore

import (
	"strconv"
	"strings"
	"time"

	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
	"github.com/pgcloudbackup/pgcloudbackup/internal/pg/wal"
)

// RecoveryTarget is a point-in-time recovery target: at most one of Time,
// LSN, XID and Name (PostgreSQL refuses more), what to do on reaching it,
// and which timeline to follow.
type RecoveryTarget struct {
	Time     time.Time // zero: none
	LSN      string    // "X/X"
	XID      string    // a transaction id (decimal)
	Name     string    // a restore point made with pg_create_restore_point
	Action   string    // "" (PostgreSQL's default, pause), promote, pause, shutdown
	Timeline string    // "" (PostgreSQL's default, latest), latest, current, or a number
}

// IsSet reports whether a target point was given.
func (t RecoveryTarget) IsSet() bool {
	return !t.Time.IsZero() || t.LSN != "" || t.XID != "" || t.Name != ""
}

// Validate checks the target the way PostgreSQL will, so that a restore
// with a bad target is refused before anything is written.
func (t RecoveryTarget) Validate() error {
	n := 0
	for _, set := range []bool{!t.Time.IsZero(), t.LSN != "", t.XID != "", t.Name != ""} {
		if set {
			n++
		}
	}
	if n > 1 {
		return failure.New(failure.Usage, "give at most one of --target-time, --target-lsn, --target-xid and --target-name")
	}
	if t.LSN != "" {
		if _, err := wal.ParseLSN(t.LSN); err != nil {
			return failure.New(failure.Usage, "--target-lsn: %v", err)
		}
	}
	if t.XID != "" {
		if v, err := strconv.ParseUint(t.XID, 10, 64); err != nil || v < 3 {
			return failure.New(failure.Usage, "--target-xid %q: want a transaction id (a number from 3)", t.XID)
		}
	}
	if t.Name != "" && (len(t.Name) >= 64 || strings.ContainsFunc(t.Name, func(r rune) bool { return r < 0x20 || r == 0x7f })) {
		return failure.New(failure.Usage, "--target-name %q: want a restore point name under 64 bytes without control characters", t.Name)
	}
	switch t.Action {
	case "", "promote", "pause", "shutdown":
	default:
		return failure.New(failure.Usage, "--target-action %q: want promote, pause or shutdown", t.Action)
	}
	if t.Action != "" && !t.IsSet() {
		return failure.New(failure.Usage, "--target-action needs a target (--target-time, --target-lsn, --target-xid or --target-name)")
	}
	switch t.Timeline {
	case "", "latest", "current":
	default:
		if v, err := strconv.ParseUint(t.Timeline, 10, 32); err != nil || v == 0 {
			return failure.New(failure.Usage, "--target-timeline %q: want latest, current or a timeline number", t.Timeline)
		}
	}
	return nil
}

// Settings are the postgresql.conf settings for the target.
func (t RecoveryTarget) Settings() []Setting {
	var out []Setting
	add := func(k, v string) { out = append(out, Setting{k, v}) }
	switch {
	case !t.Time.IsZero():
		add("recovery_target_time", FormatTargetTime(t.Time))
	case t.LSN != "":
		add("recovery_target_lsn", t.LSN)
	case t.XID != "":
		add("recovery_target_xid", t.XID)
	case t.Name != "":
		add("recovery_target_name", t.Name)
	}
	if t.Action != "" {
		add("recovery_target_action", t.Action)
	}
	if t.Timeline != "" {
		add("recovery_target_timeline", t.Timeline)
	}
	return out
}

// ParseTargetTime reads a recovery target time. A time zone is required
// (an offset or Z): a restore must not depend on the restoring host's zone.
func ParseTargetTime(s string) (time.Time, error) {
	for _, layout := range []string{
		time.RFC3339Nano,
		"2006-01-02 15:04:05.999999999Z07:00",
		"2006-01-02 15:04:05.999999999-07",
		"2006-01-02T15:04:05.999999999-07",
		"2006-01-02 15:04:05.999999999Z0700",
	} {
		if t, err := time.Parse(layout, strings.TrimSpace(s)); err == nil {
			return t, nil
		}
	}
	return time.Time{}, failure.New(failure.Usage,
		"--target-time %q: want a time with its zone, such as 2026-11-29T14:02:00Z or '2026-11-29 14:02:00+01'", s)
}

// FormatTargetTime renders t as PostgreSQL reads a timestamptz, in UTC
// with microseconds (its resolution).
func FormatTargetTime(t time.Time) string {
	return t.UTC().Format("2006-01-02 15:04:05.000000") + "+00"
}

// ShellQuote quotes one word for /bin/sh, which runs restore_command.
func ShellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// FetchCommand is a restore_command running "bin wal-fetch" with args (each
// shell-quoted; % doubled, since PostgreSQL replaces %f, %p and %r in the
// command). Backslashes and line breaks are refused: restore_command is
// written as given (apart from its quotes) into postgresql.auto.conf.
func FetchCommand(bin string, args ...string) (string, error) {
	words := append([]string{bin, "wal-fetch"}, args...)
	var b strings.Builder
	for _, w := range words {
		if strings.ContainsAny(w, "\\\n\r\x00") {
			return "", failure.New(failure.Usage, "cannot write restore_command: %q holds a backslash or line break", w)
		}
		b.WriteString(strings.ReplaceAll(ShellQuote(w), "%", "%%"))
		b.WriteByte(' ')
	}
	b.WriteString("%f %p")
	return b.String(), nil
}
