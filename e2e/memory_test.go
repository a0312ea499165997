package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
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
// with 134 MiB stored, restore 41–48 MiB, five runs; restore 41 MiB once
// the start-up pages leave before the bucket is opened (before the part
// pool: 92 and 62; before the start-up release, GOGC 10 and the 512 KiB
// zstd window: 73 and 54).
const (
	backupRSSBound  = 66 << 20
	restoreRSSBound = 50 << 20
)

// TestBoundedMemory backs up into MinIO a cluster of about 200 MB, much
// of it incompressible, with 5 MiB parts (so each object takes many
// parts), and restores it; the child's peak RSS (getrusage's ru_maxrss)
// must stay under the bounds above. A buffer that grows with the data (a
// whole object, the file list) breaks them.
func TestBoundedMemory(t *testing.T) {
	c := memoryCluster(t)
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

// backupBudget is the budget of a backup at the defaults (README "Memory"):
// 5 MiB × (2 + 2 − 1) parts + 2 × 4 MiB + 20 MiB.
const backupBudget = 43 << 20

// TestBoundedMemoryBackends backs the same cluster up into MinIO, Azurite
// and fake-gcs-server, at the defaults and with --upload-concurrency 8, and
// samples the child's anonymous
// resident memory (what the program allocates: Go's heap and the Azure
// SDK's mmapped blocks alike) while it runs: its peak must stay under the
// default budget on every backend. Before part buffers were sized from the
// budget, Azure held 2 blocks of 5 MiB per object (3 objects: 30 MiB for
// a 15 MiB term; 120 MiB for 45 MiB at --upload-concurrency 8) and GCS's
// chunk was outside the formula.
func TestBoundedMemoryBackends(t *testing.T) {
	c := memoryCluster(t)

	m := testsvc.StartMinIO(t, testsvc.MinIOOptions{})
	m.CreateBucket(t, "mem")
	az := testsvc.StartAzurite(t)
	az.CreateContainer(t, "mem")
	gcs := testsvc.StartFakeGCS(t)
	gcs.CreateBucket(t, "mem")
	backends := []struct {
		name string
		env  []string
	}{
		{"s3", append(m.Env(), "PGCLOUDBACKUP_BUCKET="+m.BucketURL("mem", "db"))},
		{"azblob", append(az.Env(), "PGCLOUDBACKUP_BUCKET="+az.BucketURL("mem", "db"))},
		{"gs", append(gcs.Env(), "PGCLOUDBACKUP_BUCKET="+gcs.BucketURL("mem", "db"))},
	}
	// Without --memory one object's share of the part budget is one part
	// whatever the concurrency, so on backends whose part buffers are per
	// object (Azure's blocks in flight, GCS's chunk) more concurrency adds
	// no memory: the peak at --upload-concurrency 8 stays within noise of
	// the peak at the defaults (measured before the change on Azure: 26.9
	// and 57.5 MiB).
	const perObjectNoise = 8 << 20
	first := map[string]int64{}
	for _, run := range []struct {
		args   []string
		budget int64
	}{
		{nil, backupBudget},
		// 5 MiB × (2 + 8 − 1) + 2 × 4 MiB + 20 MiB = 73 MiB. Azure used to
		// hold up to 8 blocks of 5 MiB per object, 120 MiB for 3 objects.
		{[]string{"--upload-concurrency", "8"}, 73 << 20},
	} {
		for _, b := range backends {
			name := fmt.Sprintf("%s %v", b.name, run.args)
			r, peak := cliPeakMemory(t, append(c.Env(), b.env...), append([]string{"backup", "--fast", "--json"}, run.args...)...)
			if r.code != 0 {
				t.Fatalf("%s backup: %s", name, r)
			}
			var bm storedManifest
			if err := json.Unmarshal([]byte(r.stdout), &bm); err != nil {
				t.Fatalf("%s backup --json: %v", name, err)
			}
			var stored int64
			for _, ts := range bm.Tablespaces {
				for _, o := range ts.Objects {
					stored += o.Size
				}
			}
			// The executable's file-backed pages come on top: README's
			// "peak RSS ≤ budget + ~28 MiB".
			rssBound := run.budget + 28<<20
			t.Logf("%s: %d MiB stored; peak anonymous %.1f MiB (budget %d MiB), peak RSS %.1f MiB (bound %d MiB)",
				name, stored>>20, float64(peak.anon)/(1<<20), run.budget>>20, float64(peak.rss)/(1<<20), rssBound>>20)
			if stored < 100<<20 {
				t.Fatalf("%s: only %d MiB stored: too little to take many parts", name, stored>>20)
			}
			if peak.anon == 0 || peak.rss == 0 {
				t.Fatalf("%s: no sample of the child's memory", name)
			}
			if peak.anon > run.budget {
				t.Errorf("%s: peak anonymous memory %d MiB, above the budget of %d MiB", name, peak.anon>>20, run.budget>>20)
			}
			if peak.rss > rssBound {
				t.Errorf("%s: peak RSS %d MiB, above the bound of %d MiB", name, peak.rss>>20, rssBound>>20)
			}
			if base, ok := first[b.name]; !ok {
				first[b.name] = peak.anon
			} else if b.name != "s3" && peak.anon > base+perObjectNoise {
				t.Errorf("%s: peak anonymous memory %d MiB, %d MiB more than at the defaults: its part buffers grew with the concurrency",
					name, peak.anon>>20, (peak.anon-base)>>20)
			}
		}
	}
}

type peakMemory struct{ anon, rss int64 }

// cliPeakMemory runs the binary and samples /proc/PID/status every few
// milliseconds until it exits: the highest RssAnon seen, and VmHWM (the
// kernel's own high-water mark of the resident set, for this process
// alone) from the last sample. Sampling is measurement, not
// synchronisation: the end is the process's exit. Part buffers live for
// the whole of an upload, far longer than the sampling interval.
func cliPeakMemory(t *testing.T, env []string, args ...string) (result, peakMemory) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append(cleanEnv(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", binary, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	status := fmt.Sprintf("/proc/%d/status", cmd.Process.Pid)
	var peak peakMemory
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	var err error
sample:
	for {
		if anon, hwm, ok := readStatus(status); ok {
			peak.anon = max(peak.anon, anon)
			peak.rss = max(peak.rss, hwm)
		}
		select {
		case err = <-done:
			break sample
		case <-tick.C:
		}
	}
	r := result{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %s: %v", binary, err)
	}
	return r, peak
}

// readStatus returns RssAnon and VmHWM in bytes from a /proc/PID/status
// (false once the process is gone or a zombie without them).
func readStatus(path string) (anon, hwm int64, ok bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, false
	}
	var found int
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 3 || f[2] != "kB" {
			continue
		}
		v, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "RssAnon:":
			anon, found = v<<10, found+1
		case "VmHWM:":
			hwm, found = v<<10, found+1
		}
	}
	return anon, hwm, found == 2
}

// memoryCluster is the cluster the memory tests back up: about 200 MB,
// much of it incompressible (134 MiB stored).
func memoryCluster(t *testing.T) *pgtest.Cluster {
	c := pgtest.New(t, pgtest.Options{})
	c.Pgbench(4)
	loadIncompressible(c, "noise", 130000)
	return c
}
