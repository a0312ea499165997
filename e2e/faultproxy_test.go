package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/pgcloudbackup/pgcloudbackup/internal/testsvc"
)

// faultProxy is a reverse proxy in front of a MinIO server that records the
// S3 requests the binary makes and injects faults into them. The binary
// talks plain HTTP to the proxy; it keeps the client's Host header, which
// the SigV4 signature covers, so MinIO accepts the requests it passes on.
type faultProxy struct {
	URL string // http://127.0.0.1:port

	mu    sync.Mutex
	fault fault
	calls []*s3Call
}

// s3Call is one request as the proxy saw it.
type s3Call struct {
	Op       string // CreateMultipartUpload, UploadPart, CompleteMultipartUpload, AbortMultipartUpload, PutObject, ...
	Key      string // object key (without the bucket)
	UploadID string
	Part     int
	Status   int  // what the client got; 0 for a dropped connection
	Injected bool // the answer came from the fault, not from MinIO
}

// fault decides the fate of one request; it runs under the proxy's lock.
type fault func(c *s3Call) action

// action: pass the request on (zero value), answer with an S3 error, or
// drop the connection; hold delays any of these.
type action struct {
	status int
	code   string
	drop   bool
	hold   <-chan struct{} // if set: wait until it is closed (or the client gives up), then act
}

func startFaultProxy(t *testing.T, m *testsvc.MinIO, f fault) *faultProxy {
	t.Helper()
	target, err := url.Parse(m.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{fault: f}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Host = r.In.Host // signed by the client
		},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := classifyS3(r)
		p.mu.Lock()
		p.calls = append(p.calls, c)
		act := action{}
		if p.fault != nil {
			act = p.fault(c)
		}
		// Under the lock: Calls copies the records while requests run.
		c.Injected = act.drop || act.status != 0
		p.mu.Unlock()
		if act.hold != nil {
			select {
			case <-act.hold:
			case <-r.Context().Done():
				return // the client gave up waiting
			}
		}
		switch {
		case act.drop:
			dropConnection(t, w, r)
		case act.status != 0:
			_, _ = io.Copy(io.Discard, r.Body)
			c.setStatus(&p.mu, act.status)
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(act.status)
			fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>injected by the test proxy</Message><Resource>%s</Resource></Error>`,
				act.code, r.URL.Path)
		default:
			sw := &statusWriter{ResponseWriter: w}
			rp.ServeHTTP(sw, r)
			c.setStatus(&p.mu, sw.status)
		}
	}))
	t.Cleanup(srv.Close)
	p.URL = srv.URL
	return p
}

func (c *s3Call) setStatus(mu *sync.Mutex, status int) {
	mu.Lock()
	c.Status = status
	mu.Unlock()
}

// dropConnection closes the client's connection without an answer, half-way
// through the request body.
func dropConnection(t *testing.T, w http.ResponseWriter, r *http.Request) {
	_, _ = io.CopyN(io.Discard, r.Body, 1<<20)
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		t.Errorf("fault proxy: hijack: %v", err)
		return
	}
	conn.Close()
}

// BucketURL is m's bucket URL with the proxy as the endpoint.
func (p *faultProxy) BucketURL(m *testsvc.MinIO, bucket, prefix string) string {
	u, err := url.Parse(m.BucketURL(bucket, prefix))
	if err != nil {
		panic(err)
	}
	q := u.Query()
	q.Set("endpoint", p.URL)
	u.RawQuery = q.Encode()
	return u.String()
}

// Calls returns a copy of the requests seen so far.
func (p *faultProxy) Calls() []s3Call {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]s3Call, len(p.calls))
	for i, c := range p.calls {
		out[i] = *c
	}
	return out
}

// Keys returns the keys the binary started multipart uploads or PUTs for.
func (p *faultProxy) Keys() []string {
	seen := map[string]bool{}
	var keys []string
	for _, c := range p.Calls() {
		if (c.Op == "CreateMultipartUpload" || c.Op == "PutObject") && !seen[c.Key] {
			seen[c.Key] = true
			keys = append(keys, c.Key)
		}
	}
	return keys
}

// classifyS3 names the S3 operation of a path-style request.
func classifyS3(r *http.Request) *s3Call {
	q := r.URL.Query()
	c := &s3Call{UploadID: q.Get("uploadId")}
	// /bucket/key...
	if _, key, ok := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/"); ok {
		c.Key = key
	}
	c.Part, _ = strconv.Atoi(q.Get("partNumber"))
	_, uploads := q["uploads"]
	switch {
	case r.Method == http.MethodPost && uploads:
		c.Op = "CreateMultipartUpload"
	case r.Method == http.MethodPut && c.UploadID != "" && c.Part > 0:
		c.Op = "UploadPart"
	case r.Method == http.MethodPost && c.UploadID != "":
		c.Op = "CompleteMultipartUpload"
	case r.Method == http.MethodDelete && c.UploadID != "":
		c.Op = "AbortMultipartUpload"
	case r.Method == http.MethodPut && c.Key != "":
		c.Op = "PutObject"
	case r.Method == http.MethodGet && uploads:
		c.Op = "ListMultipartUploads"
	default:
		c.Op = r.Method + " " + r.URL.Path
	}
	return c
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	// 1xx (100 Continue for a PUT with Expect) is not the answer.
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Flush lets the reverse proxy stream responses.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// failNthPart fails every attempt of the n-th distinct UploadPart (counted
// over all uploads, first attempts only): with 500 InternalError, which the
// SDK retries until its attempts run out, or by dropping the connection.
// Everything else, AbortMultipartUpload included, goes through.
func failNthPart(n int, drop bool) fault {
	type part struct {
		upload string
		no     int
	}
	var order []part
	return func(c *s3Call) action {
		if c.Op != "UploadPart" {
			return action{}
		}
		p := part{c.UploadID, c.Part}
		i := slices.Index(order, p)
		if i < 0 {
			order = append(order, p)
			i = len(order) - 1
		}
		if i != n-1 {
			return action{}
		}
		if drop {
			return action{drop: true}
		}
		return action{status: http.StatusInternalServerError, code: "InternalError"}
	}
}

// denyWrites answers 403 AccessDenied to every PUT (UploadPart and
// PutObject): a bucket that may be listed and read but not written. It lets
// CreateMultipartUpload (a POST) through, so the binary holds an upload it
// must abort.
func denyWrites() fault {
	return func(c *s3Call) action {
		if c.Op == "UploadPart" || c.Op == "PutObject" {
			return action{status: http.StatusForbidden, code: "AccessDenied"}
		}
		return action{}
	}
}
