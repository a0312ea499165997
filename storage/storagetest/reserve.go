package storagetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgcloudbackup/pgcloudbackup/storage"
)

// testReserveConcurrent: runs that start in the same second get distinct
// IDs, in time order, each held by its marker.
func testReserveConcurrent(t *testing.T, s *Target) {
	ctx := ctxFor(t)
	t0 := time.Date(2026, 11, 24, 18, 30, 26, 0, time.UTC)
	const n = 8
	ids := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := s.Reserve(ctx, t0)
			errs[i] = err
			if err == nil {
				ids[i] = r.ID
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("Reserve: %v", err)
	}
	slices.SortFunc(ids, func(a, b string) int {
		if storage.IDLess(a, b) {
			return -1
		}
		return 1
	})
	want := []string{"20261124T183026Z"}
	for i := 2; i <= n; i++ {
		want = append(want, fmt.Sprintf("20261124T183026Z-%d", i))
	}
	if !slices.Equal(ids, want) {
		t.Fatalf("IDs reserved at once: %v, want %v", ids, want)
	}
	refs, err := s.ListBackups(ctx)
	if err != nil || len(refs) != n {
		t.Fatalf("ListBackups = %d backups (%v), want %d", len(refs), err, n)
	}
	for i, r := range refs {
		if r.ID != want[n-1-i] || !r.Reserved || r.Complete || r.Objects != 1 {
			t.Errorf("listed %+v, want %s reserved, incomplete, 1 object (newest first)", r, want[n-1-i])
		}
	}
	// A later second sorts after every sequence number of an earlier one.
	if r, err := s.Reserve(ctx, t0.Add(time.Second)); err != nil || r.ID != "20261124T183027Z" {
		t.Fatalf("Reserve one second later = %v, %v", r, err)
	}
	if !storage.IDLess("20261124T183026Z-10", "20261124T183027Z") || !storage.IDLess("20261124T183026Z-2", "20261124T183026Z-10") {
		t.Error("IDLess does not order by time, then sequence")
	}
}

// testReserveDiscard: a failed run removes what it wrote and only that,
// even when another run's objects are next to its own.
func testReserveDiscard(t *testing.T, s *Target) {
	ctx := ctxFor(t)
	t0 := time.Date(2026, 11, 24, 18, 30, 26, 0, time.UTC)
	other, err := s.Reserve(ctx, t0)
	if err != nil {
		t.Fatal(err)
	}
	otherKey := s.BackupKey(other.ID, "base.00001.tar.zst")
	put(t, s, otherKey, []byte("another run's data"))
	mine, err := s.Reserve(ctx, t0)
	if err != nil {
		t.Fatal(err)
	}
	if mine.ID == other.ID {
		t.Fatalf("two reservations of %s", mine.ID)
	}
	myKeys := []string{s.BackupKey(mine.ID, "base.00001.tar.zst"), s.BackupKey(mine.ID, "16384.00001.tar.zst")}
	for _, k := range myKeys {
		put(t, s, k, []byte("my data"))
	}
	if got := mine.Written(); !slices.Equal(got, myKeys) {
		t.Fatalf("Written = %v, want %v", got, myKeys)
	}
	n, err := mine.Discard(ctx)
	if err != nil || n != len(myKeys) {
		t.Fatalf("Discard = %d, %v; want %d objects deleted", n, err, len(myKeys))
	}
	if left := listedUnder(t, s, s.BackupKey(mine.ID, "")); len(left) != 0 {
		t.Errorf("left after Discard: %v", left)
	}
	if !exists(t, s, otherKey) || !exists(t, s, s.BackupKey(other.ID, storage.MarkerName)) {
		t.Errorf("Discard removed another run's objects")
	}
	// The ID is free again once discarded.
	again, err := s.Reserve(ctx, t0)
	if err != nil || again.ID != mine.ID {
		t.Errorf("Reserve after Discard = %v, %v; want %s again", again, err, mine.ID)
	}
	// But not within its own second: Discard holds the marker until the
	// second is over, so a run starting right after gets another ID.
	live, err := s.Reserve(ctx, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := live.Discard(ctx); err != nil {
		t.Fatal(err)
	}
	next, err := s.Reserve(ctx, time.Now())
	if err != nil || next.ID == live.ID {
		t.Errorf("Reserve right after Discard = %v, %v; want another ID than %s", next, err, live.ID)
	}
}

// testDeleteCrashed: a run that died mid-upload (here: an upload still
// streaming, which from the bucket's side is the same) is listed, and
// DeleteBackup removes all of it: objects, the marker, the temporary file
// of a directory bucket and, on S3, the pending multipart upload, which
// MinIO lists only by exact key and so is found through the marker.
func testDeleteCrashed(t *testing.T, s *Target) {
	ctx, cancel := context.WithCancel(ctxFor(t))
	defer cancel()
	r, err := s.Reserve(ctx, time.Date(2026, 11, 24, 18, 30, 26, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	done := s.BackupKey(r.ID, "base.00001.tar.zst")
	put(t, s, done, []byte("finished part"))
	streaming := s.BackupKey(r.ID, "base.00002.tar.zst")
	up, _ := uploadEndless(ctx, t, s, streaming, 9)
	refs, err := s.ListBackups(ctx)
	if err != nil || len(refs) != 1 || refs[0].Complete {
		t.Fatalf("ListBackups = %+v, %v; want the crashed backup, incomplete", refs, err)
	}
	if s.Caps().TempFiles && refs[0].TempFiles != 1 {
		t.Errorf("TempFiles = %d, want 1 (the upload in progress)", refs[0].TempFiles)
	}
	if err := s.DeleteBackup(ctx, r.ID); err != nil {
		t.Fatal(err)
	}
	if s.Caps().PendingUploads {
		if p := pending(t, s, streaming); len(p) != 0 {
			t.Errorf("multipart upload of %s still pending after DeleteBackup", streaming)
		}
	}
	cancel()
	<-up
	ctx = ctxFor(t)
	if left := listedUnder(t, s, s.BackupKey(r.ID, "")); len(left) != 0 {
		t.Errorf("left after DeleteBackup: %v", left)
	}
	if s.Caps().PendingUploads {
		if p := pending(t, s, streaming); len(p) != 0 {
			t.Errorf("multipart upload of %s pending at the end", streaming)
		}
	}
	if refs, err := s.ListBackups(ctx); err != nil || len(refs) != 0 {
		t.Errorf("ListBackups after DeleteBackup = %+v, %v", refs, err)
	}
	if strings.Contains(fmt.Sprint(r.Written()), "..") {
		t.Errorf("odd keys recorded: %v", r.Written())
	}
}

// testReserveRefresh: a running backup's marker is rewritten as time goes
// by (so retention never takes a long-running backup for a crashed one),
// and never again once the reservation is discarded.
func testReserveRefresh(t *testing.T, s *Target) {
	ctx := ctxFor(t)
	s.Refresh = 20 * time.Millisecond
	r, err := s.Reserve(ctx, time.Date(2026, 11, 24, 18, 30, 26, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	key := s.BackupKey(r.ID, storage.MarkerName)
	first, err := s.Bucket.Attributes(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		a, err := s.Bucket.Attributes(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if a.ModTime.After(first.ModTime) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("marker not refreshed in 10 s (modified %s)", a.ModTime)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := r.Discard(ctx); err != nil {
		t.Fatal(err)
	}
	// Discard stopped the refresh before deleting the marker: it stays gone.
	if exists(t, s, key) {
		t.Errorf("marker present after Discard")
	}
	r.Close() // idempotent
}
