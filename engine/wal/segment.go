package wal

import (
	"encoding/binary"
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

// Range is the run of segments a backup needs, on one timeline.
type Range struct {
	Timeline uint32
	First    SegNo
	Last     SegNo
}

// RangeFor returns the segments from the one holding start to the one
// holding the last byte before stop, as basebackup.c selects them.
func RangeFor(tli uint32, start, stop LSN, segSize int64) (Range, error) {
	if stop <= start {
		return Range{}, fmt.Errorf("backup stop LSN %s is not after start LSN %s", stop, start)
	}
	return Range{Timeline: tli, First: SegmentOf(start, segSize), Last: SegmentBefore(stop, segSize)}, nil
}

// Names lists the segment file names of the range, oldest first.
func (r Range) Names(segSize int64) []string {
	names := make([]string, 0, r.Last-r.First+1)
	for s := r.First; s <= r.Last; s++ {
		names = append(names, FileName(r.Timeline, s, segSize))
	}
	return names
}

// Long page header of a segment's first page (XLogLongPageHeaderData).
const (
	longHeaderSize = 40
	xlpLongHeader  = 0x0002
)

// SegmentHeader is what a segment's first page says about itself.
type SegmentHeader struct {
	Magic    uint16
	Info     uint16
	Timeline uint32
	PageAddr LSN
	SysID    uint64
	SegSize  uint32
	BlockSz  uint32
}

// ParseSegmentHeader decodes the long page header at the start of a segment.
func ParseSegmentHeader(page []byte) (SegmentHeader, error) {
	if len(page) < longHeaderSize {
		return SegmentHeader{}, fmt.Errorf("WAL page header: %d bytes, need %d", len(page), longHeaderSize)
	}
	le := binary.LittleEndian
	h := SegmentHeader{
		Magic:    le.Uint16(page[0:]),
		Info:     le.Uint16(page[2:]),
		Timeline: le.Uint32(page[4:]),
		PageAddr: LSN(le.Uint64(page[8:])),
		SysID:    le.Uint64(page[24:]),
		SegSize:  le.Uint32(page[32:]),
		BlockSz:  le.Uint32(page[36:]),
	}
	return h, nil
}

// CheckSegment verifies that a segment file's first page belongs to segment
// seg of cluster sysID. A recycled segment (renamed for reuse but not yet
// rewritten) still carries its old page address, so this catches WAL that
// was recycled under the backup.
func CheckSegment(page []byte, seg SegNo, segSize int64, sysID uint64) error {
	h, err := ParseSegmentHeader(page)
	if err != nil {
		return err
	}
	if h.Info&xlpLongHeader == 0 {
		return fmt.Errorf("first page has no long header (info %#x): not the start of a segment", h.Info)
	}
	if want := LSN(uint64(seg) * uint64(segSize)); h.PageAddr != want {
		return fmt.Errorf("page address %s, want %s: the segment was recycled or overwritten", h.PageAddr, want)
	}
	if h.SysID != sysID {
		return fmt.Errorf("system identifier %d, want %d: segment of another cluster", h.SysID, sysID)
	}
	if int64(h.SegSize) != segSize {
		return fmt.Errorf("segment size %d, want %d", h.SegSize, segSize)
	}
	return nil
}
