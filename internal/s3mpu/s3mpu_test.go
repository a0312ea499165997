package s3mpu_test

import (
	"bytes"
	"context"
	"slices"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"gocloud.dev/blob"
	"gocloud.dev/blob/memblob"
	"gocloud.dev/blob/s3blob"

	"github.com/pgcloudbackup/pgcloudbackup/internal/s3mpu"
	"github.com/pgcloudbackup/pgcloudbackup/internal/testsvc"
)

func TestNotS3IsNoOp(t *testing.T) {
	b := memblob.OpenBucket(nil)
	defer b.Close()
	ups, err := s3mpu.Pending(context.Background(), b, "x/")
	if ups != nil || err != nil {
		t.Fatalf("Pending on memblob = %v, %v; want nil, nil", ups, err)
	}
	n, err := s3mpu.AbortAll(context.Background(), b, "x/")
	if n != 0 || err != nil {
		t.Fatalf("AbortAll on memblob = %d, %v; want 0, nil", n, err)
	}
	if _, err := s3mpu.BucketName(context.Background(), b); err == nil {
		t.Fatal("BucketName on memblob: no error")
	}
}

func TestPendingAndAbortAllOnMinIO(t *testing.T) {
	m := testsvc.StartMinIO(t, testsvc.MinIOOptions{})
	m.CreateBucket(t, "mpu")
	ctx := context.Background()
	client := m.S3Client(t)
	b, err := s3blob.OpenBucketV2(ctx, client, "mpu", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	if name, err := s3mpu.BucketName(ctx, b); err != nil || name != "mpu" {
		t.Fatalf("BucketName = %q, %v; want mpu", name, err)
	}

	// Two unfinished uploads of one key, one of another, and a finished
	// object (which must not count).
	key := "backups/20260101T000000Z/base.tar.zst"
	other := "backups/20260101T000000Z/16384.00001.tar.zst"
	var ids []string
	for _, k := range []string{key, key, other} {
		out, err := client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String("mpu"), Key: aws.String(k)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, aws.ToString(out.UploadId))
	}
	if err := b.WriteAll(ctx, "backups/20260101T000000Z/manifest.json", []byte("{}"), &blob.WriterOptions{ContentType: "application/json"}); err != nil {
		t.Fatal(err)
	}

	ups, err := s3mpu.Pending(ctx, b, key)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, u := range ups {
		if u.Key != key || u.Initiated.IsZero() {
			t.Errorf("upload %+v: want key %s and an initiation time", u, key)
		}
		got = append(got, u.UploadID)
	}
	slices.Sort(got)
	want := slices.Clone(ids[:2])
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("Pending(%s) upload IDs = %v, want %v", key, got, want)
	}

	n, err := s3mpu.AbortAll(ctx, b, key)
	if err != nil || n != 2 {
		t.Fatalf("AbortAll(%s) = %d, %v; want 2, nil", key, n, err)
	}
	if left := m.PendingUploads(t, "mpu", key); len(left) != 0 {
		t.Fatalf("after AbortAll the server still lists %v", left)
	}
	// The other key's upload is untouched.
	if left := m.PendingUploads(t, "mpu", other); !slices.Equal(left, []string{other}) {
		t.Fatalf("AbortAll(%s) touched %s: server lists %v", key, other, left)
	}
	// Aborting again finds nothing and is not an error.
	if n, err := s3mpu.AbortAll(ctx, b, key); err != nil || n != 0 {
		t.Fatalf("second AbortAll = %d, %v; want 0, nil", n, err)
	}

	// The finished object is still there.
	if data, err := b.ReadAll(ctx, "backups/20260101T000000Z/manifest.json"); err != nil || !bytes.Equal(data, []byte("{}")) {
		t.Fatalf("manifest after AbortAll: %q, %v", data, err)
	}
}
