package storagetest

import (
	"bytes"
	"errors"
	"testing"

	"github.com/pgcloudbackup/pgcloudbackup/storage"
)

var errCause = errors.New("caller gave up: source file vanished")

// testWriterAbort: Abort from another goroutine while the producer is in
// the middle of a multipart stream (several parts sent, S3's multipart
// upload open, Azure's blocks staged, fileblob's temporary file written)
// returns once nothing is left: no object, no pending upload or staged
// block, no temporary file. The producer's Write fails with the cause, and
// so does every later call.
func testWriterAbort(t *testing.T, s *Target) {
	ctx := ctxFor(t)
	key := s.Key("writer/abort")
	w := s.NewWriter(ctx, key, storage.WriteOptions{PartSize: 5 * mib})
	data := pattern(64<<10, 12)
	taken := make(chan struct{})
	stopped := make(chan error, 1)
	go func() {
		tk := taken
		for n := 0; ; n += len(data) {
			if n >= 7*mib && tk != nil {
				close(tk)
				tk = nil
			}
			if _, err := w.Write(data); err != nil {
				if tk != nil {
					close(tk)
				}
				stopped <- err
				return
			}
		}
	}()
	<-taken
	if s.Caps().Commit == storage.CommitMultipart {
		waitPending(t, s, key)
	}
	if err := w.Abort(errCause); !errors.Is(err, errCause) {
		t.Fatalf("Abort = %v, want the cause", err)
	}
	if err := <-stopped; !errors.Is(err, errCause) {
		t.Errorf("the producer's Write failed with %v, want the cause", err)
	}
	leftNothing(t, s, key)
	if left := listedUnder(t, s, key); len(left) != 0 {
		t.Errorf("an aborted upload left %v", left)
	}
	if _, err := w.Write([]byte("more")); !errors.Is(err, errCause) {
		t.Errorf("Write after Abort = %v, want the cause", err)
	}
	if err := w.Commit(); !errors.Is(err, errCause) {
		t.Errorf("Commit after Abort = %v, want the cause", err)
	}
	if err := w.Abort(nil); !errors.Is(err, errCause) {
		t.Errorf("a second Abort = %v, want the first cause", err)
	}
	leftNothing(t, s, key)
}

// testWriterCommitAfterAbort: Commit after Abort or after Fail refuses and
// creates nothing; Abort after a successful Commit changes nothing.
func testWriterCommitAfterAbort(t *testing.T, s *Target) {
	ctx := ctxFor(t)
	aborted := s.Key("writer/aborted")
	w := s.NewWriter(ctx, aborted, storage.WriteOptions{})
	if _, err := w.Write([]byte("half an object")); err != nil {
		t.Fatal(err)
	}
	if err := w.Abort(errCause); !errors.Is(err, errCause) {
		t.Fatalf("Abort = %v, want the cause", err)
	}
	if err := w.Commit(); err == nil || !errors.Is(err, errCause) {
		t.Fatalf("Commit after Abort = %v, want the abort's cause", err)
	}
	leftNothing(t, s, aborted)

	failed := s.Key("writer/failed")
	w = s.NewWriter(ctx, failed, storage.WriteOptions{})
	if _, err := w.Write([]byte("damaged stream")); err != nil {
		t.Fatal(err)
	}
	if err := w.Fail(errProducer); !errors.Is(err, errProducer) {
		t.Fatalf("Fail = %v, want its error", err)
	}
	if err := w.Commit(); !errors.Is(err, errProducer) {
		t.Fatalf("Commit after Fail = %v, want the failure", err)
	}
	leftNothing(t, s, failed)

	kept := s.Key("writer/committed")
	w = s.NewWriter(ctx, kept, storage.WriteOptions{})
	if _, err := w.Write([]byte("whole object")); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := w.Abort(errCause); err != nil {
		t.Errorf("Abort after Commit = %v, want nil (nothing to abort)", err)
	}
	if err := w.Commit(); err != nil {
		t.Errorf("a second Commit = %v", err)
	}
	if got, err := s.ReadAll(ctx, kept, 100); err != nil || !bytes.Equal(got, []byte("whole object")) {
		t.Errorf("after Abort following Commit, read %q, %v; want the object", got, err)
	}
}

// testRefusedCreateSweepsNothing: a conditional create refused because the
// key exists leaves the key's pending multipart uploads alone (they are
// another writer's; no failed conditional create sweeps, see
// TestS3FailedCreateSparesConcurrentWriter), where a failed plain upload
// sweeps them.
func testRefusedCreateSweepsNothing(t *testing.T, s *Target) {
	if s.Caps().Commit != storage.CommitMultipart {
		t.Skip("only S3 has multipart uploads that outlive the writer")
	}
	ctx := ctxFor(t)
	key := s.Key("refused/obj")
	put(t, s, key, []byte("first"))
	startMultipart(t, s, key) // another writer's upload in progress
	if err := s.WriteAll(ctx, key, []byte("second"), storage.WriteOptions{IfNotExist: true}); !errors.Is(err, storage.ErrExists) {
		t.Fatalf("WriteAll over an existing key = %v, want ErrExists", err)
	}
	w := s.NewWriter(ctx, key, storage.WriteOptions{IfNotExist: true})
	if _, err := w.Write([]byte("third")); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); !errors.Is(err, storage.ErrExists) {
		t.Fatalf("Commit over an existing key = %v, want ErrExists", err)
	}
	if p := pending(t, s, key); len(p) != 1 {
		t.Errorf("pending uploads of %s after refused creates: %v, want the other writer's one", key, p)
	}
	if got, err := s.ReadAll(ctx, key, 100); err != nil || string(got) != "first" {
		t.Errorf("read %q, %v; want the first version", got, err)
	}
	if _, err := s.AbortIncompleteUploads(ctx, key); err != nil {
		t.Fatal(err)
	}
}
