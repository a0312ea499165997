package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/pgcloudbackup/pgcloudbackup/internal/pgtest"
	"github.com/pgcloudbackup/pgcloudbackup/internal/testsvc"
)

// TestAzureAndGCS runs the user's path through the binary on Azurite and
// fake-gcs-server: backup → list → verify → restore (tablespace moved) →
// pg_verifybackup → start and compare; then the server stops while a
// throttled backup is uploading, and comes back while the failed backup is
// cleaning up: exit 1 or 3 with one error line, and no object (so no
// manifest.json) and, on Azure, no uncommitted block left.
func TestAzureAndGCS(t *testing.T) {
	c := pgtest.New(t, pgtest.Options{})
	sample := c.LoadSample(pgtest.SampleOptions{})
	loadIncompressible(c, "noise", 12000) // a throttled backup takes a while

	t.Run("azblob", func(t *testing.T) {
		t.Parallel()
		a := testsvc.StartAzurite(t)
		const ctr = "pgbackups"
		a.CreateContainer(t, ctr)
		env := append(c.Env(), a.Env()...)
		id := cloudRoundTrip(t, c, sample, env, a.BucketURL(ctr, "prod/db1"))
		if keys := azureKeys(t, a, ctr); !containsKey(keys, "prod/db1/backups/"+id+"/manifest.json") {
			t.Fatalf("Azure container lacks the backup's manifest.json: %v", keys)
		}

		// The fault: Azurite stops mid-upload.
		url := a.BucketURL(ctr, "fault")
		before := azureKeys(t, a, ctr)
		p := startCLI(t, env, "backup", "--bucket", url, "--fast", "--max-rate", "4M", "--part-size", "1MiB", "-v")
		p.waitFor(t, "backup started", time.Minute)
		fid := backupIDFrom(t, p.stderr.String())
		key := "fault/backups/" + fid + "/base.00001.tar.zst"
		waitUntil(t, p, "blocks of "+key+" staged", func() bool { return azureUncommitted(t, a, ctr, key) > 0 })
		a.Stop(t)
		// The store comes back once the failed backup starts removing
		// what it wrote (its own keys, no listing).
		p.waitFor(t, "removing what the failed backup wrote", 3*time.Minute)
		a.Start(t)
		r := p.wait(t)
		assertStoreDown(t, r)
		if after := azureKeys(t, a, ctr); strings.Join(after, " ") != strings.Join(before, " ") {
			t.Errorf("blobs after the failed backup %v, before %v", after, before)
		}
		// Uncommitted blocks: the check sees a deliberately staged one...
		probe := "fault/backups/" + fid + "/probe"
		stageBlock(t, a, ctr, probe)
		if azureUncommitted(t, a, ctr, probe) == 0 {
			t.Fatal("the uncommitted-block check is blind: a staged block is not seen")
		}
		// ...and finds none on any key the backup could have used: the
		// cleanup discarded them (Azure has no abort for staged blocks).
		for _, k := range backupKeys("fault/", fid, []string{"base", sample.TablespaceOID}, 20) {
			if n := azureUncommitted(t, a, ctr, k); n > 0 {
				t.Errorf("%d uncommitted blocks left on %s", n, k)
			}
		}
	})

	t.Run("gs", func(t *testing.T) {
		t.Parallel()
		g := testsvc.StartFakeGCS(t)
		const bucket = "pgbackups"
		g.CreateBucket(t, bucket)
		// The binary talks to the emulator through a recording proxy, so
		// the test sees when an upload is in flight.
		rec := startRecorder(t, g.Endpoint)
		env := append(c.Env(), "STORAGE_EMULATOR_HOST="+strings.TrimPrefix(rec.URL, "http://"), "STORAGE_EMULATOR_HOST_GRPC=")
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("objects: %v\nrequests: %s", gcsKeys(t, g, bucket), strings.Join(rec.log, "\n"))
			}
		})
		id := cloudRoundTrip(t, c, sample, env, g.BucketURL(bucket, "prod/db1"))
		if keys := gcsKeys(t, g, bucket); !containsKey(keys, "prod/db1/backups/"+id+"/manifest.json") {
			t.Fatalf("GCS bucket lacks the backup's manifest.json: %v", keys)
		}

		before := gcsKeys(t, g, bucket)
		rec.reset()
		p := startCLI(t, env, "backup", "--bucket", g.BucketURL(bucket, "fault"), "--fast", "--max-rate", "4M", "--part-size", "1MiB", "-v")
		p.waitFor(t, "backup started", time.Minute)
		// A resumable upload session has taken a chunk, more to come.
		waitUntil(t, p, "a chunk of an upload stored", rec.chunkStored)
		g.Stop(t)
		p.waitFor(t, "removing what the failed backup wrote", 3*time.Minute)
		g.Start(t)
		r := p.wait(t)
		assertStoreDown(t, r)
		if after := gcsKeys(t, g, bucket); strings.Join(after, " ") != strings.Join(before, " ") {
			t.Errorf("objects after the failed backup %v, before %v", after, before)
		}
		// fake-gcs-server cannot list open resumable sessions; a session
		// never finalised makes no object, which the listing checks.
	})
}

