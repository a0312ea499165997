package wal

import (
	"encoding/binary"
	"fmt"
	"slices"
)

// Page headers follow xlog_internal.h (XLogPageHeaderData): every WAL page
// starts with magic, info flags, the timeline that wrote it and its own
// address; a segment's first page has the long header, which adds the
// system identifier, segment size and page size.
const (
	shortHeaderSize = 20 // SizeOfXLogShortPHD before alignment: all we read
	xlpAllFlags     = 0x000F
)

// PageCheck describes the segment file a PageChecker validates.
type PageCheck struct {
	File     SegmentFile
	SegSize  int64
	PageSize int    // XLOG_BLCKSZ (wal_block_size)
	SysID    uint64 // the cluster's system identifier
	// Magic is the XLOG_PAGE_MAGIC every page must carry (it changes with
	// each major version); 0 takes the first page's.
	Magic uint16
	// Timelines lists the timelines whose pages may appear: the history
	// of the backup's end timeline. Pages must also be written by the
	// file's timeline or an older one, never going back within the file.
	Timelines []uint32
}

// PageChecker validates the page headers of one segment file as its bytes
// stream past (it is an io.Writer), so what is checked is what is stored.
// Only the pages that start before File.Limit are checked: the rest of the
// file is not part of the backup's WAL.
type PageChecker struct {
	c       PageCheck
	off     int64
	hdr     [longHeaderSize]byte
	lastTLI uint32
	magic   uint16
	// zeroed: a page with an all-zero header was seen. The server zeroes
	// the headers of the pages that follow a WAL switch record, to the end
	// of the segment; nothing valid may follow them.
	zeroed bool
}

// NewPageChecker starts checking a segment file from its first byte.
func NewPageChecker(c PageCheck) *PageChecker {
	return &PageChecker{c: c, magic: c.Magic}
}

// Magic is the page magic seen on the first page (0 before it was seen).
func (p *PageChecker) Magic() uint16 { return p.magic }

// Write checks the next bytes of the file. It returns an error at the first
// invalid page header.
func (p *PageChecker) Write(b []byte) (int, error) {
	total := len(b)
	ps := int64(p.c.PageSize)
	for len(b) > 0 {
		pageOff := p.off % ps
		pageStart := p.off - pageOff
		hlen := int64(shortHeaderSize)
		if pageStart == 0 {
			hlen = longHeaderSize
		}
		if pageStart >= p.c.File.Limit || pageOff >= hlen {
			n := ps - pageOff
			if n > int64(len(b)) {
				n = int64(len(b))
			}
			b = b[n:]
			p.off += n
			continue
		}
		n := copy(p.hdr[pageOff:hlen], b)
		b = b[n:]
		p.off += int64(n)
		if pageOff+int64(n) == hlen {
			if err := p.checkHeader(pageStart); err != nil {
				return total - len(b), err
			}
		}
	}
	return total, nil
}

// Done reports whether every page the backup needs was seen.
func (p *PageChecker) Done() error {
	if p.off < p.c.File.Limit {
		return fmt.Errorf("WAL segment %s: only %d bytes, the backup needs %d", p.c.File.Name(p.c.SegSize), p.off, p.c.File.Limit)
	}
	if p.zeroed && p.c.File.Limit < p.c.SegSize {
		// After a switch the WAL continues in the next segment, so the
		// backup's WAL cannot end inside the zeroed pages.
		return fmt.Errorf("WAL segment %s: zeroed pages before the end of the WAL the backup needs", p.c.File.Name(p.c.SegSize))
	}
	return nil
}

func (p *PageChecker) checkHeader(pageStart int64) error {
	le := binary.LittleEndian
	h := p.hdr[:]
	magic, info, tli := le.Uint16(h[0:]), le.Uint16(h[2:]), le.Uint32(h[4:])
	addr := LSN(le.Uint64(h[8:]))
	want := LSN(uint64(p.c.File.Seg)*uint64(p.c.SegSize) + uint64(pageStart))
	bad := func(format string, args ...any) error {
		return fmt.Errorf("WAL segment %s, page at %s: %s", p.c.File.Name(p.c.SegSize), want, fmt.Sprintf(format, args...))
	}
	if pageStart > 0 && allZero(h[:shortHeaderSize]) {
		p.zeroed = true
		return nil
	}
	if p.zeroed {
		return bad("a written page after zeroed ones")
	}
	if addr != want {
		return bad("page address %s: the segment was recycled or overwritten", addr)
	}
	if p.magic == 0 {
		p.magic = magic
	}
	if magic != p.magic || magic == 0 {
		return bad("magic %#04x, want %#04x", magic, p.magic)
	}
	if info&^xlpAllFlags != 0 {
		return bad("invalid info bits %#04x", info)
	}
	long := info&xlpLongHeader != 0
	if pageStart == 0 {
		if !long {
			return bad("the first page has no long header")
		}
		if sysID := le.Uint64(h[24:]); sysID != p.c.SysID {
			return bad("system identifier %d, want %d: WAL of another cluster", sysID, p.c.SysID)
		}
		if seg := int64(le.Uint32(h[32:])); seg != p.c.SegSize {
			return bad("segment size %d, want %d", seg, p.c.SegSize)
		}
		if bs := int(le.Uint32(h[36:])); bs != p.c.PageSize {
			return bad("page size %d, want %d", bs, p.c.PageSize)
		}
	} else if long {
		return bad("long header on a page that does not start the segment")
	}
	switch {
	case tli == 0 || tli > p.c.File.TLI:
		return bad("timeline %d in a segment of timeline %d", tli, p.c.File.TLI)
	case tli < p.lastTLI:
		return bad("timeline %d after a page of timeline %d", tli, p.lastTLI)
	case !slices.Contains(p.c.Timelines, tli):
		return bad("timeline %d is not in the history %v", tli, p.c.Timelines)
	}
	p.lastTLI = tli
	return nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
