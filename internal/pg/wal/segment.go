package wal

import (
	"fmt"
	"strconv"
)

// Segment numbers and file names follow xlog_internal.h: a segment file is
// named by its timeline and segment number as three 8-digit hex fields.

// SegNo is a WAL segment number (XLogSegNo).
type SegNo uint64

// SegmentOf returns the segment that holds lsn (XLByteToSeg).
func SegmentOf(lsn LSN, segSize int64) SegNo { return SegNo(uint64(lsn) / uint64(segSize)) }

// SegmentBefore returns the segment that holds the byte just before lsn
// (XLByteToPrevSeg): the last segment a backup ending at lsn needs.
func SegmentBefore(lsn LSN, segSize int64) SegNo {
	return SegNo((uint64(lsn) - 1) / uint64(segSize))
}

// FileName is the segment's file name on timeline tli (XLogFileName).
func FileName(tli uint32, seg SegNo, segSize int64) string {
	perID := SegNo(0x100000000 / uint64(segSize))
	return fmt.Sprintf("%08X%08X%08X", tli, uint32(seg/perID), uint32(seg%perID))
}

// ParseFileName parses a segment file name (IsXLogFileName + XLogFromFileName).
func ParseFileName(name string, segSize int64) (tli uint32, seg SegNo, ok bool) {
	if len(name) != 24 {
		return 0, 0, false
	}
	var parts [3]uint64
	for i := range parts {
		v, err := strconv.ParseUint(name[i*8:i*8+8], 16, 32)
		if err != nil {
			return 0, 0, false
		}
		parts[i] = v
	}
	for _, c := range name {
		// PostgreSQL only writes upper-case hex.
		if c >= 'a' && c <= 'f' {
			return 0, 0, false
		}
	}
	perID := 0x100000000 / uint64(segSize)
	return uint32(parts[0]), SegNo(parts[1]*perID + parts[2]), true
}

// IsHistoryFileName reports whether name is a timeline history file
// ("00000002.history").
func IsHistoryFileName(name string) bool {
	if len(name) != 8+len(".history") || name[8:] != ".history" {
		return false
	}
	_, err := strconv.ParseUint(name[:8], 16, 32)
	return err == nil
}

// Long page header of a segment's first page (XLogLongPageHeaderData).
const (
	longHeaderSize = 40
	xlpLongHeader  = 0x0002
)
