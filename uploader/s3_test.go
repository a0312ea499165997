package uploader

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pgcloudbackup/pgcloudbackup/codec"
	"github.com/pgcloudbackup/pgcloudbackup/internal/testsvc"
	"github.com/pgcloudbackup/pgcloudbackup/storage"
)

// bucketName: S3 names need at least three characters.
const bucketName = "uploader-test"

// TestS3 runs the uploader against a real MinIO: multipart streaming, an
// abort after several parts, and a hard shutdown, each checked with the
// server's own list of pending multipart uploads.
func TestS3(t *testing.T) { testS3(t, nil) }

// TestS3PooledParts is TestS3 with every part buffer from one pool of two
// 5 MiB parts shared by all uploads (the budget --memory sets).
func TestS3PooledParts(t *testing.T) { testS3(t, storage.NewPartPool(10<<20)) }

func testS3(t *testing.T, pool *storage.PartPool) {
	m := testsvc.StartMinIO(t, testsvc.MinIOOptions{})
	m.CreateBucket(t, bucketName)
	m.SetEnv(t)
	ctx := context.Background()
	store, err := storage.Open(ctx, m.BucketURL(bucketName, ""), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	store.SetPartPool(pool)
	newUploader := func(c codec.Codec) *Uploader {
		return New(store, Options{Codec: c, PartSize: 5 << 20})
	}
	noPending := func(t *testing.T, key string) {
		t.Helper()
		if p := m.PendingUploads(t, bucketName, key); len(p) != 0 {
			t.Errorf("pending multipart uploads for %s: %v", key, p)
		}
	}
	noObject := func(t *testing.T, key string) {
		t.Helper()
		if ok, err := store.Exists(ctx, key); err != nil || ok {
			t.Errorf("object %s exists = %v (%v), want none", key, ok, err)
		}
	}
	const mib = 1 << 20

	t.Run("stream-40MiB", func(t *testing.T) {
		key := "backups/1/base.00001.tar"
		u := newUploader(codec.None)
		o, err := u.Open(ctx, key, ObjectOptions{SizeHint: 40 * mib})
		if err != nil {
			t.Fatal(err)
		}
		data := randomData(40*mib, 40)
		if err := writeAll(o, data[:24*mib]); err != nil {
			t.Fatal(err)
		}
		// Streaming, not staging: the multipart upload is under way long
		// before Close.
		if p := m.PendingUploads(t, bucketName, key); len(p) != 1 {
			t.Fatalf("after 24 MiB: pending uploads %v, want one in progress", p)
		}
		if err := writeAll(o, data[24*mib:]); err != nil {
			t.Fatal(err)
		}
		res, err := o.Close()
		if err != nil {
			t.Fatal(err)
		}
		stored, raw := readBack(t, store, key)
		sum := sha256.Sum256(data)
		if hex.EncodeToString(sum[:]) != res.SHA256 || hexSHA(stored) != res.SHA256 || len(raw) != len(data) || res.Size != 40*mib {
			t.Fatalf("result %+v does not match the object read back (%d bytes)", res, len(stored))
		}
		// S3 marks a multipart object's ETag with its part count:
		// 40 MiB in 5 MiB parts is 8.
		a, err := store.Attributes(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if etag := strings.Trim(a.ETag, `"`); !strings.HasSuffix(etag, "-8") {
			t.Errorf("ETag %s: want a multipart object of 8 parts", a.ETag)
		}
		noPending(t, key)
	})

	t.Run("compressed", func(t *testing.T) {
		key := "backups/1/base.00002.tar.zst"
		u := newUploader(codec.Zstd)
		data := testData(30*mib, 7)
		o, err := u.Open(ctx, key, ObjectOptions{SizeHint: int64(len(data))})
		if err != nil {
			t.Fatal(err)
		}
		if err := writeAll(o, data); err != nil {
			t.Fatal(err)
		}
		res, err := o.Close()
		if err != nil {
			t.Fatal(err)
		}
		stored, raw := readBack(t, store, key)
		if hexSHA(stored) != res.SHA256 || string(raw) != string(data) || res.RawSize != int64(len(data)) {
			t.Fatalf("compressed object damaged: %+v", res)
		}
		noPending(t, key)
	})

	t.Run("abort-after-20MiB", func(t *testing.T) {
		key := "backups/1/base.00003.tar"
		u := newUploader(codec.None)
		o, err := u.Open(ctx, key, ObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := writeAll(o, randomData(20*mib, 20)); err != nil {
			t.Fatal(err)
		}
		if p := m.PendingUploads(t, bucketName, key); len(p) != 1 {
			t.Fatalf("before the abort: pending uploads %v, want the one in progress", p)
		}
		cause := errors.New("tablespace vanished")
		o.Abort(cause)
		noObject(t, key)
		noPending(t, key)
		if _, err := o.Close(); !errors.Is(err, cause) {
			t.Errorf("Close after Abort = %v", err)
		}
	})

	t.Run("hard-shutdown", func(t *testing.T) {
		key := "backups/1/base.00004.tar"
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		u := newUploader(codec.None)
		o, err := u.Open(cctx, key, ObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := writeAll(o, randomData(20*mib, 21)); err != nil {
			t.Fatal(err)
		}
		if p := m.PendingUploads(t, bucketName, key); len(p) != 1 {
			t.Fatalf("before the shutdown: pending uploads %v", p)
		}
		// That the same cancellation through plain Bucket.Upload does
		// orphan the upload (so this cannot pass for the wrong reason) is
		// the conformance suite's DriverCancelBehaviour.
		cancel() // SIGTERM: the whole backup's context goes
		werr := writeAll(o, randomData(4*mib, 22))
		_, cerr := o.Close()
		if cerr == nil {
			t.Fatalf("Close succeeded after the context was cancelled (write: %v)", werr)
		}
		noObject(t, key)
		noPending(t, key)
	})
}

// TestS3PoolSharedByInterleavedObjects: one goroutine writes two objects in
// turns (as a backup job writes its archive and backup_manifest), each of
// several parts, through a pool that holds exactly one part per open object.
// Both must complete, not wait for each other's buffer forever.
func TestS3PoolSharedByInterleavedObjects(t *testing.T) {
	ctx, store := minioStore(t)
	const part = 5 << 20
	store.SetPartPool(storage.NewPartPool(2 * part))
	u := New(store, Options{PartSize: part, Concurrency: 2})
	keys := []string{"interleaved/a.tar", "interleaved/b.tar"}
	var objs []*Object
	for _, k := range keys {
		o, err := u.Open(ctx, k, ObjectOptions{Raw: true})
		if err != nil {
			t.Fatal(err)
		}
		defer o.Abort(nil)
		objs = append(objs, o)
	}
	data := randomData(17<<20, 7)
	for off := 0; off < len(data); off += 1 << 20 {
		for _, o := range objs {
			if _, err := o.Write(data[off : off+1<<20]); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i, o := range objs {
		res, err := o.Close()
		if err != nil {
			t.Fatal(err)
		}
		if res.Size != int64(len(data)) {
			t.Errorf("%s: %d bytes stored, want %d", keys[i], res.Size, len(data))
		}
		got, err := store.ReadAll(ctx, keys[i], 1<<30)
		if err != nil || sha256.Sum256(got) != sha256.Sum256(data) {
			t.Errorf("%s read back differs (%v)", keys[i], err)
		}
	}
}

// TestS3HugeHintStaysInPool: an object announced as 1 TB, uploaded with
// the command line's defaults (a pool of three 5 MiB parts, each object's
// share one part), takes 5 MiB parts from the pool: MinIO's ETag ends in
// -3 for 12 MiB. Before, the automatic 64 MiB part did not fit the pool
// and the transfer manager sent it in one PutObject from its own 64 MiB
// buffer.
func TestS3HugeHintStaysInPool(t *testing.T) {
	ctx, store := minioStore(t)
	const part = 5 << 20
	store.SetPartPool(storage.NewPartPool(3 * part))
	u := New(store, Options{Concurrency: 2, PartBudget: part})
	key := "huge/base.00001.tar"
	o, err := u.Open(ctx, key, ObjectOptions{Raw: true, SizeHint: 1e12})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Abort(nil)
	data := randomData(12<<20, 9)
	if err := writeAll(o, data); err != nil {
		t.Fatal(err)
	}
	if _, err := o.Close(); err != nil {
		t.Fatal(err)
	}
	a, err := store.Attributes(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(a.ETag, "-3") {
		t.Errorf("ETag %q: want a multipart upload of 3 parts of 5 MiB from the pool", a.ETag)
	}
	got, err := store.ReadAll(ctx, key, 1<<30)
	if err != nil || sha256.Sum256(got) != sha256.Sum256(data) {
		t.Errorf("read back differs (%v)", err)
	}
}

// minioStore starts a MinIO with the test bucket and opens it; the context
// bounds the test.
func minioStore(t *testing.T) (context.Context, *storage.Store) {
	t.Helper()
	m := testsvc.StartMinIO(t, testsvc.MinIOOptions{})
	m.CreateBucket(t, bucketName)
	m.SetEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	store, err := storage.Open(ctx, m.BucketURL(bucketName, ""), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return ctx, store
}
