package e2e

import (
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgcloudbackup/pgcloudbackup/internal/pgtest"
	"github.com/pgcloudbackup/pgcloudbackup/internal/testsvc"
)

const (
	faultBucket = "faults"
	faultPrefix = "site/db1/"
)

// TestFaultUploads: a backup whose uploads fail half-way, in each of the
// ways below, ends with a non-zero exit and one clear error line, writes
// no manifest.json, and leaves no unfinished multipart upload on MinIO.
// Each case has its own MinIO server (the pending-upload check looks at a
// whole server); they share one cluster and run in parallel, as most of
// their time is spent waiting (SDK retry backoff, a throttled read).
func TestFaultUploads(t *testing.T) {
	c := pgtest.New(t, pgtest.Options{})
	// pgbench scale 3 (~45 MB, compresses well) and ~16 MB of random rows:
	// with 5 MiB parts, the archive spans several parts.
	c.Pgbench(3)
	loadIncompressible(c, "noise", 16000)

	t.Run("cases", func(t *testing.T) {
		t.Run("part fails with 500", func(t *testing.T) {
			t.Parallel()
			testFailedPart(t, c, false)
		})
		t.Run("connection dropped during a part", func(t *testing.T) {
			t.Parallel()
			testFailedPart(t, c, true)
		})
		t.Run("writes denied", func(t *testing.T) {
			t.Parallel()
			testWritesDenied(t, c)
		})
		t.Run("MinIO stops", func(t *testing.T) {
			t.Parallel()
			testMinIOStops(t, c)
		})
		t.Run("SIGTERM", func(t *testing.T) {
			t.Parallel()
			testSIGTERM(t, c)
		})
	})

	// No case leaves the server in backup mode or a WAL slot behind.
	assertNoBackupSessions(t, c)
	if n := c.QueryString("postgres", "SELECT count(*)::text FROM pg_replication_slots"); n != "0" {
		t.Errorf("%s replication slots left", n)
	}
}

// proxiedBackup runs a backup through a fault proxy into a new MinIO and
// returns what the proxy saw and the binary did.
func proxiedBackup(t *testing.T, c *pgtest.Cluster, f fault) (*testsvc.MinIO, *faultProxy, result) {
	t.Helper()
	m := testsvc.StartMinIO(t, testsvc.MinIOOptions{})
	m.CreateBucket(t, faultBucket)
	p := startFaultProxy(t, m, f)
	r := cli(t, append(c.Env(), m.Env()...), "backup", "--bucket", p.BucketURL(m, faultBucket, strings.TrimSuffix(faultPrefix, "/")),
		"--fast", "--part-size", "5MiB")
	return m, p, r
}

// assertCleanFailure: no object left (so no manifest.json), and no
// multipart upload pending on any key the backup could have used: those
// the proxy saw it start (when there is a proxy) and every key of the
// layout.
func assertCleanFailure(t *testing.T, m *testsvc.MinIO, r result, proxyKeys []string) {
	t.Helper()
	id := backupIDFrom(t, r.stderr)
	left := listKeys(t, m, faultBucket, "")
	assertNoManifest(t, left)
	if len(left) != 0 {
		t.Errorf("objects left after a failed backup: %v", left)
	}
	keys := append(backupKeys(faultPrefix, id, []string{"base"}, 20), proxyKeys...)
	assertNoPendingUploads(t, m, faultBucket, faultPrefix+"backups/"+id+"/base.00001.tar.zst", keys)
}

func testFailedPart(t *testing.T, c *pgtest.Cluster, drop bool) {
	const n = 3
	m, p, r := proxiedBackup(t, c, failNthPart(n, drop))
	if r.code != 1 {
		t.Fatalf("exit %d, want 1 (failed)\n%s", r.code, r)
	}
	assertOneLineError(t, r, 1, "upload")
	t.Logf("%s", errorLineOf(r))
	calls := p.Calls()

	// The n-th part was tried more than once (retried) and a bounded
	// number of times; then its upload was aborted through the proxy.
	var failed s3Call
	type part struct {
		upload string
		no     int
	}
	attempts, parts := 0, map[part]bool{}
	for _, call := range calls {
		if call.Op != "UploadPart" {
			continue
		}
		parts[part{call.UploadID, call.Part}] = true
		if call.Injected {
			failed = call
			attempts++
		}
	}
	if attempts == 0 {
		t.Fatalf("the backup never reached part %d (%d parts seen): the data is too small for this test\n%s", n, len(parts), r)
	}
	if attempts < 2 || attempts > 10 {
		t.Errorf("the failing part was tried %d times, want a few retries (2..10)", attempts)
	}
	aborted := false
	for _, call := range calls {
		if call.Op == "AbortMultipartUpload" && call.UploadID == failed.UploadID && call.Status == http.StatusNoContent {
			aborted = true
		}
	}
	if !aborted {
		t.Errorf("the upload of %s whose part failed was not aborted (calls: %+v)", failed.Key, calls)
	}
	t.Logf("part %d of %s failed %d times (drop=%v); %d parts seen", failed.Part, failed.Key, attempts, drop, len(parts))
	assertCleanFailure(t, m, r, p.Keys())
}

