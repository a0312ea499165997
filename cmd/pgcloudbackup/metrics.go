package main

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pgcloudbackup/pgcloudbackup/catalog"
	"github.com/pgcloudbackup/pgcloudbackup/internal/metricsfile"
	"github.com/pgcloudbackup/pgcloudbackup/manifest"
	"github.com/pgcloudbackup/pgcloudbackup/storage"
)

// runMetrics collects the --metrics-file metrics of one command run. Every
// command writes the same run gauges under its own subsystem
// (pgcloudbackup_<command>_...), so the files of backup, delete and check can
// sit side by side in node_exporter's textfile directory.
type runMetrics struct {
	ctx   context.Context // the command's: cancelled by SIGINT/SIGTERM
	g     *globalOptions
	set   *metricsfile.Set
	began time.Time
	// success, set by the command, says whether the run did its job (a
	// backup with checksum failures is complete: a success here, with
	// pgcloudbackup_backup_checksum_failures telling the rest).
	success bool
}

// startMetrics returns nil when path is "" (no --metrics-file).
func startMetrics(ctx context.Context, g *globalOptions, path, command string) (*runMetrics, error) {
	if path == "" {
		return nil, nil
	}
	if err := metricsfile.CheckPath(path); err != nil {
		return nil, usageError("--metrics-file: %v", err)
	}
	set, err := metricsfile.New(path, command, prometheus.Labels{"bucket": storage.Redact(g.bucket)})
	if err != nil {
		// Only the carried-forward values are lost; say so and go on.
		g.logger.Warn("previous metrics file is unreadable; last success time and counters start afresh", "error", err)
	}
	return &runMetrics{ctx: ctx, g: g, set: set, began: time.Now()}, nil
}

// gauge records a command-specific gauge (no-op without --metrics-file).
func (m *runMetrics) gauge(name, help string, v float64) {
	if m != nil {
		m.set.Gauge(name, help, v)
	}
}

// carry keeps a gauge's previous value (for values that describe the last
// success, on a run that failed).
func (m *runMetrics) carry(name, help string) {
	if m != nil {
		m.set.CarryGauge(name, help)
	}
}

// finish records the run gauges and writes the file. A metrics file that
// cannot be written is logged, not returned: the command's own outcome (a
// backup that exists) must not be reported as failed because of it;
// monitoring sees the stale last-run time instead.
func (m *runMetrics) finish(runErr error) {
	if m == nil {
		return
	}
	now := time.Now()
	runErr = interruptedIfStopped(m.ctx, runErr) // as run() reports it
	code := exitCodeFor(runErr)
	success := m.success && (runErr == nil || code == exitChecksumFailures)
	s := m.set
	s.Gauge("last_run_timestamp_seconds", "When the last run ended, as a Unix time.", float64(now.Unix()))
	s.Gauge("last_run_duration_seconds", "How long the last run took.", now.Sub(m.began).Seconds())
	s.Gauge("last_run_exit_code", "Exit code of the last run (0 ok, 1 failed, 2 usage, 3 precondition, 4 checksum failures, 130 interrupted).", float64(code))
	result, ok := "failure", 0.0
	if success {
		result, ok = "success", 1
		s.Gauge("last_success_timestamp_seconds", "When the last successful run ended, as a Unix time.", float64(now.Unix()))
	} else {
		s.CarryGauge("last_success_timestamp_seconds", "When the last successful run ended, as a Unix time.")
	}
	s.Gauge("last_run_success", "1 if the last run succeeded, else 0.", ok)
	for _, r := range []string{"success", "failure"} {
		add := 0.0
		if r == result {
			add = 1
		}
		s.AddCounter("runs_total", "Runs by result, counted across runs that wrote this file.", prometheus.Labels{"result": r}, add)
	}
	if err := s.Write(); err != nil {
		m.g.logger.Error("metrics file not written", "error", err)
	}
}

// Gauges that describe the last successful backup (carried forward when a
// run fails, so a failure does not hide what the last good backup was).
var backupGauges = [][2]string{
	{"read_bytes", "Bytes read from the cluster by the last successful backup."},
	{"stored_bytes", "Bytes stored in the bucket by the last successful backup (compressed)."},
	{"checksum_failures", "Page checksum failures found by the last completed backup."},
	{"duration_seconds", "How long the last successful backup took."},
	{"wal_included", "1 if the last successful backup includes its WAL, else 0."},
}

// backupDone records the backup just completed.
func (m *runMetrics) backupDone(b *manifest.Backup, elapsed time.Duration) {
	if m == nil {
		return
	}
	m.success = true
	wal := 0.0
	if b.WALIncluded {
		wal = 1
	}
	values := []float64{float64(b.TotalSize()), float64(b.StoredSize()), float64(b.ChecksumFailuresTotal), elapsed.Seconds(), wal}
	for i, g := range backupGauges {
		m.set.Gauge(g[0], g[1], values[i])
	}
}

// backupFailed carries the last successful backup's gauges forward.
func (m *runMetrics) backupFailed() {
	if m == nil || m.success {
		return
	}
	for _, g := range backupGauges {
		m.set.CarryGauge(g[0], g[1])
	}
}

// deleteDone records what a delete run did and what the bucket keeps.
func (m *runMetrics) deleteDone(cat *catalog.Catalog, deleted []decisionJSON, freed int64, dryRun bool) {
	if m == nil {
		return
	}
	m.success = true
	gone := map[string]bool{}
	for _, d := range deleted {
		gone[d.ID] = !dryRun
	}
	retained := 0
	var newest *catalog.Entry
	for _, e := range cat.Entries {
		if !e.Usable() || gone[e.ID] {
			continue
		}
		retained++
		if newest == nil || e.Time().After(newest.Time()) {
			newest = &e
		}
	}
	dry := 0.0
	if dryRun {
		dry = 1
	}
	m.gauge("dry_run", "1 if the last run was a --dry-run (nothing deleted), else 0.", dry)
	m.gauge("deleted_backups", "Backups deleted by the last run (would be deleted, on a dry run).", float64(len(deleted)))
	m.gauge("deleted_bytes", "Bytes freed by the last run (would be freed, on a dry run).", float64(freed))
	m.gauge("backups_retained", "Complete backups left in the bucket after the last run.", float64(retained))
	if newest != nil {
		t := newest.Manifest.StopTime
		m.gauge("newest_backup_timestamp_seconds", "Stop time of the newest complete backup, as a Unix time.", float64(t.Unix()))
		m.gauge("newest_backup_age_seconds", "Age of the newest complete backup when the run ended.", time.Since(t).Seconds())
	}
}
