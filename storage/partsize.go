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
	return partSizeWithin(l, sizeHint, MaxAutoPartSize)
}

// partSizeWithin is PartSize with the automatic cap lowered to maxPart
// (never below l.MinPartSize): a part size memory can hold.
func partSizeWithin(l Limits, sizeHint, maxPart int64) int64 {
	limit := max(min(maxPart, MaxAutoPartSize), l.MinPartSize)
	ps := min(max(int64(DefaultPartSize), l.MinPartSize), limit)
	if l.MaxParts > 0 && sizeHint > 0 {
		need := ceilDiv(withHeadroom(sizeHint), int64(l.MaxParts))
		need = ceilDiv(need, mib) * mib
		ps = max(ps, min(need, limit))
	}
	if l.MaxPartSize > 0 {
		ps = min(ps, l.MaxPartSize)
	}
	return ps
}

// PartBuffers is how a backend's uploads hold their parts in memory, which
// decides how many part buffers one object takes (Caps.PartBuffers).
type PartBuffers int

const (
	// NoPartBuffers: the upload streams (file, mem); only copyBufSize.
	NoPartBuffers PartBuffers = iota
	// PooledParts: part buffers come from the Store's PartPool, shared by
	// every object (s3; without a pool, the transfer manager's
	// Concurrency + 1 per object).
	PooledParts
	// OnePartPerObject: the driver buffers one part per object (gs:
	// gcsblob's ChunkSize, kept to resend on a retry).
	OnePartPerObject
	// PartsInFlightPerObject: the driver holds one buffer per part in
	// flight, Concurrency of them per object (azblob's UploadStream).
	PartsInFlightPerObject
)

// partGrain rounds a part size derived from a memory share: GCS chunks
// must be a multiple of 256 KiB, and it is a fine block size for Azure.
const partGrain = 256 << 10

// PlanParts chooses one object's part size and parts in flight so that the
// part buffers it holds itself stay within perObject bytes (0: no bound),
// the share of the memory budget one object may take: the part buffer
// budget divided by the parts the budget counts (cmd/pgcloudbackup's
// formula gives every object open at once at least one such share).
//
//   - PooledParts, OnePartPerObject: the automatic part size is at most
//     perObject (whole MiB), so a pooled part always fits the pool and a
//     GCS chunk its share: memory stays flat, and an archive too big for
//     that many parts is split into volumes (MaxRawBytes) instead.
//   - PartsInFlightPerObject: concurrency parts of partSize together take
//     at most perObject, so the part size is perObject / concurrency (at
//     least l.MinPartSize, concurrency lowered when it must be), and
//     capped like the others.
//
// explicit (> 0) is a part size the user chose: it is kept (on GCS rounded
// down to a multiple of 256 KiB, which its client would round up), and only
// the parts in flight of a PartsInFlightPerObject backend are lowered to
// fit it (to no fewer than one). It is a pure function.
func PlanParts(c Caps, sizeHint, explicit int64, concurrency int, perObject int64) (partSize int64, partsInFlight int) {
	l := c.Limits
	concurrency = max(concurrency, 1)
	if perObject <= 0 {
		if explicit > 0 {
			return explicit, concurrency
		}
		return PartSize(l, sizeHint), concurrency
	}
	maxPart := perObject / mib * mib
	if c.PartBuffers == PartsInFlightPerObject {
		floor := max(l.MinPartSize, partGrain)
		if explicit > 0 {
			floor = explicit
		}
		concurrency = int(max(1, min(int64(concurrency), perObject/floor)))
		maxPart = perObject / int64(concurrency) / partGrain * partGrain
	}
	if explicit > 0 {
		if c.PartBuffers == OnePartPerObject {
			// The GCS client rounds a chunk up to a multiple of 256 KiB
			// and buffers that much: round down instead, so the chunk it
			// holds is no more than the part size the budget counts.
			explicit = max(explicit/partGrain*partGrain, partGrain)
		}
		return explicit, concurrency
	}
	return partSizeWithin(l, sizeHint, max(maxPart, partGrain)), concurrency
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
