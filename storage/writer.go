package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
)

// ErrAborted is the cause Abort records when it is given none.
var ErrAborted = errors.New("upload aborted")

// Writer is one object being written, all or nothing on every backend:
// Write streams bytes to the backend as they come, Commit makes the object
// appear, Abort(cause) makes sure it never does and that nothing of it is
// left pending (S3 multipart uploads, Azure staged blocks, temporary files).
//
// It owns the pipe between the caller and the backend's upload goroutine,
// and with it the abort protocol:
//   - Abort closes the pipe with its cause (an upload reading it aborts on
//     that error, on S3 with its context still alive), then cancels the
//     upload's context (a backend write that hangs never reads the pipe
//     again), then waits for the upload to finish aborting;
//   - when the caller's context ends (hard shutdown) the pipe is closed
//     with its cause, so a stream waiting for the next Write ends too;
//   - when the backend fails by itself, the pipe is closed with its error,
//     so a Write blocked in the pipe returns the real reason.
//
// Every error names the key; a refused conditional create is
// errors.Is(err, ErrExists). Write and Commit must not be called
// concurrently with each other; Abort may be called from any goroutine,
// also to unblock a Write that waits for the backend.
type Writer struct {
	key       string
	ctx       context.Context // the upload's; cancelled when it ends
	cancel    context.CancelCauseFunc
	pw        *io.PipeWriter
	stopWatch func() bool
	stopOnce  sync.Once

	mu    sync.Mutex
	state writerState
	err   error // the recorded failure, named: Commit refuses once set
	cause error // why Abort closed the pipe

	done  chan struct{} // closed when the upload goroutine has finished
	upErr error         // the upload's outcome, valid after done
}

type writerState int

const (
	writing writerState = iota
	committed
	failed
)

// NewWriter starts the upload of the object at key (a full key: see Key and
// BackupKey). The caller must end it with Commit or Abort. Nothing is
// created before Commit; a run's reservation records the key first (see
// Reserve).
func (s *Store) NewWriter(ctx context.Context, key string, o WriteOptions) *Writer {
	pr, pw := io.Pipe()
	w := &Writer{key: key, pw: pw, done: make(chan struct{})}
	w.ctx, w.cancel = context.WithCancelCause(ctx)
	// Pipe reads do not watch contexts.
	w.stopWatch = context.AfterFunc(w.ctx, func() { pw.CloseWithError(context.Cause(w.ctx)) })
	bo := o.blob()
	var src io.Reader = pr
	if o.Tee != nil {
		src = io.TeeReader(pr, o.Tee)
	}
	go func() {
		defer close(w.done)
		err := mark(s.upload(w.ctx, key, src, bo))
		w.stopWatch()
		if err != nil {
			pr.CloseWithError(uploadError{err})
		}
		w.cancel(err)
		w.upErr = err
	}()
	return w
}

// Done is closed once the backend's upload has ended: committed, failed,
// aborted, or ended with the caller's context (which needs no Write).
func (w *Writer) Done() <-chan struct{} { return w.done }

// uploadError carries the upload's error through the pipe to a blocked
// Write; it already names the key.
type uploadError struct{ err error }

func (e uploadError) Error() string { return e.err.Error() }
func (e uploadError) Unwrap() error { return e.err }

// Write streams p to the backend. An error means the object will not be
// committed; the caller should Abort (Commit returns the same error).
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	state, failure := w.state, w.err
	w.mu.Unlock()
	switch {
	case state == committed:
		return 0, fmt.Errorf("upload %s: write after Commit", w.key)
	case failure != nil: // failed, aborted, or Fail: the stream is damaged
		return 0, failure
	}
	n, err := w.pw.Write(p)
	if err != nil {
		return n, w.Fail(w.explain(err))
	}
	return n, nil
}

// Fail records err as the reason this object must not be committed (the
// caller's stream is damaged: a codec failed), unless a failure is already
// recorded, and returns the recorded one, named with the key. It does not
// wait for anything: Commit then refuses, and Abort ends the upload.
func (w *Writer) Fail(err error) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil {
		w.err = w.named(err)
	}
	return w.err
}

// Commit ends the stream and waits for the backend to commit the object.
// On an error nothing was committed and nothing is left pending: the
// upload has been aborted. Commit after Abort or after a failure returns
// that failure.
func (w *Writer) Commit() error {
	w.mu.Lock()
	switch {
	case w.state == committed:
		w.mu.Unlock()
		return nil
	case w.state == failed || w.err != nil:
		err := w.err
		w.mu.Unlock()
		return w.Abort(err)
	}
	w.mu.Unlock()
	w.pw.Close() // end of stream: the upload completes
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.upErr != nil {
		w.state = failed
		if w.err == nil {
			w.err = w.upErr // the upload's error names the key
		}
		return w.err
	}
	if w.state == failed {
		// Abort ran while the stream was already complete: too late to
		// stop the commit. The object exists, but the caller asked to
		// abort, so it hears the abort's error, as Abort's caller did.
		return w.err
	}
	w.state = committed
	return nil
}

// Abort stops the upload so that no object is created or replaced and
// nothing of it stays pending, and returns once that is done. It is
// idempotent and a no-op after a successful Commit. A nil cause records
// ErrAborted. It returns the recorded failure: the first of a failed Write,
// Fail, the backend's error, or cause.
func (w *Writer) Abort(cause error) error {
	if cause == nil {
		cause = ErrAborted
	}
	w.mu.Lock()
	if w.state == committed {
		w.mu.Unlock()
		return nil
	}
	w.state = failed
	if w.cause == nil {
		w.cause = cause
	}
	if w.err == nil {
		w.err = w.named(cause)
	}
	err := w.err
	w.mu.Unlock()
	w.stopOnce.Do(func() {
		w.pw.CloseWithError(cause)
		w.cancel(cause)
	})
	<-w.done
	return err
}

// named returns err prefixed with the key, unless it is the upload's, which
// already is.
func (w *Writer) named(err error) error {
	var ue uploadError
	if errors.As(err, &ue) {
		return ue.err
	}
	return fmt.Errorf("upload %s: %w", w.key, err)
}

// explain turns the pipe's generic "closed pipe" into the reason it was
// closed: Abort's cause, else the context's.
func (w *Writer) explain(err error) error {
	if !errors.Is(err, io.ErrClosedPipe) {
		return err
	}
	w.mu.Lock()
	c := w.cause
	w.mu.Unlock()
	if c == nil {
		c = context.Cause(w.ctx)
	}
	if c != nil {
		return c
	}
	return err
}
