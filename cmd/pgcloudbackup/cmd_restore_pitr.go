package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
	"github.com/pgcloudbackup/pgcloudbackup/restore"
	"github.com/pgcloudbackup/pgcloudbackup/storage"
	"github.com/pgcloudbackup/pgcloudbackup/walarchive"
)

// pitrFlags are restore's point-in-time recovery flags.
type pitrFlags struct {
	time, lsn, xid, name, action, timeline string
	archiveMode                            string

	target restore.RecoveryTarget
	// autoFetch: the restore_command is ours (wal-fetch), not the user's.
	autoFetch bool
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
		p.autoFetch = true
	}
	return nil
}

// dropFetchForStreaming leaves our wal-fetch restore_command out of a
// standby restored from a bucket that has no WAL archive: the standby
// streams from its primary, and wal-fetch would stop it at once (an empty
// archive means a wrong bucket to wal-fetch). Reports whether it dropped it.
func dropFetchForStreaming(ctx context.Context, g *globalOptions, store *storage.Store, f *restoreFlags) (bool, error) {
	if !f.pitr.autoFetch || !f.standby {
		return false, nil
	}
	has, err := walarchive.HasArchive(ctx, store)
	if err != nil || has {
		return false, err
	}
	g.logger.Info("no WAL archive in the bucket: no restore_command written; the standby streams from its primary (give --restore-command for another archive)")
	f.restoreCommand = ""
	return true, nil
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

// pitrSettings are the recovery target and archive_mode settings for the
// restored postgresql.auto.conf.
func pitrSettings(f *restoreFlags) []restore.Setting {
	settings := f.pitr.target.Settings()
	if f.pitr.archiveMode == "off" {
		settings = append(settings, restore.Setting{Name: "archive_mode", Value: "off"})
	}
	return settings
}
