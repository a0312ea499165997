package main

import (
	"fmt"
	"io"
	"runtime"
	"time"

	"github.com/spf13/cobra"

	"github.com/pgcloudbackup/pgcloudbackup/codec"
	"github.com/pgcloudbackup/pgcloudbackup/engine"
	"github.com/pgcloudbackup/pgcloudbackup/manifest"
	"github.com/pgcloudbackup/pgcloudbackup/storage"
	"github.com/pgcloudbackup/pgcloudbackup/uploader"
)

type backupFlags struct {
	dsn               string
	pgdata            string
	label             string
	fast              bool
	wal               bool
	noWAL             bool
	maxRate           string
	progress          bool
	noVerifyChecksums bool
	compression       string
	jobs              int
	partSize          string
	uploadConcurrency int
	memory            string
	maxPartsPerObject int // hidden, for tests: forces archives to roll over into next objects
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
PGSSLMODE, ~/.pgpass) and/or --dsn.

The backup includes the WAL from its start to its stop, so it restores
without a WAL archive, unless the server provably archives its WAL
(archive_mode on and pg_stat_archiver showing a recent success and no
failure since). --wal always includes it; --no-wal leaves it out (with a
warning): such a backup restores only from a WAL archive. Including the WAL
reserves it with a temporary replication slot: the role needs the
REPLICATION attribute and a free slot (max_replication_slots).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			m, err := startMetrics(cmd.Context(), g, f.metricsFile, "backup")
			if err != nil {
				return err
			}
			defer func() { m.backupFailed(); m.finish(err) }()
			return runBackup(cmd, g, f, m)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.dsn, "dsn", "", "connection string (keyword=value or postgres:// URL); default: libpq environment")
	fl.StringVarP(&f.pgdata, "pgdata", "D", "", "data directory (default: the server's data_directory)")
	fl.StringVarP(&f.label, "label", "l", "", "backup label (default: pgcloudbackup <id>)")
	fl.BoolVar(&f.fast, "fast", false, "request an immediate checkpoint instead of a spread one")
	fl.BoolVar(&f.wal, "wal", false, "always include the WAL needed to restore without a WAL archive (default: unless the server archives it)")
	fl.BoolVar(&f.noWAL, "no-wal", false, "leave the WAL out: the backup then restores only from a WAL archive")
	fl.StringVarP(&f.maxRate, "max-rate", "r", "", "maximum read rate, kB/s, or with suffix k or M (32k to 1024M)")
	fl.BoolVarP(&f.progress, "progress", "P", false, "show progress (a bar on a terminal, log lines otherwise)")
	fl.BoolVar(&f.noVerifyChecksums, "no-verify-checksums", false, "do not verify page checksums")
	fl.StringVar(&f.compression, "compression", "zstd", "archive compression: zstd, lz4, gzip or none")
	fl.IntVarP(&f.jobs, "jobs", "j", runtime.NumCPU(), "archive volumes written concurrently")
	fl.StringVar(&f.partSize, "part-size", "", "multipart upload part size, e.g. 16MiB (default: from the archive size)")
	fl.IntVar(&f.uploadConcurrency, "upload-concurrency", 2, "multipart parts in flight per archive volume")
	fl.StringVar(&f.memory, "memory", "", "memory budget, e.g. 64MiB: jobs and upload concurrency left at their defaults shrink to fit (default: part size × (jobs + max(upload concurrency, 2) − 1) + jobs × 4MiB + 20MiB)")
	// Tests make small archives roll over into several objects with it.
	fl.IntVar(&f.maxPartsPerObject, "max-parts-per-object", 0, "multipart parts one object may have (default: the backend's limit)")
	_ = fl.MarkHidden("max-parts-per-object")
	fl.StringVar(&f.metricsFile, "metrics-file", "", "write Prometheus textfile metrics to this file (atomically)")
	return cmd
}

