package storage

import (
	"context"
	"io"
	"log/slog"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"gocloud.dev/blob"

	"github.com/pgcloudbackup/pgcloudbackup/internal/s3mpu"
)

// s3Backend uploads to S3 and S3-compatible stores (MinIO).
//
// Commit and abort rules (gocloud v0.47.0, aws-sdk-go-v2 transfermanager):
// an object appears only at PutObject or CompleteMultipartUpload, so a
// failed upload never shows a partial object; what it can leave is a
// pending multipart upload whose parts are stored (and billed) until
// aborted.
//   - With a PartPool (Store.SetPartPool): uploadS3Pooled sends PutObject,
//     or CreateMultipartUpload/UploadPart/Complete, with part buffers from
//     the pool; any failure (r's, a request's, ctx's) aborts the multipart
//     upload on a fresh context.
//   - Otherwise: the bucket's Upload through a transfer manager tuned by
//     tuneS3Upload. A reader error aborts the multipart upload on the
//     still-live context; the abort after any failure runs on a fresh one
//     (FailTimeout), so a cancelled ctx leaves no parts either.
//
// After any failure the uploads still pending for the key are aborted as
// well (sweep, on a fresh context), which also clears what an earlier,
// crashed attempt at the same key left; never after a failed conditional
// create (a WAL push), refused or not: the key's pending uploads may be
// another writer's push of the same name in progress (archive_mode =
// always on a primary and its standby), which the sweep would fail with
// NoSuchUpload; the failed upload aborted its own. MinIO lists pending uploads only by
// exact key, so a run records the keys it starts in its marker
// (Caps.RecordKeys) for DeleteBackup to find after a crash.
type s3Backend struct {
	b      *blob.Bucket
	s3     *s3Bucket // nil: a bucket built by hand without a client (NewStore)
	bucket string    // the bucket's name
	parts  *PartPool // nil: the transfer manager's own buffers
	log    *slog.Logger
}

// newS3BackendFor builds the S3 backend of a bucket opened elsewhere
// (NewStore): the client and name come from the driver; the upload settings
// are the client's defaults.
func newS3BackendFor(b *blob.Bucket) *s3Backend {
	sb := &s3Backend{b: b, log: slog.New(slog.DiscardHandler)}
	var client *s3.Client
	if b.As(&client) && client != nil {
		name, err := s3mpu.BucketName(context.Background(), b)
		if err == nil {
			sb.bucket = name
			sb.s3 = &s3Bucket{client: client, checksum: client.Options().RequestChecksumCalculation}
		}
	}
	return sb
}

func (sb *s3Backend) caps() Caps {
	return Caps{Commit: CommitMultipart, PendingUploads: true, RecordKeys: true, ContentType: true,
		MaxObjectSize: 5 << 40, PartBuffers: PooledParts}
}

// upload hands r to the pooled path or to s3blob's transfer manager, which
// abort the multipart upload themselves when r fails; then it sweeps what a
// failure left pending.
func (sb *s3Backend) upload(ctx context.Context, key string, r io.Reader, o *blob.WriterOptions) error {
	var err error
	if sb.s3 != nil && sb.pooledS3(key, o) {
		err = sb.uploadS3Pooled(ctx, key, r, o)
	} else {
		if sb.s3 != nil {
			o.BeforeWrite = tuneS3Upload(sb.s3, o.BufferSize, o.MaxConcurrency, o.BeforeWrite)
		}
		err = sb.b.Upload(ctx, key, r, o)
	}
	if err != nil && !o.IfNotExist {
		sweep(ctx, sb.log, sb, key)
	}
	return err
}

func (sb *s3Backend) abortPending(ctx context.Context, keyPrefix string) (int, error) {
	return s3mpu.AbortAll(ctx, sb.b, keyPrefix)
}

func (sb *s3Backend) pending(ctx context.Context, keyPrefix string) ([]string, error) {
	ups, err := s3mpu.Pending(ctx, sb.b, keyPrefix)
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(ups))
	for _, u := range ups {
		keys = append(keys, u.Key)
	}
	return keys, nil
}

// sweep removes what a failed upload of key left pending, on a fresh
// context: the upload's may be dead (hard shutdown).
func sweep(ctx context.Context, log *slog.Logger, be backend, key string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s3SweepTimeout)
	defer cancel()
	n, err := be.abortPending(ctx, key)
	if err != nil {
		log.WarnContext(ctx, "could not abort the multipart upload of a failed object; its parts stay in the bucket until aborted",
			"key", key, "error", err)
		return
	}
	if n > 0 {
		log.DebugContext(ctx, "aborted pending multipart uploads", "key", key, "uploads", n)
	}
}
