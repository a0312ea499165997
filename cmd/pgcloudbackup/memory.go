package main

import (
	"fmt"
	"math"
	"os"
	"runtime/debug"

	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
)

// The memory budget (README "Memory"). Backup:
//
//	part size × (jobs + max(upload concurrency, 2) − 1)   part buffers (S3: one pool; GCS, Azure: see partShare)
//	+ jobs × backupPerJob                                compressor, pipe, read buffers
//	+ memBase                                            runtime, clients, file lists
//
// Each job fills one part while the parts of all jobs are uploaded from the
// rest of the pool: measured on 2 cores against MinIO, 3 buffers at -j2 run
// as fast as 4 (the compressor, not the upload, is the bottleneck). The
// pool never has fewer parts than objects that can be open at once (an
// archive per job, and backup_manifest, which the jobs stream into too):
// each of them may hold a part it is filling, and one more part must be
// left to move, else a job blocked on a full manifest part while holding
// the manifest's lock could wait forever.
// Restore: jobs × restorePerJob + files × restorePerFile + memBase: a restore
// streams backup_manifest and holds a compact index of its files
// (backupmanifest.Index: 16 bytes and the path of each file outside the Go
// heap, ~36 bytes a file measured at 100,000 files), which grows with the
// file count; the rest of the 96 bytes is the heap's share of parsing.
// The figures per job and the base
// were measured (scripts/bench.sh, heap profiles) with some margin. They
// bound the memory the program allocates; the binary's own code and data,
// mapped from its file (~40 MiB of resident pages), come on top.
const (
	memBase        = 20 << 20
	backupPerJob   = 4 << 20
	restorePerJob  = 4 << 20
	restorePerFile = 96
	// defaultBudgetPartSize is the part size the budget assumes without
	// --part-size (uploader.DefaultPartSize).
	defaultBudgetPartSize = 5 << 20
	// backupGCPercent is a backup's GOGC. A backup's live heap is mostly
	// its part buffers and compressors, allocated once and reused, with few
	// pointers to mark; it makes little garbage (~2 MB a second at
	// 300 MB/s), so a collection every 10% of growth costs ~1 cycle a second
	// of a few ms, and keeps the heap near its live size instead of up to
	// twice it. Measured (1.5 GB to MinIO, -j2): peak RSS 62 -> 58 MiB,
	// GC CPU below 1%.
	backupGCPercent = 10
	// restoreGCPercent is a restore's GOGC: its heap is mostly short-lived
	// garbage of each file (tar headers, paths; the file index lives outside
	// the heap), so collecting at 50% growth instead of 100% keeps a
	// 100,000-file restore near a few-file one (measured on 2 cores,
	// file://: 49–51 MiB against 45–46 MiB peak RSS, 55–58 MiB at 100%) at
	// no measurable CPU cost.
	restoreGCPercent = 50
)

// backupBudget is the budget of a backup with these settings.
func backupBudget(partSize int64, concurrency, jobs int) int64 {
	if partSize <= 0 {
		partSize = defaultBudgetPartSize
	}
	return partSize*poolParts(jobs, concurrency) + int64(jobs)*backupPerJob + memBase
}

// poolParts is the number of parts the pool holds (see the budget above).
func poolParts(jobs, concurrency int) int64 {
	return int64(jobs + max(concurrency, 2) - 1)
}

// partShare is the memory one object's part buffers may take
// (uploader.Options.PartBudget): one of the poolParts parts the budget
// counts. Every object open at once (an archive per job and
// backup_manifest: jobs + 1 ≤ poolParts) gets a share within the pool, on
// every backend (storage.PlanParts):
//
//	S3     its parts come from the pool; the automatic part size is at most
//	       a share, so a part always fits and a huge archive is split into
//	       volumes instead of growing the parts
//	GCS    one chunk per object, at most a share
//	Azure  upload concurrency blocks per object, together at most a share
//	file, mem  no part buffers
func partShare(pool int64, jobs, concurrency int) int64 {
	return pool / poolParts(jobs, concurrency)
}

