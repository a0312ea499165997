package main

import (
	"context"
	"fmt"
	"strconv"

	"github.com/pgcloudbackup/pgcloudbackup/catalog"
	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
	"github.com/pgcloudbackup/pgcloudbackup/internal/pg/wal"
	"github.com/pgcloudbackup/pgcloudbackup/restore"
	"github.com/pgcloudbackup/pgcloudbackup/storage"
	"github.com/pgcloudbackup/pgcloudbackup/walarchive"
)

// Finding backups: open the bucket, read the catalog, resolve a backup
// reference (an ID or "latest").

// openStore opens the bucket given by --bucket.
func (g *globalOptions) openStore(ctx context.Context) (*storage.Store, error) {
	if g.bucket == "" {
		return nil, usageError("no bucket: give --bucket URL or set PGCLOUDBACKUP_BUCKET")
	}
	// The executable's pages that only start-up touched leave first: the
	// bucket's client and the catalog would otherwise come on top of them
	// (a restore's peak RSS from MinIO: 44 -> 39 MiB).
	releaseStartupPages()
	return storage.Open(ctx, g.bucket, storage.Options{Logger: g.logger})
}

// openCatalog opens the bucket and reads its catalog. The caller closes
// the store (nil on error).
func openCatalog(ctx context.Context, g *globalOptions) (*storage.Store, *catalog.Catalog, error) {
	store, err := g.openStore(ctx)
	if err != nil {
		return nil, nil, err
	}
	cat, err := catalog.Load(ctx, store)
	if err != nil {
		store.Close()
		return nil, nil, err
	}
	warnFuture(g, cat)
	return store, cat, nil
}

// warnFuture says which backups are dated in the future: they are kept,
// but never "latest" and never the newest for retention.
func warnFuture(g *globalOptions, cat *catalog.Catalog) {
	for _, e := range cat.Future() {
		g.logger.Warn("backup dated in the future (clock skew on the host that made it, or a crafted ID): it is not used as latest and does not count for retention; check it, and delete it by ID if it is not wanted",
			"backup", e.ID, "ahead", catalog.FormatDuration(e.Started().Sub(cat.Now)))
	}
}

// findBackup opens the bucket and finds the complete backup ref names (an
// ID or "latest"). The caller closes the store (nil on error).
func findBackup(ctx context.Context, g *globalOptions, ref string) (*storage.Store, *catalog.Entry, error) {
	if ref == catalog.Latest {
		// The whole catalog, so that backups dated in the future (never
		// "latest") are warned about.
		store, cat, err := openCatalog(ctx, g)
		if err != nil {
			return nil, nil, err
		}
		e, err := cat.Resolve(ref)
		if err != nil {
			store.Close()
			return nil, nil, err
		}
		return store, e, nil
	}
	store, err := g.openStore(ctx)
	if err != nil {
		return nil, nil, err
	}
	e, err := catalog.Find(ctx, store, ref)
	if err != nil {
		store.Close()
		return nil, nil, err
	}
	return store, e, nil
}

// findRestoreBackup resolves ref. When the server will recover from the
// archive, the backup must lie on the history of the timeline recovery
// will follow (a backup that ended on timeline 1 after timeline 2 forked
// off cannot reach timeline 2), and with a target time or LSN it must have
// ended before the target. "latest" is the newest backup that qualifies; a
// named backup that does not is refused before anything is written.
func findRestoreBackup(ctx context.Context, g *globalOptions, ref string, t restore.RecoveryTarget, recovering bool) (*storage.Store, *catalog.Entry, error) {
	store, err := g.openStore(ctx)
	if err != nil {
		return nil, nil, err
	}
	var entries []*catalog.Entry
	if ref == catalog.Latest && recovering {
		cat, err := catalog.Load(ctx, store)
		if err != nil {
			store.Close()
			return nil, nil, err
		}
		for i := range cat.Entries {
			if cat.Entries[i].Usable() {
				entries = append(entries, &cat.Entries[i])
			}
		}
	} else {
		e, err := catalog.Find(ctx, store, ref)
		if err != nil {
			store.Close()
			return nil, nil, err
		}
		if !recovering {
			return store, e, nil
		}
		entries = []*catalog.Entry{e}
	}
	reason := ""
	for _, e := range entries {
		reason, err = unusableFor(ctx, store, e, t)
		if err != nil {
			store.Close()
			return nil, nil, err
		}
		if reason == "" {
			return store, e, nil
		}
	}
	store.Close()
	if ref != catalog.Latest {
		return nil, nil, failure.Wrap(failure.Precondition, fmt.Errorf("backup %s %s", ref, reason),
			"choose an older backup, or restore 'latest' to pick one")
	}
	return nil, nil, failure.Wrap(failure.Precondition, fmt.Errorf("no complete backup in %s can reach the recovery target (newest: %s)", store.Display, reason), catalogListHint)
}

// unusableFor says why recovery from e cannot reach target t ("" if it
// can).
func unusableFor(ctx context.Context, store *storage.Store, e *catalog.Entry, t restore.RecoveryTarget) (string, error) {
	m := e.Manifest
	if !t.Time.IsZero() && !m.StopTime.Before(t.Time) {
		return fmt.Sprintf("ended at %s UTC, not before --target-time %s", formatTime(m.StopTime), restore.FormatTargetTime(t.Time)), nil
	}
	if t.LSN != "" {
		if lsn, _ := wal.ParseLSN(t.LSN); m.StopLSN > lsn {
			return fmt.Sprintf("ended at LSN %s, after --target-lsn %s", m.StopLSN, t.LSN), nil
		}
	}
	var to uint32
	switch t.Timeline {
	case "current":
		return "", nil
	case "", "latest":
		var err error
		if to, err = walarchive.LatestTimeline(ctx, store, m.Timeline); err != nil {
			return "", err
		}
	default:
		n, _ := strconv.ParseUint(t.Timeline, 10, 32)
		to = uint32(n)
	}
	history, err := walarchive.ReadHistory(ctx, store, to)
	if err != nil {
		return "", failure.Wrap(failure.Precondition, fmt.Errorf("read the history of timeline %d: %w", to, err), "")
	}
	if !walarchive.Reachable(m.Timeline, m.StopLSN, to, history) {
		return fmt.Sprintf("ended at LSN %s on timeline %d, which is not on the history of timeline %d", m.StopLSN, m.Timeline, to), nil
	}
	return "", nil
}

const catalogListHint = "see the backups with 'pgcloudbackup list'"
