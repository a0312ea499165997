package main

import (
	"os"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
	"github.com/pgcloudbackup/pgcloudbackup/storage"
)

// TestFitBackup: the budget formula at the defaults, shrinking what the
// user left at its default, and refusing (usage) what the user set.
func TestFitBackup(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		name             string
		limit, part      int64
		jobs, conc       int
		jobsSet, concSet bool
		wantJobs         int
		wantConc         int
		wantPool         int64
		wantBudget       int64
		refused          bool
	}{
		// 5 MiB × (2+2−1) + 2 × 4 MiB + 20 MiB
		{name: "defaults", jobs: 2, conc: 2, wantJobs: 2, wantConc: 2, wantPool: 15 * mib, wantBudget: 43 * mib},
		// never fewer parts than open objects (jobs + backup_manifest)
		{name: "concurrency 1 keeps jobs+1 parts", part: 16 * mib, jobs: 1, conc: 1, wantJobs: 1, wantConc: 1, wantPool: 32 * mib, wantBudget: 56 * mib},
		{name: "more concurrency, more parts", jobs: 2, conc: 4, wantJobs: 2, wantConc: 4, wantPool: 25 * mib, wantBudget: 53 * mib},
		{name: "room to spare goes to the pool", limit: 100 * mib, jobs: 2, conc: 2, wantJobs: 2, wantConc: 2, wantPool: 72 * mib, wantBudget: 100 * mib},
		{name: "default jobs shrink", limit: 38 * mib, jobs: 8, conc: 2, wantJobs: 1, wantConc: 2, wantPool: 14 * mib, wantBudget: 38 * mib},
		{name: "then default concurrency", limit: 48 * mib, jobs: 2, conc: 4, jobsSet: true, wantJobs: 2, wantConc: 3, wantPool: 20 * mib, wantBudget: 48 * mib},
		{name: "set jobs do not fit", limit: 40 * mib, jobs: 2, conc: 2, jobsSet: true, refused: true},
		{name: "set jobs and concurrency do not fit", limit: 50 * mib, jobs: 2, conc: 4, jobsSet: true, concSet: true, refused: true},
		{name: "below one job", limit: 33 * mib, jobs: 4, conc: 2, refused: true},
		{name: "one part does not fit", limit: 30 * mib, part: 16 * mib, jobs: 1, conc: 1, refused: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			jobs, conc, pool, budget, err := fitBackup(tc.limit, tc.part, tc.jobs, tc.conc, tc.jobsSet, tc.concSet)
			if tc.refused {
				if failure.KindOf(err) != failure.Usage || !strings.Contains(failure.HintOf(err), "raise --memory") {
					t.Fatalf("err = %v (hint %q), want a usage error with a hint", err, failure.HintOf(err))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if jobs != tc.wantJobs || conc != tc.wantConc || pool != tc.wantPool || budget != tc.wantBudget {
				t.Errorf("got jobs %d, concurrency %d, pool %d MiB, budget %d MiB; want %d, %d, %d MiB, %d MiB",
					jobs, conc, pool/mib, budget/mib, tc.wantJobs, tc.wantConc, tc.wantPool/mib, tc.wantBudget/mib)
			}
			if tc.limit > 0 && budget > tc.limit {
				t.Errorf("budget %d MiB above --memory %d MiB", budget/mib, tc.limit/mib)
			}
			if part := max(tc.part, defaultBudgetPartSize); pool < part*int64(jobs+1) {
				t.Errorf("pool %d MiB holds fewer parts of %d MiB than the %d objects that can be open", pool/mib, part/mib, jobs+1)
			}
		})
	}
}

func TestFitRestore(t *testing.T) {
	const mib = 1 << 20
	if j, b, err := fitRestore(0, 2, false, 0); err != nil || j != 2 || b != 28*mib {
		t.Errorf("defaults: jobs %d, budget %d MiB, %v; want 2, 28 MiB", j, b/mib, err)
	}
	// 32768 files × 96 bytes: 3 MiB
	if j, b, err := fitRestore(0, 2, false, 32768); err != nil || j != 2 || b != 31*mib {
		t.Errorf("with files: jobs %d, budget %d MiB, %v; want 2, 31 MiB", j, b/mib, err)
	}
	if j, b, err := fitRestore(25*mib, 8, false, 0); err != nil || j != 1 || b != 25*mib {
		t.Errorf("shrink: jobs %d, budget %d MiB, %v; want 1, 25 MiB", j, b/mib, err)
	}
	if _, _, err := fitRestore(25*mib, 2, true, 0); failure.KindOf(err) != failure.Usage {
		t.Errorf("set jobs that do not fit: %v, want a usage error", err)
	}
	if _, _, err := fitRestore(30*mib, 1, false, 1<<20); failure.KindOf(err) != failure.Usage {
		t.Errorf("a million files in 30 MiB: %v, want a usage error", err)
	}
}

