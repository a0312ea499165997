package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/pgcloudbackup/pgcloudbackup/catalog"
	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
	"github.com/pgcloudbackup/pgcloudbackup/internal/pg/wal"
	"github.com/pgcloudbackup/pgcloudbackup/manifest"
	"github.com/pgcloudbackup/pgcloudbackup/storage"
	"github.com/pgcloudbackup/pgcloudbackup/walarchive"
)

// backupJSONFields documents backupJSON for the help of list and delete:
// scripts parse these names, so they only ever gain fields.
const backupJSONFields = `  id                  backup ID (UTC start time, e.g. 20261124T183026Z)
  status              complete, incomplete (objects but no manifest.json: running,
                      failed or being deleted) or unreadable (manifest.json this
                      version cannot read; see error)
  time                RFC 3339, UTC: the stop time of a complete backup, else
                      when its newest object was written
  objects             objects in the bucket
  stored_size         bytes those objects occupy (manifest.json included)
  error               why manifest.json is unreadable (unreadable only)
  and, for complete backups only:
  label, start_time, stop_time, pg_version, pg_version_num, system_identifier
  (decimal string), timeline, start_lsn, stop_lsn ("X/X"), wal_included,
  wal_archive (healthy, off or failing: the server's WAL archiving when the
  backup was taken; absent if not recorded), self_contained (restores
  without a WAL archive), restorable (false: no WAL and no archive),
  compression, size (bytes of data before compression), checksums_verified,
  checksum_failures (pages with a bad checksum)`

// backupJSON is one backup in list and delete --json output.
type backupJSON struct {
	ID         string    `json:"id"`
	Status     string    `json:"status"`
	Time       time.Time `json:"time"`
	Objects    int       `json:"objects"`
	StoredSize int64     `json:"stored_size"`
	Error      string    `json:"error,omitempty"`
	// Embedded by pointer: its fields appear only for complete backups.
	*manifestJSON
	// WAL is the recoverable window in the WAL archive (list --wal).
	WAL *walarchive.Window `json:"wal,omitempty"`
}

type manifestJSON struct {
	Label             string    `json:"label"`
	StartTime         time.Time `json:"start_time"`
	StopTime          time.Time `json:"stop_time"`
	PGVersion         string    `json:"pg_version"`
	PGVersionNum      int       `json:"pg_version_num"`
	SystemIdentifier  string    `json:"system_identifier"`
	Timeline          uint32    `json:"timeline"`
	StartLSN          wal.LSN   `json:"start_lsn"`
	StopLSN           wal.LSN   `json:"stop_lsn"`
	WALIncluded       bool      `json:"wal_included"`
	WALArchive        string    `json:"wal_archive,omitempty"`
	SelfContained     bool      `json:"self_contained"`
	Restorable        bool      `json:"restorable"`
	Compression       string    `json:"compression"`
	Size              int64     `json:"size"`
	ChecksumsVerified bool      `json:"checksums_verified"`
	ChecksumFailures  int64     `json:"checksum_failures"`
}

func toJSON(e *catalog.Entry) backupJSON {
	j := backupJSON{ID: e.ID, Status: e.Status(), Time: e.Time().UTC(), Objects: e.Objects, StoredSize: e.Bytes}
	if e.Err != nil {
		j.Error = errorLine(e.Err)
	}
	if m := e.Manifest; m != nil {
		j.manifestJSON = &manifestJSON{
			Label: m.Label, StartTime: m.StartTime.UTC(), StopTime: m.StopTime.UTC(),
			PGVersion: m.PGVersion, PGVersionNum: m.PGVersionNum, SystemIdentifier: m.SystemIdentifier,
			Timeline: m.Timeline, StartLSN: m.StartLSN, StopLSN: m.StopLSN,
			WALIncluded: m.WALIncluded, WALArchive: m.WALArchive, SelfContained: m.SelfContained(), Restorable: !m.Unrestorable(),
			Compression: m.Compression, Size: m.TotalSize(),
			ChecksumsVerified: m.ChecksumsVerified, ChecksumFailures: m.ChecksumFailuresTotal,
		}
	}
	return j
}

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

// openCatalog opens the bucket and reads its catalog. The caller closes
// the store (nil on error).
func openCatalog(ctx context.Context, g *globalOptions) (*storage.Store, *catalog.Catalog, error) {
	store, err := g.openStore(ctx)
	if err != nil {
		return nil, nil, err
	}
	cat, err := catalog.Load(ctx, store)
	if err != nil {
		store.Close()
		return nil, nil, err
	}
	warnFuture(g, cat)
	return store, cat, nil
}

// warnFuture says which backups are dated in the future: they are kept,
// but never "latest" and never the newest for retention.
func warnFuture(g *globalOptions, cat *catalog.Catalog) {
	for _, e := range cat.Future() {
		g.logger.Warn("backup dated in the future (clock skew on the host that made it, or a crafted ID): it is not used as latest and does not count for retention; check it, and delete it by ID if it is not wanted",
			"backup", e.ID, "ahead", catalog.FormatDuration(e.Started().Sub(cat.Now)))
	}
}

// printBackupTable prints backups as an aligned table; a NOTE column
// appears when a backup is not complete.
func printBackupTable(w io.Writer, entries []*catalog.Entry) {
	notes := false
	for _, e := range entries {
		notes = notes || !e.Usable()
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
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

func formatTime(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05") }

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// oneLine keeps a user-supplied label from breaking table rows ("-" for
// none).
func oneLine(s string) string {
	if s = failure.OneLineText(s); s == "" {
		return "-"
	}
	return s
}

// shortVersion drops a packager's suffix ("15.18 (Debian 15.18-0+deb12u1)")
// for the table; --json and show keep the whole string.
func shortVersion(v string) string {
	short, _, _ := strings.Cut(v, " ")
	return short
}
