package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/pgcloudbackup/pgcloudbackup/internal/pgtest"
	"github.com/pgcloudbackup/pgcloudbackup/internal/testsvc"
)

// Checks on a MinIO server with the AWS SDK client and the file system
// only: no code of ours reads the bucket here.

// listKeys returns every object key under prefix ("" for the whole bucket).
func listKeys(t *testing.T, m *testsvc.MinIO, bucket, prefix string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	in := &s3.ListObjectsV2Input{Bucket: aws.String(bucket)}
	if prefix != "" {
		in.Prefix = aws.String(prefix)
	}
	var keys []string
	p := s3.NewListObjectsV2Paginator(m.S3Client(t), in)
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatalf("list %s/%s: %v", bucket, prefix, err)
		}
		for _, o := range page.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
	}
	sort.Strings(keys)
	return keys
}

// download writes an object to path and returns its size and SHA-256.
func download(t *testing.T, m *testsvc.MinIO, bucket, key, path string) (int64, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := m.S3Client(t).GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer out.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), out.Body)
	if err != nil {
		t.Fatalf("download %s: %v", key, err)
	}
	return n, hex.EncodeToString(h.Sum(nil))
}

var backupIDRe = regexp.MustCompile(`(?:backup=|reserve backup ID )(\d{8}T\d{6}Z(?:-\d+)?)`)

// backupIDFrom finds the backup ID in the binary's log lines.
func backupIDFrom(t *testing.T, stderr string) string {
	t.Helper()
	m := backupIDRe.FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("no backup=<id> (or 'reserve backup ID <id>') in the log:\n%s", stderr)
	}
	return m[1]
}

// backupKeys are the keys a backup could have written under the object
// layout (DESIGN.md): every archive's parts 1..maxPart, backup_manifest and
// manifest.json. MinIO only lists the multipart uploads of an exact key, so
// this is the list to ask about.
func backupKeys(prefix, id string, archives []string, maxPart int) []string {
	dir := prefix + "backups/" + id + "/"
	keys := []string{dir + "backup_manifest", dir + "manifest.json"}
	for _, a := range archives {
		for i := 1; i <= maxPart; i++ {
			keys = append(keys, fmt.Sprintf("%s%s.%05d.tar.zst", dir, a, i))
		}
	}
	return keys
}

// pending is what a MinIO server holds of multipart uploads that were
// neither completed nor aborted, seen three independent ways, because each
// alone can be blind:
//   - OnDisk: MinIO (single drive) keeps each upload in
//     <data>/.minio.sys/multipart/<sha256(bucket/key)>/<upload id>/. This
//     sees every upload of every bucket and key, and survives a restart.
//     Entries are the key when it is among the ones asked about, else
//     "sha256:<hash>" (one entry per upload; the directory is not named
//     by the upload ID the API returns).
//   - Listed: ListMultipartUploads without a prefix. This MinIO answers it
//     from an in-memory list of the uploads started since the process
//     started: complete while it runs, EMPTY after a restart.
//   - ByKey: ListMultipartUploads for each exact key asked about (read from
//     disk, so it survives a restart); a shorter prefix finds nothing.
type pending struct {
	OnDisk, Listed, ByKey []string
}

func (p pending) none() bool {
	return len(p.OnDisk) == 0 && len(p.Listed) == 0 && len(p.ByKey) == 0
}

func (p pending) String() string {
	return fmt.Sprintf("on disk %v, listed without prefix %v, listed by exact key %v", p.OnDisk, p.Listed, p.ByKey)
}

