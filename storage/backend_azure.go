package storage

import (
	"context"
	"io"
	"log/slog"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"gocloud.dev/blob"
)

// azureBackend uploads to Azure block blobs.
//
// Commit and abort rules (gocloud v0.47.0): the bucket's Upload hands r to
// the SDK's UploadStream, which stages blocks as it reads and commits the
// block list only after a clean EOF, so a reader error, a failed block or a
// cancelled ctx commits nothing and an existing blob stays as it was. The
// blocks already staged stay behind, uncommitted, until Azure drops them
// after 7 days: after a failed upload they are discarded at once
// (discardUncommitted, on a fresh context), as S3's sweep does for parts;
// never after a failed conditional create (a WAL push), refused or not: the
// key's staged blocks may be another writer's push of the same name in
// progress (archive_mode = always on a primary and its standby), which the
// discard would fail, and whose empty placeholder blob it would briefly
// create. Those blocks expire as before this sweep existed.
// (azureblob's Write path is unusable for this: after a failed upload its
// Close dereferences a pipe its upload goroutine has set to nil, and
// panics; so every write, WriteAll included, goes through Upload.)
type azureBackend struct {
	b   *blob.Bucket
	cc  *container.Client // nil: a bucket built by hand without one (nothing to discard)
	log *slog.Logger
}

func newAzureBackend(b *blob.Bucket, log *slog.Logger) *azureBackend {
	ab := &azureBackend{b: b, log: log}
	if !b.As(&ab.cc) {
		ab.cc = nil
	}
	return ab
}

func (ab *azureBackend) caps() Caps {
	// UploadStream holds Concurrency blocks of BlockSize per object
	// (azblob v1.8.0 copyFromReader: anonymous mmaps, outside Go's heap).
	return Caps{Commit: CommitBlockList, PendingUploads: true, ContentType: true,
		MaxObjectSize: 50000 * 4000 * mib, PartBuffers: PartsInFlightPerObject}
}

func (ab *azureBackend) upload(ctx context.Context, key string, r io.Reader, o *blob.WriterOptions) error {
	err := ab.b.Upload(ctx, key, r, o)
	if err != nil && ab.cc != nil && !o.IfNotExist {
		sweep(ctx, ab.log, ab, key)
	}
	return err
}

func (ab *azureBackend) abortPending(ctx context.Context, keyPrefix string) (int, error) {
	if ab.cc == nil {
		return 0, nil
	}
	return discardUncommitted(ctx, ab.cc, keyPrefix)
}

func (ab *azureBackend) pending(ctx context.Context, keyPrefix string) ([]string, error) {
	if ab.cc == nil {
		return nil, nil
	}
	return listUncommitted(ctx, ab.cc, keyPrefix)
}