// fitBackup applies --memory to a backup's settings. Without --memory
// (limit 0) the budget is the formula's value for the settings. With it,
// settings left at their defaults shrink to fit (jobs first, then upload
// concurrency); settings given explicitly are never changed: if they do not
// fit, the run is refused (exit 2) with a hint. It returns the (possibly
// reduced) jobs and concurrency, the bytes of the part buffer pool and the
// budget (for setMemoryLimit).
func fitBackup(limit, partSize int64, jobs, concurrency int, jobsSet, concSet bool) (int, int, int64, int64, error) {
	if partSize <= 0 {
		partSize = defaultBudgetPartSize
	}
	if limit > 0 {
		for backupBudget(partSize, concurrency, jobs) > limit {
			switch {
			case !jobsSet && jobs > 1:
				jobs--
			case !concSet && concurrency > 1:
				concurrency--
			default:
				return 0, 0, 0, 0, failure.Wrap(failure.Usage,
					fmt.Errorf("--memory %s is too small for --jobs %d, --upload-concurrency %d and %s parts: they need %s",
						sizeString(limit), jobs, concurrency, sizeString(partSize), sizeString(backupBudget(partSize, concurrency, jobs))),
					"raise --memory, or lower --jobs, --upload-concurrency or --part-size (budget: part size × (jobs + max(upload concurrency, 2) − 1) + jobs × 4MiB + 20MiB)")
			}
		}
	} else {
		limit = backupBudget(partSize, concurrency, jobs)
	}
	pool := limit - int64(jobs)*backupPerJob - memBase
	return jobs, concurrency, pool, limit, nil
}

// fitRestore applies --memory to a restore's jobs the same way, for a
// backup of files files, and returns them and the budget.
func fitRestore(limit int64, jobs int, jobsSet bool, files int64) (int, int64, error) {
	budget := func(j int) int64 {
		fixed := int64(j)*restorePerJob + memBase
		if files < 0 || files > (math.MaxInt64-fixed)/restorePerFile {
			// The count comes from the bucket: saturate, never wrap.
			return math.MaxInt64
		}
		return fixed + files*restorePerFile
	}
	if limit > 0 {
		for budget(jobs) > limit {
			if jobsSet || jobs == 1 {
				return 0, 0, failure.Wrap(failure.Usage,
					fmt.Errorf("--memory %s is too small for --jobs %d and %d files: they need %s", sizeString(limit), jobs, files, sizeString(budget(jobs))),
					"raise --memory or lower --jobs (budget: jobs × 4MiB + files × 96 bytes + 20MiB)")
			}
			jobs--
		}
	} else {
		limit = budget(jobs)
	}
	return jobs, limit, nil
}

// setMemoryLimit makes the budget the Go runtime's soft memory limit, so
// the collector runs before the heap doubles past it (GOGC alone lets it
// grow to twice the live set). A GOMEMLIMIT in the environment wins.
func setMemoryLimit(limit int64) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	debug.SetMemoryLimit(limit)
}

// setRunMemory is setMemoryLimit for a backup or restore, which also sets
// its GOGC (backupGCPercent, restoreGCPercent; a GOGC in the environment
// wins) until the returned func puts the previous ones (GOGC and the soft
// limit) back (for a process that goes on after the run: the tests that
// run it in-process).
func setRunMemory(limit int64, gcPercent int) (restoreGC func()) {
	oldLimit := debug.SetMemoryLimit(-1)
	setMemoryLimit(limit)
	setGC := os.Getenv("GOGC") == "" // else the environment's wins
	oldGC := 0
	if setGC {
		oldGC = debug.SetGCPercent(gcPercent)
	}
	return func() {
		// The soft limit too: a budget left behind would keep the
		// collector running in whatever the process does next.
		debug.SetMemoryLimit(oldLimit)
		if setGC {
			debug.SetGCPercent(oldGC)
		}
	}
}

// parseMemory parses --memory ("" means no limit: the formula's value).
func parseMemory(s string) (int64, error) {
	v, err := parseSize(s)
	if err != nil || (s != "" && v < memBase) {
		return 0, usageError("--memory %q: want a size of at least %s, like 64MiB", s, sizeString(memBase))
	}
	return v, nil
}

// sumFiles adds the file counts of a backup's tablespaces (from
// manifest.json, so anything an int64 holds), saturating at MaxInt64
// rather than wrapping around.
func sumFiles(counts []int64) int64 {
	var n int64
	for _, c := range counts {
		if c < 0 || n > math.MaxInt64-c {
			return math.MaxInt64
		}
		n += c
	}
	return n
}
