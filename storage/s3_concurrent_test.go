package storage_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/pgcloudbackup/pgcloudbackup/internal/testsvc"
	"github.com/pgcloudbackup/pgcloudbackup/storage"
)

// TestS3FailedCreateSparesConcurrentWriter: as on Azure, two hosts push
// the same WAL segment at once (archive_mode = always), both conditional
// creates; incompressible WAL is larger than one part, so each is a
// multipart upload. One push fails: its cleanup must not abort the other's
// multipart upload (which would fail it with NoSuchUpload); its own upload
// was aborted by the transfer manager already.
func TestS3FailedCreateSparesConcurrentWriter(t *testing.T) {
	m := testsvc.StartMinIO(t, testsvc.MinIOOptions{})
	m.CreateBucket(t, "wal")
	m.SetEnv(t)
	s := openURL(t, m.BucketURL("wal", "p"))
	ctx := context.Background()
	key := s.Key("wal/00000001/000000010000000000000003")
	opts := storage.WriteOptions{IfNotExist: true, PartSize: 5 << 20}

	data := make([]byte, 12<<20)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	b := s.NewWriter(ctx, key, opts)
	if _, err := b.Write(data[:6<<20]); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		p, err := s.PendingUploads(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if len(p) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("host B's upload started no multipart upload (the test's premise)")
		}
		time.Sleep(20 * time.Millisecond)
	}

	cause := errors.New("the WAL file changed while it was archived")
	w := s.NewWriter(ctx, key, opts)
	if _, err := w.Write(data[:6<<20]); err != nil {
		t.Fatal(err)
	}
	if err := w.Abort(cause); !errors.Is(err, cause) {
		t.Fatalf("Abort = %v", err)
	}

	if _, err := b.Write(data[6<<20:]); err != nil {
		t.Fatalf("host B's Write after host A's failed push: %v", err)
	}
	if err := b.Commit(); err != nil {
		t.Fatalf("host B's push failed after host A's failed push of the same key: %v", err)
	}
	got, err := s.ReadAll(ctx, key, int64(len(data))+1)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes, %v; want host B's %d", len(got), err, len(data))
	}
	if p, err := s.PendingUploads(ctx, key); err != nil || len(p) != 0 {
		t.Errorf("pending uploads after both pushes ended: %v, %v", p, err)
	}
}
