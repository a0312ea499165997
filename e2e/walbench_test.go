package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/pgcloudbackup/pgcloudbackup/internal/pgtest"
	"github.com/pgcloudbackup/pgcloudbackup/internal/testsvc"
)

// TestBenchWAL measures wal-push and wal-fetch on real WAL written by
// pgbench, against MinIO over TLS: serial pushes, pushes with push-ahead
// (driven as the archiver drives them: one call per segment, .ready turned
// .done after each), and fetches with and without prefetch. It is a
// measurement, not a check: it runs only with PGCB_WAL_BENCH=N (segments).
func TestBenchWAL(t *testing.T) {
	want, _ := strconv.Atoi(os.Getenv("PGCB_WAL_BENCH"))
	if want <= 0 {
		t.Skip("set PGCB_WAL_BENCH=<segments> to run the WAL benchmark")
	}
	m := testsvc.StartMinIO(t, testsvc.MinIOOptions{TLS: true})
	m.CreateBucket(t, "bench")
	collect := pgtest.TempDir(t, "walbench-")
	c := pgtest.New(t, pgtest.Options{Conf: map[string]string{
		"archive_mode": "on", "archive_command": "'cp %p " + collect + "/%f'", "max_wal_size": "4GB"}})
	scale := want/6 + 1
	c.Pgbench(scale)
	for {
		segs := segmentsIn(t, collect)
		if len(segs) >= want {
			break
		}
		c.Exec("postgres", "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid % 3 = 0")
		c.QueryString("postgres", "SELECT pg_walfile_name(pg_switch_wal())")
	}
	segs := segmentsIn(t, collect)[:want]
	env := m.Env()
	cliT := func(args ...string) {
		if r := cli(t, env, args...); r.code != 0 {
			t.Fatalf("%v: %s", args, r)
		}
	}

	// Serial: one call per segment, nothing ahead.
	url := m.BucketURL("bench", "serial")
	var lat []time.Duration
	began := time.Now()
	for _, s := range segs {
		t0 := time.Now()
		cliT("wal-push", "--bucket", url, "--push-ahead", "0", filepath.Join(collect, s))
		lat = append(lat, time.Since(t0))
	}
	report(t, "wal-push serial", len(segs), time.Since(began), lat)

	// Push-ahead: a pg_wal with archive_status as the archiver leaves it.
	for _, ahead := range []int{4, 8} {
		pgwal := filepath.Join(t.TempDir(), "pg_wal")
		if err := os.MkdirAll(filepath.Join(pgwal, "archive_status"), 0o700); err != nil {
			t.Fatal(err)
		}
		for _, s := range segs {
			if err := os.Link(filepath.Join(collect, s), filepath.Join(pgwal, s)); err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(pgwal, "archive_status", s+".ready"), nil, 0o600)
		}
		url := m.BucketURL("bench", fmt.Sprintf("ahead%d", ahead))
		lat = lat[:0]
		began = time.Now()
		for _, s := range segs {
			t0 := time.Now()
			cliT("wal-push", "--bucket", url, "--push-ahead", strconv.Itoa(ahead), filepath.Join(pgwal, s))
			lat = append(lat, time.Since(t0))
			os.Rename(filepath.Join(pgwal, "archive_status", s+".ready"), filepath.Join(pgwal, "archive_status", s+".done"))
		}
		report(t, fmt.Sprintf("wal-push --push-ahead %d", ahead), len(segs), time.Since(began), lat)
	}

	// Fetch, as recovery asks: one call per segment into pg_wal/RECOVERYXLOG.
	for _, prefetch := range []int{0, 8} {
		pgwal := filepath.Join(t.TempDir(), "pg_wal")
		os.MkdirAll(pgwal, 0o700)
		lat = lat[:0]
		began = time.Now()
		for _, s := range segs {
			t0 := time.Now()
			cliT("wal-fetch", "--bucket", url, "--prefetch", strconv.Itoa(prefetch), s, filepath.Join(pgwal, "RECOVERYXLOG"))
			lat = append(lat, time.Since(t0))
		}
		report(t, fmt.Sprintf("wal-fetch --prefetch %d", prefetch), len(segs), time.Since(began), lat)
	}
	out, _ := exec.Command("du", "-sh", filepath.Join(m.Dir, "data")).Output()
	t.Logf("stored: %s (of %d MiB of WAL)", out, len(segs)*16)
}

func segmentsIn(t *testing.T, dir string) []string {
	ents, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if len(e.Name()) == 24 {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out
}

func report(t *testing.T, what string, n int, total time.Duration, lat []time.Duration) {
	s := append([]time.Duration(nil), lat...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	t.Logf("%-26s %d segments in %6.1fs: %5.1f segments/s, %5.0f MiB/s; per call p50 %v p95 %v max %v",
		what, n, total.Seconds(), float64(n)/total.Seconds(), float64(n*16)/total.Seconds(),
		s[len(s)/2].Round(time.Millisecond), s[len(s)*95/100].Round(time.Millisecond), s[len(s)-1].Round(time.Millisecond))
}
