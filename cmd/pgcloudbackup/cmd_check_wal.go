package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/pgcloudbackup/pgcloudbackup/engine"
	"github.com/pgcloudbackup/pgcloudbackup/internal/pg/wal"
	"github.com/pgcloudbackup/pgcloudbackup/storage"
	"github.com/pgcloudbackup/pgcloudbackup/walarchive"
)

// defaultMaxWALLag: how many completed segments may wait for the archive
// before check fails (16 × 16 MiB = 256 MiB of WAL a lost primary takes
// with it).
const defaultMaxWALLag = "16"

// maxArchiveListing bounds what check lists of the archive: the current
// segment's "log id" prefix and the one before (4096 names at most with
// 1 MiB segments, 256 with the default 16 MiB).
const maxArchiveListing = 10000

// walLagLimit is --max-wal-lag: a segment count, or a duration measured
// from the newest archived segment's upload.
type walLagLimit struct {
	segments int64
	age      time.Duration
}

func parseWALLag(s string) (walLagLimit, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 {
			return walLagLimit{}, usageError("--max-wal-lag %q: want a segment count >= 0 or a duration such as 1h", s)
		}
		return walLagLimit{segments: n}, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return walLagLimit{}, usageError("--max-wal-lag %q: want a segment count >= 0 or a duration such as 1h", s)
	}
	return walLagLimit{age: d}, nil
}

func (l walLagLimit) String() string {
	if l.age > 0 {
		return l.age.String()
	}
	return fmt.Sprintf("%d segments", l.segments)
}

// bucketArchive is what check learns about our own WAL archive (wal-push)
// in the bucket, next to what the server says it archived.
type bucketArchive struct {
	tli        uint32
	newest     string    // newest segment of tli in the bucket ("" when none)
	newestTime time.Time // its upload time
	lag        int64     // completed segments not in the bucket (-1: unknown)
	lagAge     time.Duration
	problem    string // why the archive is not current ("" when it is)
	hint       string
}

func (b *bucketArchive) summary() string {
	if b.newest == "" {
		return fmt.Sprintf("bucket archive: no segment of timeline %d", b.tli)
	}
	s := fmt.Sprintf("bucket archive: newest %s (uploaded %s ago)", b.newest, humanAge(time.Since(b.newestTime)))
	if b.lag >= 0 {
		s += fmt.Sprintf(", %d completed segments behind the server", b.lag)
	}
	return s
}

// usesOurArchive: archive_command runs wal-push, or the bucket already
// holds a WAL archive (written by wal-push from somewhere).
func (c *checkRun) usesOurArchive(ctx context.Context, a engine.ArchiverStatus) (bool, error) {
	if strings.Contains(a.Command, "wal-push") {
		return true, nil
	}
	if c.store == nil {
		return false, nil
	}
	has, err := walarchive.HasArchive(ctx, c.store)
	if err != nil {
		return false, err
	}
	return has, nil
}

