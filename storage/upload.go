package storage

import (
	"context"
	"fmt"
	"io"
	"sync"

	"gocloud.dev/blob"
)

// upload streams r into the object at key (a full key: see Key and
// BackupKey), all or nothing: when r fails (returns an error other than
// io.EOF), when the backend fails a write or the commit, or when ctx is
// cancelled, no object is created or replaced and nothing is left pending
// (each backend's file says how). The error is r's (wrapped with the key),
// an Interrupted failure for a cancelled ctx, else the backend's,
// classified.
//
// A Read blocked inside r cannot be interrupted: r must return by itself
// (a Writer owns its pipe and closes it on Abort and on ctx's end).
//
// ContentType defaults to application/octet-stream (a writer without one
// buffers the start of the stream to sniff it).
func (s *Store) upload(ctx context.Context, key string, r io.Reader, opts *blob.WriterOptions) error {
	var o blob.WriterOptions
	if opts != nil {
		o = *opts
	}
	if o.ContentType == "" {
		o.ContentType = "application/octet-stream"
	}
	if res := s.reservation.Load(); res != nil {
		// Before the upload starts: a crash from here on leaves a key
		// the backup's deletion can find.
		if err := res.record(ctx, key); err != nil {
			return err
		}
	}
	src := &failingReader{r: r}
	err := s.be.upload(ctx, key, src, &o)
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
	return err
}

// failingReader remembers the first error (other than io.EOF) of r, so that
// upload can tell the reader's failure from the backend's.
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
