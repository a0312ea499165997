package storage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pgcloudbackup/pgcloudbackup/internal/hashio"
	"github.com/pgcloudbackup/pgcloudbackup/internal/testsvc"

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

// TestWriterRaces: a producer writes and commits while another goroutine
// aborts, or the caller's context ends, at varying moments (run with
// -race). Whatever the interleaving: a successful Commit means the object
// holds exactly the bytes written and the Tee saw exactly those; a Commit
// that failed without any Abort left no object; an Abort that returned
// before Commit began left no object; no temporary file, no pending
// multipart upload or staged block, no goroutine stays behind.
func TestWriterRaces(t *testing.T) {
	ctx := context.Background()
	for _, scheme := range []string{"mem", "file"} {
		t.Run(scheme, func(t *testing.T) {
			url := "mem://"
			dir := t.TempDir()
			if scheme == "file" {
				url = "file://" + dir
			}
			s, err := Open(ctx, url, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			writerRaces(t, s, 200, 64<<10)
			var tmp []string
			_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
				if err == nil && !d.IsDir() && s.isTempFile(filepath.Base(p)) {
					tmp = append(tmp, p)
				}
				return nil
			})
			if len(tmp) > 0 {
				t.Errorf("temporary files left: %v", tmp)
			}
		})
	}
}

// TestWriterRacesMinIO and TestWriterRacesAzurite: the same on the
// backends whose uploads can leave state behind, with parts small enough
// that most objects are multipart uploads (staged blocks).
func TestWriterRacesMinIO(t *testing.T) {
	m := testsvc.StartMinIO(t, testsvc.MinIOOptions{})
	m.CreateBucket(t, "races")
	m.SetEnv(t)
	s, err := Open(context.Background(), m.BucketURL("races", "p"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	writerRaces(t, s, 40, 2<<20)
}

func TestWriterRacesAzurite(t *testing.T) {
	a := testsvc.StartAzurite(t)
	a.CreateContainer(t, "races")
	a.SetEnv(t)
	s, err := Open(context.Background(), a.BucketURL("races", "p"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	writerRaces(t, s, 40, 2<<20)
}

// writerRaces runs n races on s. Goroutines are counted on backends
// without connections (mem, file): an HTTP client keeps idle ones.
func writerRaces(t *testing.T, s *Store, n, chunkSize int) {
	ctx := context.Background()
	before := runtime.NumGoroutine()
	chunk := bytes.Repeat([]byte("0123456789abcdef"), chunkSize/16)
	partSize := int64(0)
	if s.Limits.MinPartSize > 0 {
		partSize = max(s.Limits.MinPartSize, 1<<20)
	}
	var outcomes [4][2]int // per mode: committed, failed
	late := 0
	for i := 0; i < n; i++ {
		key := s.Key(fmt.Sprintf("race/%03d", i))
		wctx, cancel := context.WithCancel(ctx)
		h := sha256.New()
		tee := &hashio.Writer{W: io.Discard, H: h}
		w := s.NewWriter(wctx, key, WriteOptions{Tee: tee, PartSize: partSize})
		chunks := 1 + i%5
		mode := i % 4 // 0: no interference, 1: Abort, 2: cancel, 3: Abort before Commit
		interfered := make(chan struct{})
		switch mode {
		case 1:
			go func() {
				defer close(interfered)
				for j := 0; j < i%7; j++ {
					runtime.Gosched()
				}
				_ = w.Abort(errors.New("stop"))
			}()
		case 2:
			go func() {
				defer close(interfered)
				for j := 0; j < i%7; j++ {
					runtime.Gosched()
				}
				cancel()
			}()
		default:
			close(interfered)
		}
		var written []byte
		for j := 0; j < chunks; j++ {
			if _, err := w.Write(chunk); err != nil {
				break
			}
			written = append(written, chunk...)
		}
		if mode == 3 {
			if err := w.Abort(nil); !errors.Is(err, ErrAborted) {
				t.Fatalf("%s: Abort = %v", key, err)
			}
		}
		cerr := w.Commit()
		<-interfered
		cancel()
		got, rerr := s.ReadAll(ctx, key, 1<<30)
		exists := rerr == nil
		if rerr != nil && !errors.Is(rerr, ErrNotFound) {
			t.Fatalf("%s: read back: %v", key, rerr)
		}
		switch {
		case cerr == nil && (!exists || !bytes.Equal(got, written)):
			t.Fatalf("%s: Commit succeeded but the object holds %d bytes (exists %v), %d written", key, len(got), exists, len(written))
		case cerr == nil && tee.N != int64(len(written)):
			t.Fatalf("%s: the Tee counted %d bytes, %d stored", key, tee.N, len(written))
		case cerr == nil && !bytes.Equal(h.Sum(nil), sha256Of(got)):
			t.Fatalf("%s: the Tee's hash is not the stored object's", key)
		case cerr != nil && exists && mode != 1:
			t.Fatalf("%s (mode %d): Commit failed (%v) but the object exists", key, mode, cerr)
		}
		if exists && cerr != nil {
			t.Logf("%s: Abort raced a complete stream: object kept, Commit reported %v (documented)", key, cerr)
		}
		if cerr == nil {
			outcomes[mode][0]++
		} else {
			outcomes[mode][1]++
		}
		p, err := s.PendingUploads(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if len(p) != 0 {
			// A request the service received just before the abort (a
			// CreateMultipartUpload, an UploadPart, a StageBlock) can
			// complete after the writer's sweep: measured, not refused;
			// deleting the backup or a later sweep removes it.
			late++
			t.Logf("%s (mode %d, Commit %v): pending after the writer ended: %v", key, mode, cerr, p)
			// Requests still in flight at the service can land after a
			// sweep too: later sweeps must clear them within a few seconds.
			deadline := time.Now().Add(10 * time.Second)
			for {
				if _, err := s.AbortIncompleteUploads(ctx, key); err != nil {
					t.Fatal(err)
				}
				p, err := s.PendingUploads(ctx, key)
				if err != nil {
					t.Fatal(err)
				}
				if len(p) == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: sweeps for 10 s left %v", key, p)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
	t.Logf("per mode (none, Abort, cancel, Abort first) committed/failed: %v; pending after the writer ended: %d of %d", outcomes, late, n)
	if outcomes[0][1] != 0 || outcomes[3][0] != 0 {
		t.Errorf("undisturbed writes failed or writes aborted first committed: %v", outcomes)
	}
	if s.endpoint == "" {
		waitGoroutines(t, before)
	}
}

func sha256Of(b []byte) []byte { s := sha256.Sum256(b); return s[:] }
