package walarchive

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

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
		ok, err := store.Exists(ctx, store.WALKey(fmt.Sprintf("%08X.history", tli)))
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
	name := fmt.Sprintf("%08X.history", tli)
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

// ParseHistory parses a history file's "parentTLI<TAB>switchpoint<TAB>reason"
// lines (comments and blank lines skipped), as readTimeLineHistory does;
// timelines must increase and stay below tli.
func ParseHistory(data []byte, tli uint32) ([]HistoryEntry, error) {
	var out []HistoryEntry
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			return nil, fmt.Errorf("history of timeline %d, line %d: want a timeline and a switch point", tli, n)
		}
		t, err := strconv.ParseUint(f[0], 10, 32)
		if err != nil {
			return nil, fmt.Errorf("history of timeline %d, line %d: bad timeline %q", tli, n, f[0])
		}
		lsn, err := wal.ParseLSN(f[1])
		if err != nil {
			return nil, fmt.Errorf("history of timeline %d, line %d: %v", tli, n, err)
		}
		if len(out) > 0 && uint32(t) <= out[len(out)-1].TLI || uint32(t) >= tli {
			return nil, fmt.Errorf("history of timeline %d, line %d: timeline %d out of order", tli, n, t)
		}
		out = append(out, HistoryEntry{TLI: uint32(t), SwitchPoint: lsn})
	}
	if err := sc.Err(); err != nil {
		return nil, err
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
