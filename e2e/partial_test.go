package e2e

import (
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/pgcloudbackup/pgcloudbackup/internal/pgtest"
	"github.com/pgcloudbackup/pgcloudbackup/internal/testsvc"
)

// setFault replaces the proxy's fault; the lock orders it with the requests.
func (p *faultProxy) setFault(f fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fault = f
}

// TestFailureAfterCommits fails a backup late: with one job and a 2-part
// limit per object (5 MiB parts, so a roll-over every 9.5 MB), objects
// base.00001 and base.00002 (a rolled-over volume) are committed before the
// fault strikes: the second part of a later object fails for good while
// its upload is in flight. The backup must exit 1 with one error line and
// leave the bucket as it found it: the committed objects deleted, no
// manifest.json, no pending multipart upload.
func TestFailureAfterCommits(t *testing.T) {
	c := pgtest.New(t, pgtest.Options{})
	c.Pgbench(1)
	loadIncompressible(c, "noise", 30000) // ~30 MB that zstd cannot shrink: objects of 2 parts
	m := testsvc.StartMinIO(t, testsvc.MinIOOptions{})
	m.CreateBucket(t, faultBucket)
	p := startFaultProxy(t, m, nil)
	// One job: objects are written one after the other, so an object
	// numbered 3 or more starts only after the ones before it completed.
	late := regexp.MustCompile(`/base\.(\d{5})\.tar\.zst$`)
	p.setFault(func(call *s3Call) action {
		if call.Op != "UploadPart" || call.Part != 2 {
			return action{}
		}
		if m := late.FindStringSubmatch(call.Key); m != nil && m[1] >= "00003" {
			return action{status: http.StatusInternalServerError, code: "InternalError"}
		}
		return action{}
	})
	r := cli(t, append(c.Env(), m.Env()...), "backup", "--bucket", p.BucketURL(m, faultBucket, strings.TrimSuffix(faultPrefix, "/")),
		"--fast", "--part-size", "5MiB", "--max-parts-per-object", "2", "--jobs", "1")
	assertOneLineError(t, r, 1, "upload")
	t.Logf("%s", errorLineOf(r))
	id := backupIDFrom(t, r.stderr)
	dir := faultPrefix + "backups/" + id + "/"

	// What had happened when the fault first struck, from the proxy's
	// record (requests in arrival order, statuses as answered).
	calls := p.Calls()
	first := slices.IndexFunc(calls, func(c s3Call) bool { return c.Injected })
	if first < 0 {
		t.Fatalf("the fault never struck: no object from base.00003 on had a second part\n%s", r)
	}
	victim := calls[first]
	committed := map[string]bool{}
	created, partOne := false, false
	for _, call := range calls[:first] {
		switch {
		case call.Op == "CompleteMultipartUpload" && call.Status == http.StatusOK,
			call.Op == "PutObject" && call.Status == http.StatusOK:
			committed[strings.TrimPrefix(call.Key, dir)] = true
		case call.Op == "CreateMultipartUpload" && call.Key == victim.Key && call.Status == http.StatusOK:
			created = true
		case call.Op == "UploadPart" && call.UploadID == victim.UploadID && call.Part == 1:
			partOne = true
		}
	}
	n, _ := strconv.Atoi(late.FindStringSubmatch(victim.Key)[1])
	for i := 1; i < n; i++ {
		if k := fmt.Sprintf("base.%05d.tar.zst", i); !committed[k] {
			t.Errorf("%s was not committed before the fault struck %s (committed: %v)", k, victim.Key, committed)
		}
	}
	if !created || !partOne {
		t.Fatalf("the upload of %s was not in flight when the fault struck: created %v, part 1 sent %v", victim.Key, created, partOne)
	}
	var aborted, retried bool
	for _, call := range calls[first+1:] {
		if call.Op == "AbortMultipartUpload" && call.UploadID == victim.UploadID && call.Status == http.StatusNoContent {
			aborted = true
		}
		if call.Injected && call.UploadID == victim.UploadID {
			retried = true
		}
		if call.Op == "CompleteMultipartUpload" && call.UploadID == victim.UploadID {
			t.Errorf("the failed upload was completed: %+v", call)
		}
	}
	if !aborted || !retried {
		t.Errorf("failed upload retried %v, aborted %v; want both", retried, aborted)
	}
	t.Logf("fault struck part 2 of %s; committed before: %v; %d requests in all", strings.TrimPrefix(victim.Key, dir), committed, len(calls))

	// Nothing left: every committed object deleted, no upload pending.
	if left := listKeys(t, m, faultBucket, ""); len(left) != 0 {
		t.Errorf("objects left after a failed backup: %v", left)
	}
	keys := append(backupKeys(faultPrefix, id, []string{"base"}, 20), p.Keys()...)
	assertNoPendingUploads(t, m, faultBucket, dir+"base.00001.tar.zst", keys)
	assertNoBackupSessions(t, c)
}

// TestFailureAtManifest fails the very last write of a backup, manifest.json,
// after every archive object (the tablespace's included) and backup_manifest
// were committed: the backup exits 1 and removes them all.
func TestFailureAtManifest(t *testing.T) {
	c := pgtest.New(t, pgtest.Options{})
	sample := c.LoadSample(pgtest.SampleOptions{})
	m := testsvc.StartMinIO(t, testsvc.MinIOOptions{})
	m.CreateBucket(t, faultBucket)
	p := startFaultProxy(t, m, func(call *s3Call) action {
		if strings.HasSuffix(call.Key, "/manifest.json") &&
			(call.Op == "PutObject" || call.Op == "CreateMultipartUpload" || call.Op == "UploadPart") {
			return action{status: http.StatusInternalServerError, code: "InternalError"}
		}
		return action{}
	})
	r := cli(t, append(c.Env(), m.Env()...), "backup", "--bucket", p.BucketURL(m, faultBucket, strings.TrimSuffix(faultPrefix, "/")), "--fast")
	assertOneLineError(t, r, 1, "manifest.json")
	t.Logf("%s", errorLineOf(r))
	id := backupIDFrom(t, r.stderr)
	dir := faultPrefix + "backups/" + id + "/"

	calls := p.Calls()
	first := slices.IndexFunc(calls, func(c s3Call) bool { return c.Injected })
	if first < 0 {
		t.Fatalf("the fault never struck\n%s", r)
	}
	committed := map[string]bool{}
	for _, call := range calls[:first] {
		if (call.Op == "CompleteMultipartUpload" || call.Op == "PutObject") && call.Status == http.StatusOK {
			committed[strings.TrimPrefix(call.Key, dir)] = true
		}
	}
	for _, k := range []string{"base.00001.tar.zst", sample.TablespaceOID + ".00001.tar.zst", "backup_manifest"} {
		if !committed[k] {
			t.Errorf("%s was not committed before manifest.json failed (committed: %v)", k, committed)
		}
	}
	if left := listKeys(t, m, faultBucket, ""); len(left) != 0 {
		t.Errorf("objects left after a failed backup: %v", left)
	}
	keys := append(backupKeys(faultPrefix, id, []string{"base", sample.TablespaceOID}, 5), p.Keys()...)
	assertNoPendingUploads(t, m, faultBucket, dir+"manifest.json", keys)
	assertNoBackupSessions(t, c)
}