func runBackup(cmd *cobra.Command, g *globalOptions, f *backupFlags, metrics *runMetrics) error {
	ctx := cmd.Context()
	if f.wal && f.noWAL {
		return usageError("--wal and --no-wal contradict each other: give one")
	}
	c, err := codec.Lookup(f.compression)
	if err != nil {
		return err
	}
	maxRate, err := parseRate(f.maxRate)
	if err != nil {
		return err
	}
	partSize, err := parsePartSize(f.partSize)
	if err != nil {
		return err
	}
	if err := engine.CheckLabel(f.label); err != nil {
		return err
	}
	if err := checkJobs(f.jobs); err != nil {
		return err
	}
	if f.uploadConcurrency < 1 || f.uploadConcurrency > 32 {
		return usageError("--upload-concurrency must be between 1 and 32, not %d", f.uploadConcurrency)
	}
	memLimit, err := parseMemory(f.memory)
	if err != nil {
		return err
	}
	fl := cmd.Flags()
	jobs, conc, partPool, budget, err := fitBackup(memLimit, partSize, f.jobs, f.uploadConcurrency, fl.Changed("jobs"), fl.Changed("upload-concurrency"))
	if err != nil {
		return err
	}
	defer setRunMemory(budget, backupGCPercent)()
	if jobs != f.jobs || conc != f.uploadConcurrency {
		g.logger.Info("memory budget: fewer parallel streams", "memory", f.memory, "jobs", jobs, "upload_concurrency", conc)
	}
	f.jobs, f.uploadConcurrency = jobs, conc
	store, err := g.openStore(ctx)
	if err != nil {
		return err
	}
	defer store.Close()
	store.SetPartPool(storage.NewPartPool(partPool))
	if f.maxPartsPerObject < 0 {
		return usageError("--max-parts-per-object must not be negative")
	}
	if f.maxPartsPerObject > 0 && (store.Limits.MaxParts == 0 || f.maxPartsPerObject < store.Limits.MaxParts) {
		store.Limits.MaxParts = f.maxPartsPerObject
	}
	up := uploader.New(store, uploader.Options{
		Codec:       c,
		PartSize:    partSize,
		Concurrency: f.uploadConcurrency,
		PartBudget:  partShare(partPool, jobs, conc),
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
		NoWAL:             f.noWAL,
		MaxRate:           maxRate,
		NoVerifyChecksums: f.noVerifyChecksums,
		Jobs:              f.jobs,
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
		"size", m.TotalSize(), "stored", m.StoredSize(), "checksum_failures", m.ChecksumFailuresTotal, "new_pages_with_data", m.NewPagesWithDataTotal)
	if g.json {
		// manifest.json exactly as stored (as 'show --json' prints it):
		// empty lists are [], never null.
		data, err := m.Marshal()
		if err != nil {
			return err
		}
		if _, err := g.stdout.Write(data); err != nil {
			return err
		}
	} else {
		printBackupSummary(g.stdout, m, elapsed)
	}
	if m.PageProblems() > 0 {
		return &checksumFailuresError{total: m.PageProblems()}
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
	fmt.Fprintf(w, "  WAL:          start %s, stop %s, %s\n", m.StartLSN, m.StopLSN, m.WALSummary())
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
			fmt.Fprintf(w, "                %s: %d (blocks %s)\n", cf.Path, cf.Count, manifest.FormatBlocks(cf.Blocks, 10))
		}
	}
	if m.NewPagesWithDataTotal > 0 {
		// Not checksum failures (PostgreSQL skips these pages), but not
		// valid pages either.
		fmt.Fprintf(w, "  new pages:    %d PAGES MARKED NEW (pd_upper = 0) HOLD DATA in %d files:\n", m.NewPagesWithDataTotal, len(m.NewPagesWithData))
		for _, cf := range m.NewPagesWithData {
			fmt.Fprintf(w, "                %s: %d (blocks %s)\n", cf.Path, cf.Count, manifest.FormatBlocks(cf.Blocks, 10))
		}
	}
	if len(m.PartialPages) > 0 {
		fmt.Fprintf(w, "  partial:      %d files end in a partial page (not verified from that block on):\n", len(m.PartialPages))
		for i, p := range m.PartialPages {
			if i == 10 {
				fmt.Fprintf(w, "                …\n")
				break
			}
			fmt.Fprintf(w, "                %s: block %d (%d bytes)\n", p.Path, p.Block, p.Size)
		}
	}
}
