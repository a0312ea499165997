package storage

import (
	"context"
	"io"
	"sync"

	"gocloud.dev/blob"
)

// streamBackend uploads to file://, mem:// and gs:// buckets.
//
// Commit and abort rules (gocloud v0.47.0): these drivers commit whatever
// they have when the writer is closed on a live context, and the bucket's
// own Upload closes it so after a reader error or after the driver's own
// write error (e.g. ENOSPC in fileblob: the partial temporary file is
// renamed into place; storagetest DriverReaderErrorBehaviour and
// DriverWriteErrorBehaviour pin this). So upload runs a writer and copy
// loop of its own and, on ANY error, cancels the write's context before
// Close, which makes the driver discard the data: fileblob removes its
// temporary file, memblob stores nothing, gcsblob abandons the resumable
// upload (nothing to sweep). Nothing is pending after a failure.
type streamBackend struct {
	b *blob.Bucket
	c Caps
}

func (sb *streamBackend) caps() Caps { return sb.c }

// copyBufSize is the hand-off size of the copy loop: large enough that a
// pipe's producer and the driver trade useful amounts per call.
const copyBufSize = 256 << 10

var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// upload copies r into a writer of its own, so that it can cancel the
// write before closing it whichever side failed.
func (sb *streamBackend) upload(ctx context.Context, key string, r io.Reader, o *blob.WriterOptions) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := sb.b.NewWriter(wctx, key, o)
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

func (sb *streamBackend) abortPending(context.Context, string) (int, error) { return 0, nil }

func (sb *streamBackend) pending(context.Context, string) ([]string, error) { return nil, nil }

// streamPartBuffers is how a streaming backend holds parts: gcsblob's
// writer buffers one chunk (WriterOptions.BufferSize) per object to resend
// it on a retry; fileblob and memblob hold none (copyBufSize only).
func streamPartBuffers(scheme string) PartBuffers {
	if scheme == "gs" {
		return OnePartPerObject
	}
	return NoPartBuffers
}
