package main

import (
	"context"

	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
	"github.com/pgcloudbackup/pgcloudbackup/manifest"
	"github.com/pgcloudbackup/pgcloudbackup/storage"
	"github.com/pgcloudbackup/pgcloudbackup/walarchive"
)

// checkBackupWAL checks the archived WAL of backup m along the timelines a
// restore follows (its own, then the newest one that branched off it after
// its stop, as recovery_target_timeline = 'latest'): a gap in the segments
// from its start onward, or (for a backup without WAL) an archive that does
// not reach its stop, is an error naming the segment.
func checkBackupWAL(ctx context.Context, store *storage.Store, m *manifest.Backup) (*walarchive.Window, error) {
	w, err := walarchive.FollowWindow(ctx, store, m.Timeline, m.StartLSN, m.StopLSN)
	if err != nil {
		return nil, err
	}
	switch {
	case w.NoArchive:
		return w, failure.New(failure.Failed, "backup %s: no archived WAL in %s", m.ID, store.Display)
	case !w.ReachesStop && !m.WALIncluded:
		missing := w.Gap
		if missing == "" {
			missing = "the segments after " + w.Last
		}
		return w, failure.New(failure.Failed, "backup %s cannot become consistent from the archive: WAL segment %s is missing", m.ID, missing)
	case w.Gap != "":
		return w, failure.New(failure.Failed, "backup %s: archived WAL on timeline %d has a gap at %s: recoverable only up to LSN %s", m.ID, storage.WALTimeline(w.Gap), w.Gap, w.End)
	}
	return w, nil
}
