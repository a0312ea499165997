package walarchive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/pgcloudbackup/pgcloudbackup/internal/pg/wal"
	"github.com/pgcloudbackup/pgcloudbackup/storage"
)

// HistoryEntry is one line of a timeline history file: timeline TLI ended
// at SwitchPoint, where its child began.
type HistoryEntry struct {
	TLI         uint32
	SwitchPoint wal.LSN
}

// LatestTimeline is the timeline recovery_target_timeline = 'latest'
// selects from timeline from, found as PostgreSQL finds it
// (findNewestTimeLine): probe the history files of from+1, from+2, ... and
// stop at the first missing one.
func LatestTimeline(ctx context.Context, store *storage.Store, from uint32) (uint32, error) {
	latest := from
	for tli := from + 1; tli > from; tli++ {
		ok, err := store.Exists(ctx, store.WALKey(wal.HistoryFileName(tli)))
		if err != nil {
			return 0, store.Classify(err, "look up the history of timeline "+strconv.FormatUint(uint64(tli), 10))
		}
		if !ok {
			break
		}
		latest = tli
	}
	return latest, nil
}

// ReadHistory reads timeline tli's history file from the archive (nil for
// timeline 1, which has none).
func ReadHistory(ctx context.Context, store *storage.Store, tli uint32) ([]HistoryEntry, error) {
	if tli <= 1 {
		return nil, nil
	}
	name := wal.HistoryFileName(tli)
	var buf bytes.Buffer
	_, _, err := readObject(ctx, store, store.WALKey(name), &buf, maxSmallFile)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("timeline %d has no history file %s in the archive", tli, name)
	}
	if err != nil {
		return nil, err
	}
	return ParseHistory(buf.Bytes(), tli)
}

// ParseHistory returns a history file's ancestors of timeline tli, oldest
// first, each with the switch point where it ended; the file's rules are
// wal.ParseHistory's (readTimeLineHistory's).
func ParseHistory(data []byte, tli uint32) ([]HistoryEntry, error) {
	history, err := wal.ParseHistory(tli, data)
	if err != nil {
		return nil, err
	}
	// history is newest first, tli itself (still open) at its head.
	out := make([]HistoryEntry, 0, len(history)-1)
	for i := len(history) - 1; i > 0; i-- {
		out = append(out, HistoryEntry{TLI: history[i].TLI, SwitchPoint: history[i].End})
	}
	return out, nil
}

// Reachable reports whether recovery from a backup that ended at stop on
// timeline from can follow the history of timeline to: the backup is on
// that timeline, or on an ancestor that it left no earlier than stop.
func Reachable(from uint32, stop wal.LSN, to uint32, history []HistoryEntry) bool {
	if from == to {
		return true
	}
	for _, h := range history {
		if h.TLI == from {
			return stop <= h.SwitchPoint
		}
	}
	return false
}
