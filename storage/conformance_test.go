package storage_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/pgcloudbackup/pgcloudbackup/internal/testsvc"
	"github.com/pgcloudbackup/pgcloudbackup/storage"
	"github.com/pgcloudbackup/pgcloudbackup/storage/storagetest"
)

// The conformance suite against every backend. The server tests set
// environment variables (credentials, CA bundle, emulator host), so none of
// them runs in parallel.

var prefixSeq atomic.Int64

// uniquePrefix gives each subtest its own empty prefix in a shared bucket.
func uniquePrefix(t *testing.T) string {
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, t.Name())
	return fmt.Sprintf("run%d-%s/data", prefixSeq.Add(1), name)
}

func openURL(t *testing.T, raw string) *storage.Store {
	t.Helper()
	s, err := storage.Open(context.Background(), raw, storage.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("open %s: %v", raw, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformanceMem(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) *storage.Store {
		return openURL(t, "mem://bucket/"+uniquePrefix(t))
	}, storage.BucketOf)
}

func TestConformanceFile(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) *storage.Store {
		return openURL(t, "file://"+t.TempDir())
	}, storage.BucketOf)
}

func TestConformanceMinIO(t *testing.T) {
	m := testsvc.StartMinIO(t, testsvc.MinIOOptions{})
	m.CreateBucket(t, "conformance")
	m.SetEnv(t)
	storagetest.Run(t, func(t *testing.T) *storage.Store {
		return openURL(t, m.BucketURL("conformance", uniquePrefix(t)))
	}, storage.BucketOf)
	t.Run("SDKLogsGoToTheLogger", func(t *testing.T) { testSDKLogs(t, m.BucketURL("conformance", uniquePrefix(t))) })
}

// testSDKLogs: the warning the AWS SDK logs for every multipart object read
// reaches our logger at Debug, and not stderr. (The suite's ReadPrintsNothing
// checks stderr alone; this proves the read did make the SDK log.)
func testSDKLogs(t *testing.T, url string) {
	var logs logBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := storage.Open(context.Background(), url, storage.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	key := s.Key("multipart")
	data := make([]byte, 11<<20)
	if err := s.Write(ctx, key, bytes.NewReader(data), storage.WriteOptions{PartSize: 5 << 20}); err != nil {
		t.Fatal(err)
	}
	var got []byte
	out := storagetest.CaptureStderr(t, func() { got, err = s.ReadAll(ctx, key, int64(len(data))) })
	if err != nil || len(got) != len(data) {
		t.Fatalf("read back %d bytes (%v), want %d", len(got), err, len(data))
	}
	if out != "" {
		t.Errorf("reading a multipart object printed to stderr: %q", out)
	}
	var line string
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "Skipped validation of multipart checksum") {
			line = l
		}
	}
	if !strings.Contains(line, "level=DEBUG") || !strings.Contains(line, "source=aws-sdk") {
		t.Errorf("the SDK's multipart checksum warning is not in our log at debug level; log:\n%s", logs.String())
	}
}

func TestConformanceMinIOTLS(t *testing.T) {
	m := testsvc.StartMinIO(t, testsvc.MinIOOptions{TLS: true})
	m.CreateBucket(t, "conformance")
	m.SetEnv(t)
	storagetest.Run(t, func(t *testing.T) *storage.Store {
		return openURL(t, m.BucketURL("conformance", uniquePrefix(t)))
	}, storage.BucketOf)
}

// TestConformanceMinIOPooledParts runs the suite over TLS with the part
// buffers of every upload taken from one small PartPool (two 8 MiB parts):
// the pooled upload path (uploadS3Pooled) must keep every promise of
// Store.Upload, aborts and sweeps included.
func TestConformanceMinIOPooledParts(t *testing.T) {
	m := testsvc.StartMinIO(t, testsvc.MinIOOptions{TLS: true})
	m.CreateBucket(t, "conformance")
	m.SetEnv(t)
	storagetest.Run(t, func(t *testing.T) *storage.Store {
		s := openURL(t, m.BucketURL("conformance", uniquePrefix(t)))
		s.SetPartPool(storage.NewPartPool(16 << 20))
		return s
	}, storage.BucketOf)
}

func TestConformanceAzurite(t *testing.T) {
	a := testsvc.StartAzurite(t)
	a.CreateContainer(t, "conformance")
	a.SetEnv(t)
	storagetest.Run(t, func(t *testing.T) *storage.Store {
		return openURL(t, a.BucketURL("conformance", uniquePrefix(t)))
	}, storage.BucketOf)
}

func TestConformanceFakeGCS(t *testing.T) {
	g := testsvc.StartFakeGCS(t)
	g.CreateBucket(t, "conformance")
	g.SetEnv(t)
	storagetest.Run(t, func(t *testing.T) *storage.Store {
		return openURL(t, g.BucketURL("conformance", uniquePrefix(t)))
	}, storage.BucketOf)
}
