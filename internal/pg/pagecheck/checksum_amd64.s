//go:build amd64 && !purego

#include "textflag.h"

// The page is 64 rows of 32 little-endian words; lane j hashes column j.
// Y0..Y3 hold lanes 0-7, 8-15, 16-23, 24-31; Y4 holds the FNV prime.

DATA fnvprime<>+0(SB)/4, $16777619
GLOBL fnvprime<>(SB), RODATA|NOPTR, $4

// Clears pd_checksum (the low half of word 2) in the first row.
DATA hdrmask<>+0(SB)/4, $0xffffffff
DATA hdrmask<>+4(SB)/4, $0xffffffff
DATA hdrmask<>+8(SB)/4, $0xffff0000
DATA hdrmask<>+12(SB)/4, $0xffffffff
DATA hdrmask<>+16(SB)/4, $0xffffffff
DATA hdrmask<>+20(SB)/4, $0xffffffff
DATA hdrmask<>+24(SB)/4, $0xffffffff
DATA hdrmask<>+28(SB)/4, $0xffffffff
GLOBL hdrmask<>(SB), RODATA|NOPTR, $32

// MIX: s = s*prime ^ s>>17 (the word was already xored into s).
#define MIX(s, t1, t2) \
	VPMULLD Y4, s, t1; \
	VPSRLD  $17, s, t2; \
	VPXOR   t1, t2, s

// func blockAVX2(page *[8192]byte, basis *[32]uint32) uint32
TEXT ·blockAVX2(SB), NOSPLIT, $0-20
	MOVQ page+0(FP), SI
	MOVQ basis+8(FP), DI
	VMOVDQU 0(DI), Y0
	VMOVDQU 32(DI), Y1
	VMOVDQU 64(DI), Y2
	VMOVDQU 96(DI), Y3
	VPBROADCASTD fnvprime<>(SB), Y4

	// Row 0, with pd_checksum taken as zero.
	VMOVDQU 0(SI), Y5
	VPAND   hdrmask<>(SB), Y5, Y5
	VPXOR   Y5, Y0, Y0
	VPXOR   32(SI), Y1, Y1
	VPXOR   64(SI), Y2, Y2
	VPXOR   96(SI), Y3, Y3
	MIX(Y0, Y5, Y6)
	MIX(Y1, Y7, Y8)
	MIX(Y2, Y9, Y10)
	MIX(Y3, Y11, Y12)
	ADDQ $128, SI
	MOVQ $63, CX

rows:
	VPXOR 0(SI), Y0, Y0
	VPXOR 32(SI), Y1, Y1
	VPXOR 64(SI), Y2, Y2
	VPXOR 96(SI), Y3, Y3
	MIX(Y0, Y5, Y6)
	MIX(Y1, Y7, Y8)
	MIX(Y2, Y9, Y10)
	MIX(Y3, Y11, Y12)
	ADDQ $128, SI
	DECQ CX
	JNZ  rows

	// Two rounds of zeros (xor with 0 is a no-op, so only the mix).
	MIX(Y0, Y5, Y6)
	MIX(Y1, Y7, Y8)
	MIX(Y2, Y9, Y10)
	MIX(Y3, Y11, Y12)
	MIX(Y0, Y5, Y6)
	MIX(Y1, Y7, Y8)
	MIX(Y2, Y9, Y10)
	MIX(Y3, Y11, Y12)

	// Xor all 32 lanes together.
	VPXOR Y1, Y0, Y0
	VPXOR Y3, Y2, Y2
	VPXOR Y2, Y0, Y0
	VEXTRACTI128 $1, Y0, X1
	VPXOR X1, X0, X0
	VPSHUFD $0x4e, X0, X1
	VPXOR X1, X0, X0
	VPSHUFD $0xb1, X0, X1
	VPXOR X1, X0, X0
	VMOVD X0, AX
	MOVL  AX, ret+16(FP)
	VZEROUPPER
	RET
