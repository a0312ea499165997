package storage_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
	"github.com/pgcloudbackup/pgcloudbackup/internal/testsvc"
	"github.com/pgcloudbackup/pgcloudbackup/storage"
)

// fastRetry keeps the tests quick: 3 attempts, waits of at most 50 ms.
var fastRetry = storage.Retry{MaxAttempts: 3, MaxBackoff: 50 * time.Millisecond}

// checkAccess opens url and returns CheckAccess's error and the log.
func checkAccess(t *testing.T, url string) (error, string) {
	t.Helper()
	logs := &logBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	s, err := storage.Open(context.Background(), url, storage.Options{Logger: log, Retry: fastRetry})
	if err != nil {
		return err, logs.String()
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err = s.CheckAccess(ctx)
	return err, logs.String()
}

// wantFailure checks kind, that the message is one line naming mention, and
// that the hint names hint.
func wantFailure(t *testing.T, label string, err error, kind failure.Kind, mention, hint string) {
	t.Helper()
	switch {
	case err == nil:
		t.Errorf("%s: no error", label)
	case failure.KindOf(err) != kind:
		t.Errorf("%s: kind %v, want %v: %v", label, failure.KindOf(err), kind, err)
	case strings.Contains(err.Error(), "\n"):
		t.Errorf("%s: message is not one line: %q", label, err)
	case !strings.Contains(err.Error(), mention):
		t.Errorf("%s: message %q does not say %q", label, err, mention)
	case !strings.Contains(failure.HintOf(err), hint):
		t.Errorf("%s: hint %q does not say %q (message %q)", label, failure.HintOf(err), hint, err)
	default:
		t.Logf("%s: %v (hint: %s)", label, err, failure.HintOf(err))
	}
}

func TestClassifyMinIO(t *testing.T) {
	m := testsvc.StartMinIO(t, testsvc.MinIOOptions{})
	m.CreateBucket(t, "exists")
	m.SetEnv(t)

	err, _ := checkAccess(t, m.BucketURL("exists", "p"))
	if err != nil {
		t.Fatalf("CheckAccess on a good bucket: %v", err)
	}
	err, _ = checkAccess(t, m.BucketURL("nosuch", ""))
	wantFailure(t, "missing bucket", err, failure.Precondition, `bucket "nosuch" does not exist`, "create it")

	t.Run("wrong secret", func(t *testing.T) {
		t.Setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
		err, _ := checkAccess(t, m.BucketURL("exists", ""))
		wantFailure(t, "wrong secret", err, failure.Precondition, "SignatureDoesNotMatch", "AWS_SECRET_ACCESS_KEY")
	})
	t.Run("unknown key id", func(t *testing.T) {
		t.Setenv("AWS_ACCESS_KEY_ID", "nobody")
		err, _ := checkAccess(t, m.BucketURL("exists", ""))
		wantFailure(t, "unknown key", err, failure.Precondition, "InvalidAccessKeyId", "AWS_ACCESS_KEY_ID")
	})
	t.Run("no credentials", func(t *testing.T) {
		t.Setenv("AWS_ACCESS_KEY_ID", "")
		t.Setenv("AWS_SECRET_ACCESS_KEY", "")
		err, _ := checkAccess(t, m.BucketURL("exists", ""))
		wantFailure(t, "no credentials", err, failure.Precondition, "credentials", "AWS_ACCESS_KEY_ID")
	})
	t.Run("server down", func(t *testing.T) {
		m.Stop(t)
		err, logs := checkAccess(t, m.BucketURL("exists", ""))
		wantFailure(t, "server down", err, failure.Precondition, "cannot reach "+m.Endpoint, "endpoint")
		// Each retry is logged with the operation, the failed attempt
		// and its error; the last attempt is not followed by a retry.
		for _, want := range []string{"attempt=1", "attempt=2"} {
			if !strings.Contains(logs, "level=WARN") || !strings.Contains(logs, "operation=ListObjectsV2") || !strings.Contains(logs, want) || !strings.Contains(logs, "connection refused") {
				t.Errorf("retry log lacks %s: %s", want, logs)
			}
		}
		if strings.Contains(logs, "attempt=3") {
			t.Errorf("logged a retry after the last attempt: %s", logs)
		}
		m.Start(t)
		if err, _ := checkAccess(t, m.BucketURL("exists", "")); err != nil {
			t.Errorf("after restart: %v", err)
		}
	})
}

func TestClassifyMinIOTLS(t *testing.T) {
	m := testsvc.StartMinIO(t, testsvc.MinIOOptions{TLS: true})
	m.CreateBucket(t, "tls")
	m.SetEnv(t)
	if err, _ := checkAccess(t, m.BucketURL("tls", "")); err != nil {
		t.Fatalf("with AWS_CA_BUNDLE: %v", err)
	}
	t.Setenv("AWS_CA_BUNDLE", "")
	start := time.Now()
	err, logs := checkAccess(t, m.BucketURL("tls", ""))
	wantFailure(t, "unknown CA", err, failure.Precondition, "signed by an unknown authority", "AWS_CA_BUNDLE=/path/ca.crt")
	// An untrusted certificate does not become trusted by retrying: the
	// user gets the hint at once.
	if strings.Contains(logs, "retrying") {
		t.Errorf("certificate error was retried:\n%s", logs)
	}
	if err != nil && !strings.Contains(err.Error(), m.Endpoint) {
		t.Errorf("unknown CA: message %q does not name the endpoint %s", err, m.Endpoint)
	}
	t.Logf("unknown CA reported after %v", time.Since(start))
}

func TestClassifyAzurite(t *testing.T) {
	a := testsvc.StartAzurite(t)
	a.CreateContainer(t, "exists")
	a.SetEnv(t)
	if err, _ := checkAccess(t, a.BucketURL("exists", "p")); err != nil {
		t.Fatalf("CheckAccess on a good container: %v", err)
	}
	err, _ := checkAccess(t, a.BucketURL("nosuch", ""))
	wantFailure(t, "missing container", err, failure.Precondition, `container "nosuch" does not exist`, "create it")

	t.Run("wrong key", func(t *testing.T) {
		// A well-formed key that is not the account's.
		t.Setenv("AZURE_STORAGE_KEY", "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktd3Jvbmcta2V5LXdyb25nLWtleQ==")
		err, _ := checkAccess(t, a.BucketURL("exists", ""))
		wantFailure(t, "wrong key", err, failure.Precondition, "denied", "AZURE_STORAGE_KEY")
	})
	t.Run("server down", func(t *testing.T) {
		a.Stop(t)
		err, logs := checkAccess(t, a.BucketURL("exists", ""))
		wantFailure(t, "server down", err, failure.Precondition, "cannot reach "+a.Endpoint, "endpoint")
		if !strings.Contains(logs, "level=WARN") || !strings.Contains(logs, "attempt=2") || strings.Contains(logs, "attempt=3") {
			t.Errorf("retry log: want attempts 1 and 2 logged, not 3: %s", logs)
		}
	})
}

func TestClassifyFakeGCS(t *testing.T) {
	g := testsvc.StartFakeGCS(t)
	g.CreateBucket(t, "exists")
	g.SetEnv(t)
	if err, _ := checkAccess(t, g.BucketURL("exists", "p")); err != nil {
		t.Fatalf("CheckAccess on a good bucket: %v", err)
	}
	err, _ := checkAccess(t, g.BucketURL("nosuch", ""))
	wantFailure(t, "missing bucket", err, failure.Precondition, `bucket "nosuch" does not exist`, "create it")

	t.Run("server down", func(t *testing.T) {
		g.Stop(t)
		err, logs := checkAccess(t, g.BucketURL("exists", ""))
		wantFailure(t, "server down", err, failure.Precondition, "cannot reach "+g.Endpoint, "endpoint")
		if !strings.Contains(logs, "level=WARN") || !strings.Contains(logs, "attempt=2") || strings.Contains(logs, "attempt=3") {
			t.Errorf("retry log: want attempts 1 and 2 logged, not 3: %s", logs)
		}
	})
}
