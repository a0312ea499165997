package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pgcloudbackup/pgcloudbackup/codec"
	"github.com/pgcloudbackup/pgcloudbackup/engine"
	"github.com/pgcloudbackup/pgcloudbackup/manifest"
	"github.com/pgcloudbackup/pgcloudbackup/uploader"
)

type backupFlags struct {
	dsn               string
	pgdata            string
	label             string
	fast              bool
	wal               bool
	maxRate           string
	progress          bool
	noVerifyChecksums bool
	compression       string
	jobs              int
	partSize          string
	uploadConcurrency int
	metricsFile       string
}

func newBackupCommand(g *globalOptions) *cobra.Command {
	f := &backupFlags{}
	cmd := &cobra.Command{
		Use:   "backup",
		Short: "Take a base backup of a running cluster into the bucket",
		Long: `Take a physical base backup of the running PostgreSQL cluster (13 or later) and
stream it into the bucket: one tar archive per tablespace, compressed, with
manifest.json and a PostgreSQL backup_manifest written last.

Run it on the database host, as the OS user that owns the cluster. Connection
settings come from the libpq environment (PGHOST, PGPORT, PGUSER, PGPASSWORD,
PGSSLMODE, ~/.pgpass) and/or --dsn.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			m, err := startMetrics(cmd.Context(), g, f.metricsFile, "backup")
			if err != nil {
				return err
			}
			defer func() { m.backupFailed(); m.finish(err) }()
			return runBackup(cmd.Context(), g, f, m)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.dsn, "dsn", "", "connection string (keyword=value or postgres:// URL); default: libpq environment")
	fl.StringVarP(&f.pgdata, "pgdata", "D", "", "data directory (default: the server's data_directory)")
	fl.StringVarP(&f.label, "label", "l", "", "backup label (default: pgcloudbackup <id>)")
	fl.BoolVar(&f.fast, "fast", false, "request an immediate checkpoint instead of a spread one")
	fl.BoolVar(&f.wal, "wal", false, "include the WAL needed to restore without a WAL archive")
	fl.StringVarP(&f.maxRate, "max-rate", "r", "", "maximum read rate, kB/s, or with suffix k or M (32k to 1024M)")
	fl.BoolVarP(&f.progress, "progress", "P", false, "show progress (a bar on a terminal, log lines otherwise)")
	fl.BoolVar(&f.noVerifyChecksums, "no-verify-checksums", false, "do not verify page checksums")
	fl.StringVar(&f.compression, "compression", "zstd", "archive compression: zstd, lz4, gzip or none")
	fl.IntVarP(&f.jobs, "jobs", "j", runtime.NumCPU(), "archive parts written concurrently")
	fl.StringVar(&f.partSize, "part-size", "", "multipart upload part size, e.g. 16MiB (default: from the archive size)")
	fl.IntVar(&f.uploadConcurrency, "upload-concurrency", 2, "parts in flight per archive part object")
	fl.StringVar(&f.metricsFile, "metrics-file", "", "write Prometheus textfile metrics to this file (atomically)")
	return cmd
}

func runBackup(ctx context.Context, g *globalOptions, f *backupFlags, metrics *runMetrics) error {
	c, err := codec.Lookup(f.compression)
	if err != nil {
		return err
	}
	maxRate, err := parseRate(f.maxRate)
	if err != nil {
		return err
	}
	partSize, err := parseSize(f.partSize)
	if err != nil {
		return usageError("--part-size: %v", err)
	}
	if err := checkJobs(f.jobs); err != nil {
		return err
	}
	if f.uploadConcurrency < 1 || f.uploadConcurrency > 32 {
		return usageError("--upload-concurrency must be between 1 and 32, not %d", f.uploadConcurrency)
	}
	store, err := g.openStore(ctx)
	if err != nil {
		return err
	}
	defer store.Close()
	up := uploader.New(store, uploader.Options{
		Codec:       c,
		PartSize:    partSize,
		Concurrency: f.uploadConcurrency,
		Logger:      g.logger,
	})
	if err := up.Validate(); err != nil {
		return err
	}

	progress := &engine.Progress{}
	stopProgress := startProgress(g, progress, f.progress)
	began := time.Now()
	g.logger.Info("backup starting", "bucket", store.Display)
	m, err := engine.Backup(ctx, store, up, engine.Options{
		DSN:               f.dsn,
		PGData:            f.pgdata,
		Label:             f.label,
		Fast:              f.fast,
		IncludeWAL:        f.wal,
		MaxRate:           maxRate,
		NoVerifyChecksums: f.noVerifyChecksums,
		Jobs:              f.jobs,
		Codec:             c,
		Progress:          progress,
		Logger:            g.logger,
		ToolVersion:       toolVersion(),
		UploadContext:     g.hardStop,
	})
	stopProgress()
	if err != nil {
		return err
	}
	elapsed := time.Since(began)
	metrics.backupDone(m, elapsed)
	g.logger.Info("backup complete", "id", m.ID, "elapsed", humanDuration(elapsed),
		"size", m.TotalSize(), "stored", m.StoredSize(), "checksum_failures", m.ChecksumFailuresTotal)
	if g.json {
		writeJSON(g.stdout, m)
	} else {
		printBackupSummary(g.stdout, m, elapsed)
	}
	if m.ChecksumFailuresTotal > 0 {
		return &checksumFailuresError{total: m.ChecksumFailuresTotal}
	}
	return nil
}

func printBackupSummary(w io.Writer, m *manifest.Backup, elapsed time.Duration) {
	objects := 0
	for _, ts := range m.Tablespaces {
		objects += len(ts.Objects)
	}
	fmt.Fprintf(w, "backup %s complete in %s\n", m.ID, humanDuration(elapsed))
	fmt.Fprintf(w, "  label:        %s\n", m.Label)
	fmt.Fprintf(w, "  PostgreSQL:   %s, system %s, timeline %d\n", m.PGVersion, m.SystemIdentifier, m.Timeline)
	fmt.Fprintf(w, "  WAL:          start %s, stop %s, included: %v\n", m.StartLSN, m.StopLSN, m.WALIncluded)
	rate := float64(m.TotalSize()) / elapsed.Seconds() / (1 << 20)
	fmt.Fprintf(w, "  data:         %s in %d objects, stored %s (%s), %.0f MiB/s\n",
		humanBytes(m.TotalSize()), objects, humanBytes(m.StoredSize()), m.Compression, rate)
	for _, ts := range m.Tablespaces {
		fmt.Fprintf(w, "  tablespace:   %-10s %-12s %10s  %d files  %s\n", tablespaceLabel(ts), ts.Name, humanBytes(ts.Size), ts.Files, ts.Location)
	}
	switch {
	case !m.ChecksumsVerified:
		fmt.Fprintf(w, "  checksums:    not verified\n")
	case m.ChecksumFailuresTotal == 0:
		fmt.Fprintf(w, "  checksums:    verified, no failures\n")
	default:
		fmt.Fprintf(w, "  checksums:    %d PAGE CHECKSUM FAILURES in %d files:\n", m.ChecksumFailuresTotal, len(m.ChecksumFailures))
		for _, cf := range m.ChecksumFailures {
			fmt.Fprintf(w, "                %s: %d (blocks %s)\n", cf.Path, cf.Count, blockList(cf.Blocks))
		}
	}
}

func tablespaceLabel(ts manifest.Tablespace) string {
	if ts.OID == 0 {
		return "base"
	}
	return fmt.Sprint(ts.OID)
}

func blockList(blocks []uint32) string {
	parts := make([]string, 0, len(blocks))
	for i, b := range blocks {
		if i == 10 {
			parts = append(parts, "…")
			break
		}
		parts = append(parts, fmt.Sprint(b))
	}
	return strings.Join(parts, ", ")
}