// inspectBucketArchive compares the newest segment of the server's
// timeline in the bucket with the server's current segment and with
// pg_stat_archiver.last_archived_wal. It lists at most two "log id"
// prefixes of that timeline, so a large archive costs no more than a small
// one.
func (c *checkRun) inspectBucketArchive(ctx context.Context, a engine.ArchiverStatus) (*bucketArchive, error) {
	segSize := c.server.Info().WALSegmentSize
	// pg_walfile_name(pg_current_wal_lsn()): the segment being written, or
	// right after a switch (the LSN on a boundary) the one just completed.
	// Segments before it are complete; it may be. On a boundary a lag of
	// one segment therefore reads as 0.
	ref := a.CurrentWALSegment
	if ref == "" { // a standby (archive_mode=always): what it archived last
		ref = a.LastArchivedWAL
	}
	refTLI, refSeg, ok := wal.ParseFileName(ref, segSize)
	if !ok {
		if ref == "" {
			return nil, nil // a standby that has archived nothing: nothing to compare
		}
		return nil, fmt.Errorf("server reports WAL segment %q: not a segment name", ref)
	}
	b := &bucketArchive{tli: refTLI, lag: -1}
	perID := wal.SegNo(0x100000000 / uint64(segSize))
	prefixes := []string{ref[:16]}
	if refSeg >= perID {
		prefixes = append(prefixes, wal.FileName(refTLI, refSeg-perID, segSize)[:16])
	}
	var newestSeg wal.SegNo
	listed := 0
	for _, p := range prefixes {
		it := c.store.List(c.store.WALTimelinePrefix(refTLI) + p)
		for {
			obj, err := it.Next(ctx)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, c.store.Classify(err, "list the WAL archive "+c.store.WALTimelinePrefix(refTLI)+p)
			}
			if listed++; listed > maxArchiveListing {
				return nil, fmt.Errorf("more than %d objects under %s: not a WAL archive this check understands", maxArchiveListing, c.store.WALTimelinePrefix(refTLI)+p)
			}
			name, ok := c.store.WALName(obj.Key)
			if !ok || storage.WALKind(name) != storage.WALSegment {
				continue
			}
			tli, seg, ok := wal.ParseFileName(name, segSize)
			// A name from the future (beyond what the server wrote) is
			// not believed: the bucket is untrusted input.
			if !ok || tli != refTLI || seg > refSeg {
				continue
			}
			if b.newest == "" || seg > newestSeg {
				b.newest, newestSeg, b.newestTime = name, seg, obj.ModTime
			}
		}
		if b.newest != "" {
			break // the newest is in the newer prefix
		}
	}
	// The server says it archived this file: it must be in this bucket.
	if last := a.LastArchivedWAL; last != "" && storage.WALKind(last) != "" {
		ok, err := c.store.Exists(ctx, c.store.WALKey(last))
		if err != nil {
			return nil, c.store.Classify(err, "look up "+c.store.WALKey(last))
		}
		if !ok {
			b.problem = fmt.Sprintf("the server's last archived WAL %s is not in %s", last, c.store.Display)
			b.hint = "archive_command writes to another bucket or prefix than this check reads"
			return b, nil
		}
		// It is in the bucket: the newest we know of when the listing
		// found nothing newer (it may lie before both listed prefixes).
		if tli, seg, isSeg := wal.ParseFileName(last, segSize); isSeg && tli == refTLI && seg <= refSeg && (b.newest == "" || seg > newestSeg) {
			attrs, err := c.store.Attributes(ctx, c.store.WALKey(last))
			if err != nil {
				return nil, c.store.Classify(err, "read "+c.store.WALKey(last))
			}
			b.newest, newestSeg, b.newestTime = last, seg, attrs.ModTime
		}
	}
	if b.newest != "" {
		if b.lag = int64(refSeg) - int64(newestSeg) - 1; b.lag < 0 {
			b.lag = 0
		}
		if b.lag > 0 {
			b.lagAge = time.Since(b.newestTime)
		}
	}
	switch {
	case b.lag > 0 && c.walLag.segments > 0 && b.lag > c.walLag.segments:
		b.problem = fmt.Sprintf("the archive lags the server by %d completed segments (more than --max-wal-lag %s): newest archived %s, server writing %s",
			b.lag, c.walLag, b.newest, ref)
	case b.lag > 0 && c.walLag.age > 0 && b.lagAge > c.walLag.age:
		b.problem = fmt.Sprintf("the archive lags the server by %d completed segments, the newest (%s) uploaded %s ago (more than --max-wal-lag %s), server writing %s",
			b.lag, b.newest, humanAge(b.lagAge), c.walLag, ref)
	case b.lag > 0 && c.walLag.segments == 0 && c.walLag.age == 0:
		b.problem = fmt.Sprintf("the archive lags the server by %d completed segments (--max-wal-lag 0): newest archived %s, server writing %s", b.lag, b.newest, ref)
	}
	if b.problem != "" && b.hint == "" {
		b.hint = "see the server log for archive_command errors; pg_wal/archive_status/*.ready lists what waits"
	}
	return b, nil
}

// recordArchiveMetrics exports the lag (absent when it is unknown).
func (c *checkRun) recordArchiveMetrics(b *bucketArchive) {
	if c.metrics == nil || b == nil || b.lag < 0 {
		return
	}
	c.metrics.gauge("wal_archive_lag_segments", "Completed WAL segments of the server's timeline not yet in the bucket's archive.", float64(b.lag))
	c.metrics.gauge("wal_archive_lag_seconds", "Time since the newest archived segment was uploaded, when completed segments wait (0 when the archive is current).", b.lagAge.Seconds())
}
