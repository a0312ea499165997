package pagecheck

import (
	"errors"
	"fmt"
	"io"
	"strings"
)

// MaxFailedBlocks caps the block numbers a File keeps; failures past it are
// still counted. PostgreSQL itself names at most five per file.
const MaxFailedBlocks = 1000

// ShouldVerify reports whether a file gets page checksum verification
// (basebackup.c is_checksummed_file), and its segment number.
//
// relPath is relative to the data directory ("global/1262",
// "base/5/16384.2"), or, with inTablespace, relative to the tablespace's
// location ("PG_15_202209061/5/16384"). Files under global/, base/ and in
// tablespaces are verified, except the few that are not made of checksummed
// pages: pg_control, pg_filenode.map, pg_internal.init* and PG_VERSION.
//
// The segment number comes from a ".N" suffix. PostgreSQL fails the whole
// backup on a suffix that is not a positive number; we only leave such a file
// unverified, since it cannot be a relation segment.
func ShouldVerify(relPath string, inTablespace bool) (verify bool, segno uint32) {
	p := strings.TrimPrefix(relPath, "./")
	if !inTablespace && !strings.HasPrefix(p, "global/") && !strings.HasPrefix(p, "base/") {
		return false, 0
	}
	name := p[strings.LastIndexByte(p, '/')+1:]
	switch {
	case name == "",
		name == "pg_control",
		name == "pg_filenode.map",
		name == "PG_VERSION",
		strings.HasPrefix(name, "pg_internal.init"): // also its temporary files
		return false, 0
	}
	dot := strings.IndexByte(name, '.')
	if dot < 0 {
		return true, 0
	}
	n, ok := parseSegno(name[dot+1:])
	if !ok {
		return false, 0
	}
	return true, n
}

