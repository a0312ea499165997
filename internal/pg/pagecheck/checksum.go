// Package pagecheck verifies PostgreSQL data page checksums the way a base
// backup does while it reads relation files (basebackup.c, sendFile): which
// files are verified, which pages are skipped, the torn-page re-read, and the
// failure counts the server would report.
//
// Pages are read in the host's byte order (PostgreSQL writes them in its own
// native order, and the backup runs on the database host).
package pagecheck

import "encoding/binary"

// BlockSize is PostgreSQL's page size (BLCKSZ); only the default 8 kB is
// supported.
const BlockSize = 8192

// DefaultSegmentBlocks is RELSEG_SIZE for the default 1 GB segment files.
// The engine passes the server's real value (pg_control_init().blocks_per_segment
// / pg_controldata).
const DefaultSegmentBlocks = 131072

// Page header offsets (PageHeaderData).
const (
	offLSN      = 0 // pd_lsn: xlogid uint32, xrecoff uint32
	offChecksum = 8 // pd_checksum uint16
	offUpper    = 14
)

// The page is hashed as a 64-row × 32-column matrix of 32-bit words, one
// FNV-1a-style lane per column (checksum_impl.h). The lane count is part of
// the algorithm: changing it changes every checksum.
const (
	lanes    = 32
	rowBytes = lanes * 4
	rows     = BlockSize / rowBytes
	fnvPrime = 16777619
	mixShift = 17
)

// laneBasis are the per-lane starting values (checksumBaseOffsets).
var laneBasis = [lanes]uint32{
	0x5B1F36E9, 0xB8525960, 0x02AB50AA, 0x1DE66D2A,
	0x79FF467A, 0x9BB9F8A3, 0x217E7CD2, 0x83E13D2C,
	0xF8D4474F, 0xE39EB970, 0x42C6AE16, 0x993216FA,
	0x7B093B5D, 0x98DAFF3C, 0xF718902A, 0x0B1C9CDB,
	0xE58F764B, 0x187636BC, 0x5D7B3BB1, 0xE73DE7DE,
	0x92BEC979, 0xCCA6C0B2, 0x304A0979, 0x85AA43D4,
	0x783125BB, 0x6CA8EAA2, 0xE407EAC6, 0x4B5CFC3E,
	0x9FBF8C76, 0x15CA20BE, 0xF2CA9FD3, 0x959BD756,
}

// Checksum computes PostgreSQL's pg_checksum_page for page (the first
// BlockSize bytes; it panics if page is shorter) as block number blkno, which
// for a segmented relation is the block number within the whole relation
// (segment-local block + segno × blocks per segment). The stored pd_checksum
// counts as zero; page is never written to, so concurrent readers are safe.
func Checksum(page []byte, blkno uint32) uint16 {
	p := (*[BlockSize]byte)(page)
	h := block(p) ^ blkno
	// Offset by one so that a valid checksum is never zero.
	return uint16(h%65535 + 1)
}

// mix folds one word into a lane: FNV-1a's xor-multiply plus a right shift
// that carries high bits back down (checksum_impl.h explains the choice).
func mix(s, v uint32) uint32 {
	t := s ^ v
	return t*fnvPrime ^ t>>mixShift
}

// headerWord is word 2 of the page (bytes 8..11: pd_checksum, pd_flags) with
// pd_checksum's two bytes taken as zero, in either byte order.
func headerWord(p *[BlockSize]byte) uint32 {
	w := [4]byte{0, 0, p[offChecksum+2], p[offChecksum+3]}
	return binary.NativeEndian.Uint32(w[:])
}

// blockGeneric is the portable form of pg_checksum_block. It runs eight lanes
// at a time over all rows (the lanes are independent), which keeps each
// group's state in registers; doing all 32 at once spills and is about half
// as fast.
func blockGeneric(p *[BlockSize]byte) uint32 {
	var s [lanes]uint32
	first := (*[rowBytes]byte)(p[:rowBytes])
	for j := range s {
		v := binary.NativeEndian.Uint32(first[j*4:])
		if j == offChecksum/4 {
			v = headerWord(p)
		}
		s[j] = mix(laneBasis[j], v)
	}
	for g := 0; g < lanes/8; g++ {
		mix8(p, g*32, (*[8]uint32)(s[g*8:]))
	}
	var h uint32
	for _, v := range s {
		// Two rounds of zeros spread the last words' bits.
		h ^= mix(mix(v, 0), 0)
	}
	return h
}

// mix8 folds rows 1.. of the eight columns starting at byte offset off into s.
func mix8(p *[BlockSize]byte, off int, s *[8]uint32) {
	s0, s1, s2, s3, s4, s5, s6, s7 := s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]
	ne := binary.NativeEndian
	for r := 1; r < rows; r++ {
		w := (*[32]byte)(p[r*rowBytes+off:])
		s0 = mix(s0, ne.Uint32(w[0:]))
		s1 = mix(s1, ne.Uint32(w[4:]))
		s2 = mix(s2, ne.Uint32(w[8:]))
		s3 = mix(s3, ne.Uint32(w[12:]))
		s4 = mix(s4, ne.Uint32(w[16:]))
		s5 = mix(s5, ne.Uint32(w[20:]))
		s6 = mix(s6, ne.Uint32(w[24:]))
		s7 = mix(s7, ne.Uint32(w[28:]))
	}
	s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7] = s0, s1, s2, s3, s4, s5, s6, s7
}

// PageLSN returns pd_lsn as a 64-bit LSN (xlogid << 32 | xrecoff).
func PageLSN(page []byte) uint64 {
	ne := binary.NativeEndian
	return uint64(ne.Uint32(page[offLSN:]))<<32 | uint64(ne.Uint32(page[offLSN+4:]))
}

// StoredChecksum returns pd_checksum.
func StoredChecksum(page []byte) uint16 {
	return binary.NativeEndian.Uint16(page[offChecksum:])
}

// IsNew reports PostgreSQL's PageIsNew: pd_upper == 0.
func IsNew(page []byte) bool {
	return binary.NativeEndian.Uint16(page[offUpper:]) == 0
}

var zeroPage [BlockSize]byte

// IsAllZero reports whether the page's BlockSize bytes are all zero (a page
// allocated by extending the file but never written).
func IsAllZero(page []byte) bool {
	return string(page[:BlockSize]) == string(zeroPage[:])
}
