package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgcloudbackup/pgcloudbackup/internal/pgtest"
	"github.com/pgcloudbackup/pgcloudbackup/internal/testenv"
	"github.com/pgcloudbackup/pgcloudbackup/internal/testsvc"
)

// Peak resident memory the binary may use, whatever the size of the
// cluster (README "Memory"). With 5 MiB parts, --jobs 2 and
// --upload-concurrency 2 the backup's budget is 5 MiB × 3 parts (one pool
// for all uploads) + 2 × 4 MiB + 20 MiB = 43 MiB, the restore's 28 MiB plus
// 96 bytes a file; on top come the pages of the executable a run uses
// (~27 MiB, file-backed; those only start-up used are released). Measured
// (2 cores, MinIO, this test's binary: built with cgo): backup 53–58 MiB
// with 134 MiB stored, restore 41–48 MiB, five runs (before the part pool:
// 92 and 62; before the start-up release, GOGC 10 and the 512 KiB zstd
// window: 73 and 54).
const (
	backupRSSBound  = 66 << 20
	restoreRSSBound = 56 << 20
)

// TestBoundedMemory backs up into MinIO a cluster of about 200 MB, much
// of it incompressible, with 5 MiB parts (so each object takes many
// parts), and restores it; the child's peak RSS (getrusage's ru_maxrss)
// must stay under the bounds above. A buffer that grows with the data (a
// whole object, the file list) breaks them.
func TestBoundedMemory(t *testing.T) {
	c := pgtest.New(t, pgtest.Options{})
	c.Pgbench(4)
	loadIncompressible(c, "noise", 130000)
	m := testsvc.StartMinIO(t, testsvc.MinIOOptions{})
	m.CreateBucket(t, "mem")
	env := append(append(c.Env(), m.Env()...), "PGCLOUDBACKUP_BUCKET="+m.BucketURL("mem", "db"))

	r, rss := cliRSS(t, env, "backup", "--fast", "--json", "--part-size", "5MiB", "--jobs", "2", "--upload-concurrency", "2")
	if r.code != 0 {
		t.Fatalf("backup: %s", r)
	}
	var b storedManifest
	if err := json.Unmarshal([]byte(r.stdout), &b); err != nil {
		t.Fatalf("backup --json: %v", err)
	}
	var raw, parts int64
	for _, ts := range b.Tablespaces {
		for _, o := range ts.Objects {
			raw += o.Size
			parts += (o.Size + 5<<20 - 1) / (5 << 20)
		}
	}
	t.Logf("backup: %d MiB stored in %d parts of 5 MiB; peak RSS %d MiB (bound %d MiB)", raw>>20, parts, rss>>20, backupRSSBound>>20)
	if parts < 25 {
		t.Fatalf("only %d parts: the cluster is too small to show that memory does not grow with it", parts)
	}
	if rss > backupRSSBound {
		t.Errorf("backup peak RSS %d MiB, above the bound of %d MiB", rss>>20, backupRSSBound>>20)
	}

	target := filepath.Join(pgtest.TempDir(t, "memrestore-"), "data")
	r, rss = cliRSS(t, env, "restore", "latest", "--target", target, "--jobs", "2")
	if r.code != 0 {
		t.Fatalf("restore: %s", r)
	}
	t.Logf("restore: peak RSS %d MiB (bound %d MiB)", rss>>20, restoreRSSBound>>20)
	if rss > restoreRSSBound {
		t.Errorf("restore peak RSS %d MiB, above the bound of %d MiB", rss>>20, restoreRSSBound>>20)
	}
}

// cliRSS runs the binary and returns what it did and its peak resident set
// in bytes, as GNU time reports it. Not the rusage Go gets back from the
// child: Go starts children with vfork semantics (CLONE_VM), and Linux
// carries the parent's high-water mark into the child's ru_maxrss across
// exec, so under -race the test process's gigabytes were reported. time(1)
// forks the binary from a small process of its own.
func cliRSS(t *testing.T, env []string, args ...string) (result, int64) {
	t.Helper()
	timeBin, err := exec.LookPath("/usr/bin/time")
	if err != nil {
		testenv.Unavailable(t, "GNU time (/usr/bin/time, Debian package time): %v", err)
	}
	out := filepath.Join(t.TempDir(), "maxrss")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, timeBin, append([]string{"-f", "%M", "-o", out, binary}, args...)...)
	cmd.Env = append(cleanEnv(), env...)
	r := runCmd(t, cmd)
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("time(1) wrote no report: %v\n%s", err, r)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	kib, err := strconv.ParseInt(lines[len(lines)-1], 10, 64)
	if err != nil || kib <= 0 {
		t.Fatalf("time(1) report %q: %v", data, err)
	}
	return r, kib << 10
}
