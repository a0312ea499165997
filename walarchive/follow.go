package walarchive

import (
	"context"
	"fmt"

	"github.com/pgcloudbackup/pgcloudbackup/internal/pg/wal"
	"github.com/pgcloudbackup/pgcloudbackup/storage"
)

// FollowWindow is the window of a backup on timeline tli along the
// timelines a restore follows by default: recovery_target_timeline =
// 'latest', the newest timeline whose history file is archived
// (LatestTimeline), when its history passes through tli at or after the
// backup's stop (Reachable; restore chooses backups by the same rule).
// Each segment is then looked for on the timeline recovery reads it from.
// When the latest timeline forked off before the stop (a restore to it
// refuses the backup) or there is none, it is CheckWindow on tli.
func FollowWindow(ctx context.Context, store *storage.Store, tli uint32, start, stop wal.LSN) (*Window, error) {
	latest, err := LatestTimeline(ctx, store, tli)
	if err != nil {
		return nil, err
	}
	if latest == tli {
		return CheckWindow(ctx, store, tli, start, stop)
	}
	history, err := ReadHistory(ctx, store, latest)
	if err != nil {
		return nil, fmt.Errorf("read the history of timeline %d: %w", latest, err)
	}
	if !Reachable(tli, stop, latest, history) {
		return CheckWindow(ctx, store, tli, start, stop)
	}
	// The path from tli: each entry from tli on names a timeline and where
	// it ended, which is where the next entry's timeline (or latest) began.
	var onPath []HistoryEntry
	for _, h := range history {
		if h.TLI >= tli {
			onPath = append(onPath, h)
		}
	}
	path := []timelineStart{{tli: tli}}
	for j, h := range onPath {
		child := latest
		if j+1 < len(onPath) {
			child = onPath[j+1].TLI
		}
		path = append(path, timelineStart{tli: child, begin: h.SwitchPoint})
	}
	return walkWindow(ctx, store, path, start, stop)
}
