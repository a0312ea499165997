package storage

import "math"

const (
	// DefaultPartSize is the smallest part size PartSize chooses: S3's
	// minimum. Every part buffer is memory (S3: the pool, jobs + 2 parts at
	// the defaults; GCS one, Azure Concurrency per object); measured against
	// MinIO on 2 cores, 5 MiB parts back up as fast as 8 MiB ones (the
	// compressor, not the requests, is the bottleneck) with 9 MiB less.
	DefaultPartSize = 5 * mib
	// MaxAutoPartSize caps the part size PartSize chooses, so that memory
	// stays flat; a larger stream is split by the caller into several
	// objects (MaxRawBytes).
	MaxAutoPartSize = 64 * mib
)

// PartSize chooses the multipart part size for an object of about sizeHint
// bytes (0: unknown) within l, as rclone's fs/chunksize does: the smallest
// whole-MiB size of at least DefaultPartSize and l.MinPartSize with which
// sizeHint plus 10% (compression can expand data) fits in l.MaxParts parts,
// but no more than MaxAutoPartSize (the caller splits beyond that, see
// MaxRawBytes) nor l.MaxPartSize. It depends on nothing else.
func PartSize(l Limits, sizeHint int64) int64 {
	ps := max(int64(DefaultPartSize), l.MinPartSize)
	if l.MaxParts > 0 && sizeHint > 0 {
		need := ceilDiv(withHeadroom(sizeHint), int64(l.MaxParts))
		need = ceilDiv(need, mib) * mib
		ps = max(ps, min(need, max(MaxAutoPartSize, l.MinPartSize)))
	}
	if l.MaxPartSize > 0 {
		ps = min(ps, l.MaxPartSize)
	}
	return ps
}

// MaxRawBytes returns how many raw bytes one object written in parts of
// partSize may take: past that the caller must end it and continue in a
// next object, so that no object needs more than l.MaxParts parts even if
// compression expands the data by 10%. math.MaxInt64 when the backend has
// no part limit.
func MaxRawBytes(l Limits, partSize int64) int64 {
	parts := int64(l.MaxParts)
	if parts <= 0 {
		return math.MaxInt64
	}
	if partSize > math.MaxInt64/parts {
		return math.MaxInt64
	}
	return partSize * parts / 11 * 10
}

// withHeadroom returns n plus 10% for compression expansion.
func withHeadroom(n int64) int64 {
	if n > math.MaxInt64/11*10 {
		return math.MaxInt64
	}
	return n + n/10
}

func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }
