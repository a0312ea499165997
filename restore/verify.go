package restore

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"

	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
	"github.com/pgcloudbackup/pgcloudbackup/internal/pg/backupmanifest"
	"github.com/pgcloudbackup/pgcloudbackup/internal/progress"
	"github.com/pgcloudbackup/pgcloudbackup/manifest"
	"github.com/pgcloudbackup/pgcloudbackup/storage"
)

// VerifyOptions configure a verification.
type VerifyOptions struct {
	Jobs     int
	Progress *progress.Counter
	Logger   *slog.Logger
}

// Report is what verify found.
type Report struct {
	ID      string `json:"id"`
	Objects int    `json:"objects"`
	Bytes   int64  `json:"bytes"`
	Files   int64  `json:"files"`
	// SelfContained: the backup holds its WAL and restores without an
	// archive. NeedsWALArchive: it holds no WAL; a restore must fetch it
	// from a WAL archive.
	SelfContained   bool     `json:"self_contained"`
	NeedsWALArchive bool     `json:"needs_wal_archive"`
	Problems        []string `json:"problems"`
}

// OK reports whether the backup verified without problems.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

// Verify downloads every object of backup m, checks its size and SHA-256
// against manifest.json, decompresses it and checks every file against
// backup_manifest, writing nothing. It reports every problem it finds
// (damaged or missing objects by name) rather than stopping at the first;
// the error is non-nil when there are problems.
func Verify(ctx context.Context, store *storage.Store, m *manifest.Backup, opts VerifyOptions) (*Report, error) {
	if opts.Jobs <= 0 {
		opts.Jobs = runtime.NumCPU()
	}
	rep := &Report{ID: m.ID, Bytes: m.TotalSize(), SelfContained: m.SelfContained(), NeedsWALArchive: !m.WALIncluded, Problems: []string{}}
	// What restore would refuse about the backup itself, verify reports.
	if err := CheckBackup(m); err != nil {
		rep.Problems = append(rep.Problems, err.Error())
	}
	if m.Unrestorable() {
		// Intact objects do not make it restorable: the WAL from its start
		// to its stop exists nowhere we know of.
		rep.Problems = append(rep.Problems, fmt.Sprintf(
			"the backup holds no WAL, so it needs a WAL archive, and the server's WAL archiving was %s when it was taken: nothing can restore it (take backups without --no-wal)", m.WALArchive))
	}
	index, err := loadIndex(ctx, store, m)
	if err != nil {
		if failure.KindOf(err) != failure.Failed {
			return rep, err
		}
		rep.Problems = append(rep.Problems, err.Error())
		return rep, verifyError(rep)
	}
	defer index.close()
	links := map[string]string{}
	for _, ts := range m.Tablespaces {
		if ts.OID != 0 {
			links[backupmanifest.TablespacePath(ts.OID)] = ts.Location
		}
	}
	s := newDiscardSink(links)
	var parts []part
	for _, ts := range m.Tablespaces {
		rep.Files += ts.Files
		var sk sink = s
		if ts.OID != 0 {
			// Tablespace archives hold no links at all.
			sk = newDiscardSink(nil)
		}
		parts = append(parts, partsOf(ts, sk)...)
	}
	rep.Objects = len(parts)
	opts.Progress.SetTotal(m.TotalSize())
	opts.Progress.SetPhase("verify")
	var mu sync.Mutex
	damagedObjects := false
	err = readAll(ctx, store, m, index, parts, opts.Jobs, opts.Progress, func(err error) {
		mu.Lock()
		defer mu.Unlock()
		rep.Problems = append(rep.Problems, err.Error())
		damagedObjects = true
	})
	if err != nil {
		if ctx.Err() != nil {
			return rep, interrupted("verify", ctx)
		}
		return rep, err
	}
	// Missing files only mean something when every object read cleanly;
	// otherwise they are the damaged objects' files.
	if !damagedObjects {
		if err := missingError(index); err != nil {
			rep.Problems = append(rep.Problems, err.Error())
		}
	}
	opts.Progress.SetPhase("done")
	return rep, verifyError(rep)
}

func verifyError(rep *Report) error {
	if rep.OK() {
		return nil
	}
	first := rep.Problems[0]
	more := ""
	if n := len(rep.Problems) - 1; n > 0 {
		more = fmt.Sprintf(" (and %d more problems)", n)
	}
	return failure.New(failure.Failed, "backup %s failed verification: %s%s", rep.ID, strings.TrimSpace(first), more)
}
