package engine

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/pgcloudbackup/pgcloudbackup/internal/pgtest"
)

// TestMaxRateCountsEveryByte: on a tree of many small files, where tar
// headers and padding outweigh the data, the achieved rate of the archive
// stream (every byte stored before compression) stays within 15% of
// --max-rate. It used to count file data only (and start with a 256 KiB
// burst), so such a tree went about twice as fast as asked.
func TestMaxRateCountsEveryByte(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	c := pgtest.New(t, pgtest.Options{})
	// 20,000 files of 100 bytes: 2 MB of data, 20 MB of tar (the rest of
	// the cluster is about 23 MB). PGCLOUDBACKUP_MAXRATE_KFILES=100 makes
	// it the 100,000-file measurement of issue 13.
	kfiles := 20
	if v, err := strconv.Atoi(os.Getenv("PGCLOUDBACKUP_MAXRATE_KFILES")); err == nil && v > 0 {
		kfiles = v
	}
	junk := filepath.Join(c.DataDir, "many_small_files")
	for d := 0; d < kfiles; d++ {
		dir := filepath.Join(junk, fmt.Sprint(d))
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 1000; i++ {
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprint(i)), make([]byte, 100), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	store := memStore(t)
	opts := backupOptions(t, c)
	const maxRate = 6 << 20
	opts.MaxRate = maxRate
	opts.NoWAL = true // a WAL segment has no tar overhead to count
	began := time.Now()
	m, err := Backup(context.Background(), store, newUploader(store), opts)
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	elapsed := time.Since(began)
	var raw int64
	for _, ts := range m.Tablespaces {
		for _, o := range ts.Objects {
			raw += o.RawSize
		}
	}
	if overhead := raw - m.TotalSize(); overhead < raw*4/10 {
		t.Fatalf("archive %d bytes for %d bytes of data: tar overhead is not 40%% of the stream", raw, m.TotalSize())
	}
	achieved := float64(raw) / elapsed.Seconds()
	t.Logf("%d archive bytes (%d of file data) in %v: %.2f MiB/s at --max-rate %.2f MiB/s (%.1f%%)",
		raw, m.TotalSize(), elapsed, achieved/(1<<20), float64(maxRate)/(1<<20), 100*achieved/maxRate)
	if achieved > 1.15*maxRate || achieved < 0.85*maxRate {
		t.Errorf("achieved %.2f MiB/s, want within 15%% of %.2f MiB/s", achieved/(1<<20), float64(maxRate)/(1<<20))
	}
}
