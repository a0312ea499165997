package walarchive

import (
	"context"
	"fmt"
	"reflect"
	"testing"

	"gocloud.dev/blob/memblob"

	"github.com/pgcloudbackup/pgcloudbackup/internal/pg/wal"
	"github.com/pgcloudbackup/pgcloudbackup/storage"
)

// archiveOf pushes the given segments (timeline → segment numbers) and
// history files (timeline → content) into a new in-memory archive.
func archiveOf(t *testing.T, segs map[uint32][]wal.SegNo, histories map[uint32]string) *storage.Store {
	t.Helper()
	ctx := context.Background()
	s := storage.NewStore(memblob.OpenBucket(nil), "mem")
	dir := t.TempDir()
	for tli, list := range segs {
		for _, seg := range list {
			n := wal.FileName(tli, seg, segSize)
			if _, err := Push(ctx, s, writeTemp(t, dir, n, segment(t, n))); err != nil {
				t.Fatal(err)
			}
		}
	}
	for tli, h := range histories {
		n := fmt.Sprintf("%08X.history", tli)
		if _, err := Push(ctx, s, writeTemp(t, dir, n, []byte(h))); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// history is a history file's line for parent timeline tli ending at lsn.
func history(tli uint32, lsn wal.LSN) string {
	return fmt.Sprintf("%d\t%s\tno recovery target specified\n", tli, lsn)
}

// TestFollowWindow: a backup on timeline 1 whose server was promoted after
// the backup ended (timeline 2 begins in segment 3, after the backup's
// stop in the same segment). Recovery with recovery_target_timeline =
// 'latest' reads segments 1-2 from timeline 1 and 3 on from timeline 2;
// timeline 1 alone does not even reach the backup's stop.
func TestFollowWindow(t *testing.T) {
	ctx := context.Background()
	start, stop := wal.LSN(1*segSize+0x28), wal.LSN(3*segSize+0x100)
	switchAt := wal.LSN(3*segSize + 0x40000)
	s := archiveOf(t, map[uint32][]wal.SegNo{1: {1, 2}, 2: {3, 4, 5}}, map[uint32]string{2: history(1, switchAt)})

	own, err := CheckWindow(ctx, s, 1, start, stop)
	if err != nil || own.ReachesStop {
		t.Fatalf("timeline 1 alone: %+v %v (the test's premise: it does not reach the stop)", own, err)
	}
	w, err := FollowWindow(ctx, s, 1, start, stop)
	if err != nil {
		t.Fatal(err)
	}
	want := &Window{Timeline: 2, Timelines: []uint32{1, 2}, From: "000000010000000000000001", Last: "000000020000000000000005",
		End: 6 * segSize, Segments: 5, ReachesStop: true}
	if !reflect.DeepEqual(w, want) {
		t.Errorf("window\n got %+v\nwant %+v", w, want)
	}

	// A gap on the child timeline is found and named there.
	s = archiveOf(t, map[uint32][]wal.SegNo{1: {1, 2}, 2: {3, 4, 6}}, map[uint32]string{2: history(1, switchAt)})
	if w, err := FollowWindow(ctx, s, 1, start, stop); err != nil || w.Gap != "000000020000000000000005" || w.End != 5*segSize || !w.ReachesStop {
		t.Errorf("gap on timeline 2: %+v %v", w, err)
	}

	// A segment missing on the parent before the switch is a gap, even
	// though the child's segments go on.
	s = archiveOf(t, map[uint32][]wal.SegNo{1: {1}, 2: {3, 4}}, map[uint32]string{2: history(1, switchAt)})
	if w, err := FollowWindow(ctx, s, 1, start, stop); err != nil || w.Gap != "000000010000000000000002" || w.Segments != 1 || w.ReachesStop {
		t.Errorf("gap on timeline 1: %+v %v", w, err)
	}
	// The child's first segment missing, nothing after it: the window ends
	// there, no gap.
	s = archiveOf(t, map[uint32][]wal.SegNo{1: {1, 2}}, map[uint32]string{2: history(1, switchAt)})
	if w, err := FollowWindow(ctx, s, 1, start, stop); err != nil || w.Gap != "" || w.Last != "000000010000000000000002" || w.ReachesStop {
		t.Errorf("child without segments: %+v %v", w, err)
	}
	// Timeline 1's own segments past the switch are not on the path: the
	// old primary's WAL after the fork does not count.
	s = archiveOf(t, map[uint32][]wal.SegNo{1: {1, 2, 3, 4, 5}, 2: {3}}, map[uint32]string{2: history(1, switchAt)})
	if w, err := FollowWindow(ctx, s, 1, start, stop); err != nil || w.Last != "000000020000000000000003" || w.Segments != 3 {
		t.Errorf("old primary's segments after the fork: %+v %v", w, err)
	}

	// Timeline 2 forked off before the backup ended: recovery to latest
	// refuses the backup, so the window is its own timeline's.
	s = archiveOf(t, map[uint32][]wal.SegNo{1: {1, 2, 3, 4}, 2: {3, 4, 5}}, map[uint32]string{2: history(1, stop-1)})
	w, err = FollowWindow(ctx, s, 1, start, stop)
	own, _ = CheckWindow(ctx, s, 1, start, stop)
	if err != nil || !reflect.DeepEqual(w, own) || w.Last != "000000010000000000000004" {
		t.Errorf("timeline forked before the stop: %+v %v, want timeline 1's %+v", w, err, own)
	}

	// Two promotions within one segment: timeline 2 holds no segment of
	// its own on the path; segment 3 on is read from timeline 3.
	s = archiveOf(t, map[uint32][]wal.SegNo{1: {1, 2}, 2: {3}, 3: {3, 4}}, map[uint32]string{
		2: history(1, switchAt),
		3: history(1, switchAt) + history(2, switchAt+0x1000),
	})
	want = &Window{Timeline: 3, Timelines: []uint32{1, 3}, From: "000000010000000000000001", Last: "000000030000000000000004",
		End: 5 * segSize, Segments: 4, ReachesStop: true}
	if w, err := FollowWindow(ctx, s, 1, start, stop); err != nil || !reflect.DeepEqual(w, want) {
		t.Errorf("two promotions in one segment:\n got %+v %v\nwant %+v", w, err, want)
	}

	// A history file that does not parse is an error, not a shorter window.
	s = archiveOf(t, map[uint32][]wal.SegNo{1: {1, 2}, 2: {3}}, map[uint32]string{2: "garbage\n"})
	if _, err := FollowWindow(ctx, s, 1, start, stop); err == nil {
		t.Error("unparsable history accepted")
	}
	// No newer timeline: the backup's own.
	s = archiveOf(t, map[uint32][]wal.SegNo{1: {1, 2, 3}}, nil)
	if w, err := FollowWindow(ctx, s, 1, start, stop); err != nil || w.Timelines != nil || w.Last != "000000010000000000000003" || !w.ReachesStop {
		t.Errorf("one timeline: %+v %v", w, err)
	}
}
