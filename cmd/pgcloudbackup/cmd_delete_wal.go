package main

import (
	"context"
	"fmt"

	"github.com/pgcloudbackup/pgcloudbackup/catalog"
	"github.com/pgcloudbackup/pgcloudbackup/internal/pg/wal"
	"github.com/pgcloudbackup/pgcloudbackup/storage"
	"github.com/pgcloudbackup/pgcloudbackup/walarchive"
)

// pruneWAL removes the archived WAL that no backup kept by a retention run
// needs: everything before the oldest kept backup's start. It does nothing
// when it cannot tell what the kept backups need (no complete backup kept,
// or a kept one whose manifest is unreadable).
func pruneWAL(ctx context.Context, g *globalOptions, store *storage.Store, decisions []catalog.Decision, dryRun bool) (*walarchive.PruneResult, error) {
	var keepFrom wal.LSN
	for _, d := range decisions {
		if d.Delete {
			continue
		}
		if d.Entry.Complete && !d.Entry.Usable() {
			g.logger.Warn("WAL archive left as it is: a kept backup's manifest cannot be read", "id", d.Entry.ID)
			return nil, nil
		}
		if d.Entry.Usable() && (keepFrom == 0 || d.Entry.Manifest.StartLSN < keepFrom) {
			keepFrom = d.Entry.Manifest.StartLSN
		}
	}
	if keepFrom == 0 {
		return nil, nil
	}
	res, err := walarchive.Prune(ctx, store, keepFrom, dryRun)
	if err != nil {
		return nil, fmt.Errorf("WAL retention: %w", err)
	}
	if !dryRun && res.Files > 0 {
		g.logger.Info("deleted archived WAL", "files", res.Files, "first", res.First, "last", res.Last)
	}
	return res, nil
}

func printWALPrune(g *globalOptions, verb string, r *walarchive.PruneResult) {
	if r == nil || g.json {
		return
	}
	if r.Files == 0 {
		if r.KeepFrom != "" {
			fmt.Fprintf(g.stdout, "WAL archive: nothing before segment %s to delete\n", r.KeepFrom)
		}
		return
	}
	fmt.Fprintf(g.stdout, "%s %d archived WAL files (%s, %s … %s), all before segment %s; history files kept\n",
		verb, r.Files, humanBytes(r.Bytes), r.First, r.Last, r.KeepFrom)
}
