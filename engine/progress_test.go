package engine

import (
	"context"
	"testing"
	"time"

	"github.com/pgcloudbackup/pgcloudbackup/internal/pgtest"
	"github.com/pgcloudbackup/pgcloudbackup/internal/progress"
)

// TestProgressTotalIsHonest: during a --wal backup the bytes done never
// pass the estimated total by more than a little (timeline history files,
// files that grew), and at the end done equals the total. The estimate
// used to leave out WAL and the injected files, so the demo's last line
// read 134,976,999 of 118,199,516.
func TestProgressTotalIsHonest(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	c := pgtest.New(t, pgtest.Options{})
	c.Pgbench(1)
	store := memStore(t)
	opts := backupOptions(t, c)
	opts.IncludeWAL = true
	opts.Jobs = 1
	opts.MaxRate = 32 << 20 // about a second: time for many samples
	p := &progress.Counter{}
	opts.Progress = p

	stop := make(chan struct{})
	sampled := make(chan [3]int64)
	go func() {
		var samples, worst, worstEstimate int64
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				sampled <- [3]int64{samples, worst, worstEstimate}
				return
			case <-tick.C:
				est := p.Estimate()
				d, _, _ := p.Snapshot()
				if est > 0 {
					samples++
					if d-est > worst {
						worst, worstEstimate = d-est, est
					}
				}
			}
		}
	}()
	m, err := Backup(context.Background(), store, newUploader(store), opts)
	close(stop)
	got := <-sampled
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	samples, worst, est := got[0], got[1], got[2]
	if samples < 20 {
		t.Fatalf("only %d progress samples", samples)
	}
	if worst > 1<<20 {
		t.Errorf("done ran %d bytes past the estimated total %d", worst, est)
	}
	d, total, phase := p.Snapshot()
	if d != total || phase != "done" || d < m.TotalSize() {
		t.Errorf("final progress %d/%d (%s), backup holds %d bytes of files", d, total, phase, m.TotalSize())
	}
}
