package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgcloudbackup/pgcloudbackup/catalog"
	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
	"github.com/pgcloudbackup/pgcloudbackup/internal/pg/wal"
	"github.com/pgcloudbackup/pgcloudbackup/manifest"
	"github.com/pgcloudbackup/pgcloudbackup/walarchive"
)

// TestVerifyWALFollowsLaterTimeline: a backup without WAL on timeline 1,
// and the server promoted after the backup ended (timeline 2 begins in
// the segment of the backup's stop). Timeline 1's archive stops before
// that segment, as after a failover, so a check of timeline 1 alone said
// the backup could never become consistent; the restore (recovery target
// timeline latest) reads that segment from timeline 2, and so does
// verify --wal now. A gap on timeline 2 is still found and named.
func TestVerifyWALFollowsLaterTimeline(t *testing.T) {
	const segSize = 1 << 20
	ctx := context.Background()
	b := newTestBucket(t)
	dir := t.TempDir()
	push := func(name string, data []byte) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := walarchive.Push(ctx, b.store, p); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []struct {
		tli uint32
		seg wal.SegNo
	}{{1, 1}, {1, 2}, {2, 3}, {2, 4}} {
		push(wal.FileName(s.tli, s.seg, segSize), bytes.Repeat([]byte{byte(s.seg)}, segSize))
	}
	push("00000002.history", []byte(fmt.Sprintf("1\t%s\tno recovery target specified\n", wal.LSN(3*segSize+0x40000))))
	m := &manifest.Backup{ID: "20261129T230000Z", Timeline: 1, StartLSN: 1*segSize + 0x28, StopLSN: 3*segSize + 0x100}

	w, err := checkBackupWAL(ctx, b.store, m)
	if err != nil {
		t.Fatalf("verify --wal of a backup whose WAL goes on on timeline 2: %v", err)
	}
	if !w.ReachesStop || w.Last != "000000020000000000000004" || w.End != 5*segSize {
		t.Errorf("window %+v: want it to reach the stop and go on to timeline 2's segment 4", w)
	}
	var out bytes.Buffer
	printWindow(&out, w)
	if want := "timelines 1 → 2, 4 contiguous segments 000000010000000000000001 … 000000020000000000000004"; !strings.Contains(out.String(), want) {
		t.Errorf("printed %q, want it to say %q", out.String(), want)
	}

	// list --wal (and show, through the same walarchive.FollowWindow) say
	// the same window as verify.
	ws, err := listWindows(ctx, b.store, []*catalog.Entry{{Manifest: m}}, true)
	if err != nil || len(ws) != 1 || ws[0] == nil || ws[0].Last != w.Last || ws[0].End != w.End || !ws[0].ReachesStop {
		t.Errorf("list --wal window %+v, %v; want verify's %+v", ws, err, w)
	}

	push(wal.FileName(2, 6, segSize), bytes.Repeat([]byte{6}, segSize))
	_, err = checkBackupWAL(ctx, b.store, m)
	if err == nil || failure.KindOf(err) != failure.Failed || !strings.Contains(err.Error(), "timeline 2 has a gap at 000000020000000000000005") {
		t.Errorf("gap on timeline 2: %v", err)
	}
}
