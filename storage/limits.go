package storage

// Limits describes how a backend's multipart uploads are bounded. PartSize
// sizes parts from an archive's estimated size so that no object exceeds
// MaxParts parts, and MaxRawBytes says when the caller rolls an archive over
// into a next object because a stream outgrew that.
type Limits struct {
	// MaxParts is the largest number of parts one object may have
	// (0: no limit, the backend streams without a part count).
	MaxParts int
	// MinPartSize and MaxPartSize bound one part (0: no bound).
	MinPartSize int64
	MaxPartSize int64
}

const (
	mib = 1 << 20
	gib = 1 << 30
)

// LimitsFor returns the upload limits for a URL scheme.
func LimitsFor(scheme string) Limits {
	switch scheme {
	case "s3":
		// S3 (and MinIO): 10,000 parts of 5 MiB to 5 GiB.
		return Limits{MaxParts: 10000, MinPartSize: 5 * mib, MaxPartSize: 5 * gib}
	case "azblob":
		// Azure block blobs: 50,000 blocks of up to 4000 MiB.
		return Limits{MaxParts: 50000, MinPartSize: 1 * mib, MaxPartSize: 4000 * mib}
	case "gs":
		// GCS resumable uploads have no part count; chunks are a multiple of
		// 256 KiB and the object is at most 5 TiB.
		return Limits{MinPartSize: 256 << 10}
	default:
		// file:// and mem:// stream without parts.
		return Limits{}
	}
}
