package testsvc

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

func TestBinPathOrder(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(dir+"/bin", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir+"/bin/pgcb-fake-tool", []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv(ToolsEnv, dir)
	got, err := BinPath("pgcb-fake-tool")
	if err != nil || got != dir+"/bin/pgcb-fake-tool" {
		t.Fatalf("BinPath = %q, %v; want the $%s copy", got, err, ToolsEnv)
	}
	if _, err := BinPath("pgcb-no-such-tool"); err == nil || !strings.Contains(err.Error(), "install-test-services.sh") {
		t.Fatalf("missing tool: err = %v, want a hint naming the install script", err)
	}
}

func TestMinIORestartKeepsPortAndData(t *testing.T) {
	for _, tlsOn := range []bool{false, true} {
		t.Run(map[bool]string{false: "http", true: "https"}[tlsOn], func(t *testing.T) {
			m := StartMinIO(t, MinIOOptions{TLS: tlsOn})
			if tlsOn != strings.HasPrefix(m.Endpoint, "https://") {
				t.Fatalf("endpoint %s for TLS=%v", m.Endpoint, tlsOn)
			}
			m.CreateBucket(t, "keep")
			ctx := context.Background()
			c := m.S3Client(t)
			if _, err := c.PutObject(ctx, &s3.PutObjectInput{
				Bucket: aws.String("keep"), Key: aws.String("a/b"), Body: bytes.NewReader([]byte("hello")),
			}); err != nil {
				t.Fatal(err)
			}
			endpoint := m.Endpoint
			m.Stop(t)
			if _, err := c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String("keep")}); err == nil {
				t.Fatal("HeadBucket succeeded on a stopped server")
			}
			m.Start(t)
			if m.Endpoint != endpoint {
				t.Fatalf("endpoint changed across restart: %s -> %s", endpoint, m.Endpoint)
			}
			out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("keep"), Key: aws.String("a/b")})
			if err != nil {
				t.Fatalf("object lost across restart: %v", err)
			}
			data, _ := io.ReadAll(out.Body)
			out.Body.Close()
			if string(data) != "hello" {
				t.Fatalf("read %q after restart", data)
			}

			// An unfinished multipart upload shows in PendingUploads.
			mpu, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String("keep"), Key: aws.String("p/x")})
			if err != nil {
				t.Fatal(err)
			}
			if got := m.PendingUploads(t, "keep", "p/x"); !slices.Equal(got, []string{"p/x"}) {
				t.Fatalf("PendingUploads(p/x) = %v, want [p/x]", got)
			}
			// MinIO lists the uploads of one exact key only: a shorter
			// prefix finds nothing (unlike AWS S3). Tests must ask
			// for exact keys.
			if got := m.PendingUploads(t, "keep", "p/"); len(got) != 0 {
				t.Fatalf("PendingUploads(p/) = %v: MinIO now lists by prefix; update the docs that say it does not", got)
			}
			_, _ = c.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String("keep"), Key: aws.String("p/x"), UploadId: mpu.UploadId})

			env := strings.Join(m.Env(), "\n")
			if tlsOn && !strings.Contains(env, "AWS_CA_BUNDLE="+m.CAFile) {
				t.Fatalf("TLS Env lacks AWS_CA_BUNDLE: %s", env)
			}
		})
	}
}

func TestAzuriteAndFakeGCSAnswer(t *testing.T) {
	a := StartAzurite(t)
	a.CreateContainer(t, "c01")
	g := StartFakeGCS(t)
	g.CreateBucket(t, "b1")
	resp, err := http.Get(g.Endpoint + "/storage/v1/b/b1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("fake-gcs bucket b1: %s", resp.Status)
	}
	// Restart keeps the bucket (filesystem backend, same port).
	g.Stop(t)
	g.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, g.Endpoint+"/storage/v1/b/b1", nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("fake-gcs bucket b1 after restart: %s", resp.Status)
	}
}
