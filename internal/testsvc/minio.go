package testsvc

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// MinIORegion is the region every MinIO URL and client here uses.
const MinIORegion = "us-east-1"

// MinIO is a running MinIO server.
type MinIO struct {
	Endpoint  string // "http://127.0.0.1:port" or "https://127.0.0.1:port"
	AccessKey string
	SecretKey string
	CAFile    string // PEM of the CA that signed the server certificate (TLS only)
	Dir       string // the server's temporary directory: data/, certs/, minio.log

	port int
	tls  bool
	p    *proc
}

// MinIOOptions shape a MinIO server.
type MinIOOptions struct {
	// TLS serves HTTPS with a certificate from a throw-away CA (CAFile).
	TLS bool
}

// StartMinIO starts a single-drive MinIO server in a temporary directory on
// a free loopback port and stops it when the test ends.
func StartMinIO(t testing.TB, opts MinIOOptions) *MinIO {
	t.Helper()
	bin := needBin(t, "minio")
	dir := t.TempDir()
	m := &MinIO{
		AccessKey: "pgcbtest",
		SecretKey: randomHex(t, 16),
		Dir:       dir,
		tls:       opts.TLS,
	}
	certsDir := filepath.Join(dir, "certs")
	if opts.TLS {
		m.CAFile = filepath.Join(dir, "ca.crt")
		if err := writeTLS(certsDir, m.CAFile); err != nil {
			t.Fatalf("testsvc: minio certificates: %v", err)
		}
	} else if err := os.MkdirAll(certsDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := m.newPort(); err != nil {
		t.Fatalf("testsvc: %v", err)
	}
	health := m.httpClient(t)
	m.p = &proc{
		name: "minio",
		bin:  bin,
		args: func() []string {
			return []string{"server", "--quiet",
				"--address", "127.0.0.1:" + strconv.Itoa(m.port),
				// The console is off (MINIO_BROWSER), but pin its
				// address anyway so it never grabs the default :9001.
				"--console-address", "127.0.0.1:0",
				"--certs-dir", certsDir,
				filepath.Join(dir, "data")}
		},
		env: append(baseEnv("MINIO_"),
			"MINIO_ROOT_USER="+m.AccessKey,
			"MINIO_ROOT_PASSWORD="+m.SecretKey,
			"MINIO_BROWSER=off",
			"MINIO_UPDATE=off",
			"HOME="+dir, // MinIO keeps state under $HOME/.minio
		),
		dir:     dir,
		logPath: filepath.Join(dir, "minio.log"),
		ready: func(ctx context.Context) error {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.Endpoint+"/minio/health/ready", nil)
			if err != nil {
				return err
			}
			resp, err := health.Do(req)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("health: %s", resp.Status)
			}
			return nil
		},
	}
	launch(t, m.p, m.newPort)
	return m
}

func (m *MinIO) newPort() error {
	port, err := freePort()
	if err != nil {
		return err
	}
	m.port = port
	scheme := "http"
	if m.tls {
		scheme = "https"
	}
	m.Endpoint = fmt.Sprintf("%s://127.0.0.1:%d", scheme, port)
	return nil
}

// Stop stops the server (data and port are kept for Start).
func (m *MinIO) Stop(t testing.TB) {
	t.Helper()
	m.p.stop()
}

// Start starts a stopped server again on the same port with the same data.
func (m *MinIO) Start(t testing.TB) {
	t.Helper()
	restart(t, m.p)
}

// BucketURL returns the bucket URL our storage package opens for bucket and
// prefix ("" for none).
func (m *MinIO) BucketURL(bucket, prefix string) string {
	u := url.URL{Scheme: "s3", Host: bucket}
	if prefix != "" {
		u.Path = "/" + prefix
	}
	q := url.Values{}
	q.Set("endpoint", m.Endpoint)
	q.Set("use_path_style", "true")
	q.Set("region", MinIORegion)
	u.RawQuery = q.Encode()
	return u.String()
}

// Env returns the environment a child process needs to reach the server
// through the AWS SDK's standard chain. It also isolates that process from
// the machine's AWS configuration (shared files, instance metadata).
func (m *MinIO) Env() []string {
	ca := ""
	if m.CAFile != "" {
		ca = m.CAFile
	}
	return []string{
		"AWS_ACCESS_KEY_ID=" + m.AccessKey,
		"AWS_SECRET_ACCESS_KEY=" + m.SecretKey,
		"AWS_SESSION_TOKEN=",
		"AWS_REGION=" + MinIORegion,
		"AWS_PROFILE=",
		// Empty means unset to the SDK: a plain-HTTP server needs no CA,
		// and a machine-wide bundle must not hide a TLS test's CA.
		"AWS_CA_BUNDLE=" + ca,
		"AWS_CONFIG_FILE=" + filepath.Join(m.Dir, "no-aws-config"),
		"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(m.Dir, "no-aws-credentials"),
		"AWS_EC2_METADATA_DISABLED=true",
	}
}

// SetEnv sets Env in the test process (t.Setenv: the test cannot be
// parallel).
func (m *MinIO) SetEnv(t testing.TB) {
	t.Helper()
	setEnv(t, m.Env())
}

// S3Client returns an S3 client for the server that needs no environment.
func (m *MinIO) S3Client(t testing.TB) *s3.Client {
	t.Helper()
	return s3.New(s3.Options{
		Region:       MinIORegion,
		BaseEndpoint: aws.String(m.Endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(m.AccessKey, m.SecretKey, ""),
		HTTPClient:   m.httpClient(t),
	})
}

// CreateBucket creates a bucket.
func (m *MinIO) CreateBucket(t testing.TB, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := m.S3Client(t).CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		t.Fatalf("testsvc: create bucket %s: %v", name, err)
	}
}

// PendingUploads returns the keys that have an unfinished multipart upload
// and start with prefix, as the server reports them. MinIO only matches an
// exact key (it looks uploads up by a hash of bucket and key), so pass the
// full key of the object in question: a shorter prefix finds nothing.
func (m *MinIO) PendingUploads(t testing.TB, bucket, prefix string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	in := &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket)}
	if prefix != "" {
		in.Prefix = aws.String(prefix)
	}
	var keys []string
	p := s3.NewListMultipartUploadsPaginator(m.S3Client(t), in)
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatalf("testsvc: list multipart uploads in %s: %v", bucket, err)
		}
		for _, u := range page.Uploads {
			keys = append(keys, aws.ToString(u.Key))
		}
	}
	return keys
}

// httpClient trusts the server's CA (TLS) and nothing else.
func (m *MinIO) httpClient(t testing.TB) *http.Client {
	t.Helper()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if m.CAFile != "" {
		pem, err := os.ReadFile(m.CAFile)
		if err != nil {
			t.Fatalf("testsvc: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			t.Fatalf("testsvc: no certificate in %s", m.CAFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	}
	return &http.Client{Transport: tr}
}

func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
