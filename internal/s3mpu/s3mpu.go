// Package s3mpu does S3 multipart-upload housekeeping: it lists and aborts
// the unfinished multipart uploads under a key prefix. A multipart upload
// that was neither completed nor aborted keeps its parts (and their cost) in
// the bucket without any object being visible, so a backup that dies
// half-way must be cleaned up with AbortAll.
//
// It reaches the S3 API through bucket.As(*s3.Client); on any other backend
// (gs, azblob, file, mem) there is no such thing as a pending multipart
// upload and every function is a no-op.
//
// Prefixes: AWS S3 lists the uploads of every key that starts with the
// prefix. MinIO does not: it looks uploads up by a hash of bucket and key, so
// its ListMultipartUploads only finds the uploads of the one key equal to the
// prefix (an empty or shorter prefix finds nothing, silently). Pass the full
// key of each object you wrote or meant to write to cover both; a directory
// prefix such as "backups/<id>/" only works on AWS S3 and on stores that
// follow it. (MinIO itself drops stale uploads after 24 h by default,
// MINIO_API_STALE_UPLOADS_EXPIRY.)
//
// Keys: s3blob escapes a few keys before sending them to S3 (ASCII control
// characters, and the "/" of "../"; see escapeKey in gocloud.dev/blob/s3blob).
// Our keys are plain printable ASCII without "..", so a blob key and its S3
// key are the same string and a prefix maps 1:1. Do not pass keys outside
// that alphabet here.
package s3mpu

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"gocloud.dev/blob"
)

// Upload is one multipart upload that was started and neither completed nor
// aborted.
type Upload struct {
	Key       string
	UploadID  string
	Initiated time.Time
}

// Pending returns the unfinished multipart uploads whose key starts with
// keyPrefix (every page of ListMultipartUploads; on MinIO only those whose
// key equals keyPrefix, see the package comment). It returns nil, nil when b
// is not an S3 bucket.
func Pending(ctx context.Context, b *blob.Bucket, keyPrefix string) ([]Upload, error) {
	client, bucket, ok, err := s3Of(ctx, b)
	if err != nil || !ok {
		return nil, err
	}
	return list(ctx, client, bucket, keyPrefix)
}

// AbortAll aborts every unfinished multipart upload that Pending finds for
// keyPrefix and returns how many it aborted. An upload that vanished in the
// meantime (completed or aborted by someone else) is not an error. It returns
// 0, nil when b is not an S3 bucket.
func AbortAll(ctx context.Context, b *blob.Bucket, keyPrefix string) (int, error) {
	client, bucket, ok, err := s3Of(ctx, b)
	if err != nil || !ok {
		return 0, err
	}
	ups, err := list(ctx, client, bucket, keyPrefix)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, u := range ups {
		_, err := client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
			Bucket:   aws.String(bucket),
			Key:      aws.String(u.Key),
			UploadId: aws.String(u.UploadID),
		})
		if err != nil && !isNoSuchUpload(err) {
			return n, fmt.Errorf("abort multipart upload of %s: %w", u.Key, err)
		}
		if err == nil {
			n++
		}
	}
	return n, nil
}

func list(ctx context.Context, client *s3.Client, bucket, keyPrefix string) ([]Upload, error) {
	in := &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket)}
	if keyPrefix != "" {
		in.Prefix = aws.String(keyPrefix)
	}
	var ups []Upload
	p := s3.NewListMultipartUploadsPaginator(client, in)
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list multipart uploads under %q: %w", keyPrefix, err)
		}
		for _, u := range page.Uploads {
			ups = append(ups, Upload{
				Key:       aws.ToString(u.Key),
				UploadID:  aws.ToString(u.UploadId),
				Initiated: aws.ToTime(u.Initiated),
			})
		}
	}
	return ups, nil
}

func isNoSuchUpload(err error) bool {
	var nsu interface{ ErrorCode() string }
	return errors.As(err, &nsu) && nsu.ErrorCode() == "NoSuchUpload"
}

// errNameCaptured stops the listing that BucketName starts: it is only a way
// to read the bucket name, never meant to reach the server.
var errNameCaptured = errors.New("s3mpu: bucket name captured")

// s3Of returns the S3 client and bucket name behind b; ok is false when b is
// not an S3 bucket.
func s3Of(ctx context.Context, b *blob.Bucket) (client *s3.Client, bucket string, ok bool, err error) {
	if !b.As(&client) {
		return nil, "", false, nil
	}
	bucket, err = BucketName(ctx, b)
	if err != nil {
		return nil, "", false, err
	}
	return client, bucket, true, nil
}

// BucketName returns the name of the S3 bucket behind b. *blob.Bucket does
// not expose it, but s3blob hands the prepared ListObjectsV2 request to
// ListOptions.BeforeList; reading the name there and failing the hook stops
// the listing before any request is sent.
func BucketName(ctx context.Context, b *blob.Bucket) (string, error) {
	var name string
	it := b.List(&blob.ListOptions{BeforeList: func(as func(any) bool) error {
		var v2 *s3.ListObjectsV2Input
		var v1 *s3.ListObjectsInput
		switch {
		case as(&v2):
			name = aws.ToString(v2.Bucket)
		case as(&v1):
			name = aws.ToString(v1.Bucket)
		}
		return errNameCaptured
	}})
	_, err := it.Next(ctx)
	if name != "" {
		return name, nil
	}
	if err == nil || errors.Is(err, errNameCaptured) {
		return "", errors.New("s3mpu: bucket is not an S3 bucket")
	}
	return "", fmt.Errorf("s3mpu: find bucket name: %w", err)
}
