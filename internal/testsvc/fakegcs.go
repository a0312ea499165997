package testsvc

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// FakeGCS is a running fake-gcs-server.
type FakeGCS struct {
	Endpoint string // "http://127.0.0.1:port"
	Host     string // "127.0.0.1:port": the STORAGE_EMULATOR_HOST value
	Dir      string

	port int
	p    *proc
}

// StartFakeGCS starts fake-gcs-server (plain HTTP, filesystem backend) in a
// temporary directory on a free loopback port and stops it when the test
// ends.
func StartFakeGCS(t testing.TB) *FakeGCS {
	t.Helper()
	bin := needBin(t, "fake-gcs-server")
	dir := t.TempDir()
	g := &FakeGCS{Dir: dir}
	if err := g.newPort(); err != nil {
		t.Fatalf("testsvc: %v", err)
	}
	client := &http.Client{}
	g.p = &proc{
		name: "fake-gcs-server",
		bin:  bin,
		args: func() []string {
			return []string{
				"-scheme", "http",
				"-host", "127.0.0.1",
				"-port", strconv.Itoa(g.port),
				"-backend", "filesystem",
				"-filesystem-root", filepath.Join(dir, "data"),
				// Resumable uploads continue at the Location the
				// server returns: it must be this server.
				"-public-host", g.Host,
				"-external-url", g.Endpoint,
				"-log-level", "warn",
			}
		},
		env:     baseEnv("STORAGE_EMULATOR_HOST"),
		dir:     dir,
		logPath: filepath.Join(dir, "fake-gcs-server.log"),
		ready: func(ctx context.Context) error {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.Endpoint+"/storage/v1/b", nil)
			if err != nil {
				return err
			}
			resp, err := client.Do(req)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("list buckets: %s", resp.Status)
			}
			return nil
		},
	}
	launch(t, g.p, g.newPort)
	return g
}

func (g *FakeGCS) newPort() error {
	port, err := freePort()
	if err != nil {
		return err
	}
	g.port = port
	g.Host = fmt.Sprintf("127.0.0.1:%d", port)
	g.Endpoint = "http://" + g.Host
	return nil
}

// Stop stops the server (data and port are kept for Start).
func (g *FakeGCS) Stop(t testing.TB) { t.Helper(); g.p.stop() }

// Start starts a stopped server again on the same port with the same data.
func (g *FakeGCS) Start(t testing.TB) { t.Helper(); restart(t, g.p) }

// BucketURL returns the gs URL for bucket and prefix ("" for none). The
// emulator is selected by STORAGE_EMULATOR_HOST (Env), not by the URL.
func (g *FakeGCS) BucketURL(bucket, prefix string) string {
	u := url.URL{Scheme: "gs", Host: bucket}
	if prefix != "" {
		u.Path = "/" + prefix
	}
	return u.String()
}

// Env returns the environment a child process needs: STORAGE_EMULATOR_HOST
// makes gcsblob and the Google client talk plain HTTP to the emulator
// without credentials.
func (g *FakeGCS) Env() []string {
	return []string{
		"STORAGE_EMULATOR_HOST=" + g.Host,
		"STORAGE_EMULATOR_HOST_GRPC=",
	}
}

// SetEnv sets Env in the test process (t.Setenv: the test cannot be
// parallel).
func (g *FakeGCS) SetEnv(t testing.TB) { t.Helper(); setEnv(t, g.Env()) }

// CreateBucket creates a bucket through the JSON API.
func (g *FakeGCS) CreateBucket(t testing.TB, name string) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"name": name})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.Endpoint+"/storage/v1/b?project=test", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("testsvc: create bucket %s: %v", name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		t.Fatalf("testsvc: create bucket %s: %s: %s", name, resp.Status, msg)
	}
}
