package main

import (
	"context"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/pgcloudbackup/pgcloudbackup/storage"
	"github.com/pgcloudbackup/pgcloudbackup/walarchive"
)

// startPrefetch starts, detached, a wal-prefetch of the segments after
// name, so that the server's next restore_command calls find them in the
// spool. wal-fetch does not wait for it: recovery goes on meanwhile. Any
// failure here only costs speed.
func startPrefetch(g *globalOptions, name, dest string, n int) {
	if !isSegment(name) {
		return
	}
	st, err := os.Stat(dest)
	if err != nil {
		return
	}
	walarchive.ResumeSpool(walarchive.SpoolDir(dest))
	names := walarchive.NextSegments(name, st.Size(), n)
	bin, err := os.Executable()
	if err != nil || len(names) == 0 {
		return
	}
	args := append([]string{"wal-prefetch", walarchive.SpoolDir(dest)}, names...)
	cmd := exec.Command(bin, args...)
	// The bucket travels in the environment, not on a command line
	// others can read; our configuration file is not read again.
	cmd.Env = append(os.Environ(), "PGCLOUDBACKUP_BUCKET="+g.bucket, configEnv+"=/dev/null")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		g.logger.Debug("could not start prefetch", "error", err)
		return
	}
	_ = cmd.Process.Release()
}

func isSegment(name string) bool { return storage.WALKind(name) == storage.WALSegment }

// newWALPrefetchCommand is wal-fetch's background helper (hidden).
func newWALPrefetchCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:    "wal-prefetch <spool dir> <segment>...",
		Hidden: true,
		Args:   cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Minute)
			defer cancel()
			store, err := storage.Open(ctx, g.bucket, storage.Options{Logger: g.logger, Retry: storage.Retry{MaxAttempts: 2, MaxBackoff: 2 * time.Second}})
			if err != nil {
				return err
			}
			defer store.Close()
			_, err = walarchive.Prefetch(ctx, store, args[0], args[1:], min(4, len(args)-1))
			return err
		},
	}
}