// cloudRoundTrip: backup, list, verify, restore, pg_verifybackup, start and
// compare. It returns the backup ID.
func cloudRoundTrip(t *testing.T, c *pgtest.Cluster, sample *pgtest.Sample, env []string, bucket string) string {
	t.Helper()
	env = append(append([]string{}, env...), "PGCLOUDBACKUP_BUCKET="+bucket)
	r := cli(t, env, "backup", "--fast", "--wal", "--json", "--part-size", "1MiB")
	if r.code != 0 {
		t.Fatalf("backup: %s", r)
	}
	backupLog := r.stderr
	var b struct{ ID string }
	if err := json.Unmarshal([]byte(r.stdout), &b); err != nil || b.ID == "" {
		t.Fatalf("backup --json: %v\n%s", err, r)
	}
	r = cli(t, env, "list", "--json")
	var list []struct{ ID, Status string }
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list) != 1 || list[0].ID != b.ID || list[0].Status != "complete" {
		t.Fatalf("list --json: %v %+v\n%s\nbackup log:\n%s", err, list, r, backupLog)
	}
	if r = cli(t, env, "verify", b.ID); r.code != 0 || !strings.Contains(r.stdout, "verified") {
		t.Fatalf("verify: %s", r)
	}
	root := pgtest.TempDir(t, "cloud-")
	target := filepath.Join(root, "data")
	tsDir := filepath.Join(root, "ts")
	if r = cli(t, env, "restore", "latest", "--target", target, "--tablespace-map", sample.TablespaceOID+"="+tsDir); r.code != 0 {
		t.Fatalf("restore: %s", r)
	}
	out, err := c.Client("pg_verifybackup", target).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "backup successfully verified") {
		t.Fatalf("pg_verifybackup on the restored directory: %v\n%s", err, out)
	}
	restored := startRestored(t, c, sample, root, target)
	restored.Stop()
	return b.ID
}

// assertStoreDown: a backup whose store went away fails with exit 1 (failed)
// or 3 (store unreachable), one error line, no stack trace.
func assertStoreDown(t *testing.T, r result) {
	t.Helper()
	if r.code != 1 && r.code != 3 {
		t.Fatalf("exit %d, want 1 or 3\n%s", r.code, r)
	}
	assertOneLineError(t, r, r.code, "")
	t.Logf("exit %d: %s", r.code, errorLineOf(r))
}

// waitUntil polls cond (a minute at most) while the binary runs.
func waitUntil(t *testing.T, p *started, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s\n%s", what, p.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func containsKey(keys []string, k string) bool {
	for _, x := range keys {
		if x == k {
			return true
		}
	}
	return false
}

// Azure checks with the Azure SDK only.

func azureContainer(t *testing.T, a *testsvc.Azurite, ctr string) *container.Client {
	t.Helper()
	cred, err := azblob.NewSharedKeyCredential(testsvc.AzuriteAccount, testsvc.AzuriteKey)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := container.NewClientWithSharedKeyCredential(a.Endpoint+"/"+ctr, cred, nil)
	if err != nil {
		t.Fatal(err)
	}
	return cc
}

