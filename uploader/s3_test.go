package uploader

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"gocloud.dev/blob"
	_ "gocloud.dev/blob/s3blob"

	"github.com/pgcloudbackup/pgcloudbackup/codec"
	"github.com/pgcloudbackup/pgcloudbackup/internal/s3mpu"
	"github.com/pgcloudbackup/pgcloudbackup/internal/testsvc"
	"github.com/pgcloudbackup/pgcloudbackup/storage"
)

// bucketName: S3 names need at least three characters.
const bucketName = "uploader-test"

// TestS3 runs the uploader against a real MinIO: multipart streaming, an
// abort after several parts, and a hard shutdown, each checked with the
// server's own list of pending multipart uploads.
func TestS3(t *testing.T) {
	m := testsvc.StartMinIO(t, testsvc.MinIOOptions{})
	m.CreateBucket(t, bucketName)
	m.SetEnv(t)
	ctx := context.Background()
	bucket, err := blob.OpenBucket(ctx, m.BucketURL(bucketName, ""))
	if err != nil {
		t.Fatal(err)
	}
	defer bucket.Close()
	newUploader := func(c codec.Codec) *Uploader {
		u := New(bucket, Options{Codec: c, PartSize: 5 << 20, Limits: storage.LimitsFor("s3")})
		if !u.s3 {
			t.Fatal("MinIO bucket not detected as S3")
		}
		return u
	}
	noPending := func(t *testing.T, key string) {
		t.Helper()
		if p := m.PendingUploads(t, bucketName, key); len(p) != 0 {
			t.Errorf("pending multipart uploads for %s: %v", key, p)
		}
	}
	noObject := func(t *testing.T, key string) {
		t.Helper()
		if ok, err := bucket.Exists(ctx, key); err != nil || ok {
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
		stored, raw := readBack(t, bucket, key)
		sum := sha256.Sum256(data)
		if hex.EncodeToString(sum[:]) != res.SHA256 || hexSHA(stored) != res.SHA256 || len(raw) != len(data) || res.Size != 40*mib {
			t.Fatalf("result %+v does not match the object read back (%d bytes)", res, len(stored))
		}
		// S3 marks a multipart object's ETag with its part count:
		// 40 MiB in 5 MiB parts is 8.
		a, err := bucket.Attributes(ctx, key)
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
		stored, raw := readBack(t, bucket, key)
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
		cancel() // SIGTERM: the whole backup's context goes
		werr := writeAll(o, randomData(4*mib, 22))
		_, cerr := o.Close()
		if cerr == nil {
			t.Fatalf("Close succeeded after the context was cancelled (write: %v)", werr)
		}
		noObject(t, key)
		noPending(t, key)
	})

	// The control for hard-shutdown: the same cancellation through plain
	// Bucket.Upload, without our sweep, does orphan the upload. Without this
	// the test above could pass for the wrong reason.
	t.Run("control-upload-without-sweep-orphans", func(t *testing.T) {
		key := "backups/1/control.tar"
		cctx, cancel := context.WithCancel(ctx)
		pr, pw := io.Pipe()
		errc := make(chan error, 1)
		go func() {
			errc <- bucket.Upload(cctx, key, pr, &blob.WriterOptions{ContentType: "application/octet-stream", BufferSize: 5 * mib})
		}()
		data := randomData(20*mib, 23)
		if _, err := pw.Write(data); err != nil {
			t.Fatal(err)
		}
		cancel()
		pw.CloseWithError(context.Canceled)
		select {
		case err := <-errc:
			if err == nil {
				t.Fatal("cancelled upload succeeded")
			}
		case <-time.After(time.Minute):
			t.Fatal("Upload did not return after cancel")
		}
		p := m.PendingUploads(t, bucketName, key)
		n, err := s3mpu.AbortAll(ctx, bucket, key)
		if err != nil {
			t.Fatal(err)
		}
		if len(p) != 1 || n != 1 {
			t.Fatalf("plain Upload cancelled left %v pending (swept %d); expected one orphan", p, n)
		}
		noPending(t, key)
	})
}
