package storage_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gocloud.dev/blob"
	"gocloud.dev/blob/driver"
	"gocloud.dev/blob/memblob"
	"gocloud.dev/gcerrors"

	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
	"github.com/pgcloudbackup/pgcloudbackup/storage"
)

func TestOpenParsesURLs(t *testing.T) {
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_PROFILE", "")
	tests := []struct {
		url, scheme, prefix, display string
	}{
		{"mem://", "mem", "", "mem://"},
		{"mem://b/x/y/", "mem", "x/y/", "mem://b/x/y/"},
		{"s3://bucket/some/prefix?endpoint=https://127.0.0.1:9000&use_path_style=true&region=us-east-1", "s3", "some/prefix/",
			"s3://bucket/some/prefix/?endpoint=https://127.0.0.1:9000&region=us-east-1&use_path_style=true"},
		{"S3://bucket?region=eu-west-1", "s3", "", "s3://bucket?region=eu-west-1"},
		{"s3://bucket/p?region=us-east-1&kmskeyid=arn:aws:kms:secret-key-id&ssetype=aws:kms", "s3", "p/",
			"s3://bucket/p/?kmskeyid=REDACTED&region=us-east-1&ssetype=aws:kms"},
		{"s3://bucket?region=us-east-1&endpoint=https://user:pw@minio:9000", "s3", "", "s3://bucket?endpoint=https://minio:9000&region=us-east-1"},
		{"gs://bucket/a?anonymous=true", "gs", "a/", "gs://bucket/a/?anonymous=true"},
	}
	for _, tc := range tests {
		s, err := storage.Open(context.Background(), tc.url, storage.Options{})
		if err != nil {
			t.Errorf("Open(%s): %v", tc.url, err)
			continue
		}
		if s.Scheme != tc.scheme || s.Prefix != tc.prefix || s.Display != tc.display {
			t.Errorf("Open(%s) = scheme %q prefix %q display %q; want %q %q %q", tc.url, s.Scheme, s.Prefix, s.Display, tc.scheme, tc.prefix, tc.display)
		}
		if s.Limits != storage.LimitsFor(tc.scheme) {
			t.Errorf("Open(%s): Limits %+v, want LimitsFor(%s)", tc.url, s.Limits, tc.scheme)
		}
		s.Close()
	}
}

func TestOpenRefusesBadURLs(t *testing.T) {
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AZURE_STORAGE_ACCOUNT", "")
	t.Setenv("AZURE_STORAGE_CONNECTION_STRING", "")
	t.Setenv("AZURE_STORAGEBLOB_CONNECTIONSTRING", "")
	tests := []struct {
		url     string
		kind    failure.Kind
		mention string // the message names this
	}{
		{"", failure.Usage, "no bucket URL"},
		{"ftp://host/x", failure.Usage, `scheme "ftp"`},
		{"/just/a/path", failure.Usage, "no scheme"},
		{"s3://", failure.Usage, "names no bucket"},
		{"s3:bucket", failure.Usage, "malformed"},
		{"s3://bkt/a//c?region=x", failure.Usage, "segment"},
		{"s3://bkt/../x?region=x", failure.Usage, "segment"},
		{"s3://AKIA:supersecret@b?region=x", failure.Usage, "credentials"},
		{"s3://bkt?region=x&colour=blue", failure.Usage, "colour"},
		{"s3://bkt?region=x&endpoint=minio:9000", failure.Usage, "scheme"},
		{"s3://bkt?region=x&use_path_style=maybe", failure.Usage, "use_path_style"},
		{"s3://bkt?region=x&fips=maybe", failure.Usage, "fips"},
		{"s3://bkt?region=x&role=admin", failure.Usage, "role"},
		{"s3://bkt?region=x&request_checksum_calculation=always", failure.Usage, "when_required"},
		{"s3://bkt", failure.Usage, "region"},
		{"gs://b?sig=xyz", failure.Usage, "sig"},
		{"azblob://c?colour=blue", failure.Usage, "colour"},
		{"azblob://c", failure.Precondition, "storage account"},
		{"file://host/dir", failure.Usage, "host"},
		{"file:///", failure.Usage, "no directory"},
		{"file:///tmp/x?base_url=y", failure.Usage, "base_url"},
		{"mem://?x=1", failure.Usage, "x"},
		// Relative directories depend on where the command runs.
		{"file://./relbucket", failure.Usage, "relative"},
		{"file://../up", failure.Usage, "relative"},
		{"file:relbucket", failure.Usage, "malformed"},
		// S3's naming rules, checked before anything is sent.
		{"s3://ab?region=x", failure.Usage, "3 to 63"},
		{"s3://" + strings.Repeat("a", 64) + "?region=x", failure.Usage, "3 to 63"},
		{"s3://My_Bucket?region=x", failure.Usage, "character"},
		{"s3://-bucket?region=x", failure.Usage, "start and end"},
		{"s3://a..b?region=x", failure.Usage, "adjacent"},
		{"s3://192.168.1.1?region=x", failure.Usage, "IP address"},
	}
	for _, tc := range tests {
		_, err := storage.Open(context.Background(), tc.url, storage.Options{})
		if err == nil {
			t.Errorf("Open(%q) succeeded", tc.url)
			continue
		}
		if failure.KindOf(err) != tc.kind || !strings.Contains(err.Error(), tc.mention) {
			t.Errorf("Open(%q) = %q (kind %v); want kind %v naming %q", tc.url, err, failure.KindOf(err), tc.kind, tc.mention)
		}
		if strings.Contains(err.Error(), "supersecret") || strings.Contains(err.Error(), "xyz") {
			t.Errorf("Open(%q) error shows a secret: %q", tc.url, err)
		}
		if tc.kind == failure.Usage && !strings.Contains(failure.HintOf(err), "s3://") && tc.mention != "region" && tc.mention != "relative" {
			t.Errorf("Open(%q): hint %q does not show the accepted forms", tc.url, failure.HintOf(err))
		}
	}
}

