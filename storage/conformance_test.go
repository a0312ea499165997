package storage_test

import (
	"context"
	"fmt"
	"path/filepath"
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
	})
}

func TestConformanceFile(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) *storage.Store {
		// A directory that does not exist yet: Open creates it.
		return openURL(t, "file://"+filepath.Join(t.TempDir(), "not", "yet"))
	})
}

func TestConformanceMinIO(t *testing.T) {
	m := testsvc.StartMinIO(t, testsvc.MinIOOptions{})
	m.CreateBucket(t, "conformance")
	m.SetEnv(t)
	storagetest.Run(t, func(t *testing.T) *storage.Store {
		return openURL(t, m.BucketURL("conformance", uniquePrefix(t)))
	})
}

func TestConformanceMinIOTLS(t *testing.T) {
	m := testsvc.StartMinIO(t, testsvc.MinIOOptions{TLS: true})
	m.CreateBucket(t, "conformance")
	m.SetEnv(t)
	storagetest.Run(t, func(t *testing.T) *storage.Store {
		return openURL(t, m.BucketURL("conformance", uniquePrefix(t)))
	})
}

func TestConformanceAzurite(t *testing.T) {
	a := testsvc.StartAzurite(t)
	a.CreateContainer(t, "conformance")
	a.SetEnv(t)
	storagetest.Run(t, func(t *testing.T) *storage.Store {
		return openURL(t, a.BucketURL("conformance", uniquePrefix(t)))
	})
}

func TestConformanceFakeGCS(t *testing.T) {
	g := testsvc.StartFakeGCS(t)
	g.CreateBucket(t, "conformance")
	g.SetEnv(t)
	storagetest.Run(t, func(t *testing.T) *storage.Store {
		return openURL(t, g.BucketURL("conformance", uniquePrefix(t)))
	})
}
