package walarchive

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/pgcloudbackup/pgcloudbackup/internal/pg/wal"
	"github.com/pgcloudbackup/pgcloudbackup/storage"
)

// SpoolDirName is the directory, beside the restore destination (in
// pg_wal), where prefetched segments wait for the server to ask for them.
// Only complete, verified files are ever renamed into it.
const SpoolDirName = ".pgcloudbackup-prefetch"

// endMarker in the spool says recovery reached the end of the archive.
const endMarker = ".end"

// ResumeSpool clears the end marker: the server is asking for segments
// again (a standby following the archive), so prefetching may go on.
func ResumeSpool(spool string) { _ = os.Remove(filepath.Join(spool, endMarker)) }

func spoolEnded(spool string) bool {
	_, err := os.Stat(filepath.Join(spool, endMarker))
	return err == nil
}

// SpoolDir returns the spool directory for fetches into dest.
func SpoolDir(dest string) string { return filepath.Join(filepath.Dir(dest), SpoolDirName) }

// takeFromSpool moves a prefetched copy of name into dest, if there is one.
// Older segments of the same timeline left in the spool are removed (the
// server has moved past them).
func takeFromSpool(spool, name, dest string) bool {
	ents, err := os.ReadDir(spool)
	if err != nil {
		return false
	}
	for _, e := range ents {
		n := e.Name()
		if storage.WALKind(n) == storage.WALSegment && n[:8] == name[:8] && n < name {
			_ = os.Remove(filepath.Join(spool, n))
		}
	}
	if err := os.Rename(filepath.Join(spool, name), dest); err != nil {
		return false
	}
	return true
}

// clearSpool removes every prefetched file (recovery has reached the end
// of the archive, or the server asked for something the spool cannot
// hold).
func clearSpool(spool string) {
	ents, err := os.ReadDir(spool)
	if err != nil {
		return
	}
	// A prefetcher still at work sees this and drops what it fetches, so
	// a promoted server is not left with spooled segments in pg_wal.
	_ = os.WriteFile(filepath.Join(spool, endMarker), nil, 0o600)
	for _, e := range ents {
		if storage.WALKind(e.Name()) != "" {
			_ = os.Remove(filepath.Join(spool, e.Name()))
		}
	}
}

// NextSegments names the n segments after segment name (of segSize bytes)
// on the same timeline.
func NextSegments(name string, segSize int64, n int) []string {
	tli, seg, ok := wal.ParseFileName(name, segSize)
	if !ok {
		return nil
	}
	out := make([]string, 0, n)
	for i := 1; i <= n; i++ {
		out = append(out, wal.FileName(tli, seg+wal.SegNo(i), segSize))
	}
	return out
}

// Prefetch downloads the segments names into spool, jobs at a time, each
// checked as Fetch checks it and renamed in only when complete. Names
// already in the spool are skipped; an absent one ends the work (the
// archive ends there). Only one prefetcher works on a spool at a time: a
// second returns at once.
func Prefetch(ctx context.Context, store *storage.Store, spool string, names []string, jobs int) (int, error) {
	if err := os.MkdirAll(spool, 0o700); err != nil {
		return 0, fmt.Errorf("prefetch: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(spool, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return 0, fmt.Errorf("prefetch: %w", err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return 0, nil // another prefetcher is at work
	}
	if spoolEnded(spool) {
		return 0, nil
	}
	if jobs < 1 {
		jobs = 1
	}
	var (
		mu      sync.Mutex
		fetched int
		absent  bool
		firstEr error
		wg      sync.WaitGroup
	)
	sem := make(chan struct{}, jobs)
	for _, n := range names {
		if storage.WALKind(n) != storage.WALSegment {
			continue
		}
		if _, err := os.Stat(filepath.Join(spool, n)); err == nil {
			continue
		}
		mu.Lock()
		stop := absent || firstEr != nil
		mu.Unlock()
		if stop {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			err := fetchOnce(ctx, store, n, filepath.Join(spool, n))
			if err == nil && spoolEnded(spool) {
				_ = os.Remove(filepath.Join(spool, n))
			}
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				fetched++
			case errors.Is(err, ErrNotArchived):
				absent = true
			case firstEr == nil:
				firstEr = err
			}
		}()
	}
	wg.Wait()
	// Temporary files of a prefetcher killed half-way are left behind by
	// it; the next one clears them.
	if ents, err := os.ReadDir(spool); err == nil {
		for _, e := range ents {
			if strings.Contains(e.Name(), ".pgcb-") {
				_ = os.Remove(filepath.Join(spool, e.Name()))
			}
		}
	}
	return fetched, firstEr
}
