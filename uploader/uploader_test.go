package uploader

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"gocloud.dev/blob"
	"gocloud.dev/blob/fileblob"
	"gocloud.dev/blob/memblob"

	"github.com/pgcloudbackup/pgcloudbackup/codec"
	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
	"github.com/pgcloudbackup/pgcloudbackup/internal/faultyblob"
	"github.com/pgcloudbackup/pgcloudbackup/storage"
)

// backend is a store plus a way to see every file it left on disk.
type backend struct {
	name   string
	store  *storage.Store
	bucket *blob.Bucket // the bucket under store
	dir    string       // fileblob root ("" for memblob)
}

func memBackend(t *testing.T) backend {
	b := memblob.OpenBucket(nil)
	t.Cleanup(func() { b.Close() })
	return backend{name: "mem", store: storage.NewStore(b, "mem"), bucket: b}
}

func fileBackend(t *testing.T) backend {
	dir := t.TempDir()
	b, err := fileblob.OpenBucket(dir, &fileblob.Options{NoTempDir: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return backend{name: "file", store: storage.NewStore(b, "file"), bucket: b, dir: dir}
}

// faulty returns a store over be's bucket that fails as f says.
func (be backend) faulty(f *faultyblob.Faults) *storage.Store {
	return storage.NewStore(faultyblob.New(be.bucket, f), be.name)
}

func backends(t *testing.T) []backend { return []backend{memBackend(t), fileBackend(t)} }

// files lists every regular file under the fileblob root (objects, their
// .attrs sidecars and any temp file).
func (be backend) files(t *testing.T) []string {
	t.Helper()
	if be.dir == "" {
		return nil
	}
	var out []string
	err := filepath.WalkDir(be.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(be.dir, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// assertGone checks that key is not in the bucket and that nothing at all
// (no object, no temp file) is left on disk for it.
func (be backend) assertGone(t *testing.T, key string) {
	t.Helper()
	ok, err := be.bucket.Exists(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	if ok {
		t.Errorf("%s: object %s exists after a failed upload", be.name, key)
	}
	for _, f := range be.files(t) {
		if strings.HasPrefix(f, key) {
			t.Errorf("%s: file %s left behind", be.name, f)
		}
	}
}

// testData mixes compressible text, zeros and random bytes.
func testData(n int, seed byte) []byte {
	rng := rand.NewChaCha8([32]byte{seed})
	buf := make([]byte, n)
	for off := 0; off < n; off += 64 << 10 {
		end := min(n, off+64<<10)
		switch (off >> 16) % 3 {
		case 0:
			copy(buf[off:end], strings.Repeat("pg_class row filler ", 4000))
		case 2:
			_, _ = rng.Read(buf[off:end])
		}
	}
	return buf
}

func randomData(n int, seed byte) []byte {
	buf := make([]byte, n)
	_, _ = rand.NewChaCha8([32]byte{seed}).Read(buf)
	return buf
}

// writeAll writes data in the engine's pattern: a 512-byte header, then
// 256 KiB chunks.
func writeAll(o *Object, data []byte) error {
	for i := 0; len(data) > 0; i++ {
		n := 256 << 10
		if i%5 == 0 {
			n = 512
		}
		n = min(n, len(data))
		if _, err := o.Write(data[:n]); err != nil {
			return err
		}
		data = data[n:]
	}
	return nil
}

// readBack returns the stored bytes and their decompressed content.
func readBack(t *testing.T, s *storage.Store, key string) (stored, raw []byte) {
	t.Helper()
	ctx := context.Background()
	stored, err := s.ReadAll(ctx, key, 1<<30)
	if err != nil {
		t.Fatalf("read back %s: %v", key, err)
	}
	// Archive keys end in ".tar" and the codec's suffix; others are stored as is.
	ext := ""
	if i := strings.LastIndex(key, ".tar"); i >= 0 {
		ext = key[i+len(".tar"):]
	}
	c, err := codec.ForExt(ext)
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.NewReader(bytes.NewReader(stored))
	if err != nil {
		t.Fatalf("open %s as %s: %v", key, c.Name(), err)
	}
	defer r.Close()
	raw, err = io.ReadAll(r)
	if err != nil {
		t.Fatalf("decompress %s: %v", key, err)
	}
	return stored, raw
}

func hexSHA(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func TestRoundTrip(t *testing.T) {
	ctx := context.Background()
	data := testData(5<<20, 1)
	for _, be := range backends(t) {
		for _, c := range []codec.Codec{codec.None, codec.Zstd, codec.LZ4, codec.Gzip} {
			for _, in := range [][]byte{data, {}} {
				name := fmt.Sprintf("%s/%s/%d", be.name, c.Name(), len(in))
				t.Run(name, func(t *testing.T) {
					u := New(be.store, Options{Codec: c})
					key := fmt.Sprintf("backups/1/base-%d.00001.tar%s", len(in), c.Ext())
					o, err := u.Open(ctx, key, ObjectOptions{SizeHint: int64(len(in))})
					if err != nil {
						t.Fatal(err)
					}
					if err := writeAll(o, in); err != nil {
						t.Fatal(err)
					}
					if o.Written() != int64(len(in)) {
						t.Fatalf("Written = %d, want %d", o.Written(), len(in))
					}
					res, err := o.Close()
					if err != nil {
						t.Fatal(err)
					}
					stored, raw := readBack(t, be.store, key)
					if !bytes.Equal(raw, in) {
						t.Fatalf("stored object decompresses to %d bytes, want the %d written", len(raw), len(in))
					}
					want := Result{Key: key, Size: int64(len(stored)), RawSize: int64(len(in)), SHA256: hexSHA(stored)}
					if res != want {
						t.Fatalf("Result = %+v\nwant     %+v (from the object read back)", res, want)
					}
					attrs, err := be.bucket.Attributes(ctx, key)
					if err != nil {
						t.Fatal(err)
					}
					if wantCT := map[string]string{"none": "application/octet-stream", "zstd": "application/zstd", "lz4": "application/x-lz4", "gzip": "application/gzip"}[c.Name()]; attrs.ContentType != wantCT {
						t.Errorf("content type %q, want %q", attrs.ContentType, wantCT)
					}
					// Close again returns the same result; Abort after a
					// successful Close leaves the object alone.
					if again, err := o.Close(); err != nil || again != res {
						t.Errorf("second Close = %+v, %v", again, err)
					}
					o.Abort(errors.New("too late"))
					if ok, _ := be.bucket.Exists(ctx, key); !ok {
						t.Error("Abort after Close removed the object")
					}
					if _, err := o.Write([]byte("x")); err == nil {
						t.Error("Write after Close succeeded")
					}
				})
			}
		}
	}
}

func TestRawAndPut(t *testing.T) {
	ctx := context.Background()
	be := fileBackend(t)
	u := New(be.store, Options{Codec: codec.Zstd})
	doc := []byte(`{"format": 1}`)
	res, err := u.Put(ctx, "backups/1/manifest.json", doc, "application/json")
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := readBack(t, be.store, res.Key)
	if !bytes.Equal(stored, doc) || res.SHA256 != hexSHA(doc) || res.Size != int64(len(doc)) || res.RawSize != int64(len(doc)) {
		t.Fatalf("Put stored %q, result %+v", stored, res)
	}
	if a, _ := be.bucket.Attributes(ctx, res.Key); a == nil || a.ContentType != "application/json" {
		t.Fatalf("content type: %+v", a)
	}
	// A compressed object's key must carry the codec's extension, so that
	// restore can tell how to read it.
	if _, err := u.Open(ctx, "backups/1/base.00001.tar", ObjectOptions{}); err == nil {
		t.Fatal("Open accepted a zstd object without .zst")
	}
}

func TestAbortMidStream(t *testing.T) {
	ctx := context.Background()
	for _, be := range backends(t) {
		for _, c := range []codec.Codec{codec.None, codec.Zstd} {
			t.Run(be.name+"/"+c.Name(), func(t *testing.T) {
				u := New(be.store, Options{Codec: c})
				key := "backups/1/aborted.00001.tar" + c.Ext()
				o, err := u.Open(ctx, key, ObjectOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if err := writeAll(o, testData(3<<20, 2)); err != nil {
					t.Fatal(err)
				}
				cause := errors.New("walk failed")
				o.Abort(cause)
				be.assertGone(t, key)
				if _, err := o.Close(); !errors.Is(err, cause) {
					t.Errorf("Close after Abort = %v, want the abort cause", err)
				}
				if _, err := o.Write([]byte("x")); !errors.Is(err, cause) {
					t.Errorf("Write after Abort = %v, want the abort cause", err)
				}
				o.Abort(nil) // idempotent
				be.assertGone(t, key)
				if files := be.files(t); len(files) != 0 {
					t.Errorf("bucket directory not empty: %v", files)
				}
			})
		}
	}
}

// TestAbortUnblocksWrite: a Write waiting on a hung upload returns when
// another goroutine aborts, and nothing is committed.
func TestAbortUnblocksWrite(t *testing.T) {
	ctx := context.Background()
	be := fileBackend(t)
	f := &faultyblob.Faults{}
	f.StallWrite(1, 1<<20)
	u := New(be.faulty(f), Options{})
	key := "stalled.tar"
	o, err := u.Open(ctx, key, ObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- writeAll(o, randomData(8<<20, 3)) }()
	select {
	case err := <-errc:
		t.Fatalf("writes finished although the upload hangs: %v", err)
	case <-f.Stalled():
	case <-time.After(10 * time.Second):
		t.Fatal("the upload never reached its stall")
	}
	cause := errors.New("operator pressed ^C")
	aborted := make(chan struct{})
	go func() { o.Abort(cause); close(aborted) }()
	select {
	case <-aborted:
	case <-time.After(10 * time.Second):
		t.Fatal("Abort hangs on a hung upload")
	}
	select {
	case err := <-errc:
		if !errors.Is(err, cause) {
			t.Errorf("blocked Write returned %v, want the abort cause", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Abort did not unblock Write")
	}
	be.assertGone(t, key)
	if files := be.files(t); len(files) != 0 {
		t.Errorf("left %v", files)
	}
}

// TestBackendFailures injects failures on the bucket side of the pipe: each
// must surface from Write or Close and leave nothing behind.
func TestBackendFailures(t *testing.T) {
	ctx := context.Background()
	boom := errors.New("injected backend failure")
	cases := []struct {
		name   string
		inject func(*faultyblob.Faults)
		size   int
	}{
		// The backend dies in the middle of a large stream: Write sees it.
		{"write-after-1MiB", func(f *faultyblob.Faults) { f.FailWrite(1, 1<<20, boom) }, 6 << 20},
		// The whole object sits in buffers until Close: Close's flush is
		// the first to meet the failed pipe reader.
		{"write-small-object", func(f *faultyblob.Faults) { f.FailWrite(1, 10, boom) }, 100 << 10},
		// The writer never opens.
		{"open", func(f *faultyblob.Faults) { f.Fail(faultyblob.NewWriter, 1, boom) }, 2 << 20},
		// Everything is written, the commit fails.
		{"commit", func(f *faultyblob.Faults) { f.FailClose(1, boom) }, 2 << 20},
	}
	for _, tc := range cases {
		for _, c := range []codec.Codec{codec.None, codec.Gzip} {
			t.Run(tc.name+"/"+c.Name(), func(t *testing.T) {
				be := fileBackend(t)
				f := &faultyblob.Faults{}
				tc.inject(f)
				u := New(be.faulty(f), Options{Codec: c})
				key := "backups/1/base.00001.tar" + c.Ext()
				o, err := u.Open(ctx, key, ObjectOptions{})
				if err != nil {
					t.Fatal(err)
				}
				werr := writeAll(o, randomData(tc.size, 4))
				_, cerr := o.Close()
				if cerr == nil {
					t.Fatalf("Close succeeded although the backend failed (write error: %v)", werr)
				}
				if !errors.Is(cerr, boom) {
					t.Errorf("Close error %v does not carry the backend's", cerr)
				}
				if werr != nil && !errors.Is(werr, boom) {
					t.Errorf("Write error %v does not carry the backend's", werr)
				}
				// One line naming the object once (Store.Upload's error
				// already names it).
				for _, err := range []error{werr, cerr} {
					if err != nil && strings.Count(err.Error(), key) != 1 {
						t.Errorf("error %q does not name %s exactly once", err, key)
					}
				}
				o.Abort(nil) // safe after a failed Close
				be.assertGone(t, key)
				if files := be.files(t); len(files) != 0 {
					t.Errorf("left %v", files)
				}
				// The bucket is usable afterwards: the next object commits.
				f.Reset()
				if _, err := u.Put(ctx, "after", []byte("ok"), ""); err != nil {
					t.Fatalf("next object: %v", err)
				}
			})
		}
	}
}

// TestContextCancelled is the hard shutdown: the caller's context ends
// mid-stream, while writing or while idle between writes.
func TestContextCancelled(t *testing.T) {
	for _, be := range backends(t) {
		for _, idle := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/idle=%v", be.name, idle), func(t *testing.T) {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				u := New(be.store, Options{Codec: codec.Zstd})
				key := fmt.Sprintf("cancelled-%v.tar.zst", idle)
				o, err := u.Open(ctx, key, ObjectOptions{})
				if err != nil {
					t.Fatal(err)
				}
				data := randomData(4<<20, 5)
				if err := writeAll(o, data[:2<<20]); err != nil {
					t.Fatal(err)
				}
				cancel()
				if idle {
					// Nobody writes: the upload must still end by itself,
					// so Written stops and nothing is committed even if the
					// caller never comes back.
					select {
					case <-o.w.Done():
					case <-time.After(10 * time.Second):
						t.Fatal("upload goroutine still running after its context ended")
					}
					be.assertGone(t, key)
				}
				werr := writeAll(o, data[2<<20:])
				_, cerr := o.Close()
				if cerr == nil || !errors.Is(cerr, context.Canceled) {
					t.Fatalf("Close after cancel = %v (write: %v), want context canceled", cerr, werr)
				}
				be.assertGone(t, key)
				if files := be.files(t); len(files) != 0 {
					t.Errorf("left %v", files)
				}
			})
		}
	}
	// Open refuses a context that is already done.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := New(memBackend(t).store, Options{}).Open(ctx, "k", ObjectOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("Open with a dead context: %v", err)
	}
}

// TestParallel runs many objects at once (run with -race): every committed
// one is intact and every aborted one absent.
func TestParallel(t *testing.T) {
	ctx := context.Background()
	for _, be := range backends(t) {
		t.Run(be.name, func(t *testing.T) {
			codecs := []codec.Codec{codec.None, codec.Zstd, codec.LZ4, codec.Gzip}
			uploaders := make([]*Uploader, len(codecs))
			for i, c := range codecs {
				uploaders[i] = New(be.store, Options{Codec: c})
			}
			const n = 16
			inputs := make([][]byte, n)
			results := make([]Result, n)
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i := 0; i < n; i++ {
				inputs[i] = testData(200<<10+i*37_000, byte(i))
				wg.Add(1)
				go func() {
					defer wg.Done()
					u := uploaders[i%len(uploaders)]
					key := fmt.Sprintf("par/%02d.tar%s", i, u.Codec().Ext())
					o, err := u.Open(ctx, key, ObjectOptions{SizeHint: int64(len(inputs[i]))})
					if err != nil {
						errs[i] = err
						return
					}
					if err := writeAll(o, inputs[i]); err != nil {
						errs[i] = err
						return
					}
					if i%4 == 3 {
						o.Abort(nil)
						results[i] = Result{Key: key}
						return
					}
					results[i], errs[i] = o.Close()
				}()
			}
			wg.Wait()
			for i := 0; i < n; i++ {
				if errs[i] != nil {
					t.Fatalf("object %d: %v", i, errs[i])
				}
				if i%4 == 3 {
					be.assertGone(t, results[i].Key)
					continue
				}
				stored, raw := readBack(t, be.store, results[i].Key)
				if !bytes.Equal(raw, inputs[i]) || results[i].SHA256 != hexSHA(stored) || results[i].Size != int64(len(stored)) {
					t.Errorf("object %d damaged: %+v", i, results[i])
				}
			}
		})
	}
}

func TestOptionsValidation(t *testing.T) {
	ctx := context.Background()
	s3, file := storage.LimitsFor("s3"), storage.LimitsFor("file")
	for _, tc := range []struct {
		limits storage.Limits
		opts   Options
		ok     bool
	}{
		{s3, Options{}, true},
		{s3, Options{PartSize: 5 << 20}, true},
		{s3, Options{PartSize: 5 << 30}, true},
		{s3, Options{PartSize: 4 << 20}, false},
		{s3, Options{PartSize: 5<<30 + 1}, false},
		{s3, Options{PartSize: -1}, false},
		{s3, Options{Concurrency: -1}, false},
		{file, Options{PartSize: 1}, true},
	} {
		// A memory bucket with the limits under test.
		store := storage.NewStore(memblob.OpenBucket(nil), "mem")
		store.Limits = tc.limits
		u := New(store, tc.opts)
		err := u.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("%+v: Validate = %v", tc.opts, err)
			continue
		}
		o, oerr := u.Open(ctx, "k", ObjectOptions{})
		if tc.ok {
			if oerr != nil {
				t.Errorf("%+v: Open = %v", tc.opts, oerr)
			} else {
				o.Abort(nil)
			}
			continue
		}
		if oerr == nil || failure.KindOf(oerr) != failure.Usage {
			t.Errorf("%+v: Open = %v, want a usage error", tc.opts, oerr)
		}
	}
}

// TestWriteDoesNotAllocate: the engine calls Write for every tar header and
// every 256 KiB chunk, so the steady state must not allocate per call.
func TestWriteDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates on its own")
	}
	be := fileBackend(t)
	for _, c := range []codec.Codec{codec.None, codec.Zstd} {
		u := New(be.store, Options{Codec: c})
		o, err := u.Open(context.Background(), "alloc.tar"+c.Ext(), ObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		header := make([]byte, 512)
		chunk := testData(256<<10, 6)
		allocs := testing.AllocsPerRun(200, func() {
			if _, err := o.Write(header); err != nil {
				t.Fatal(err)
			}
			if _, err := o.Write(chunk); err != nil {
				t.Fatal(err)
			}
		})
		if _, err := o.Close(); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %.2f allocations per header+chunk", c.Name(), allocs)
		if allocs >= 1 {
			t.Errorf("%s: %.2f allocations per header+chunk write", c.Name(), allocs)
		}
	}
}
