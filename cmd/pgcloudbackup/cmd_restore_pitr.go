package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pgcloudbackup/pgcloudbackup/catalog"
	"github.com/pgcloudbackup/pgcloudbackup/engine/wal"
	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
	"github.com/pgcloudbackup/pgcloudbackup/restore"
	"github.com/pgcloudbackup/pgcloudbackup/storage"
)

// pitrFlags are restore's point-in-time recovery flags.
type pitrFlags struct {
	time, lsn, xid, name, action, timeline string
	archiveMode                            string

	target restore.RecoveryTarget
}

func addPITRFlags(cmd *cobra.Command, p *pitrFlags) {
	fl := cmd.Flags()
	fl.StringVar(&p.time, "target-time", "", "recover up to this time (with its zone: 2026-11-29T14:02:00Z); implies --recovery")
	fl.StringVar(&p.lsn, "target-lsn", "", "recover up to this WAL location (X/X); implies --recovery")
	fl.StringVar(&p.xid, "target-xid", "", "recover up to the commit of this transaction id; implies --recovery")
	fl.StringVar(&p.name, "target-name", "", "recover up to this restore point (pg_create_restore_point); implies --recovery")
	fl.StringVar(&p.action, "target-action", "", "on reaching the target: promote, pause (PostgreSQL's default) or shutdown")
	fl.StringVar(&p.timeline, "target-timeline", "", "timeline to recover along: latest (default), current or a number")
	fl.StringVar(&p.archiveMode, "archive-mode", "off", "archive_mode of the restored server: off (never archive into the source's WAL prefix) or preserve (keep the backup's setting)")
}

// preparePITR checks the recovery flags and, when the restored server
// will recover from the archive (a target, --recovery or --standby) without
// a restore_command of the user's, makes one that runs this program's
// wal-fetch on the same bucket. It changes nothing on disk.
func preparePITR(g *globalOptions, f *restoreFlags) error {
	p := &f.pitr
	switch p.archiveMode {
	case "off", "preserve":
	default:
		return usageError("--archive-mode %q: want off or preserve", p.archiveMode)
	}
	t := restore.RecoveryTarget{LSN: p.lsn, XID: p.xid, Name: p.name, Action: p.action, Timeline: p.timeline}
	if p.time != "" {
		tt, err := restore.ParseTargetTime(p.time)
		if err != nil {
			return err
		}
		t.Time = tt
	}
	if err := t.Validate(); err != nil {
		return err
	}
	if (t.IsSet() || t.Timeline != "") && f.standby {
		return usageError("a recovery target and --standby exclude each other")
	}
	if t.IsSet() || t.Timeline != "" {
		f.recovery = true
	}
	p.target = t
	if (f.recovery || f.standby) && f.restoreCommand == "" {
		cmd, err := walFetchCommand(g)
		if err != nil {
			return err
		}
		f.restoreCommand = cmd
	}
	return nil
}

// walFetchCommand is the restore_command that fetches from this restore's
// bucket with this very binary.
func walFetchCommand(g *globalOptions) (string, error) {
	bin, err := os.Executable()
	if err == nil {
		bin, err = filepath.EvalSymlinks(bin)
	}
	if err != nil {
		return "", fmt.Errorf("find this program's path for restore_command: %w", err)
	}
	if g.bucket == "" {
		return "", usageError("no bucket: give --bucket URL or set PGCLOUDBACKUP_BUCKET")
	}
	if u, err := url.Parse(g.bucket); err != nil || u.User != nil || strings.Contains(storage.Redact(g.bucket), "REDACTED") {
		return "", failure.Wrap(failure.Usage, fmt.Errorf("the bucket URL holds parameters that may be secret; they are not written into restore_command"),
			"pass --restore-command yourself")
	}
	args := []string{"--bucket", g.bucket}
	if g.configUsed != "" && g.configUsed != defaultConfigPath {
		abs, err := filepath.Abs(g.configUsed)
		if err != nil {
			return "", err
		}
		args = append(args, "--config", abs)
	}
	return restore.FetchCommand(bin, args...)
}

// findRestoreBackup resolves ref. "latest" with a target time (or LSN)
// means the newest complete backup that ended before it; a named backup
// that ended after the target is refused (PostgreSQL could never stop
// there).
func findRestoreBackup(ctx context.Context, g *globalOptions, ref string, t restore.RecoveryTarget) (*storage.Store, *catalog.Entry, error) {
	if t.Time.IsZero() && t.LSN == "" {
		return findBackup(ctx, g, ref)
	}
	var target wal.LSN
	if t.LSN != "" {
		target, _ = wal.ParseLSN(t.LSN)
	}
	usable := func(e *catalog.Entry) bool {
		if !t.Time.IsZero() {
			return e.Manifest.StopTime.Before(t.Time)
		}
		return e.Manifest.StopLSN <= target
	}
	what := "--target-time " + restore.FormatTargetTime(t.Time)
	if t.LSN != "" {
		what = "--target-lsn " + t.LSN
	}
	if ref != catalog.Latest {
		store, e, err := findBackup(ctx, g, ref)
		if err != nil {
			return nil, nil, err
		}
		if !usable(e) {
			store.Close()
			return nil, nil, failure.Wrap(failure.Precondition,
				fmt.Errorf("backup %s ended at %s (LSN %s), after %s", e.ID, formatTime(e.Manifest.StopTime), e.Manifest.StopLSN, what),
				"choose an older backup, or restore 'latest' to pick one")
		}
		return store, e, nil
	}
	store, cat, err := openCatalog(ctx, g)
	if err != nil {
		return nil, nil, err
	}
	for i := range cat.Entries {
		e := &cat.Entries[i]
		if e.Usable() && usable(e) {
			return store, e, nil
		}
	}
	store.Close()
	return nil, nil, failure.Wrap(failure.Precondition, fmt.Errorf("no complete backup in %s ended before %s", cat.Where, what), catalogListHint)
}

const catalogListHint = "see the backups with 'pgcloudbackup list'"

// finishPITR writes the recovery target and archive_mode into the restored
// data directory.
func finishPITR(f *restoreFlags, id, dir string) error {
	lines := f.pitr.target.Settings()
	if f.pitr.archiveMode == "off" {
		lines = append(lines, "archive_mode = 'off'")
	}
	return restore.AppendSettings(dir, "recovery settings added by pgcloudbackup restore of backup "+id, lines)
}