func TestRedact(t *testing.T) {
	got := storage.Redact("azblob://c/p?domain=127.0.0.1:10000&sig=s3cr3t&sv=2020&protocol=http#frag")
	want := "azblob://c/p?domain=127.0.0.1:10000&protocol=http&sig=REDACTED&sv=REDACTED"
	if got != want {
		t.Errorf("Redact = %q, want %q", got, want)
	}
	if got := storage.Redact("s3://key:secret@b"); strings.Contains(got, "secret") {
		t.Errorf("Redact kept user info: %q", got)
	}
}

func TestFileBucketDirectory(t *testing.T) {
	// A missing directory is never created: a mistyped path or an
	// unmounted mount point must not become an empty bucket.
	missing := filepath.Join(t.TempDir(), "a", "b")
	if _, err := storage.Open(context.Background(), "file://"+missing, storage.Options{}); failure.KindOf(err) != failure.Precondition || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("Open of a missing directory: %v (kind %v), want a precondition naming it", err, failure.KindOf(err))
	}
	if _, err := os.Stat(filepath.Dir(missing)); !os.IsNotExist(err) {
		t.Fatalf("Open created something: %v", err)
	}
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := storage.Open(context.Background(), "file://"+notDir, storage.Options{}); failure.KindOf(err) != failure.Precondition {
		t.Fatalf("Open of a file: %v, want a precondition", err)
	}
	dir := filepath.Join(t.TempDir(), "a")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	s, err := storage.Open(context.Background(), "file://"+dir, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Display != "file://"+dir || s.Prefix != "" {
		t.Errorf("Display %q Prefix %q", s.Display, s.Prefix)
	}
	ctx := context.Background()
	key := s.BackupKey("20260101T000000Z", "base.tar.zst")
	if err := s.Write(ctx, key, strings.NewReader("data"), storage.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	// metadata=skip: the directory holds the objects and nothing else.
	var files []string
	_ = filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			files = append(files, rel)
		}
		return nil
	})
	if len(files) != 1 || files[0] != filepath.FromSlash(key) {
		t.Errorf("files in the bucket directory: %v, want only %s", files, key)
	}
	// A stranded temporary file (crash during an upload) is listed with
	// its backup (so that it shows, and its space is counted), and
	// DeleteBackup removes it with the rest.
	stray := filepath.Join(dir, filepath.FromSlash(s.BackupKey("20260101T000000Z", "16384.00001.tar.zst.18a6b2c3d4e5f607.tmp")))
	if err := os.WriteFile(stray, []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	refs, err := s.ListBackups(ctx)
	if err != nil || len(refs) != 1 || refs[0].Objects != 2 || refs[0].TempFiles != 1 || refs[0].Complete {
		t.Fatalf("ListBackups = %+v, %v; want one incomplete backup of 2 objects, 1 a temporary file", refs, err)
	}
	if err := s.DeleteBackup(ctx, "20260101T000000Z"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Dir(stray)); !os.IsNotExist(err) {
		t.Errorf("backup directory still there after DeleteBackup: %v", err)
	}
}

func TestKeysAndIDs(t *testing.T) {
	s := &storage.Store{Prefix: "team/db1/"}
	if got := s.Key("x"); got != "team/db1/x" {
		t.Errorf("Key = %q", got)
	}
	if got := s.BackupKey("20261124T183026Z", storage.ManifestName); got != "team/db1/backups/20261124T183026Z/manifest.json" {
		t.Errorf("BackupKey = %q", got)
	}
	a := storage.NewBackupID(time.Date(2026, 11, 24, 18, 30, 26, 999, time.UTC))
	b := storage.NewBackupID(time.Date(2026, 11, 24, 18, 30, 27, 0, time.UTC))
	c := storage.NewBackupID(time.Date(2027, 1, 2, 3, 4, 5, 0, time.UTC))
	if a != "20261124T183026Z" || !(a < b && b < c) {
		t.Errorf("IDs %s %s %s: want the documented form, sorting by time", a, b, c)
	}
}

