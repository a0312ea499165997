package engine

import "github.com/pgcloudbackup/pgcloudbackup/engine/wal"

// finalPartEstimate is what the last part adds to the progress total
// besides pg_control (counted from the start): backup_label,
// tablespace_map and, with WAL, the segments from start to stop.
func finalPartEstimate(stop stopResult, start wal.LSN, segSize int64, withWAL bool) int64 {
	n := int64(len(stop.LabelFile) + len(stop.TablespaceMap))
	if withWAL && segSize > 0 && stop.LSN > start {
		first := uint64(start) / uint64(segSize)
		last := (uint64(stop.LSN) - 1) / uint64(segSize)
		n += int64(last-first+1) * segSize
	}
	return n
}
