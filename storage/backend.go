package storage

import (
	"context"
	"io"

	"gocloud.dev/blob"
)

// backend is what differs between the stores we support, chosen once in
// Open (or NewStore): how an upload is kept all or nothing, and how the
// leftovers of failed or killed uploads are found and removed. Each
// implementation documents its commit and abort rules in its own file:
// backend_s3.go, backend_azure.go, backend_stream.go (file, mem, gs).
type backend interface {
	caps() Caps
	// upload streams r into key and commits the object only after a
	// clean EOF of r: when r fails, when the service fails, or when ctx
	// is cancelled, no object is created or replaced and nothing is left
	// pending. Its error is the driver's (or r's), unclassified.
	upload(ctx context.Context, key string, r io.Reader, o *blob.WriterOptions) error
	// abortPending removes what failed or killed uploads left under
	// keyPrefix (S3 multipart uploads, Azure uncommitted blocks) and
	// returns how many it removed.
	abortPending(ctx context.Context, keyPrefix string) (int, error)
	// pending returns the keys under keyPrefix with such leftovers.
	pending(ctx context.Context, keyPrefix string) ([]string, error)
}

// Caps says what a Store's backend does where backends differ. Code and
// tests branch on it, never on the URL scheme.
type Caps struct {
	// Commit is how an upload becomes an object (see CommitKind).
	Commit CommitKind
	// PendingUploads: a failed or killed upload can leave state on the
	// service that is no object (S3 multipart uploads, Azure uncommitted
	// blocks); AbortIncompleteUploads and PendingUploads see it.
	PendingUploads bool
	// RecordKeys: the keys a run starts are recorded in its marker before
	// they are uploaded, so that deleting a crashed run finds uploads the
	// service lists only by exact key (MinIO's ListMultipartUploads).
	RecordKeys bool
	// TempFiles: uploads in progress (or stranded by a crash) show in
	// listings as temporary files next to the objects (fileblob).
	TempFiles bool
	// ContentType: the object keeps the content type it was written with
	// (file:// buckets without metadata sidecars do not).
	ContentType bool
	// Create is how a create-if-absent is made atomic.
	Create CreateKind
	// MaxObjectSize is the largest object the service accepts (0: no
	// limit but the disk's or memory's).
	MaxObjectSize int64
	// Limits bound multipart parts (Store.Limits, which a caller may
	// lower).
	Limits Limits
	// PartBuffers is how the backend's uploads hold part buffers in
	// memory (PlanParts sizes them from it).
	PartBuffers PartBuffers
}

// CommitKind is how a backend turns a stream into an object.
type CommitKind int

const (
	// CommitOnClose: the driver commits whatever it has when its writer
	// is closed on a live context (fileblob renames its temporary file,
	// memblob stores, gcsblob finishes the resumable upload); an upload is
	// aborted by cancelling the writer's context before Close (file, mem,
	// gs).
	CommitOnClose CommitKind = iota
	// CommitMultipart: the object appears at PutObject or
	// CompleteMultipartUpload; a failed upload is aborted and the key's
	// pending multipart uploads swept (s3).
	CommitMultipart
	// CommitBlockList: the object appears when the block list is
	// committed after a clean EOF; a failed upload's staged blocks are
	// discarded (azblob).
	CommitBlockList
)

func (k CommitKind) String() string {
	switch k {
	case CommitMultipart:
		return "multipart"
	case CommitBlockList:
		return "block list"
	}
	return "close"
}

// CreateKind is how a conditional create (WriteOptions.IfNotExist, Reserve)
// is made atomic.
type CreateKind int

const (
	// CreateIfNoneMatch: the service refuses the write itself (S3
	// If-None-Match, Azure If-None-Match, GCS ifGenerationMatch=0,
	// memblob under its lock).
	CreateIfNoneMatch CreateKind = iota
	// CreateExclusiveFile: the file is created with O_EXCL (file://; the
	// driver's own check is a stat then a rename, which two processes can
	// both pass).
	CreateExclusiveFile
)

// Caps returns what this store's backend does where backends differ.
func (s *Store) Caps() Caps {
	c := s.be.caps()
	c.Limits = s.Limits
	if s.fileDir != "" {
		c.Create = CreateExclusiveFile
	}
	return c
}

// PendingUploads returns the keys under keyPrefix (a full key or key
// prefix) that failed or killed uploads left state for on the service: S3
// multipart uploads (on MinIO only an exact key matches), Azure blobs with
// uncommitted blocks. Always none on other backends.
func (s *Store) PendingUploads(ctx context.Context, keyPrefix string) ([]string, error) {
	keys, err := s.be.pending(ctx, keyPrefix)
	if err != nil {
		return nil, s.Classify(err, "list unfinished uploads under "+keyPrefix)
	}
	return keys, nil
}

// AbortIncompleteUploads aborts the S3 multipart uploads pending under
// keyPrefix, a full key or key prefix (build it with Key or BackupKey), and
// returns how many; on Azure it discards the uncommitted blocks of blobs
// never committed. It does nothing on other backends. On MinIO only an
// exact key matches (see package s3mpu).
func (s *Store) AbortIncompleteUploads(ctx context.Context, keyPrefix string) (int, error) {
	n, err := s.be.abortPending(ctx, keyPrefix)
	if err != nil {
		return n, s.Classify(err, "abort unfinished uploads under "+keyPrefix)
	}
	return n, nil
}
