package main

import (
	"context"
	"fmt"
	"io"

	"github.com/pgcloudbackup/pgcloudbackup/catalog"
	"github.com/pgcloudbackup/pgcloudbackup/storage"
	"github.com/pgcloudbackup/pgcloudbackup/walarchive"
)

// listWindows returns, for list --wal, each complete backup's recoverable
// window (nil entries otherwise). It is opt-in: a large archive must not
// slow a plain list.
func listWindows(ctx context.Context, store *storage.Store, entries []*catalog.Entry, on bool) ([]*walarchive.Window, error) {
	out := make([]*walarchive.Window, len(entries))
	if !on {
		return out, nil
	}
	for i, e := range entries {
		if !e.Usable() {
			continue
		}
		m := e.Manifest
		w, err := walarchive.FollowWindow(ctx, store, m.Timeline, m.StartLSN, m.StopLSN)
		if err != nil {
			return nil, err
		}
		out[i] = w
	}
	return out, nil
}

func printWindows(w io.Writer, entries []*catalog.Entry, windows []*walarchive.Window) {
	for i, win := range windows {
		if win != nil {
			fmt.Fprintf(w, "%s:\n", entries[i].ID)
			printWindow(w, win)
		}
	}
}
