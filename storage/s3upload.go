package storage

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"gocloud.dev/blob"
)

// firstReadSize is how much of an object is read before a part buffer is
// taken from the pool: manifests, labels and small files fit in it and go
// up in one PutObject without holding a whole part.
const firstReadSize = 64 << 10

// pooledS3 reports whether upload may take the pooled path for this
// upload: a pool is set and nothing asks for what only s3blob's writer does
// (hooks on its request, metadata escaping, conditional writes, key
// escaping). A part's size never sends an upload out of the pool: the
// budget sizes parts to fit it (PlanParts), and a part larger than the
// whole pool is refused by PartPool.Get rather than buffered outside it.
func (s *s3Backend) pooledS3(key string, o *blob.WriterOptions) bool {
	return s.parts != nil && o.BeforeWrite == nil && len(o.Metadata) == 0 && !o.IfNotExist &&
		o.CacheControl == "" && o.ContentDisposition == "" && o.ContentEncoding == "" && o.ContentLanguage == "" &&
		plainKey(key)
}

// plainKey reports whether s3blob would send key unchanged (its escapeKey
// rewrites "../", "./", "//", leading "/" and bytes outside printable ASCII).
func plainKey(key string) bool {
	if key == "" || key[0] == '/' || strings.Contains(key, "//") || strings.Contains(key, "./") {
		return false
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		if c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}

// uploadS3Pooled uploads r to key with the S3 API directly, its part
// buffers taken from the Store's PartPool: one PutObject for an object that
// fits in one part, else a multipart upload with up to concurrency parts in
// flight. Any failure (r's, a request's, ctx's) aborts the multipart upload
// on a fresh context, and s3Backend.upload sweeps after that.
func (s *s3Backend) uploadS3Pooled(ctx context.Context, key string, r io.Reader, o *blob.WriterOptions) error {
	partSize := o.BufferSize
	if partSize <= 0 {
		partSize = DefaultPartSize
	}
	concurrency := max(o.MaxConcurrency, 1)
	u := &s3Upload{sb: s.s3, pool: s.parts, bucket: aws.String(s.bucket), key: aws.String(key), contentType: aws.String(o.ContentType)}
	if s.s3.checksum != aws.RequestChecksumCalculationWhenRequired {
		u.algo = types.ChecksumAlgorithmCrc32
	}

	// A small first read: an object that ends in it needs no part buffer.
	small := make([]byte, min(firstReadSize, partSize))
	n, err := io.ReadFull(r, small)
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF || n < len(small):
		return u.put(ctx, small[:n])
	case err != nil:
		return err
	}
	buf, err := u.pool.Get(ctx, partSize)
	if err != nil {
		return err
	}
	copy(buf, small)
	m, err := io.ReadFull(r, buf[n:])
	n += m
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		defer u.pool.Put(buf)
		return u.put(ctx, buf[:n])
	}
	if err != nil {
		u.pool.Put(buf)
		return err
	}
	return u.multipart(ctx, r, buf, partSize, concurrency)
}

type s3Upload struct {
	sb          *s3Bucket
	pool        *PartPool
	bucket, key *string
	contentType *string
	algo        types.ChecksumAlgorithm
}

func (u *s3Upload) put(ctx context.Context, data []byte) error {
	_, err := u.sb.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:               u.bucket,
		Key:                  u.key,
		Body:                 bytes.NewReader(data),
		ContentLength:        aws.Int64(int64(len(data))),
		ContentType:          u.contentType,
		ChecksumAlgorithm:    u.algo,
		ServerSideEncryption: u.sb.sse,
		SSEKMSKeyId:          u.sb.kmsKeyID,
	})
	return err
}

// multipart uploads first (a full part) and the rest of r as parts; every
// part buffer goes back to the pool once its UploadPart returns.
func (u *s3Upload) multipart(ctx context.Context, r io.Reader, first []byte, partSize, concurrency int) error {
	created, err := u.sb.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket:               u.bucket,
		Key:                  u.key,
		ContentType:          u.contentType,
		ChecksumAlgorithm:    u.algo,
		ServerSideEncryption: u.sb.sse,
		SSEKMSKeyId:          u.sb.kmsKeyID,
	})
	if err != nil {
		u.pool.Put(first)
		return err
	}
	id := created.UploadId

	pctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		mu    sync.Mutex
		parts []types.CompletedPart
		wg    sync.WaitGroup
	)
	type job struct {
		num int32
		buf []byte
		n   int
	}
	jobs := make(chan job)
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				if pctx.Err() == nil {
					out, err := u.sb.client.UploadPart(pctx, &s3.UploadPartInput{
						Bucket:            u.bucket,
						Key:               u.key,
						UploadId:          id,
						PartNumber:        aws.Int32(j.num),
						Body:              bytes.NewReader(j.buf[:j.n]),
						ContentLength:     aws.Int64(int64(j.n)),
						ChecksumAlgorithm: u.algo,
					})
					if err != nil {
						cancel(fmt.Errorf("part %d: %w", j.num, err))
					} else {
						mu.Lock()
						parts = append(parts, types.CompletedPart{
							PartNumber: aws.Int32(j.num), ETag: out.ETag,
							ChecksumCRC32: out.ChecksumCRC32, ChecksumCRC32C: out.ChecksumCRC32C,
							ChecksumCRC64NVME: out.ChecksumCRC64NVME,
							ChecksumSHA1:      out.ChecksumSHA1, ChecksumSHA256: out.ChecksumSHA256,
						})
						mu.Unlock()
					}
				}
				u.pool.Put(j.buf)
			}
		}()
	}

	// fill hands parts to the workers until r ends; its error is r's or
	// the pool's (cancelled).
	fill := func() error {
		buf, n, last := first, len(first), false
		for num := int32(1); ; num++ {
			if num > maxS3Parts {
				u.pool.Put(buf)
				return fmt.Errorf("more than %d parts of %d bytes", maxS3Parts, partSize)
			}
			select {
			case jobs <- job{num: num, buf: buf, n: n}:
			case <-pctx.Done():
				u.pool.Put(buf)
				return nil // a part failed: its error is the cause
			}
			if last {
				return nil
			}
			var err error
			if buf, err = u.pool.Get(pctx, partSize); err != nil {
				return nil // cancelled: the cause says why
			}
			n, err = io.ReadFull(r, buf)
			switch {
			case err == io.EOF: // the previous part was the last
				u.pool.Put(buf)
				return nil
			case err == io.ErrUnexpectedEOF:
				last = true
			case err != nil:
				u.pool.Put(buf)
				return err
			}
		}
	}
	rerr := fill()
	close(jobs)
	wg.Wait()

	switch {
	case rerr != nil:
		err = rerr
	case context.Cause(pctx) != nil:
		err = context.Cause(pctx)
		if ctx.Err() != nil {
			err = ctx.Err()
		}
	default:
		sort.Slice(parts, func(i, j int) bool { return *parts[i].PartNumber < *parts[j].PartNumber })
		_, err = u.sb.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
			Bucket:          u.bucket,
			Key:             u.key,
			UploadId:        id,
			MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
		})
		if err == nil {
			return nil
		}
	}
	// Abort on a fresh context: ctx may be the reason we are here.
	actx, acancel := context.WithTimeout(context.WithoutCancel(ctx), s3AbortTimeout)
	defer acancel()
	// A failed abort is retried by s3Backend.upload's sweep, which logs it.
	_, _ = u.sb.client.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{
		Bucket: u.bucket, Key: u.key, UploadId: id,
	})
	return err
}

// maxS3Parts is S3's limit on the parts of one upload.
const maxS3Parts = 10000
