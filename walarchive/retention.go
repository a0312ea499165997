package walarchive

import (
	"context"
	"fmt"
	"io"

	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
	"github.com/pgcloudbackup/pgcloudbackup/internal/pg/wal"
	"github.com/pgcloudbackup/pgcloudbackup/storage"
)

// PruneResult says what Prune removed (or would remove).
type PruneResult struct {
	Files int   `json:"files"`
	Bytes int64 `json:"bytes"`
	// KeepFrom is the first segment position kept, as a segment file name
	// on timeline 1 without the timeline ("" when nothing was examined).
	KeepFrom string `json:"keep_from,omitempty"`
	First    string `json:"first,omitempty"` // oldest file removed
	Last     string `json:"last,omitempty"`  // newest file removed
}

// SegmentSize reads the WAL segment size of the archive from the trailer
// of one archived segment (one small ranged read); 0 when the archive holds
// no segment.
func SegmentSize(ctx context.Context, store *storage.Store) (int64, error) {
	it := store.List(store.WALPrefix())
	for {
		obj, err := it.Next(ctx)
		if err == io.EOF {
			return 0, nil
		}
		if err != nil {
			return 0, store.Classify(err, "list the WAL archive")
		}
		name, ok := store.WALName(obj.Key)
		if !ok || storage.WALKind(name) != storage.WALSegment || obj.Size < trailerSize {
			continue
		}
		r, err := store.NewRangeReader(ctx, obj.Key, obj.Size-trailerSize, trailerSize)
		if err != nil {
			return 0, store.Classify(err, "read "+obj.Key)
		}
		b, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			return 0, store.Classify(err, "read "+obj.Key)
		}
		_, size, err := decodeTrailer(b)
		if err != nil {
			return 0, fmt.Errorf("object %s: %w", obj.Key, err)
		}
		if !validSegmentSize(size) {
			return 0, fmt.Errorf("object %s records %d bytes, not a WAL segment size", obj.Key, size)
		}
		return size, nil
	}
}

// Prune removes the archived WAL that no recovery from a backup starting
// at or after keepFrom can read: segments (and .partial and .backup files)
// wholly before the segment holding keepFrom, on every timeline (recovery
// never reads WAL before its backup's start). History files are always
// kept, and keys that are not well-formed WAL objects are never touched
// (the bucket is untrusted). With dryRun nothing is deleted. Files go
// oldest first within each timeline, so an interrupted run leaves a
// contiguous archive.
func Prune(ctx context.Context, store *storage.Store, keepFrom wal.LSN, dryRun bool) (*PruneResult, error) {
	res := &PruneResult{}
	if keepFrom == 0 {
		return nil, failure.New(failure.Failed, "WAL retention needs the start of the oldest retained backup")
	}
	segSize, err := SegmentSize(ctx, store)
	if err != nil || segSize == 0 {
		return res, err
	}
	cutoff := wal.SegmentOf(keepFrom, segSize)
	res.KeepFrom = wal.FileName(0, cutoff, segSize)[8:]
	it := store.List(store.WALPrefix())
	for {
		obj, err := it.Next(ctx)
		if err == io.EOF {
			return res, nil
		}
		if err != nil {
			return res, store.Classify(err, "list the WAL archive")
		}
		name, ok := store.WALName(obj.Key)
		if !ok || storage.WALKind(name) == storage.WALHistory {
			continue
		}
		_, seg, ok := wal.ParseFileName(name[:24], segSize)
		if !ok || seg >= cutoff {
			continue
		}
		if !dryRun {
			if err := store.Delete(ctx, obj.Key); err != nil {
				return res, store.Classify(err, "delete "+obj.Key)
			}
		}
		res.Files++
		res.Bytes += obj.Size
		if res.First == "" {
			res.First = name
		}
		res.Last = name
	}
}
