package main

import (
	"context"
	"fmt"
	"runtime"
	"time"

	"github.com/spf13/cobra"

	"github.com/pgcloudbackup/pgcloudbackup/internal/progress"
	"github.com/pgcloudbackup/pgcloudbackup/restore"
	"github.com/pgcloudbackup/pgcloudbackup/walarchive"
)

func newVerifyCommand(g *globalOptions) *cobra.Command {
	var jobs int
	var showProgress, checkWAL bool
	cmd := &cobra.Command{
		Use:   "verify <id|latest>",
		Short: "Check a backup end to end without restoring it",
		Long: `Download every object of a backup, check its size and SHA-256 against
manifest.json, decompress it and check every file's size and CRC32C against
backup_manifest, without writing a data directory. Every damaged or missing
object is reported by name, and so is everything a restore would refuse about
the backup itself (tablespace locations, members outside their place, sizes
that disagree with backup_manifest); the exit code is 1 when anything is wrong.

It also says whether the backup restores on its own (it holds its WAL) or
needs a WAL archive (taken with --no-wal, or while the server archived its
WAL). A backup without WAL taken while the server did not archive its WAL
can be restored by nothing: verify fails it.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkJobs(jobs); err != nil {
				return err
			}
			return runVerify(cmd.Context(), g, args[0], jobs, showProgress, checkWAL)
		},
	}
	cmd.Flags().IntVarP(&jobs, "jobs", "j", runtime.NumCPU(), "objects checked at once")
	cmd.Flags().BoolVarP(&showProgress, "progress", "P", false, "show progress")
	cmd.Flags().BoolVar(&checkWAL, "wal", false, "also check that the archived WAL from the backup onward is contiguous (onto the newest timeline that branched off after the backup, as a restore follows), and name the first gap")
	return cmd
}

func runVerify(ctx context.Context, g *globalOptions, ref string, jobs int, showProgress, checkWAL bool) error {
	store, e, err := findBackup(ctx, g, ref)
	if err != nil {
		if ctx.Err() != nil {
			return interruptedError("verify", ctx)
		}
		return err
	}
	defer store.Close()
	counter := &progress.Counter{}
	stop := startProgress(g, counter, showProgress)
	began := time.Now()
	rep, err := restore.Verify(ctx, store, e.Manifest, restore.VerifyOptions{Jobs: jobs, Progress: counter, Logger: g.logger})
	stop()
	if err != nil && ctx.Err() != nil {
		return interruptedError("verify", ctx)
	}
	var window *walarchive.Window
	var walErr error
	if checkWAL && err == nil {
		window, walErr = checkBackupWAL(ctx, store, e.Manifest)
	}
	if rep != nil {
		for _, p := range rep.Problems {
			g.logger.Error("verification problem", "backup", rep.ID, "problem", p)
		}
		if g.json && (err == nil || len(rep.Problems) > 0) {
			status := "ok"
			if !rep.OK() {
				status = "damaged"
				if e.Manifest.Unrestorable() && len(rep.Problems) == 1 {
					status = "unrestorable"
				}
			}
			out := map[string]any{"status": status, "report": rep}
			if window != nil {
				out["wal"] = window
			}
			writeJSON(g.stdout, out)
		} else if err == nil {
			fmt.Fprintf(g.stdout, "backup %s verified: %d objects, %d files, %s of data in %s\n",
				rep.ID, rep.Objects, rep.Files, humanBytes(rep.Bytes), humanDuration(time.Since(began)))
			if rep.NeedsWALArchive {
				fmt.Fprintf(g.stdout, "backup %s holds no WAL: it needs a WAL archive to restore\n", rep.ID)
			} else {
				fmt.Fprintf(g.stdout, "backup %s holds its WAL: it restores without a WAL archive\n", rep.ID)
			}
			printWindow(g.stdout, window)
		}
	}
	if err == nil {
		err = walErr
	}
	return err
}
