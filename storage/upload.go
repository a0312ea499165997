package storage

import (
	"context"
	"fmt"
	"io"
	"sync"

	"gocloud.dev/blob"
)

// copyBufSize is the hand-off size of the non-S3 copy loop: large enough
// that a pipe's producer and the driver trade useful amounts per call.
const copyBufSize = 256 << 10

var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// Upload streams r into the object at key (a full key: see Key and
// BackupKey), all or nothing. When r fails (returns an error other than
// io.EOF; an io.Pipe's producer calls CloseWithError), when the backend
// fails a write or the commit, or when ctx is cancelled, no object is
// created or replaced and, on S3, no multipart upload of key is left
// pending. The error is r's (wrapped with the key), an Interrupted failure
// for a cancelled ctx, else the backend's, classified.
//
// How each backend is kept from committing a partial object (gocloud
// v0.47.0):
//   - S3 (a Store from Open) with a PartPool (SetPartPool): uploadS3Pooled,
//     PutObject or CreateMultipartUpload/UploadPart/Complete with part
//     buffers from the pool; any failure aborts the upload on a fresh
//     context, then the sweep below runs as for the transfer manager.
//   - S3 otherwise: Bucket.Upload through a transfer manager tuned
//     by tuneS3Upload. A reader error aborts the multipart upload on the
//     still-live context; the abort after any failure runs on a fresh one
//     (FailTimeout), so a cancelled ctx leaves no parts either. After any
//     failure the uploads still pending for key are aborted as well
//     (AbortIncompleteUploads on a fresh context), which also clears what an
//     earlier, crashed attempt at the same key left.
//   - azblob: Bucket.Upload, which hands r to the SDK's UploadStream; it
//     commits the block list only after a clean EOF, so a reader error, a
//     failed block or a cancelled ctx commits nothing. (azureblob's Write
//     path is unusable for this: after a failed upload its Close
//     dereferences a pipe its upload goroutine has set to nil, and panics.)
//   - file, mem, gs: a writer and copy loop of its own, because these
//     drivers commit whatever they have when the writer is closed on a live
//     context, and Bucket.Upload closes it so after a reader error or after
//     the driver's own write error (e.g. ENOSPC in fileblob: the partial
//     temporary file is renamed into place). So on ANY error the write's
//     context is cancelled before Close, which makes the driver discard the
//     data.
//
// A Read blocked inside r cannot be interrupted in general. When r has
// CloseWithError (an *io.PipeReader does), cancelling ctx calls it with
// ctx's cause, so the upload ends; and a failed Upload calls it with its
// error, so a producer blocked in Write learns why and stops. Other readers
// must return by themselves.
//
// opts may be nil; ContentType defaults to application/octet-stream (a
// writer without one buffers the start of the stream to sniff it).
func (s *Store) Upload(ctx context.Context, key string, r io.Reader, opts *blob.WriterOptions) error {
	var o blob.WriterOptions
	if opts != nil {
		o = *opts
	}
	if o.ContentType == "" {
		o.ContentType = "application/octet-stream"
	}
	pipe, _ := r.(interface{ CloseWithError(error) error })
	if pipe != nil {
		stop := context.AfterFunc(ctx, func() { _ = pipe.CloseWithError(context.Cause(ctx)) })
		defer stop() // a finished upload leaves r alone
	}
	if res := s.reservation.Load(); res != nil {
		// Before the upload starts: a crash from here on leaves a key
		// the backup's deletion can find.
		if err := res.record(ctx, key); err != nil {
			if pipe != nil {
				_ = pipe.CloseWithError(err)
			}
			return err
		}
	}
	src := &failingReader{r: r}
	var err error
	switch {
	case s.s3 != nil:
		err = s.uploadS3(ctx, key, src, &o)
	case s.Scheme == "azblob":
		// UploadStream reads src itself and commits the block list only
		// after a clean EOF. (The driver's Write path, which uploadStream
		// would take, panics in Close after a failed upload.)
		err = s.Bucket.Upload(ctx, key, src, &o)
	default:
		err = s.uploadStream(ctx, key, src, &o)
	}
	if err == nil {
		return nil
	}
	switch rerr := src.failure(); {
	case ctx.Err() != nil:
		err = s.Classify(ctx.Err(), "upload "+key)
	case rerr != nil:
		err = fmt.Errorf("upload %s: %w", key, rerr)
	default:
		err = s.Classify(err, "upload "+key)
	}
	if pipe != nil {
		_ = pipe.CloseWithError(err)
	}
	return err
}

// uploadS3 hands r to s3blob's transfer manager, which aborts the multipart
// upload itself when r fails; then it sweeps what a failure left pending.
func (s *Store) uploadS3(ctx context.Context, key string, r io.Reader, o *blob.WriterOptions) error {
	var err error
	if s.pooledS3(key, o) {
		err = s.uploadS3Pooled(ctx, key, r, o)
	} else {
		o.BeforeWrite = tuneS3Upload(s.s3, o.BufferSize, o.MaxConcurrency, o.BeforeWrite)
		err = s.Bucket.Upload(ctx, key, r, o)
	}
	if err != nil {
		s.sweep(ctx, key)
	}
	return err
}

// sweep aborts the multipart uploads still pending for key after a failed
// upload, on a fresh context: the upload's may be dead (hard shutdown).
func (s *Store) sweep(ctx context.Context, key string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s3SweepTimeout)
	defer cancel()
	n, err := s.AbortIncompleteUploads(ctx, key)
	if err != nil {
		s.logger().WarnContext(ctx, "could not abort the multipart upload of a failed object; its parts stay in the bucket until aborted",
			"key", key, "error", err)
		return
	}
	if n > 0 {
		s.logger().DebugContext(ctx, "aborted pending multipart uploads", "key", key, "uploads", n)
	}
}

// uploadStream copies r into a writer of its own, so that it can cancel
// the write before closing it whichever side failed.
func (s *Store) uploadStream(ctx context.Context, key string, r io.Reader, o *blob.WriterOptions) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := s.Bucket.NewWriter(wctx, key, o)
	if err != nil {
		return err
	}
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	// Plain io.Writer: blob.Writer's ReadFrom would copy with a buffer of
	// its own.
	if _, err := io.CopyBuffer(struct{ io.Writer }{w}, r, *bp); err != nil {
		cancel() // first: closed on a live context the driver commits
		_ = w.Close()
		return err
	}
	return w.Close()
}

// failingReader remembers the first error (other than io.EOF) of r, so that
// Upload can tell the reader's failure from the backend's.
type failingReader struct {
	r   io.Reader
	mu  sync.Mutex
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err != nil && err != io.EOF {
		f.mu.Lock()
		if f.err == nil {
			f.err = err
		}
		f.mu.Unlock()
	}
	return n, err
}

func (f *failingReader) failure() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}