func testWritesDenied(t *testing.T, c *pgtest.Cluster) {
	m, p, r := proxiedBackup(t, c, denyWrites())
	// The first write is the reservation of the backup ID, made before
	// the server is touched: an unmet precondition.
	assertOneLineError(t, r, 3, "AccessDenied")
	t.Logf("exit %d: %s", r.code, errorLineOf(r))
	ops := map[string]int{}
	for _, call := range p.Calls() {
		if call.Injected && call.Status == http.StatusForbidden {
			ops["denied"]++
		}
		ops[call.Op]++
	}
	if ops["denied"] == 0 {
		t.Fatalf("no write reached the proxy\n%s", r)
	}
	t.Logf("requests: %v", ops)
	assertCleanFailure(t, m, r, p.Keys())
}

// testMinIOStops stops the server while a part upload is under way (the
// backup throttled by --max-rate) and starts it again once the backup has
// failed and its cleanup is retrying: an outage of a few seconds. The
// cleanup then reaches the server and leaves nothing behind.
//
// (Were the server to stay down, nothing could abort the uploads: the
// binary retries its cleanup for about a minute, warns which uploads and
// objects it could not remove, and exits; MinIO drops stale uploads after
// 24 h.)
//
// What a restart leaves checkable: MinIO keeps each unfinished upload in a
// directory of its data drive, so uploads started before the stop are still
// found on disk and by ListMultipartUploads for their exact key. NOT
// checkable after a restart: ListMultipartUploads without a prefix, which
// this MinIO answers from memory; it forgets the uploads started before the
// restart and would report none. An upload orphaned before the stop, on a
// key the backup does not touch, shows both.
func testMinIOStops(t *testing.T, c *pgtest.Cluster) {
	m := testsvc.StartMinIO(t, testsvc.MinIOOptions{TLS: true})
	m.CreateBucket(t, faultBucket)
	before := faultPrefix + "orphaned-before-restart"
	orphanID := orphanUpload(t, m, faultBucket, before)

	p := startCLI(t, append(c.Env(), m.Env()...), "backup", "--bucket", m.BucketURL(faultBucket, strings.TrimSuffix(faultPrefix, "/")),
		"--fast", "--part-size", "5MiB", "--max-rate", "8M")
	waitForUpload(t, p, m)
	m.Stop(t)
	waitForAny(t, p, time.Minute, cleanupRetries...)
	m.Start(t)
	r := p.wait(t)
	// 1 (failed), or 3 where the upload error is classified as an
	// unreachable store.
	if r.code != 1 && r.code != 3 {
		t.Fatalf("exit %d, want 1 or 3\n%s", r.code, r)
	}
	assertOneLineError(t, r, r.code, "connection refused")
	t.Logf("%s", errorLineOf(r))

	pb := pendingUploads(t, m, faultBucket, []string{before})
	if !slices.Contains(pb.OnDisk, before) || !slices.Equal(pb.ByKey, []string{before}) {
		t.Fatalf("an upload orphaned before the restart is not seen: %s", pb)
	}
	if len(pb.Listed) != 0 {
		t.Logf("note: this MinIO now lists uploads from before a restart without a prefix: %v", pb.Listed)
	}
	abortUpload(t, m, faultBucket, before, orphanID)
	assertCleanFailure(t, m, r, nil)
}

// cleanupRetries are the retry warnings of requests that only a failed
// backup's cleanup sends.
var cleanupRetries = []string{
	"operation=AbortMultipartUpload", "operation=ListMultipartUploads", "operation=ListObjectsV2", "operation=DeleteObject",
}

func testSIGTERM(t *testing.T, c *pgtest.Cluster) {
	m := testsvc.StartMinIO(t, testsvc.MinIOOptions{TLS: true})
	m.CreateBucket(t, faultBucket)
	p := startCLI(t, append(c.Env(), m.Env()...), "backup", "--bucket", m.BucketURL(faultBucket, strings.TrimSuffix(faultPrefix, "/")),
		"--fast", "--part-size", "5MiB", "--max-rate", "8M")
	waitForUpload(t, p, m)
	p.signal(t, syscall.SIGTERM)
	r := p.wait(t)
	assertOneLineError(t, r, 130, "interrupted")
	t.Logf("%s", errorLineOf(r))
	assertCleanFailure(t, m, r, nil)
}

// waitForUpload waits until MinIO has stored a part of one of the backup's
// objects: the backup is then in the middle of a multipart upload.
func waitForUpload(t *testing.T, p *started, m *testsvc.MinIO) {
	t.Helper()
	p.waitFor(t, "backup started", time.Minute)
	ours := map[string]bool{}
	for _, k := range backupKeys(faultPrefix, backupIDFrom(t, p.stderr.String()), []string{"base"}, 20) {
		ours[multipartDir(faultBucket, k)] = true
	}
	pattern := filepath.Join(m.Dir, "data", ".minio.sys", "multipart", "*", "*", "*", "part.*")
	deadline := time.Now().Add(time.Minute)
	for {
		parts, _ := filepath.Glob(pattern)
		for _, part := range parts {
			// <hash>/<upload>/<data dir>/part.N
			if ours[filepath.Base(filepath.Dir(filepath.Dir(filepath.Dir(part))))] {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no part of the backup reached MinIO within a minute\n%s", p.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitForAny waits until stderr contains one of texts.
func waitForAny(t *testing.T, p *started, timeout time.Duration, texts ...string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		out := p.stderr.String()
		for _, s := range texts {
			if strings.Contains(out, s) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for any of %q in stderr:\n%s", texts, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// errorLineOf is the binary's error line, for the test log.
func errorLineOf(r result) string {
	for _, l := range strings.Split(r.stderr, "\n") {
		if strings.HasPrefix(l, "pgcloudbackup: error:") {
			return l
		}
	}
	return ""
}
