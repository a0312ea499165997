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

// Two hosts push the same WAL segment at once (archive_mode = always on a
// primary and its standby), both conditional creates of one key. One push
// fails (its file changed, or the archiver was stopped): cleaning up after
// it must not discard what the other push has in flight (S3: abort its
// multipart upload, which then fails with NoSuchUpload; Azure: discard its
// staged blocks, which fails it with InvalidBlockList or, while the
// cleanup's empty blob exists, makes it refuse "a different file is
// archived").

// TestS3FailedCreateSparesConcurrentWriter: incompressible WAL is larger
// than one part, so each push is a multipart upload.
func TestS3FailedCreateSparesConcurrentWriter(t *testing.T) {
	m := testsvc.StartMinIO(t, testsvc.MinIOOptions{})
	m.CreateBucket(t, "wal")
	m.SetEnv(t)
	data := make([]byte, 12<<20)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	failedCreateSparesConcurrentWriter(t, openURL(t, m.BucketURL("wal", "p")), 5<<20, data, 6<<20)
}

// TestAzureFailedCreateSparesConcurrentWriter: 1 MiB blocks, so host B has
// staged blocks when host A fails.
func TestAzureFailedCreateSparesConcurrentWriter(t *testing.T) {
	a := testsvc.StartAzurite(t)
	a.CreateContainer(t, "ctr")
	a.SetEnv(t)
	data := bytes.Repeat([]byte("host B's segment "), 1<<18) // 4.25 MiB
	failedCreateSparesConcurrentWriter(t, openURL(t, a.BucketURL("ctr", "p")), 1<<20, data, 3<<20)
}

// failedCreateSparesConcurrentWriter starts host B's push of data (its
// first split bytes, until the backend shows it pending), fails host A's
// push of the same key, then finishes host B's and checks it stored data
// and left nothing pending.
func failedCreateSparesConcurrentWriter(t *testing.T, s *storage.Store, partSize int64, data []byte, split int) {
	t.Helper()
	ctx := context.Background()
	key := s.Key("wal/00000001/000000010000000000000003")
	opts := storage.WriteOptions{IfNotExist: true, PartSize: partSize}

	b := s.NewWriter(ctx, key, opts)
	if _, err := b.Write(data[:split]); err != nil {
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
			t.Fatal("host B's upload has nothing pending (the test's premise)")
		}
		time.Sleep(20 * time.Millisecond)
	}

	cause := errors.New("the WAL file changed while it was archived")
	w := s.NewWriter(ctx, key, opts)
	if _, err := w.Write(data[:split]); err != nil {
		t.Fatal(err)
	}
	if err := w.Abort(cause); !errors.Is(err, cause) {
		t.Fatalf("Abort = %v", err)
	}

	if _, err := b.Write(data[split:]); err != nil {
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
