package backupmanifest

import (
	"bytes"
	"fmt"
	"slices"
	"unsafe"
)

// MaxPathLen bounds a path listed in backup_manifest: PostgreSQL builds
// every path under the data directory in a MAXPGPATH buffer.
const MaxPathLen = 1024

// maxIndexedSize is the largest file size an Index holds (48 bits: 256
// TiB; PostgreSQL's files are at most 1 GiB segments).
const maxIndexedSize = 1<<48 - 1

// Index is the file list of a backup_manifest as a compact lookup table:
// one byte arena of paths and a 16-byte record per file, sorted by path,
// both outside the Go heap (a map of strings to structs took ~600 bytes a
// file, counted twice by the collector's heap goal). A restore checks every
// archive member against it.
type Index struct {
	arena offHeap // paths, in manifest order
	recs  offHeap // indexRec, sorted by path once built
	n     int     // records
}

type indexRec struct {
	off    uint32 // path in arena
	crc    uint32
	sizeLo uint32
	plen   uint16
	sizeHi uint16
}

const recSize = int(unsafe.Sizeof(indexRec{}))

// offHeap is a growable byte buffer outside the Go heap.
type offHeap struct {
	b       []byte // len: bytes used
	release func()
}

func (h *offHeap) grow(need int) {
	if need <= cap(h.b) {
		return
	}
	n := max(need, 2*cap(h.b), 64<<10)
	b, release := allocOffHeap(n)
	b = b[:copy(b, h.b)]
	h.release()
	h.b, h.release = b, release
}

func (x *Index) records() []indexRec {
	if x.n == 0 {
		return nil
	}
	return unsafe.Slice((*indexRec)(unsafe.Pointer(unsafe.SliceData(x.recs.b))), x.n)
}

// IndexBuilder collects the entries of a backup_manifest as a scan hands
// them over. Its memory is bounded by maxFiles records and MaxPathLen
// bytes a path, whatever the manifest holds.
type IndexBuilder struct {
	x        *Index
	maxFiles int64
}

// NewIndexBuilder returns a builder that refuses more than maxFiles
// entries; sizeHint is the number of files expected (it only sizes the
// first allocation).
func NewIndexBuilder(maxFiles, sizeHint int64) *IndexBuilder {
	x := &Index{arena: offHeap{release: func() {}}, recs: offHeap{release: func() {}}}
	hint := int(max(0, min(sizeHint, maxFiles, 1<<20)))
	x.recs.grow(hint * recSize)
	x.arena.grow(hint * 24)
	return &IndexBuilder{x: x, maxFiles: maxFiles}
}

// Add records one file. The arena is bounded by maxFiles × MaxPathLen,
// and refused past 4 GiB, so 32-bit offsets do.
func (b *IndexBuilder) Add(path string, size int64, crc uint32) error {
	x := b.x
	switch {
	case int64(x.n) >= b.maxFiles:
		return fmt.Errorf("more than the %d files manifest.json declares", b.maxFiles)
	case len(path) > MaxPathLen:
		return fmt.Errorf("a path of %d bytes, longer than PostgreSQL's MAXPGPATH (%d)", len(path), MaxPathLen)
	case size < 0 || size > maxIndexedSize:
		return fmt.Errorf("file %q: size %d out of range", path, size)
	case int64(len(x.arena.b))+int64(len(path)) > 1<<32-1:
		return fmt.Errorf("more than 4 GiB of paths")
	}
	x.recs.grow((x.n + 1) * recSize)
	x.recs.b = x.recs.b[:(x.n+1)*recSize]
	x.n++
	x.records()[x.n-1] = indexRec{off: uint32(len(x.arena.b)), crc: crc, plen: uint16(len(path)),
		sizeLo: uint32(size), sizeHi: uint16(size >> 32)}
	x.arena.grow(len(x.arena.b) + len(path))
	x.arena.b = append(x.arena.b, path...)
	return nil
}

// Finish sorts the index and refuses a path listed twice, as
// pg_verifybackup does. The builder is not to be used again.
func (b *IndexBuilder) Finish() (*Index, error) {
	x := b.x
	recs := x.records()
	slices.SortFunc(recs, func(a, c indexRec) int { return bytes.Compare(x.bytesOf(a), x.bytesOf(c)) })
	for i := 1; i < len(recs); i++ {
		if bytes.Equal(x.bytesOf(recs[i-1]), x.bytesOf(recs[i])) {
			err := fmt.Errorf("duplicate path name in backup manifest: %q", x.bytesOf(recs[i]))
			x.Close()
			return nil, err
		}
	}
	return x, nil
}

// Abort gives back the memory of a builder that will not be finished.
func (b *IndexBuilder) Abort() { b.x.Close() }

// Close gives the index's memory back (the Go heap does not see it, so
// nothing else does); the index is empty afterwards. Close it when done.
func (x *Index) Close() {
	x.arena.release()
	x.recs.release()
	*x = Index{arena: offHeap{release: func() {}}, recs: offHeap{release: func() {}}}
}

func (x *Index) bytesOf(r indexRec) []byte { return x.arena.b[r.off : r.off+uint32(r.plen)] }

// Len is the number of files.
func (x *Index) Len() int { return x.n }

// Find returns the position of path in the index, or false.
func (x *Index) Find(path string) (int, bool) {
	return slices.BinarySearchFunc(x.records(), path, func(r indexRec, p string) int {
		return compareBytesString(x.bytesOf(r), p)
	})
}

// Path, Size and CRC32C return the entry at position i.
func (x *Index) Path(i int) string { return string(x.bytesOf(x.records()[i])) }
func (x *Index) Size(i int) int64 {
	r := x.records()[i]
	return int64(r.sizeHi)<<32 | int64(r.sizeLo)
}
func (x *Index) CRC32C(i int) uint32 { return x.records()[i].crc }

// Bytes is the memory the index holds.
func (x *Index) Bytes() int64 { return int64(cap(x.arena.b) + cap(x.recs.b)) }

// compareBytesString is bytes.Compare(a, []byte(s)) without the copy.
func compareBytesString(a []byte, s string) int {
	for i := 0; i < len(a) && i < len(s); i++ {
		if a[i] != s[i] {
			if a[i] < s[i] {
				return -1
			}
			return 1
		}
	}
	switch {
	case len(a) < len(s):
		return -1
	case len(a) > len(s):
		return 1
	}
	return 0
}