// TestMemoryFlagRefused: a budget the explicit settings do not fit, or no
// size at all, exits 2 before anything is opened (the bucket URL points
// nowhere that exists).
func TestMemoryFlagRefused(t *testing.T) {
	bucket := "file://" + t.TempDir() + "/absent"
	for _, args := range [][]string{
		{"backup", "--bucket", bucket, "--memory", "40MiB", "--jobs", "4"},
		{"backup", "--bucket", bucket, "--memory", "1MiB"},
		{"backup", "--bucket", bucket, "--memory", "lots"},
		{"restore", "latest", "--bucket", bucket, "--target", t.TempDir(), "--memory", "24MiB", "--jobs", "2"},
	} {
		r := runCLI(args...)
		if r.code != 2 || !strings.Contains(r.stderr, "--memory") || strings.Count(strings.TrimSpace(r.stderr), "\n") > 1 {
			t.Errorf("%v: exit %d, stderr %q; want 2 and a one-line error about --memory", args, r.code, r.stderr)
		}
	}
}

// TestSetBackupMemoryGC: a backup runs at backupGCPercent, and the GOGC
// from before comes back after it (a process that goes on, like these
// tests, keeps its own).
func TestSetBackupMemoryGC(t *testing.T) {
	if os.Getenv("GOGC") != "" {
		t.Skip("GOGC is set in the environment: it wins, nothing to change")
	}
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	defer debug.SetGCPercent(debug.SetGCPercent(75))
	restoreGC := setRunMemory(1<<40, backupGCPercent)
	if got := debug.SetGCPercent(backupGCPercent); got != backupGCPercent {
		t.Errorf("GOGC during a backup = %d, want %d", got, backupGCPercent)
	}
	restoreGC()
	if got := debug.SetGCPercent(75); got != 75 {
		t.Errorf("GOGC after a backup = %d, want the 75 from before", got)
	}
}

// TestPartShareFitsEveryBackend: with the pool fitBackup gives and the
// share partShare takes from it, the part buffers every backend holds at
// once (jobs archives and backup_manifest, with the part size and parts in
// flight storage.PlanParts chooses for a huge archive) stay within the
// pool, so the whole run stays within --memory on S3, GCS and Azure.
func TestPartShareFitsEveryBackend(t *testing.T) {
	const mib = 1 << 20
	backends := []storage.Caps{
		{Limits: storage.LimitsFor("s3"), PartBuffers: storage.PooledParts},
		{Limits: storage.LimitsFor("gs"), PartBuffers: storage.OnePartPerObject},
		{Limits: storage.LimitsFor("azblob"), PartBuffers: storage.PartsInFlightPerObject},
	}
	for _, limit := range []int64{0, 40 * mib, 64 * mib, 100 * mib, 1 << 30} {
		for _, part := range []int64{0, 8 * mib} {
			for _, conc := range []int{1, 2, 4, 16} {
				jobs, c, pool, budget, err := fitBackup(limit, part, 2, conc, false, true)
				if err != nil {
					continue // refused: nothing runs
				}
				share := partShare(pool, jobs, c)
				for _, caps := range backends {
					var held int64
					for obj := 0; obj < jobs+1; obj++ { // archives, backup_manifest
						ps, inFlight := storage.PlanParts(caps, 1e13, part, c, share)
						switch caps.PartBuffers {
						case storage.PooledParts, storage.OnePartPerObject:
							// S3: the part each object fills (the rest of the
							// pool moves); GCS: its chunk.
							held += ps
						case storage.PartsInFlightPerObject:
							held += ps * int64(inFlight)
						}
					}
					if held > pool {
						t.Errorf("--memory %d MiB, part %d MiB, concurrency %d, backend %d: %d open objects hold %d bytes of parts, above the pool of %d (budget %d)",
							limit/mib, part/mib, c, caps.PartBuffers, jobs+1, held, pool, budget)
					}
				}
			}
		}
	}
	// At the defaults the share is one 5 MiB part.
	jobs, c, pool, _, _ := fitBackup(0, 0, 2, 2, false, false)
	if s := partShare(pool, jobs, c); s != 5*mib {
		t.Errorf("default share %d, want 5 MiB", s)
	}
}
