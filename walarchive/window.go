package walarchive

import (
	"context"
	"io"
	"math"

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
	// Timelines is the path the window follows when it crosses from the
	// backup's timeline to later ones (FollowWindow); Timeline is then the
	// one it ends on.
	Timelines []uint32 `json:"timelines,omitempty"`
}

// CheckWindow lists timeline tli's archived segments (one listing of that
// timeline) and returns the window of a backup from start to stop.
func CheckWindow(ctx context.Context, store *storage.Store, tli uint32, start, stop wal.LSN) (*Window, error) {
	return walkWindow(ctx, store, []timelineStart{{tli: tli}}, start, stop)
}

// timelineStart is one timeline on the path recovery follows and the LSN
// where it began (its parent's switch point; unused for the first).
type timelineStart struct {
	tli   uint32
	begin wal.LSN
}

// walkWindow returns the window of a backup from start to stop along path
// (oldest timeline first): each segment is looked for on the newest
// timeline of the path that had begun by that segment, as PostgreSQL's
// XLogFileReadAnyTLI reads it. One listing per timeline used.
func walkWindow(ctx context.Context, store *storage.Store, path []timelineStart, start, stop wal.LSN) (*Window, error) {
	w := &Window{Timeline: path[0].tli}
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
	missing := "" // a segment absent where a timeline of the path ends early
	for i, ts := range path {
		lo, hi := first, wal.SegNo(math.MaxUint64)
		if i > 0 {
			lo = max(lo, wal.SegmentOf(ts.begin, segSize))
		}
		if i+1 < len(path) {
			end := wal.SegmentOf(path[i+1].begin, segSize)
			if end <= lo {
				continue // its child began in this segment: read from the child
			}
			hi = end - 1
		}
		if w.From == "" {
			w.From = wal.FileName(ts.tli, first, segSize)
			w.Timeline = ts.tli
		}
		it := store.List(store.WALTimelinePrefix(ts.tli))
		for w.Gap == "" {
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
			if !ok || t != ts.tli || seg < lo || seg < next && missing == "" {
				continue
			}
			switch {
			case seg > hi:
				// Past this timeline's part of the path.
			case missing != "":
				w.Gap = missing // WAL after the missing segment exists
			case seg > next:
				w.Gap = wal.FileName(ts.tli, next, segSize)
			default:
				if w.Segments == 0 || w.Timeline != ts.tli {
					w.Timelines = append(w.Timelines, ts.tli)
				}
				w.Last = name
				w.Timeline = ts.tli
				w.Segments++
				next++
				continue
			}
			break
		}
		if w.Gap != "" {
			break
		}
		if missing == "" && i+1 < len(path) && next <= hi {
			missing = wal.FileName(ts.tli, next, segSize)
		}
	}
	if len(w.Timelines) < 2 {
		w.Timelines = nil // one timeline: Timeline says it
	}
	if w.Segments > 0 {
		w.End = wal.LSN(uint64(next) * uint64(segSize))
	}
	w.ReachesStop = w.Segments > 0 && stop > start && next > wal.SegmentBefore(stop, segSize)
	return w, nil
}
