package pagecheck

import (
	"encoding/binary"
	"math/rand"
	"testing"
)

// blockReference is checksum_impl.h's loop structure taken literally (all 32
// lanes per row, row by row), kept as a cross-check for the faster kernels,
// which reorder the work.
func blockReference(p []byte) uint32 {
	s := laneBasis
	for r := 0; r < rows; r++ {
		for j := 0; j < lanes; j++ {
			off := r*rowBytes + j*4
			w := [4]byte{p[off], p[off+1], p[off+2], p[off+3]}
			if off == offChecksum {
				w[0], w[1] = 0, 0
			}
			s[j] = mix(s[j], binary.NativeEndian.Uint32(w[:]))
		}
	}
	var h uint32
	for j := range s {
		h ^= mix(mix(s[j], 0), 0)
	}
	return h
}

func randomPage(rng *rand.Rand) []byte {
	p := make([]byte, BlockSize)
	rng.Read(p)
	return p
}

// TestKernelsAgree checks the unrolled Go kernel and (where the CPU has it)
// the AVX2 kernel against the literal loop on random pages and on pages that
// differ only in pd_checksum, which must not matter. The values themselves
// are checked against PostgreSQL in TestAgainstPostgres.
func TestKernelsAgree(t *testing.T) {
	rng := rand.New(rand.NewSource(42))
	for i := 0; i < 200; i++ {
		p := randomPage(rng)
		want := blockReference(p)
		if got := blockGeneric((*[BlockSize]byte)(p)); got != want {
			t.Fatalf("page %d: generic kernel %08x, reference %08x", i, got, want)
		}
		if got := block((*[BlockSize]byte)(p)); got != want {
			t.Fatalf("page %d: dispatched kernel (avx2=%v) %08x, reference %08x", i, useAVX2, got, want)
		}
		q := append([]byte(nil), p...)
		q[offChecksum] ^= 0xff
		q[offChecksum+1] ^= 0x5a
		if Checksum(q, 7) != Checksum(p, 7) {
			t.Fatalf("page %d: pd_checksum bytes changed the checksum", i)
		}
		q[offChecksum+2] ^= 1 // pd_flags does count
		if blockReference(q) == want {
			t.Fatalf("page %d: pd_flags change not seen by reference", i)
		}
		if got := block((*[BlockSize]byte)(q)); got != blockReference(q) {
			t.Fatalf("page %d: kernels disagree after pd_flags change", i)
		}
	}
	if !useAVX2 {
		t.Log("AVX2 kernel not available on this CPU/build: only the Go kernel was checked")
	}
}

func TestChecksumDoesNotModifyPage(t *testing.T) {
	p := randomPage(rand.New(rand.NewSource(3)))
	before := string(p)
	Checksum(p, 1)
	if string(p) != before {
		t.Fatal("Checksum modified the page")
	}
}

func BenchmarkChecksum(b *testing.B) {
	p := randomPage(rand.New(rand.NewSource(1)))
	b.SetBytes(BlockSize)
	b.ReportAllocs()
	var x uint16
	for i := 0; b.Loop(); i++ {
		x ^= Checksum(p, uint32(i))
	}
	sink = x
}

func BenchmarkChecksumGeneric(b *testing.B) {
	p := (*[BlockSize]byte)(randomPage(rand.New(rand.NewSource(1))))
	b.SetBytes(BlockSize)
	var x uint32
	for b.Loop() {
		x ^= blockGeneric(p)
	}
	sink = uint16(x)
}

// BenchmarkFileCheck is verification as the engine runs it: 128 kB chunks of
// valid pages.
func BenchmarkFileCheck(b *testing.B) {
	const pages = 16
	rng := rand.New(rand.NewSource(1))
	chunk := make([]byte, 0, pages*BlockSize)
	for i := 0; i < pages; i++ {
		p := randomPage(rng)
		binary.NativeEndian.PutUint32(p[offLSN:], 0)   // xlogid
		binary.NativeEndian.PutUint32(p[offLSN+4:], 1) // xrecoff
		binary.NativeEndian.PutUint16(p[offChecksum:], Checksum(p, uint32(i)))
		chunk = append(chunk, p...)
	}
	v := &Verifier{StartLSN: 2} // every page predates the backup: all verified
	var f File
	b.SetBytes(int64(len(chunk)))
	b.ReportAllocs()
	for b.Loop() {
		f.Reset(v, 0)
		if err := f.Check(chunk, 0, nil); err != nil {
			b.Fatal(err)
		}
	}
	if n, _ := f.Failures(); n != 0 {
		b.Fatalf("%d failures on valid pages", n)
	}
}

var sink uint16
