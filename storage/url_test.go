package storage_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
	"github.com/pgcloudbackup/pgcloudbackup/storage"
)

// S3 transfer acceleration has its own virtual-hosted endpoint: the SDK's
// endpoint rules refuse it with path-style addressing or FIPS, but only at
// the first request ("endpoint rule error", exit 1). Open refuses the
// combination as a usage error naming both parameters; either one alone,
// or with the other set to false, opens.
func TestOpenRefusesConflictingS3Params(t *testing.T) {
	// The URLs name their region; no profile of this machine's may fail them.
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_PROFILE", "")
	for _, other := range []string{"use_path_style", "s3ForcePathStyle", "fips"} {
		for _, q := range []string{"accelerate=true&" + other + "=true", other + "=1&accelerate=TRUE"} {
			url := "s3://my-bucket/p?region=us-east-1&" + q
			_, err := storage.Open(context.Background(), url, storage.Options{})
			if err == nil {
				t.Errorf("Open(%q) succeeded", url)
				continue
			}
			msg := err.Error()
			if failure.KindOf(err) != failure.Usage || !strings.Contains(msg, "accelerate") || !strings.Contains(msg, other) || strings.Contains(msg, "\n") {
				t.Errorf("Open(%q) = %q (kind %v); want a one-line usage error naming accelerate and %s", url, msg, failure.KindOf(err), other)
			}
		}
		for _, q := range []string{"accelerate=true&" + other + "=false", "accelerate=false&" + other + "=true", other + "=true"} {
			url := "s3://my-bucket/p?region=us-east-1&" + q
			s, err := storage.Open(context.Background(), url, storage.Options{})
			if err != nil {
				t.Errorf("Open(%q): %v", url, err)
				continue
			}
			s.Close()
		}
	}
	s, err := storage.Open(context.Background(), "s3://my-bucket?region=us-east-1&accelerate=true", storage.Options{})
	if err != nil {
		t.Fatalf("accelerate alone: %v", err)
	}
	s.Close()
}
