package main

import (
	"math"
	"math/rand/v2"
	"os"
	"runtime/debug"
	"testing"

	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
	"github.com/pgcloudbackup/pgcloudbackup/storage"
)

// TestFitBackupPlanPartsProperties: for random flags (any --jobs,
// --upload-concurrency, explicit or automatic --part-size the backend
// accepts, --memory from the smallest to 64 GiB) and archive sizes up to
// 5 TiB, on S3, GCS and Azure: an accepted run's formula stays within
// --memory, the objects open at once hold no more part memory than the
// pool, every part size is one the backend accepts, an object split at
// MaxRawBytes needs no more parts than the backend allows (with 10%
// compression expansion), and nothing divides by zero.
func TestFitBackupPlanPartsProperties(t *testing.T) {
	const mib = 1 << 20
	backends := map[string]storage.Caps{
		"s3":     {Limits: storage.LimitsFor("s3"), PartBuffers: storage.PooledParts},
		"gs":     {Limits: storage.LimitsFor("gs"), PartBuffers: storage.OnePartPerObject},
		"azblob": {Limits: storage.LimitsFor("azblob"), PartBuffers: storage.PartsInFlightPerObject},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	accepted := 0
	for range 20000 {
		jobs, conc := 1+rng.IntN(64), 1+rng.IntN(32)
		jobsSet, concSet := rng.IntN(2) == 0, rng.IntN(2) == 0
		var part int64
		switch rng.IntN(4) {
		case 1:
			part = 1 + rng.Int64N(5<<30)
		case 2:
			part = int64(1+rng.IntN(64)) * mib
		}
		var limit int64
		if rng.IntN(4) != 0 {
			limit = memBase + rng.Int64N(64<<30)
			if rng.IntN(2) == 0 {
				limit = memBase + rng.Int64N(200*mib)
			}
		}
		j, c, pool, budget, err := fitBackup(limit, part, jobs, conc, jobsSet, concSet)
		if err != nil {
			continue
		}
		accepted++
		if limit > 0 && budget > limit || pool <= 0 || j < 1 || c < 1 {
			t.Fatalf("fitBackup(%d, %d, %d, %d, %v, %v) = %d, %d, pool %d, budget %d", limit, part, jobs, conc, jobsSet, concSet, j, c, pool, budget)
		}
		share := partShare(pool, j, c)
		for name, caps := range backends {
			l := caps.Limits
			if part > 0 && (part < l.MinPartSize || l.MaxPartSize > 0 && part > l.MaxPartSize) {
				continue // refused by the uploader before any work
			}
			hint := rng.Int64N(5 << 40)
			ps, inFlight := storage.PlanParts(caps, hint, part, c, share)
			what := func() string {
				return name + ": " + sizeString(ps) + " parts × " + sizeString(int64(inFlight)) + " in flight; share " + sizeString(share) + ", pool " + sizeString(pool)
			}
			if ps < l.MinPartSize || l.MaxPartSize > 0 && ps > l.MaxPartSize || inFlight < 1 {
				t.Fatalf("limit %d part %d jobs %d conc %d: %s: outside the backend's limits", limit, part, j, c, what())
			}
			if name == "gs" && (ps%(256<<10) != 0 || part > 0 && ps > part) {
				// The GCS client rounds a chunk up to a multiple of 256 KiB
				// and allocates that: the budget must see what it holds.
				t.Fatalf("--part-size %d: %s: a GCS chunk not a multiple of 256 KiB at most the part size", part, what())
			}
			held := ps
			if caps.PartBuffers == storage.PartsInFlightPerObject {
				held = ps * int64(inFlight)
			}
			if held*int64(j+1) > pool {
				t.Fatalf("limit %d part %d jobs %d conc %d: %s: %d open objects hold more than the pool", limit, part, j, c, what(), j+1)
			}
			if l.MaxParts > 0 {
				raw := storage.MaxRawBytes(l, ps)
				stored := raw + raw/10
				if parts := (stored + ps - 1) / ps; parts > int64(l.MaxParts) {
					t.Fatalf("%s: an object of %d raw bytes may need %d parts, more than %d", what(), raw, parts, l.MaxParts)
				}
			}
		}
	}
	if accepted < 1000 {
		t.Fatalf("only %d of the runs accepted: the test checks too little", accepted)
	}
}

// TestFitRestoreHugeFileCount: manifest.json is read from the bucket, so
// its file count may be anything a JSON int64 holds; files × 96 bytes must
// not wrap around into a small (or negative) budget that --memory accepts,
// nor may the sum over tablespaces (sumFiles).
func TestFitRestoreHugeFileCount(t *testing.T) {
	const mib = 1 << 20
	for _, files := range []int64{1e17, math.MaxInt64 / restorePerFile, math.MaxInt64, sumFiles([]int64{math.MaxInt64, math.MaxInt64})} {
		if _, b, err := fitRestore(64*mib, 2, false, files); failure.KindOf(err) != failure.Usage {
			t.Errorf("%d files in --memory 64MiB: budget %d, %v; want a usage error", files, b, err)
		}
		if _, b, err := fitRestore(0, 2, false, files); err != nil || b < 64*mib {
			t.Errorf("%d files without --memory: budget %d, %v; want a large budget", files, b, err)
		}
	}
	if got := sumFiles([]int64{1, 2, 3}); got != 6 {
		t.Errorf("sumFiles: %d", got)
	}
}

// TestSetRunMemoryPutsLimitBack: a backup or restore run in-process (the
// tests run dozens) leaves the soft memory limit as it found it, not at
// the run's budget: a 28 MiB limit left behind makes the collector run
// without pause in everything that follows.
func TestSetRunMemoryPutsLimitBack(t *testing.T) {
	if os.Getenv("GOMEMLIMIT") != "" {
		t.Skip("GOMEMLIMIT is set in the environment: it wins, nothing to change")
	}
	const before = 1 << 40
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(before))
	done := setRunMemory(28<<20, restoreGCPercent)
	if got := debug.SetMemoryLimit(-1); got != 28<<20 {
		t.Errorf("limit during the run = %d, want the budget", got)
	}
	done()
	if got := debug.SetMemoryLimit(-1); got != before {
		t.Errorf("limit after the run = %d, want %d from before", got, int64(before))
	}
}