// azureKeys lists the committed blobs of a container, sorted.
func azureKeys(t *testing.T, a *testsvc.Azurite, ctr string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var keys []string
	pager := azureContainer(t, a, ctr).NewListBlobsFlatPager(nil)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatalf("list container %s: %v", ctr, err)
		}
		for _, b := range page.Segment.BlobItems {
			keys = append(keys, *b.Name)
		}
	}
	sort.Strings(keys)
	return keys
}

// azureUncommitted counts the uncommitted blocks of blob key (0 when the
// blob has none, or does not exist at all).
func azureUncommitted(t *testing.T, a *testsvc.Azurite, ctr, key string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	bb := azureContainer(t, a, ctr).NewBlockBlobClient(key)
	resp, err := bb.GetBlockList(ctx, blockblob.BlockListTypeAll, nil)
	if err != nil {
		if strings.Contains(err.Error(), "BlobNotFound") || strings.Contains(err.Error(), "404") {
			return 0
		}
		t.Fatalf("get block list of %s: %v", key, err)
	}
	return len(resp.UncommittedBlocks)
}

func stageBlock(t *testing.T, a *testsvc.Azurite, ctr, key string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	bb := azureContainer(t, a, ctr).NewBlockBlobClient(key)
	id := base64.StdEncoding.EncodeToString([]byte("probe-block-0001"))
	body := streamingNopCloser{bytes.NewReader([]byte("orphan"))}
	if _, err := bb.StageBlock(ctx, id, body, nil); err != nil {
		t.Fatalf("stage a block on %s: %v", key, err)
	}
}

type streamingNopCloser struct{ io.ReadSeeker }

func (streamingNopCloser) Close() error { return nil }

// gcsKeys lists a fake-gcs-server bucket over its JSON API, sorted.
func gcsKeys(t *testing.T, g *testsvc.FakeGCS, bucket string) []string {
	t.Helper()
	var keys []string
	token := ""
	for {
		u := g.Endpoint + "/storage/v1/b/" + bucket + "/o?maxResults=1000"
		if token != "" {
			u += "&pageToken=" + url.QueryEscape(token)
		}
		resp, err := http.Get(u)
		if err != nil {
			t.Fatalf("list %s: %v", bucket, err)
		}
		var page struct {
			Items         []struct{ Name string }
			NextPageToken string
		}
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("list %s: %s %v", bucket, resp.Status, err)
		}
		for _, it := range page.Items {
			keys = append(keys, it.Name)
		}
		if token = page.NextPageToken; token == "" {
			break
		}
	}
	sort.Strings(keys)
	return keys
}

// recorder is a reverse proxy that remembers the requests it passed on. It
// rewrites the Location of a new resumable upload to point at itself, so the
// chunks come through it too.
type recorder struct {
	URL string
	mu  sync.Mutex
	log []string // "METHOD path?query status"
}

func startRecorder(t *testing.T, target string) *recorder {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	// SetURL also sends the emulator its own host name: it routes object
	// downloads (/bucket/object) by its public host.
	rp := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(u) },
		ErrorLog: log.New(io.Discard, "", 0)} // the emulator is stopped on purpose
	srv := httptest.NewUnstartedServer(nil)
	rp.ModifyResponse = func(resp *http.Response) error {
		if loc := resp.Header.Get("Location"); loc != "" {
			resp.Header.Set("Location", strings.Replace(loc, target, "http://"+srv.Listener.Addr().String(), 1))
		}
		return nil
	}
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		rp.ServeHTTP(sw, r)
		rec.mu.Lock()
		rec.log = append(rec.log, fmt.Sprintf("%s %s %d", r.Method, r.URL.RequestURI(), sw.status))
		rec.mu.Unlock()
	})
	srv.Start()
	t.Cleanup(srv.Close)
	rec.URL = srv.URL
	return rec
}

func (rec *recorder) reset() {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	rec.log = nil
}

// chunkStored: since the last reset, the emulator accepted a chunk of a
// resumable upload session (a request naming its upload_id): an upload of
// more than one chunk is in flight (an object that fits one chunk is sent
// in a single request, uploadType=multipart).
func (rec *recorder) chunkStored() bool {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, l := range rec.log {
		if strings.Contains(l, "upload_id=") && (strings.HasSuffix(l, " 200") || strings.HasSuffix(l, " 308")) {
			return true
		}
	}
	return false
}