// parseSegno accepts a positive decimal number that fits in 32 bits.
func parseSegno(s string) (uint32, bool) {
	if s == "" || len(s) > 10 {
		return 0, false
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	if n == 0 || n > 1<<32-1 {
		return 0, false
	}
	return uint32(n), true
}

// Verifier holds the backup-wide parameters of page verification.
type Verifier struct {
	// StartLSN is the backup's start LSN. Pages with an LSN at or past it
	// were written during the backup, may be torn, and are rebuilt by WAL
	// replay, so they are not verified. Zero means no such rule: every page
	// is verified (an offline check, as pg_checksums does).
	StartLSN uint64
	// SegmentBlocks is the server's RELSEG_SIZE (blocks per segment file);
	// zero means DefaultSegmentBlocks.
	SegmentBlocks uint32
	// RelationBlockNumbers makes Failures report block numbers counted from
	// the start of the relation (segno × SegmentBlocks + block), as
	// PostgreSQL 17 and later do; before 17 they are segment-local.
	RelationBlockNumbers bool
}

// NewFile returns a File that verifies segment segno of a relation.
func (v *Verifier) NewFile(segno uint32) *File {
	f := new(File)
	f.Reset(v, segno)
	return f
}

// File verifies one file's pages as the engine streams it. One File can be
// reused (Reset) for file after file, keeping its block list's memory.
type File struct {
	startLSN   uint64
	blockBase  uint32 // segno × blocks per segment
	reportBase uint32 // added to reported block numbers: 0 or blockBase
	failures   int64
	blocks     []uint32
	newData    int64    // pages with pd_upper == 0 that are not all zeros
	newBlocks  []uint32 // their block numbers (at most MaxFailedBlocks)
	partial    bool
	partialBlk uint32
	rereads    int64
}

// Reset readies f for segment segno of a new file under v's parameters. The
// block list returned by an earlier Failures is reused: copy it first.
func (f *File) Reset(v *Verifier, segno uint32) {
	segBlocks := v.SegmentBlocks
	if segBlocks == 0 {
		segBlocks = DefaultSegmentBlocks
	}
	*f = File{
		startLSN: v.StartLSN,
		// uint32 arithmetic wraps exactly as PostgreSQL's BlockNumber does.
		blockBase: segno * segBlocks,
		blocks:    f.blocks[:0],
		newBlocks: f.newBlocks[:0],
	}
	if v.RelationBlockNumbers {
		f.reportBase = f.blockBase
	}
}

// Check verifies the whole pages of chunk, the file's content from block
// firstBlock (segment-local) on. Chunks start at block boundaries; a trailing
// partial page (the file is being extended or truncated) is not verified and
// ends verification of this file, as in PostgreSQL (see Partial).
//
// On a checksum mismatch Check calls reread once for that block: it must
// read the block again from the file, at offset blkno × BlockSize, into page
// (which is that block's part of chunk, so the chunk then holds the fresh
// copy, as PostgreSQL sends the re-read block). A page read while the server
// was writing it can be torn; the second read sees it whole, or with an LSN
// past the backup start. reread returns io.EOF when the block is no longer
// there (the file was truncated concurrently: not a failure, WAL replay
// handles it), after which the rest of the chunk is not verified; any other
// error is returned. A nil reread counts a mismatch at once.
//
// Check does not allocate, except to grow the failed-block list.
func (f *File) Check(chunk []byte, firstBlock uint32, reread func(blkno uint32, page []byte) error) error {
	if f.partial {
		return nil
	}
	n := len(chunk) / BlockSize
	for i := 0; i < n; i++ {
		page := chunk[i*BlockSize : (i+1)*BlockSize : (i+1)*BlockSize]
		blk := firstBlock + uint32(i)
		v := f.verdict(page, blk)
		if v == pageGood {
			continue
		}
		if reread != nil {
			f.rereads++
			if err := reread(blk, page); err != nil {
				if errors.Is(err, io.EOF) {
					return nil
				}
				return fmt.Errorf("re-read block %d to verify its checksum: %w", blk, err)
			}
			if v = f.verdict(page, blk); v == pageGood {
				continue
			}
		}
		if v == pageNewWithData {
			f.newData++
			if len(f.newBlocks) < MaxFailedBlocks {
				f.newBlocks = append(f.newBlocks, blk)
			}
			continue
		}
		f.failures++
		if len(f.blocks) < MaxFailedBlocks {
			f.blocks = append(f.blocks, f.reportBase+blk)
		}
	}
	if len(chunk)%BlockSize != 0 {
		f.partial = true
		f.partialBlk = firstBlock + uint32(n)
	}
	return nil
}

type pageVerdict uint8

const (
	pageGood        pageVerdict = iota
	pageBadChecksum             // a checksum failure, as PostgreSQL counts them
	pageNewWithData             // pd_upper == 0 but not all zeros
)

// verdict judges one page: skipped by the rules or its checksum matches
// (good), a checksum mismatch, or a "new" page that holds data.
//
// A page is skipped when it is all zeros (allocated, never written: it has
// no checksum yet) or when its LSN is at or past the backup start (WAL replay
// rewrites it). PostgreSQL 13-17's backup also skips, unverified, any page
// with pd_upper == 0 (PageIsNew), so such a page is never one of its
// checksum failures. We keep it apart: a page whose pd_upper is zero but
// which holds other data is not a valid new page (the server's own read
// check, PageIsVerifiedExtended, accepts pd_upper == 0 only on an all-zero
// page), so it is what a zeroed page header looks like, and it is reported
// on its own (NewPagesWithData) rather than hidden or counted as what
// PostgreSQL would not count.
func (f *File) verdict(page []byte, blk uint32) pageVerdict {
	if IsAllZero(page) {
		return pageGood
	}
	if f.startLSN != 0 && PageLSN(page) >= f.startLSN {
		return pageGood
	}
	if IsNew(page) {
		return pageNewWithData
	}
	if Checksum(page, f.blockBase+blk) == StoredChecksum(page) {
		return pageGood
	}
	return pageBadChecksum
}

// Failures returns the number of pages that failed verification and their
// block numbers (segment-local, or relation-wide with
// Verifier.RelationBlockNumbers, as PostgreSQL reports them; at most
// MaxFailedBlocks of them). The slice belongs to f until the next Reset.
func (f *File) Failures() (count int64, blocks []uint32) {
	return f.failures, f.blocks
}

// NewPagesWithData returns the number of pages whose header marks them new
// (pd_upper == 0) although they are not all zeros, and their segment-local
// block numbers (at most MaxFailedBlocks). They are not in Failures, which
// counts what PostgreSQL counts. The slice belongs to f until the next Reset.
func (f *File) NewPagesWithData() (count int64, blocks []uint32) {
	return f.newData, f.newBlocks
}

// Partial reports whether Check met a partial page, and at which block:
// PostgreSQL warns "could not verify checksum in file ..., block N" and
// verifies nothing more of that file. (It also leaves the whole pages of that
// last read unverified; we verify them.)
func (f *File) Partial() (blkno uint32, ok bool) {
	return f.partialBlk, f.partial
}

// Rereads returns how many blocks were read a second time after a mismatch.
func (f *File) Rereads() int64 { return f.rereads }
