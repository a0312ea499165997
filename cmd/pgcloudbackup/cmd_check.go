package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pgcloudbackup/pgcloudbackup/catalog"
	"github.com/pgcloudbackup/pgcloudbackup/engine"
	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
	"github.com/pgcloudbackup/pgcloudbackup/storage"
)

// probePrefix holds check's probe objects: beside backups/, never inside
// it, so neither listing nor retention ever sees one.
const probePrefix = "check/"

type checkFlags struct {
	dsn         string
	pgdata      string
	maxAge      string
	noServer    bool
	metricsFile string
	maxWALLag   string
}

// Check statuses.
const (
	checkOK   = "ok"
	checkFail = "fail"
	checkSkip = "skip"
)

// checkResult is one line of the report.
type checkResult struct {
	Check  string `json:"check"`
	Status string `json:"status"`
	Detail string `json:"detail"`
	Hint   string `json:"hint,omitempty"`
}

type checkReport struct {
	Status string        `json:"status"` // ok or failed
	Checks []checkResult `json:"checks"`
}

func newCheckCommand(g *globalOptions) *cobra.Command {
	f := &checkFlags{}
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Check that backups can be taken and that a recent one exists",
		Long: `Check the setup a scheduled backup relies on, one line per check:

  server       PostgreSQL is reachable, supported, and the role may start a
               backup (the same preflight backup runs)
  pgdata       the data directory (--pgdata or the server's) is this
               server's: its pg_control has the server's system identifier
  bucket       the bucket is reachable and writable: a probe object is
               written under <prefix>check/, read back and removed
               (backups are never touched)
  backups      the newest complete backup, and with --max-age its age
  wal-archive  WAL archiving is on and not failing (pg_stat_archiver),
               when the newest backup relies on it (taken without --wal),
               or whenever archive_mode is on; when archive_command runs
               wal-push (or the bucket holds a wal/ archive), the bucket's
               newest segment of the server's timeline is compared with the
               server's: fail when more than --max-wal-lag completed
               segments are missing, or the server's last archived file is
               not in the bucket

A check that cannot run because an earlier one failed is "skip". --no-server
checks only the bucket and the backups (for a host without database access).
Exit 0 when no check failed, 3 otherwise. --json prints
{"status": "ok"|"failed", "checks": [{"check", "status", "detail", "hint"}]}.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			m, err := startMetrics(cmd.Context(), g, f.metricsFile, "check")
			if err != nil {
				return err
			}
			defer func() { m.finish(err) }()
			return runCheck(cmd.Context(), g, f, m)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.dsn, "dsn", "", "connection string (keyword=value or postgres:// URL); default: libpq environment")
	fl.StringVarP(&f.pgdata, "pgdata", "D", "", "data directory (default: the server's data_directory)")
	fl.StringVar(&f.maxAge, "max-age", "", "fail when the newest complete backup is older than this (e.g. 26h, 2d)")
	fl.BoolVar(&f.noServer, "no-server", false, "skip the server, data directory and WAL archiving checks")
	fl.StringVar(&f.maxWALLag, "max-wal-lag", defaultMaxWALLag, "with a wal-push archive in the bucket: fail when more completed segments than this (or, given as a duration such as 1h, segments older than this) are not in it")
	fl.StringVar(&f.metricsFile, "metrics-file", "", "write Prometheus textfile metrics to this file (atomically)")
	return cmd
}

// checkRun holds what the checks learn from each other.
type checkRun struct {
	g       *globalOptions
	f       *checkFlags
	maxAge  time.Duration
	now     time.Time
	metrics *runMetrics
	results []checkResult
	walLag  walLagLimit

	server   *engine.Server
	store    *storage.Store
	newest   *catalog.Entry
	complete int
}

func (c *checkRun) add(name, status, detail, hint string) {
	c.results = append(c.results, checkResult{Check: name, Status: status, Detail: detail, Hint: hint})
	up := 0.0
	if status == checkOK {
		up = 1
	}
	if status != checkSkip && c.metrics != nil {
		c.metrics.set.GaugeVec("up", "1 if the named check passed in the last run, 0 if it failed (skipped checks are absent).",
			map[string]string{"check": name}, up)
	}
}

func (c *checkRun) fail(name string, err error) {
	c.add(name, checkFail, failure.OneLine(err), failure.HintOf(err))
}

func runCheck(ctx context.Context, g *globalOptions, f *checkFlags, m *runMetrics) error {
	c := &checkRun{g: g, f: f, now: time.Now(), metrics: m}
	if f.maxAge != "" {
		d, err := catalog.ParseDuration(f.maxAge)
		if err != nil || d <= 0 {
			return usageError("--max-age %q: want a positive duration such as 26h or 2d", f.maxAge)
		}
		c.maxAge = d
	}
	lag, err := parseWALLag(f.maxWALLag)
	if err != nil {
		return err
	}
	c.walLag = lag
	if g.bucket == "" {
		return usageError("no bucket: give --bucket URL or set PGCLOUDBACKUP_BUCKET")
	}
	defer func() {
		if c.server != nil {
			c.server.Close()
		}
		if c.store != nil {
			c.store.Close()
		}
	}()

	c.checkServer(ctx)
	c.checkPGData()
	c.checkBucket(ctx)
	c.checkBackups(ctx)
	c.checkWALArchive(ctx)
	if err := ctx.Err(); err != nil {
		return failure.Wrap(failure.Interrupted, errors.New("check interrupted"), "")
	}
	return c.report()
}

func (c *checkRun) report() error {
	var failed []string
	for _, r := range c.results {
		if r.Status == checkFail {
			failed = append(failed, r.Check)
		}
	}
	rep := checkReport{Status: "ok", Checks: c.results}
	if len(failed) > 0 {
		rep.Status = "failed"
	}
	if c.g.json {
		writeJSON(c.g.stdout, rep)
	} else {
		for _, r := range c.results {
			line := fmt.Sprintf("%-4s  %-11s  %s", strings.ToUpper(r.Status), r.Check, r.Detail)
			if r.Status == checkOK {
				line = fmt.Sprintf("%-4s  %-11s  %s", r.Status, r.Check, r.Detail)
			}
			if r.Hint != "" {
				line += " (hint: " + r.Hint + ")"
			}
			fmt.Fprintln(c.g.stdout, line)
		}
	}
	if len(failed) > 0 {
		if c.metrics != nil {
			c.metrics.success = false
		}
		return failure.New(failure.Precondition, "%d of %d checks failed: %s", len(failed), len(c.results), strings.Join(failed, ", "))
	}
	if c.metrics != nil {
		c.metrics.success = true
	}
	return nil
}

func (c *checkRun) checkServer(ctx context.Context) {
	if c.f.noServer {
		c.add("server", checkSkip, "--no-server", "")
		return
	}
	s, err := engine.Inspect(ctx, c.f.dsn, c.g.logger)
	if err != nil {
		c.fail("server", err)
		return
	}
	c.server = s
	i := s.Info()
	role := "primary"
	if i.InRecovery {
		role = "standby"
	}
	c.add("server", checkOK, fmt.Sprintf("PostgreSQL %s at %s (%s, system %d, wal_level %s, data checksums %s): the role may start a backup",
		i.Version, i.Address, role, i.SystemIdentifier, i.WALLevel, onOff(i.DataChecksums)), "")
}

func (c *checkRun) checkPGData() {
	switch {
	case c.f.noServer:
		c.add("pgdata", checkSkip, "--no-server", "")
		return
	case c.server == nil:
		c.add("pgdata", checkSkip, "needs the server check", "")
		return
	}
	dir, err := c.server.CheckDataDir(c.f.pgdata)
	if err != nil {
		c.fail("pgdata", err)
		return
	}
	c.add("pgdata", checkOK, fmt.Sprintf("%s belongs to system %d", dir, c.server.Info().SystemIdentifier), "")
}

func (c *checkRun) checkBucket(ctx context.Context) {
	store, err := c.g.openStore(ctx)
	if err != nil {
		c.fail("bucket", err)
		return
	}
	if err := store.CheckAccess(ctx); err != nil {
		store.Close()
		c.fail("bucket", err)
		return
	}
	c.store = store
	key, err := probeBucket(ctx, store)
	if err != nil {
		c.fail("bucket", err)
		return
	}
	c.add("bucket", checkOK, fmt.Sprintf("%s: listed, and probe object %s written, read back and removed", store.Display, key), "")
}

// probeBucket writes a small object under <prefix>check/, reads it back,
// compares and removes it. The name is unique (host, pid, random), and
// written only if absent, so two checks never touch each other's probe.
func probeBucket(ctx context.Context, store *storage.Store) (string, error) {
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return "", err
	}
	host, _ := os.Hostname()
	host = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' {
			return r
		}
		return '_'
	}, host)
	key := store.Key(fmt.Sprintf("%sprobe-%s-%d-%s", probePrefix, host, os.Getpid(), hex.EncodeToString(rnd[:])))
	body := []byte("pgcloudbackup check probe " + time.Now().UTC().Format(time.RFC3339Nano) + "\n")
	err := store.WriteAll(ctx, key, body, storage.WriteOptions{ContentType: "text/plain", IfNotExist: true})
	if err != nil {
		return key, store.Classify(err, "write probe object "+key)
	}
	got, readErr := store.ReadAll(ctx, key, 1<<20)
	delErr := store.Delete(ctx, key)
	switch {
	case readErr != nil:
		return key, store.Classify(readErr, "read back probe object "+key)
	case !bytes.Equal(got, body):
		return key, failure.New(failure.Precondition, "probe object %s read back with different content (%d bytes, wrote %d)", key, len(got), len(body))
	case delErr != nil:
		return key, store.Classify(delErr, "remove probe object "+key+" (it is left behind)")
	}
	return key, nil
}

func (c *checkRun) checkBackups(ctx context.Context) {
	if c.store == nil {
		c.add("backups", checkSkip, "needs the bucket check", "")
		return
	}
	cat, err := catalog.Load(ctx, c.store)
	if err != nil {
		c.fail("backups", err)
		return
	}
	for i := range cat.Entries {
		if cat.Entries[i].Usable() {
			c.complete++
		}
	}
	c.newest = cat.Newest()
	if c.metrics != nil {
		c.metrics.gauge("backups", "Complete backups in the bucket.", float64(c.complete))
	}
	if c.newest == nil {
		if c.maxAge > 0 {
			c.add("backups", checkFail, fmt.Sprintf("no complete backup in %s", c.store.Display), "run 'pgcloudbackup backup'")
		} else {
			c.add("backups", checkSkip, fmt.Sprintf("no complete backup in %s yet (give --max-age to require one)", c.store.Display), "")
		}
		return
	}
	m := c.newest.Manifest
	age := c.now.Sub(m.StopTime)
	if c.metrics != nil {
		c.metrics.gauge("newest_backup_timestamp_seconds", "Stop time of the newest complete backup, as a Unix time.", float64(m.StopTime.Unix()))
		c.metrics.gauge("newest_backup_age_seconds", "Age of the newest complete backup when the check ran.", age.Seconds())
	}
	detail := fmt.Sprintf("%d complete; newest %s stopped %s ago (%s, WAL included: %s)",
		c.complete, m.ID, humanAge(age), humanBytes(m.TotalSize()), yesNo(m.WALIncluded))
	if c.maxAge > 0 && age > c.maxAge {
		c.add("backups", checkFail, detail+", older than --max-age "+c.f.maxAge, "check the scheduled backup job and its logs")
		return
	}
	if c.maxAge > 0 {
		detail += ", within --max-age " + c.f.maxAge
	}
	c.add("backups", checkOK, detail, "")
}

// checkWALArchive checks the WAL archives that restores depend on. Today
// that is the server's own archiving (archive_command/archive_library);
// an archive this tool writes itself is checked here too, next to it.
func (c *checkRun) checkWALArchive(ctx context.Context) {
	c.checkServerArchiving(ctx)
}

// reliesOnArchive: the newest backup has no WAL of its own, so it restores
// only with the WAL archive.
func (c *checkRun) reliesOnArchive() bool {
	return c.newest != nil && !c.newest.Manifest.WALIncluded
}

func (c *checkRun) checkServerArchiving(ctx context.Context) {
	const name = "wal-archive"
	switch {
	case c.f.noServer:
		c.add(name, checkSkip, "--no-server", "")
		return
	case c.server == nil:
		c.add(name, checkSkip, "needs the server check", "")
		return
	}
	a, err := c.server.Archiver(ctx)
	if err != nil {
		c.fail(name, err)
		return
	}
	if c.metrics != nil && !a.LastArchivedTime.IsZero() {
		c.metrics.gauge("wal_last_archived_timestamp_seconds", "When the server last archived a WAL segment (pg_stat_archiver), as a Unix time.", float64(a.LastArchivedTime.Unix()))
	}
	if a.Mode == "off" {
		if c.reliesOnArchive() {
			c.add(name, checkFail, fmt.Sprintf("archive_mode is off, but the newest backup %s has no WAL of its own: it cannot be restored to a consistent state", c.newest.ID),
				"turn archiving on, or take backups with --wal")
			return
		}
		c.add(name, checkSkip, "archive_mode is off (backups carry their WAL)", "")
		return
	}
	if a.Command == "" && a.Library == "" {
		c.add(name, checkFail, "archive_mode is "+a.Mode+" but neither archive_command nor archive_library is set: WAL accumulates in pg_wal", "set archive_command")
		return
	}
	var ours *bucketArchive
	if use, err := c.usesOurArchive(ctx, a); err != nil {
		c.fail(name, err)
		return
	} else if use && c.store == nil {
		c.add(name, checkFail, a.String()+"; the wal-push archive cannot be compared: needs the bucket check", "")
		return
	} else if use {
		if ours, err = c.inspectBucketArchive(ctx, a); err != nil {
			c.fail(name, err)
			return
		}
		c.recordArchiveMetrics(ours)
	}
	if a.Failing() {
		detail := "archiving is failing: " + a.String()
		if ours != nil {
			detail += "; " + ours.summary()
		}
		c.add(name, checkFail, detail, "see the server log for the archive_command's error")
		return
	}
	if ours != nil && ours.problem != "" {
		c.add(name, checkFail, ours.problem+" ("+a.String()+")", ours.hint)
		return
	}
	if ours != nil {
		c.add(name, checkOK, a.String()+"; "+ours.summary(), "")
		return
	}
	c.add(name, checkOK, a.String(), "")
}
