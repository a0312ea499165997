package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/pgcloudbackup/pgcloudbackup/walarchive"
)

func newWALPushCommand(g *globalOptions) *cobra.Command {
	var ahead int
	cmd := &cobra.Command{
		Use:   "wal-push <path>",
		Short: "Archive one WAL file into the bucket (archive_command)",
		Long: `Archive one WAL file (segment, .partial, .backup or .history) into the bucket,
for archive_command = 'pgcloudbackup wal-push %p'.

The file is compressed (zstd) with its SHA-256 recorded, and the command exits
0 only once the object is committed. An archived name is never overwritten: if
the same content is archived already (a retry after a crash) the command
succeeds; different content under the same name fails.

Settings (the bucket) usually come from the configuration file
(--config, PGCLOUDBACKUP_CONFIG, default /etc/pgcloudbackup.conf), since the
server runs the command with its own environment.

With --push-ahead N the call also pushes, in parallel, up to N
further segments the server has marked ready (pg_wal/archive_status/*.ready);
the server's later calls for them then return after one lookup.`,
		Args: exactArgs(1, "the WAL file's path (%p)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if ahead < 0 || ahead > 64 {
				return usageError("--push-ahead must be between 0 and 64")
			}
			return runWALPush(cmd.Context(), g, args[0], ahead)
		},
	}
	cmd.Flags().IntVar(&ahead, "push-ahead", 0, "also push up to N further ready segments in parallel (0: off; helps when the store is far away, costs CPU)")
	return cmd
}

func runWALPush(ctx context.Context, g *globalOptions, path string, ahead int) error {
	store, err := g.openStore(ctx)
	if err != nil {
		return err
	}
	defer store.Close()
	res, err := walarchive.PushWithAhead(ctx, store, path, walarchive.ReadyAhead(path, ahead), g.logger)
	if err != nil {
		return err
	}
	if res.AlreadyArchived {
		g.logger.Debug("WAL file already archived with the same content", "file", res.Name)
	} else {
		g.logger.Debug("WAL file archived", "file", res.Name, "size", res.Size, "stored", res.Stored)
	}
	if g.json {
		writeJSON(g.stdout, map[string]any{"status": "archived", "wal": res})
	} else if g.verbose {
		fmt.Fprintf(g.stdout, "archived %s (%s, %s stored)\n", res.Name, humanBytes(res.Size), humanBytes(res.Stored))
	}
	return nil
}
