package storage

import (
	"context"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"gocloud.dev/blob"
	"gocloud.dev/blob/memblob"
)

// fakeBackend is a backend whose upload the test steers: it reads take
// bytes of r, then fails with fail (nil: reads to EOF and succeeds), or
// blocks until its context ends when block is set.
type fakeBackend struct {
	streamBackend
	take  int64
	fail  error
	block bool
	read  chan int64 // receives how much upload read, when it returns
}

func (f *fakeBackend) upload(ctx context.Context, key string, r io.Reader, o *blob.WriterOptions) error {
	var n int64
	defer func() { f.read <- n }()
	if f.block {
		<-ctx.Done()
		return ctx.Err()
	}
	if f.fail != nil {
		n, _ = io.CopyN(io.Discard, r, f.take)
		return f.fail
	}
	n, err := io.Copy(io.Discard, r)
	return err
}

func fakeStore(f *fakeBackend) *Store {
	b := memblob.OpenBucket(nil)
	f.streamBackend = streamBackend{b: b}
	f.read = make(chan int64, 1)
	return &Store{Scheme: "mem", bucket: b, be: f}
}

// countWriter counts what the Tee sees.
type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// waitGoroutines waits until no more goroutines run than before (the
// writer's upload goroutine and context watchers have ended).
func waitGoroutines(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		runtime.Gosched()
	}
}

// TestWriterBackendErrorReachesWrite: a backend that fails mid-stream
// unblocks the producer's Write with its own error (not the pipe's "closed
// pipe"), Commit returns it too, the Tee saw only what the backend read,
// and nothing keeps running.
func TestWriterBackendErrorReachesWrite(t *testing.T) {
	before := runtime.NumGoroutine()
	errDisk := errors.New("no space left on device")
	f := &fakeBackend{take: 1000, fail: errDisk}
	s := fakeStore(f)
	var tee countWriter
	w := s.NewWriter(context.Background(), "k", WriteOptions{Tee: &tee})
	var werr error
	for i := 0; i < 100 && werr == nil; i++ {
		_, werr = w.Write(make([]byte, 4096))
	}
	if !errors.Is(werr, errDisk) || !strings.Contains(werr.Error(), "k") {
		t.Fatalf("Write = %v, want the backend's error naming the key", werr)
	}
	if err := w.Commit(); !errors.Is(err, errDisk) {
		t.Errorf("Commit = %v, want the backend's error", err)
	}
	if n := <-f.read; tee.n != n {
		t.Errorf("the Tee counted %d bytes, the backend read %d", tee.n, n)
	}
	<-w.Done()
	waitGoroutines(t, before)
}

// TestWriterAbortHungBackend: Abort returns although the backend never
// reads (a hung connection), with the cause, and a blocked Write learns it.
func TestWriterAbortHungBackend(t *testing.T) {
	before := runtime.NumGoroutine()
	f := &fakeBackend{block: true}
	s := fakeStore(f)
	w := s.NewWriter(context.Background(), "k", WriteOptions{})
	wrote := make(chan error, 1)
	go func() {
		_, err := w.Write(make([]byte, 1<<20))
		wrote <- err
	}()
	cause := errors.New("source vanished")
	if err := w.Abort(cause); !errors.Is(err, cause) {
		t.Fatalf("Abort = %v, want the cause", err)
	}
	if err := <-wrote; !errors.Is(err, cause) {
		t.Errorf("blocked Write = %v, want the cause", err)
	}
	<-f.read
	waitGoroutines(t, before)
}

// TestWriterCallerContextEnds: a writer whose caller's context ends before
// any Write ends its upload by itself (Done), Commit reports the
// interruption rather than success, and nothing keeps running.
func TestWriterCallerContextEnds(t *testing.T) {
	before := runtime.NumGoroutine()
	f := &fakeBackend{}
	s := fakeStore(f)
	ctx, cancel := context.WithCancel(context.Background())
	w := s.NewWriter(ctx, "k", WriteOptions{})
	if _, err := w.Write([]byte("half")); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case <-w.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the upload did not end with its context")
	}
	if _, err := w.Write([]byte("more")); !errors.Is(err, context.Canceled) {
		t.Errorf("Write after the context ended = %v, want context.Canceled", err)
	}
	if err := w.Commit(); err == nil {
		t.Errorf("Commit after the context ended succeeded")
	}
	<-f.read
	waitGoroutines(t, before)
}
