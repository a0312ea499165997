package faultyblob

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"gocloud.dev/blob"
	"gocloud.dev/blob/fileblob"
	"gocloud.dev/blob/memblob"
	"gocloud.dev/gcerrors"
)

func fileBucket(t *testing.T) (*blob.Bucket, string) {
	t.Helper()
	dir := t.TempDir()
	b, err := fileblob.OpenBucket(dir, &fileblob.Options{NoTempDir: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b, dir
}

func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func put(ctx context.Context, b *blob.Bucket, key string, data []byte) error {
	return b.WriteAll(ctx, key, data, &blob.WriterOptions{ContentType: "application/octet-stream"})
}

func TestPassThrough(t *testing.T) {
	ctx := context.Background()
	inner := memblob.OpenBucket(nil)
	f := &Faults{}
	b := New(inner, f)
	data := bytes.Repeat([]byte("abc"), 100_000)
	for _, k := range []string{"a/1", "a/2", "b/1"} {
		if err := put(ctx, b, k, data); err != nil {
			t.Fatal(err)
		}
	}
	got, err := b.ReadAll(ctx, "a/2")
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back: %d bytes, %v", len(got), err)
	}
	if r, err := b.NewRangeReader(ctx, "a/1", 3, 6, nil); err != nil {
		t.Fatal(err)
	} else {
		part, _ := io.ReadAll(r)
		r.Close()
		if string(part) != "abcabc" || r.Size() != int64(len(data)) {
			t.Fatalf("range read %q, size %d", part, r.Size())
		}
	}
	a, err := b.Attributes(ctx, "b/1")
	if err != nil || a.Size != int64(len(data)) || a.ContentType != "application/octet-stream" {
		t.Fatalf("attributes %+v, %v", a, err)
	}
	// Paging through the wrapper: page size 1 forces page tokens across it.
	var keys []string
	it := b.List(&blob.ListOptions{Prefix: "a/"})
	for {
		o, err := it.Next(ctx)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, o.Key)
	}
	objs, next, err := b.ListPage(ctx, blob.FirstPageToken, 1, nil)
	if err != nil || len(objs) != 1 || next == nil {
		t.Fatalf("ListPage(1) = %d objects, next %q, %v", len(objs), next, err)
	}
	if fmt.Sprint(keys) != "[a/1 a/2]" {
		t.Fatalf("list a/ = %v", keys)
	}
	if err := b.Delete(ctx, "a/1"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := inner.Exists(ctx, "a/1"); ok {
		t.Fatal("delete did not reach the inner bucket")
	}
	if f.Calls(NewWriter) != 3 || f.Calls(Close) != 3 || f.Calls(Delete) != 1 || f.Calls(Attributes) != 1 {
		t.Fatalf("counters: writers %d closes %d deletes %d attributes %d",
			f.Calls(NewWriter), f.Calls(Close), f.Calls(Delete), f.Calls(Attributes))
	}
}

func TestFailNthWriter(t *testing.T) {
	ctx := context.Background()
	inner := memblob.OpenBucket(nil)
	f := &Faults{}
	boom := errors.New("injected: no writer for you")
	f.Fail(NewWriter, 2, boom)
	b := New(inner, f)
	for i := 1; i <= 3; i++ {
		err := put(ctx, b, fmt.Sprint(i), []byte("x"))
		if (i == 2) != errors.Is(err, boom) {
			t.Fatalf("writer %d: %v", i, err)
		}
	}
	for i, want := range []bool{true, false, true} {
		if ok, _ := inner.Exists(ctx, fmt.Sprint(i+1)); ok != want {
			t.Errorf("object %d exists = %v", i+1, ok)
		}
	}
}

func TestFailWriteAfterBytes(t *testing.T) {
	ctx := context.Background()
	inner, dir := fileBucket(t)
	f := &Faults{}
	boom := errors.New("injected: connection reset")
	f.FailWrite(1, 1000, boom)
	b := New(inner, f)

	wctx, cancel := context.WithCancel(ctx)
	w, err := b.NewWriter(wctx, "k", &blob.WriterOptions{ContentType: "application/octet-stream"})
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for i := 0; i < 10; i++ {
		n, err := w.Write(make([]byte, 300))
		total += n
		if err != nil {
			if !errors.Is(err, boom) {
				t.Fatalf("write error %v, want the injected one", err)
			}
			break
		}
	}
	if total != 1000 {
		t.Fatalf("accepted %d bytes before failing, want 1000", total)
	}
	if _, err := w.Write([]byte("more")); !errors.Is(err, boom) {
		t.Fatalf("write after the fault: %v", err)
	}
	// Aborting as the uploader does (cancel, then Close) leaves nothing, not
	// even fileblob's temp file.
	cancel()
	if err := w.Close(); err == nil {
		t.Fatal("close of a cancelled writer succeeded")
	}
	if names := dirEntries(t, dir); len(names) != 0 {
		t.Fatalf("bucket directory holds %v after the abort", names)
	}
	// Writer 2 is unaffected.
	if err := put(ctx, b, "k2", make([]byte, 5000)); err != nil {
		t.Fatal(err)
	}
}

func TestFailClose(t *testing.T) {
	ctx := context.Background()
	inner, dir := fileBucket(t)
	f := &Faults{}
	boom := errors.New("injected: commit rejected")
	f.FailClose(0, boom)
	b := New(inner, f)
	if err := put(ctx, b, "k", []byte("data")); !errors.Is(err, boom) {
		t.Fatalf("put: %v, want the injected error", err)
	}
	if names := dirEntries(t, dir); len(names) != 0 {
		t.Fatalf("a failed commit left %v", names)
	}
}

func TestFailOtherCalls(t *testing.T) {
	ctx := context.Background()
	inner := memblob.OpenBucket(nil)
	if err := put(ctx, inner, "k", []byte("data")); err != nil {
		t.Fatal(err)
	}
	f := &Faults{}
	boom := errors.New("injected")
	for _, op := range []Op{Delete, List, Attributes, NewReader, Copy} {
		f.Fail(op, 1, boom)
	}
	b := New(inner, f)
	calls := map[Op]func() error{
		Delete:     func() error { return b.Delete(ctx, "k") },
		List:       func() error { _, _, err := b.ListPage(ctx, blob.FirstPageToken, 10, nil); return err },
		Attributes: func() error { _, err := b.Attributes(ctx, "k"); return err },
		NewReader:  func() error { _, err := b.ReadAll(ctx, "k"); return err },
		Copy:       func() error { return b.Copy(ctx, "k2", "k", nil) },
	}
	for _, op := range []Op{List, Attributes, NewReader, Copy, Delete} {
		if err := calls[op](); !errors.Is(err, boom) {
			t.Errorf("first %s: %v, want the injected error", op, err)
		}
		if err := calls[op](); err != nil {
			t.Errorf("second %s: %v", op, err)
		}
		if f.Calls(op) != 2 {
			t.Errorf("%s counted %d calls", op, f.Calls(op))
		}
	}
	// A missing object keeps its code through the wrapper.
	if _, err := b.Attributes(ctx, "missing"); gcerrors.Code(err) != gcerrors.NotFound {
		t.Errorf("missing object: code %v (%v)", gcerrors.Code(err), err)
	}
	f.Reset()
	f.Fail(Delete, 0, boom)
	for i := 0; i < 3; i++ {
		if err := b.Delete(ctx, "k2"); !errors.Is(err, boom) {
			t.Errorf("delete %d with an every-call fault: %v", i, err)
		}
	}
}

// TestConcurrentCounters runs writers in parallel (under -race in CI) and
// checks each call was counted and exactly the chosen writer failed.
func TestConcurrentCounters(t *testing.T) {
	ctx := context.Background()
	f := &Faults{}
	boom := errors.New("injected")
	f.Fail(NewWriter, 7, boom)
	b := New(memblob.OpenBucket(nil), f)
	var wg sync.WaitGroup
	var mu sync.Mutex
	failed := 0
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := put(ctx, b, fmt.Sprint(i), []byte("x")); err != nil {
				if !errors.Is(err, boom) {
					t.Error(err)
				}
				mu.Lock()
				failed++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if failed != 1 || f.Calls(NewWriter) != 20 || f.Calls(Close) != 19 {
		t.Fatalf("failed %d, writers %d, closes %d", failed, f.Calls(NewWriter), f.Calls(Close))
	}
}

func TestStallWrite(t *testing.T) {
	inner, dir := fileBucket(t)
	f := &Faults{}
	f.StallWrite(1, 100)
	b := New(inner, f)
	ctx, cancel := context.WithCancel(context.Background())
	w, err := b.NewWriter(ctx, "k", &blob.WriterOptions{ContentType: "application/octet-stream"})
	if err != nil {
		t.Fatal(err)
	}
	type res struct {
		n   int
		err error
	}
	done := make(chan res, 1)
	go func() {
		n, err := w.Write(make([]byte, 300))
		done <- res{n, err}
	}()
	select {
	case r := <-done:
		t.Fatalf("stalled write returned before stalling: %d, %v", r.n, r.err)
	case <-f.Stalled():
	case <-time.After(10 * time.Second):
		t.Fatal("the write never reached the stall mark")
	}
	// Stalled: the write blocks until its context ends.
	select {
	case r := <-done:
		t.Fatalf("stalled write returned before its context ended: %d, %v", r.n, r.err)
	default:
	}
	cancel()
	r := <-done
	if r.n != 100 || !errors.Is(r.err, context.Canceled) {
		t.Fatalf("stalled write ended with %d, %v; want 100, context canceled", r.n, r.err)
	}
	if err := w.Close(); err == nil {
		t.Fatal("close after cancel succeeded")
	}
	if names := dirEntries(t, dir); len(names) != 0 {
		t.Fatalf("left %v", names)
	}
}

// TestUploadPath: Bucket.Upload reaches the inner bucket's Upload, and the
// faults strike there as they do on the Write path. With fileblob, whose
// Upload closes the writer on a live context after an error, the bytes
// before the fault are committed (what the real driver does when its own
// write fails); a Close fault commits nothing.
func TestUploadPath(t *testing.T) {
	ctx := context.Background()
	inner, dir := fileBucket(t)
	f := &Faults{}
	boom := errors.New("injected: disk full")
	f.FailWrite(1, 1000, boom)
	f.FailClose(2, boom)
	b := New(inner, f)
	data := bytes.Repeat([]byte("0123456789"), 1000)
	opts := &blob.WriterOptions{ContentType: "application/octet-stream"}

	// Short reads must not make the fault strike
	// early: it counts the bytes that went through, not those asked for.
	err := b.Upload(ctx, "k1", &smallReads{r: bytes.NewReader(data), n: 7}, opts)
	if !errors.Is(err, boom) {
		t.Fatalf("upload 1: %v, want the injected error", err)
	}
	got, err := inner.ReadAll(ctx, "k1")
	if err != nil || !bytes.Equal(got, data[:1000]) {
		t.Fatalf("upload 1 committed %d bytes (%v), want the 1000 before the fault", len(got), err)
	}
	if f.Calls(Write) < 1000/7 {
		t.Errorf("counted %d writes for reads of 7 bytes, want every read", f.Calls(Write))
	}

	if err := b.Upload(ctx, "k2", bytes.NewReader(data), opts); !errors.Is(err, boom) {
		t.Fatalf("upload 2: %v, want the injected commit error", err)
	}
	for _, name := range dirEntries(t, dir) {
		if strings.HasPrefix(name, "k2") {
			t.Fatalf("a failed commit left %s", name)
		}
	}

	if err := b.Upload(ctx, "k3", bytes.NewReader(data), opts); err != nil {
		t.Fatalf("upload 3 without faults: %v", err)
	}
	if got, err := inner.ReadAll(ctx, "k3"); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("upload 3 stored %d bytes (%v)", len(got), err)
	}
}

// smallReads returns at most n bytes a Read.
type smallReads struct {
	r io.Reader
	n int
}

func (s *smallReads) Read(p []byte) (int, error) { return s.r.Read(p[:min(len(p), s.n)]) }
