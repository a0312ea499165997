package storage_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pgcloudbackup/pgcloudbackup/internal/testsvc"
	"github.com/pgcloudbackup/pgcloudbackup/storage"
)

// TestAzureFailedCreateSparesConcurrentWriter: two hosts push the same WAL
// segment at once (archive_mode = always on a primary and its standby, both
// conditional creates of one key). One push fails (its file changed, or
// the archiver was stopped): cleaning up after it must not discard the
// blocks the other push has staged, which would fail that push too (or,
// while the cleanup's empty blob exists, make it refuse "a different
// file is archived").
func TestAzureFailedCreateSparesConcurrentWriter(t *testing.T) {
	a := testsvc.StartAzurite(t)
	a.CreateContainer(t, "ctr")
	a.SetEnv(t)
	s := openURL(t, a.BucketURL("ctr", "p"))
	ctx := context.Background()
	key := s.Key("wal/00000001/000000010000000000000003")
	opts := storage.WriteOptions{IfNotExist: true, PartSize: 1 << 20}

	data := bytes.Repeat([]byte("host B's segment "), 1<<18) // 4.25 MiB
	b := s.NewWriter(ctx, key, opts)
	if _, err := b.Write(data[:3<<20]); err != nil {
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
			t.Fatal("host B's upload staged no block (the test's premise)")
		}
		time.Sleep(20 * time.Millisecond)
	}

	cause := errors.New("the WAL file changed while it was archived")
	w := s.NewWriter(ctx, key, opts)
	if _, err := w.Write([]byte("host A's partial segment")); err != nil {
		t.Fatal(err)
	}
	if err := w.Abort(cause); !errors.Is(err, cause) {
		t.Fatalf("Abort = %v", err)
	}

	if _, err := b.Write(data[3<<20:]); err != nil {
		t.Fatalf("host B's Write after host A's failed push: %v", err)
	}
	if err := b.Commit(); err != nil {
		t.Fatalf("host B's push failed after host A's failed push of the same key: %v", err)
	}
	got, err := s.ReadAll(ctx, key, int64(len(data))+1)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes, %v; want host B's %d", len(got), err, len(data))
	}
}