func pendingUploads(t *testing.T, m *testsvc.MinIO, bucket string, keys []string) pending {
	t.Helper()
	var p pending
	byHash := map[string]string{}
	for _, k := range keys {
		if _, dup := byHash[multipartDir(bucket, k)]; dup {
			continue
		}
		byHash[multipartDir(bucket, k)] = k
		p.ByKey = append(p.ByKey, m.PendingUploads(t, bucket, k)...)
	}
	root := filepath.Join(m.Dir, "data", ".minio.sys", "multipart")
	dirs, err := filepath.Glob(filepath.Join(root, "*", "*", "xl.meta"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(root); err != nil {
		t.Fatalf("MinIO's multipart directory: %v (has MinIO's disk layout changed?)", err)
	}
	for _, meta := range dirs {
		upload := filepath.Dir(meta)
		hash := filepath.Base(filepath.Dir(upload))
		name := "sha256:" + hash
		if k, ok := byHash[hash]; ok {
			name = k
		}
		p.OnDisk = append(p.OnDisk, name)
	}
	p.Listed = m.PendingUploads(t, bucket, "")
	return p
}

// multipartDir is the directory name MinIO gives the uploads of one key.
func multipartDir(bucket, key string) string {
	sum := sha256.Sum256([]byte(bucket + "/" + key))
	return hex.EncodeToString(sum[:])
}

// assertNoPendingUploads proves that the check sees a deliberately
// orphaned upload on key (one part uploaded, never completed) by each of
// its three ways, removes it, then asserts that nothing else is pending.
// keys are the exact keys the backup could have used; key should be one
// of them.
func assertNoPendingUploads(t *testing.T, m *testsvc.MinIO, bucket, key string, keys []string) {
	t.Helper()
	id := orphanUpload(t, m, bucket, key)
	p := pendingUploads(t, m, bucket, keys)
	if !slices.Contains(p.OnDisk, key) || !slices.Contains(p.Listed, key) || !slices.Contains(p.ByKey, key) {
		t.Fatalf("the pending-upload check is blind: a deliberately orphaned upload of %s is missing from %s", key, p)
	}
	abortUpload(t, m, bucket, key, id)
	if p := pendingUploads(t, m, bucket, keys); !p.none() {
		t.Errorf("multipart uploads left on the server: %s", p)
	}
}

// orphanUpload starts a multipart upload of key, uploads one part and
// leaves it unfinished, as a client that died would. It returns the
// upload ID.
func orphanUpload(t *testing.T, m *testsvc.MinIO, bucket, key string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := m.S3Client(t)
	up, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("orphan an upload: %v", err)
	}
	if _, err := c.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String(bucket), Key: aws.String(key),
		UploadId: up.UploadId, PartNumber: aws.Int32(1), Body: bytes.NewReader([]byte("orphan"))}); err != nil {
		t.Fatalf("orphan a part: %v", err)
	}
	return aws.ToString(up.UploadId)
}

func abortUpload(t *testing.T, m *testsvc.MinIO, bucket, key, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := m.S3Client(t).AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
		Bucket: aws.String(bucket), Key: aws.String(key), UploadId: aws.String(id)}); err != nil {
		t.Fatalf("abort the upload of %s: %v", key, err)
	}
}

// assertNoManifest fails if any manifest.json exists in the bucket.
func assertNoManifest(t *testing.T, keys []string) {
	t.Helper()
	for _, k := range keys {
		if strings.HasSuffix(k, "/manifest.json") {
			t.Errorf("manifest.json written for a failed backup: %s", k)
		}
	}
}

// loadIncompressible adds a table of rows of random bytes (16 bytes per
// md5, 64 per row: 1000+ bytes a row, which neither zstd nor TOAST can
// shrink) so that an archive spans several multipart parts. md5 needs no
// extension; STORAGE EXTERNAL keeps TOAST from trying to compress.
func loadIncompressible(c *pgtest.Cluster, table string, rows int) {
	c.Exec("postgres", fmt.Sprintf(`CREATE TABLE %[1]s (id int, payload bytea);
		ALTER TABLE %[1]s ALTER COLUMN payload SET STORAGE EXTERNAL;
		INSERT INTO %[1]s SELECT g, (SELECT string_agg(decode(md5(random()::text || g || i), 'hex'), ''::bytea)
			FROM generate_series(1, 63) i) FROM generate_series(1, %[2]d) g;
		CHECKPOINT`, table, rows))
}
