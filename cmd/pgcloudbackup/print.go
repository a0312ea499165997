package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/pgcloudbackup/pgcloudbackup/walarchive"
)

// Printers shared by several commands.

func printWindow(out io.Writer, w *walarchive.Window) {
	if w == nil {
		return
	}
	switch {
	case w.NoArchive:
		fmt.Fprintln(out, "  WAL archive: none")
	case w.Segments == 0:
		fmt.Fprintf(out, "  WAL archive: first needed segment %s missing\n", w.From)
	default:
		timelines := fmt.Sprintf("timeline %d", w.Timeline)
		if len(w.Timelines) > 1 {
			path := make([]string, len(w.Timelines))
			for i, t := range w.Timelines {
				path[i] = fmt.Sprint(t)
			}
			timelines = "timelines " + strings.Join(path, " → ")
		}
		fmt.Fprintf(out, "  WAL archive: %s, %d contiguous segments %s … %s, recoverable to LSN %s", timelines, w.Segments, w.From, w.Last, w.End)
		if w.Gap != "" {
			fmt.Fprintf(out, " (GAP at %s)", w.Gap)
		}
		fmt.Fprintln(out)
	}
}

// newTable is the aligned table every command prints (list, show): columns
// separated by tabs, two spaces between them. Flush it when done.
func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}
