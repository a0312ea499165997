//go:build !amd64 || purego

package pagecheck

const useAVX2 = false

func block(p *[BlockSize]byte) uint32 { return blockGeneric(p) }
