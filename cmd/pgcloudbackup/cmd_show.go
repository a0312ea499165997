package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/pgcloudbackup/pgcloudbackup/catalog"
	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
	"github.com/pgcloudbackup/pgcloudbackup/manifest"
	"github.com/pgcloudbackup/pgcloudbackup/walarchive"
)

func newShowCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "show <id|latest>",
		Short: "Show what one backup holds",
		Long: `Show the manifest of one complete backup: times, LSNs, timeline, system
identifier, WAL, compression, each tablespace with its objects, and the
files with page checksum failures. "latest" is the newest complete backup
by the time in its ID (never one dated in the future).

--json prints manifest.json exactly as stored in the bucket.

A backup that does not exist, or is incomplete, is an unmet precondition
(exit 3); 'pgcloudbackup list --all' shows what there is.`,
		Args: exactArgs(1, "give one backup ID, or latest"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runShow(cmd.Context(), g, args[0])
		},
	}
}

func runShow(ctx context.Context, g *globalOptions, ref string) error {
	store, e, err := findBackup(ctx, g, ref)
	if err != nil {
		return err
	}
	defer store.Close()
	if g.json {
		_, err := g.stdout.Write(e.JSON)
		return err
	}
	printManifest(g.stdout, e)
	// The recoverable window along the timelines recovery would follow (a
	// few listings; show is about one backup, so the cost is bounded).
	if w, err := walarchive.FollowWindow(ctx, store, e.Manifest.Timeline, e.Manifest.StartLSN, e.Manifest.StopLSN); err == nil {
		printWindow(g.stdout, w)
	} else {
		g.logger.Warn("could not read the WAL archive", "error", failure.OneLine(err))
	}
	return nil
}

func printManifest(w io.Writer, e *catalog.Entry) {
	m := e.Manifest
	fmt.Fprintf(w, "backup %s (%s)\n", m.ID, m.Status)
	tw := newTable(w)
	field := func(name, format string, args ...any) {
		fmt.Fprintf(tw, "  %s:\t%s\n", name, fmt.Sprintf(format, args...))
	}
	field("label", "%s", oneLine(m.Label))
	field("start", "%s UTC, LSN %s", formatTime(m.StartTime), m.StartLSN)
	field("stop", "%s UTC, LSN %s (took %s)", formatTime(m.StopTime), m.StopLSN, humanDuration(m.StopTime.Sub(m.StartTime)))
	field("timeline", "%d", m.Timeline)
	field("PostgreSQL", "%s (%d)", m.PGVersion, m.PGVersionNum)
	field("system identifier", "%s", m.SystemIdentifier)
	field("WAL", "%s", m.WALSummary())
	if m.WALArchive != "" {
		field("WAL archiving", "%s when the backup was taken", m.WALArchive)
	}
	field("compression", "%s", m.Compression)
	field("size", "%s of data, %s stored in %d objects", humanBytes(m.TotalSize()), humanBytes(e.Bytes), e.Objects)
	field("backup_manifest", "%s (%s)", m.BackupManifest.Key, humanBytes(m.BackupManifest.Size))
	field("written by", "pgcloudbackup %s", m.ToolVersion)
	switch {
	case !m.ChecksumsVerified:
		field("page checksums", "not verified")
	case m.ChecksumFailuresTotal == 0:
		field("page checksums", "verified, no failures")
	default:
		field("page checksums", "%d FAILURES in %d files", m.ChecksumFailuresTotal, len(m.ChecksumFailures))
	}
	if m.NewPagesWithDataTotal > 0 {
		field("new pages", "%d PAGES MARKED NEW (pd_upper = 0) HOLD DATA in %d files", m.NewPagesWithDataTotal, len(m.NewPagesWithData))
	}
	if len(m.PartialPages) > 0 {
		field("partial pages", "%d files end in a partial page (not verified from there)", len(m.PartialPages))
	}
	_ = tw.Flush()

	fmt.Fprintln(w, "\ntablespaces:")
	tw = newTable(w)
	fmt.Fprintln(tw, "  OID\tNAME\tLOCATION\tSIZE\tFILES\tOBJECT\tSTORED")
	for _, ts := range m.Tablespaces {
		head := fmt.Sprintf("  %d\t%s\t%s\t%s\t%d", ts.OID, oneLine(ts.Name), oneLine(ts.Location), humanBytes(ts.Size), ts.Files)
		if len(ts.Objects) == 0 {
			fmt.Fprintf(tw, "%s\t-\t-\n", head)
		}
		for i, o := range ts.Objects {
			if i > 0 {
				head = "  \t\t\t\t"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", head, o.Key, humanBytes(o.Size))
		}
	}
	_ = tw.Flush()

	if len(m.ChecksumFailures) > 0 {
		printPageList(w, "page checksum failures:", "FAILURES", m.ChecksumFailures)
	}
	if len(m.NewPagesWithData) > 0 {
		printPageList(w, "pages marked new (pd_upper = 0) that hold data (not checksum failures: PostgreSQL does not verify them):", "PAGES", m.NewPagesWithData)
	}
	if len(m.PartialPages) > 0 {
		fmt.Fprintln(w, "\nfiles ending in a partial page (not verified from that block on):")
		tw := newTable(w)
		fmt.Fprintln(tw, "  FILE\tBLOCK\tSIZE")
		for _, p := range m.PartialPages {
			fmt.Fprintf(tw, "  %s\t%d\t%d\n", oneLine(p.Path), p.Block, p.Size)
		}
		_ = tw.Flush()
	}
}

func printPageList(w io.Writer, title, column string, failures []manifest.ChecksumFailure) {
	fmt.Fprintln(w, "\n"+title)
	tw := newTable(w)
	fmt.Fprintln(tw, "  FILE\t"+column+"\tBLOCKS")
	for _, f := range failures {
		fmt.Fprintf(tw, "  %s\t%d\t%s\n", oneLine(f.Path), f.Count, manifest.FormatBlocks(f.Blocks, 20))
	}
	_ = tw.Flush()
}
