package wal

import (
	"encoding/binary"
	"fmt"
)

// SegmentHeader is what a segment's first page says about itself
// (XLogLongPageHeaderData).
type SegmentHeader struct {
	Magic    uint16
	Info     uint16
	Timeline uint32
	PageAddr LSN
	SysID    uint64
	SegSize  uint32
	BlockSz  uint32
}

// ParseSegmentHeader decodes the long page header at the start of a
// segment. It checks nothing: callers compare the fields with what they
// expect (PageChecker does it page by page for a backup's WAL).
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
	if h.Info&xlpLongHeader == 0 {
		return h, fmt.Errorf("first page has no long header (info %#x): not the start of a segment", h.Info)
	}
	return h, nil
}
