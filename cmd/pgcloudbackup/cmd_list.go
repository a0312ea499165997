package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pgcloudbackup/pgcloudbackup/catalog"
	"github.com/pgcloudbackup/pgcloudbackup/manifest"
)

func newListCommand(g *globalOptions) *cobra.Command {
	all, withWAL := false, false
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the backups in the bucket, newest first",
		Long: `List the complete backups in the bucket, newest first (by the time in their
ID, the start time by the clock of the host that made them): ID,
stop time, label, PostgreSQL version, size before and after compression,
start and stop LSN, where its WAL is (WAL: "yes" included, the backup
restores without an archive; "archive": it needs the WAL archive; "NONE":
no WAL and the server was not archiving, nothing can restore it), and page
checksum failures.

--all also lists incomplete backups: objects without a manifest.json, left
by a backup that is running, failed or was interrupted (their object count,
bytes and the time of the newest object), and backups whose manifest.json
this version cannot read.

--json prints an array of objects, newest first, with these fields:
` + backupJSONFields,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runList(cmd.Context(), g, all, withWAL)
		},
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "also list incomplete and unreadable backups")
	cmd.Flags().BoolVar(&withWAL, "wal", false, "also show each backup's recoverable window in the WAL archive (one listing per backup)")
	return cmd
}

func runList(ctx context.Context, g *globalOptions, all, withWAL bool) error {
	store, cat, err := openCatalog(ctx, g)
	if err != nil {
		return err
	}
	defer store.Close()
	var shown []*catalog.Entry
	hidden := 0
	for i := range cat.Entries {
		e := &cat.Entries[i]
		if all || e.Usable() {
			shown = append(shown, e)
		} else {
			hidden++
		}
	}
	windows, err := listWindows(ctx, store, shown, withWAL)
	if err != nil {
		return err
	}
	if g.json {
		out := make([]backupJSON, 0, len(shown))
		for i, e := range shown {
			j := toJSON(e)
			j.WAL = windows[i]
			out = append(out, j)
		}
		writeJSON(g.stdout, out)
		return nil
	}
	if len(shown) == 0 {
		fmt.Fprintf(g.stdout, "no backups in %s\n", cat.Where)
	} else {
		printBackupTable(g.stdout, shown)
		printWindows(g.stdout, shown, windows)
	}
	if hidden > 0 {
		fmt.Fprintf(g.stdout, "(%d incomplete or unreadable not shown: see 'pgcloudbackup list --all')\n", hidden)
	}
	return nil
}

// printBackupTable prints backups as an aligned table; a NOTE column
// appears when a backup is not complete.
func printBackupTable(w io.Writer, entries []*catalog.Entry) {
	notes := false
	for _, e := range entries {
		notes = notes || !e.Usable()
	}
	tw := newTable(w)
	header := "ID\tTIME (UTC)\tLABEL\tPG\tSIZE\tSTORED\tSTART LSN\tSTOP LSN\tWAL\tCHECKSUM FAILURES"
	if notes {
		header += "\tNOTE"
	}
	fmt.Fprintln(tw, header)
	for _, e := range entries {
		row := []string{e.ID, formatTime(e.Time()), "-", "-", "-", humanBytes(e.Bytes), "-", "-", "-", "-"}
		if m := e.Manifest; m != nil {
			failures := "0"
			if !m.ChecksumsVerified {
				failures = "not checked"
			} else if m.ChecksumFailuresTotal > 0 {
				failures = fmt.Sprint(m.ChecksumFailuresTotal)
			}
			if m.NewPagesWithDataTotal > 0 {
				// Not checksum failures, but why the backup ended with exit 4.
				failures += fmt.Sprintf(" (+%d new pages with data)", m.NewPagesWithDataTotal)
			}
			row = []string{e.ID, formatTime(e.Time()), oneLine(m.Label), shortVersion(m.PGVersion), humanBytes(m.TotalSize()),
				humanBytes(e.Bytes), m.StartLSN.String(), m.StopLSN.String(), walColumn(m), failures}
		}
		if notes {
			row = append(row, entryNote(e))
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	_ = tw.Flush()
}

// walColumn: "yes" when the backup holds its WAL, "archive" when it needs
// the WAL archive, "NONE" when nothing can restore it.
func walColumn(m *manifest.Backup) string {
	switch {
	case m.WALIncluded:
		return "yes"
	case m.Unrestorable():
		return "NONE"
	default:
		return "archive"
	}
}

// entryNote says what is wrong with a backup that cannot be restored.
func entryNote(e *catalog.Entry) string {
	switch e.Status() {
	case catalog.StatusIncomplete:
		if e.TempFiles > 0 {
			return fmt.Sprintf("INCOMPLETE: %d objects (%d unfinished), no manifest.json", e.Objects, e.TempFiles)
		}
		return fmt.Sprintf("INCOMPLETE: %d objects, no manifest.json", e.Objects)
	case catalog.StatusUnreadable:
		return "UNREADABLE: " + errorLine(e.Err)
	}
	return ""
}
