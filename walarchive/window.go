package walarchive

import (
	"context"
	"io"

	"github.com/pgcloudbackup/pgcloudbackup/internal/pg/wal"
	"github.com/pgcloudbackup/pgcloudbackup/storage"
)

// Window is the archived WAL a backup can recover through: the contiguous
// run of segments on its timeline from the one holding its start.
type Window struct {
	Timeline uint32 `json:"timeline"`
	// From is the first segment recovery needs (holding the backup start);
	// Last the last one of the contiguous run ("" when From is missing).
	From string `json:"from"`
	Last string `json:"last,omitempty"`
	// End is where the contiguous WAL ends: recovery can reach any point
	// between the backup's stop and End.
	End      wal.LSN `json:"end_lsn"`
	Segments int     `json:"segments"`
	// ReachesStop: the run covers the backup's stop, so the backup becomes
	// consistent from the archive alone.
	ReachesStop bool `json:"reaches_stop"`
	// Gap is the first missing segment when later segments exist: WAL
	// past it cannot be replayed.
	Gap string `json:"gap,omitempty"`
	// NoArchive: the bucket holds no archived segment at all.
	NoArchive bool `json:"no_archive,omitempty"`
}

// CheckWindow lists timeline tli's archived segments (one listing of that
// timeline) and returns the window of a backup from start to stop.
func CheckWindow(ctx context.Context, store *storage.Store, tli uint32, start, stop wal.LSN) (*Window, error) {
	w := &Window{Timeline: tli}
	segSize, err := SegmentSize(ctx, store)
	if err != nil {
		return nil, err
	}
	if segSize == 0 {
		w.NoArchive = true
		return w, nil
	}
	first := wal.SegmentOf(start, segSize)
	next := first
	w.From = wal.FileName(tli, first, segSize)
	it := store.List(store.WALTimelinePrefix(tli))
	for {
		obj, err := it.Next(ctx)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, store.Classify(err, "list the WAL archive")
		}
		name, ok := store.WALName(obj.Key)
		if !ok || storage.WALKind(name) != storage.WALSegment {
			continue
		}
		t, seg, ok := wal.ParseFileName(name, segSize)
		if !ok || t != tli || seg < next {
			continue
		}
		if seg > next {
			w.Gap = wal.FileName(tli, next, segSize)
			break
		}
		w.Last = name
		w.Segments++
		next++
	}
	if w.Segments > 0 {
		w.End = wal.LSN(uint64(next) * uint64(segSize))
	}
	w.ReachesStop = w.Segments > 0 && stop > start && next > wal.SegmentBefore(stop, segSize)
	return w, nil
}
