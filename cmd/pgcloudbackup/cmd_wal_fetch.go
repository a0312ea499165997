package main

import (
	"context"
	"errors"
	"time"

	"github.com/spf13/cobra"

	"github.com/pgcloudbackup/pgcloudbackup/storage"
	"github.com/pgcloudbackup/pgcloudbackup/walarchive"
)

type walFetchFlags struct {
	attempts int
	prefetch int
}

func newWALFetchCommand(g *globalOptions) *cobra.Command {
	f := &walFetchFlags{}
	cmd := &cobra.Command{
		Use:   "wal-fetch <name> <path>",
		Short: "Fetch one WAL file from the bucket (restore_command)",
		Long: `Fetch one archived WAL file into path, for
restore_command = 'pgcloudbackup wal-fetch %f %p'.

The file is checked against its recorded SHA-256 (and a segment against its
page header) and renamed into place only when complete.

Exit codes: 0 fetched; 1 the file is not in the archive (quietly: that is how
recovery finds the end of the archive); 128 the file could not be fetched
after retries (store unreachable, access denied, damaged object, bad
arguments) — PostgreSQL then stops recovery rather than promote early.`,
		Args: exactArgs(2, "the WAL file name (%f) and the destination path (%p)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runWALFetch(cmd.Context(), g, f, args[0], args[1])
		},
	}
	cmd.Flags().IntVar(&f.attempts, "attempts", 3, "tries before a failing download stops recovery")
	cmd.Flags().IntVar(&f.prefetch, "prefetch", 8, "download up to N following segments in the background into pg_wal/"+walarchive.SpoolDirName+" (0: off)")
	return cmd
}

func runWALFetch(ctx context.Context, g *globalOptions, f *walFetchFlags, name, path string) error {
	if f.attempts < 1 || f.attempts > 100 {
		return usageError("--attempts must be between 1 and 100")
	}
	if f.prefetch < 0 || f.prefetch > 64 {
		return usageError("--prefetch must be between 0 and 64")
	}
	if err := walarchive.CheckName(name); err != nil {
		return err
	}
	if g.bucket == "" {
		return usageError("no bucket: give --bucket URL or set PGCLOUDBACKUP_BUCKET")
	}
	// Short request retries inside each of our attempts: recovery waits
	// on this call, and a store that stays down must stop it in seconds.
	store, err := storage.Open(ctx, g.bucket, storage.Options{Logger: g.logger, Retry: storage.Retry{MaxAttempts: 2, MaxBackoff: 2 * time.Second}})
	if err != nil {
		return err
	}
	defer store.Close()
	opts := walarchive.FetchOptions{Attempts: f.attempts, Logger: g.logger}
	if f.prefetch > 0 {
		opts.Spool = walarchive.SpoolDir(path)
	}
	err = walarchive.Fetch(ctx, store, name, path, opts)
	if errors.Is(err, walarchive.ErrNotArchived) {
		g.logger.Debug("WAL file not in the archive", "file", name)
	}
	if err == nil && f.prefetch > 0 {
		startPrefetch(g, name, path, f.prefetch)
	}
	return err
}
