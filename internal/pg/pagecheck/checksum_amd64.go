//go:build amd64 && !purego

package pagecheck

import "golang.org/x/sys/cpu"

// useAVX2 selects the vector kernel; it is read-only after start-up.
var useAVX2 = cpu.X86.HasAVX2

// blockAVX2 is pg_checksum_block with the 32 lanes in four 8-lane AVX2
// registers (checksum_amd64.s). basis is laneBasis.
//
//go:noescape
func blockAVX2(page *[BlockSize]byte, basis *[lanes]uint32) uint32

func block(p *[BlockSize]byte) uint32 {
	if useAVX2 {
		return blockAVX2(p, &laneBasis)
	}
	return blockGeneric(p)
}