func TestClassifyGeneric(t *testing.T) {
	if storage.Classify(nil, "x") != nil {
		t.Error("Classify(nil) != nil")
	}
	err := storage.Classify(fmt.Errorf("wrapped: %w", context.Canceled), "upload base")
	if failure.KindOf(err) != failure.Interrupted || !errors.Is(err, context.Canceled) {
		t.Errorf("cancel: %v kind %v", err, failure.KindOf(err))
	}
	orig := errors.New("something odd\nwith a second line")
	err = storage.Classify(orig, "read manifest")
	if failure.KindOf(err) != failure.Failed || err.Error() != "read manifest: something odd" || !errors.Is(err, orig) {
		t.Errorf("generic: %q kind %v", err, failure.KindOf(err))
	}
	pre := failure.New(failure.Usage, "bad flag")
	if got := storage.Classify(pre, "x"); got != pre {
		t.Errorf("an already classified error was changed: %v", got)
	}
}

// faultyBucket is a driver over a real bucket whose Delete fails for keys
// that match failOn, and that records the order of deletions.
type faultyBucket struct {
	driver.Bucket // not implemented: panics if reached
	real          *blob.Bucket
	failOn        func(key string) bool
	deleted       []string
}

func (f *faultyBucket) ListPaged(ctx context.Context, o *driver.ListOptions) (*driver.ListPage, error) {
	tok := o.PageToken
	if tok == nil {
		tok = blob.FirstPageToken
	}
	objs, next, err := f.real.ListPage(ctx, tok, max(o.PageSize, 1), &blob.ListOptions{Prefix: o.Prefix, Delimiter: o.Delimiter})
	if err != nil {
		return nil, err
	}
	page := &driver.ListPage{NextPageToken: next}
	for _, ob := range objs {
		page.Objects = append(page.Objects, &driver.ListObject{Key: ob.Key, ModTime: ob.ModTime, Size: ob.Size, IsDir: ob.IsDir})
	}
	return page, nil
}

func (f *faultyBucket) Delete(ctx context.Context, key string, _ *driver.DeleteOptions) error {
	if f.failOn(key) {
		return errors.New("injected: delete refused")
	}
	f.deleted = append(f.deleted, key)
	return f.real.Delete(ctx, key)
}

func (f *faultyBucket) As(any) bool                        { return false }
func (f *faultyBucket) ErrorAs(error, any) bool            { return false }
func (f *faultyBucket) ErrorCode(error) gcerrors.ErrorCode { return gcerrors.Unknown }
func (f *faultyBucket) Close() error                       { return nil }
func (f *faultyBucket) Attributes(context.Context, string) (*driver.Attributes, error) {
	return nil, errors.New("not used")
}

func TestDeleteBackupRemovesManifestFirst(t *testing.T) {
	ctx := context.Background()
	real := memblob.OpenBucket(nil)
	defer real.Close()
	plain := storage.NewStore(real, "mem")
	id := "20260101T000000Z"
	// Names that sort before and after manifest.json.
	for _, n := range []string{"16384.00001.tar.zst", "backup_manifest", "base.tar.zst", storage.ManifestName, "zz.tar.zst"} {
		if err := plain.Write(ctx, plain.BackupKey(id, n), strings.NewReader(n), storage.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	// Every deletion after the manifest fails: the backup must be left
	// incomplete, with its parts.
	fb := &faultyBucket{real: real, failOn: func(k string) bool { return !strings.HasSuffix(k, storage.ManifestName) }}
	faulty := storage.NewStore(blob.NewBucket(fb), "mem")
	err := faulty.DeleteBackup(ctx, id)
	if err == nil || failure.KindOf(err) != failure.Failed || !strings.Contains(err.Error(), "delete backup "+id) {
		t.Fatalf("DeleteBackup with failing deletes = %v (kind %v), want a failure naming the backup", err, failure.KindOf(err))
	}
	if len(fb.deleted) != 1 || fb.deleted[0] != plain.BackupKey(id, storage.ManifestName) {
		t.Fatalf("deleted %v before failing, want only the manifest", fb.deleted)
	}
	refs, err := plain.ListBackups(ctx)
	if err != nil || len(refs) != 1 || refs[0].Complete || refs[0].Objects != 4 {
		t.Fatalf("after a half deletion ListBackups = %+v, %v; want one incomplete backup of 4 objects", refs, err)
	}

	// Retrying without faults finishes the job.
	fb.failOn = func(string) bool { return false }
	fb.deleted = nil
	if err := faulty.DeleteBackup(ctx, id); err != nil {
		t.Fatal(err)
	}
	if len(fb.deleted) != 4 {
		t.Errorf("second DeleteBackup deleted %v, want the 4 remaining objects", fb.deleted)
	}
	if refs, _ := plain.ListBackups(ctx); len(refs) != 0 {
		t.Errorf("backups left: %+v", refs)
	}
}
