package main

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/pgcloudbackup/pgcloudbackup/catalog"
	"github.com/pgcloudbackup/pgcloudbackup/storage"
	"github.com/pgcloudbackup/pgcloudbackup/walarchive"
)

type deleteFlags struct {
	retain    int
	olderThan string
	grace     string
	dryRun    bool
	force     bool
	metrics   string
}

func newDeleteCommand(g *globalOptions) *cobra.Command {
	f := &deleteFlags{}
	cmd := &cobra.Command{
		Use:   "delete (<id|latest> | --retain N | --older-than DURATION)",
		Short: "Delete one backup, or apply a retention policy",
		Long: `Delete one backup by ID (or "latest"), or apply a retention policy (for
scheduled jobs):

  --retain N              keep the N newest complete backups
  --older-than DURATION   delete complete backups that started more than
                          DURATION ago (units s, m, h, d = 24h, w = 7d;
                          e.g. 7d, 36h, 2w, 1w3d)

Backups are ordered and aged by the time in their ID (taken from the clock
of the host that made the backup), not by the stop time in their manifest.
A backup whose ID lies more than 5 minutes in the future (a skewed clock on
another host, or a directory made by hand) is warned about and kept, but it
is never "latest", does not count toward --retain and does not protect
older backups; delete it by ID.

Given both, a backup is kept if either rule keeps it. A retention run also
deletes incomplete backups (objects but no manifest.json) whose newest object
is older than --grace: a backup may be running right now. A running backup
rewrites its reservation.json every 10 minutes, so any grace above that
spares it, however long it runs. Backups whose manifest.json this version
cannot read are never deleted by a retention run.

The newest complete backup is never deleted without --force: not by
--older-than, not by 'delete <id>' or 'delete latest'. --force also allows --retain 0 and
deleting an incomplete backup by ID within its grace period.

A backup is deleted manifest.json first, so one whose deletion stops half-way
is incomplete, never complete-looking with parts missing; its reservation
marker goes last, so it stays listed (list --all) until all of it is gone.
Deleting an incomplete backup also removes the temporary files (file://) and
the pending multipart uploads (S3) a crashed backup left. --dry-run prints
what would be deleted and changes nothing.

--json prints {"deleted": [...], "kept": [...], "dry_run": bool}, deleted in
the order of deletion (oldest first), kept newest first. Each backup has
"reason" (why it is deleted or kept) and the fields of 'pgcloudbackup list
--json':
` + backupJSONFields,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) (err error) {
			m, err := startMetrics(cmd.Context(), g, f.metrics, "delete")
			if err != nil {
				return err
			}
			defer func() { m.finish(err) }()
			return runDelete(cmd, g, f, args, m)
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&f.retain, "retain", 0, "keep the N newest complete backups, delete older ones")
	fl.StringVar(&f.olderThan, "older-than", "", "delete complete backups older than DURATION (e.g. 7d, 36h, 2w)")
	fl.StringVar(&f.grace, "grace", "24h", "leave incomplete backups alone until their newest object is this old")
	fl.BoolVarP(&f.dryRun, "dry-run", "n", false, "print what would be deleted, delete nothing")
	fl.StringVar(&f.metrics, "metrics-file", "", "write Prometheus textfile metrics to this file (atomically)")
	fl.BoolVar(&f.force, "force", false, "allow deleting the newest complete backup, --retain 0, and running backups by ID")
	return cmd
}

// policy checks the flags and turns them into a retention policy.
func (f *deleteFlags) policy(cmd *cobra.Command, byID bool, now time.Time) (catalog.Policy, error) {
	p := catalog.Policy{Force: f.force, Now: now}
	var err error
	if p.Grace, err = catalog.ParseDuration(f.grace); err != nil {
		return p, usageError("--grace: %v", err)
	}
	retain, older := cmd.Flags().Changed("retain"), cmd.Flags().Changed("older-than")
	switch {
	case byID && (retain || older):
		return p, usageError("give a backup ID or --retain/--older-than, not both")
	case byID:
		return p, nil
	case !retain && !older:
		return p, usageError("give the backup ID to delete, or a retention policy: --retain N and/or --older-than DURATION")
	}
	if retain {
		if f.retain < 0 || f.retain == 0 && !f.force {
			return p, usageError("--retain %d: keep at least 1 backup (--retain 0 --force deletes them all)", f.retain)
		}
		p.Retain = &f.retain
	}
	if older {
		d, err := catalog.ParseDuration(f.olderThan)
		if err != nil {
			return p, usageError("--older-than: %v", err)
		}
		p.OlderThan = &d
	}
	return p, nil
}

// deleteReport is the --json output of delete.
type deleteReport struct {
	Deleted []decisionJSON `json:"deleted"`
	Kept    []decisionJSON `json:"kept"`
	DryRun  bool           `json:"dry_run"`
	// WAL is what a retention run removed from the WAL archive.
	WAL *walarchive.PruneResult `json:"wal,omitempty"`
}

func runDelete(cmd *cobra.Command, g *globalOptions, f *deleteFlags, args []string, metrics *runMetrics) error {
	ctx := cmd.Context()
	p, err := f.policy(cmd, len(args) == 1, time.Now())
	if err != nil {
		return err
	}
	if len(args) == 0 && p.Grace < storage.DefaultRefresh {
		g.logger.Warn("--grace is shorter than the interval at which a running backup refreshes its reservation: a running backup may be deleted as a crashed one",
			"grace", catalog.FormatDuration(p.Grace), "refresh", catalog.FormatDuration(storage.DefaultRefresh))
	}
	store, cat, err := openCatalog(ctx, g)
	if err != nil {
		return err
	}
	defer store.Close()
	var decisions []catalog.Decision
	if len(args) == 1 {
		d, err := cat.PlanDelete(args[0], p)
		if err != nil {
			return err
		}
		decisions = []catalog.Decision{d}
	} else if decisions, err = cat.Plan(p); err != nil {
		return err
	}

	report := deleteReport{Deleted: []decisionJSON{}, Kept: []decisionJSON{}, DryRun: f.dryRun}
	verb := "deleted"
	if f.dryRun {
		verb = "would delete"
	}
	var freed int64
	// Oldest first: a run that stops part-way has removed the least
	// valuable backups.
	for i := len(decisions) - 1; i >= 0; i-- {
		d := decisions[i]
		if !d.Delete {
			continue
		}
		if !f.dryRun {
			if err := store.DeleteBackup(ctx, d.Entry.ID); err != nil {
				return err
			}
			g.logger.Info("deleted backup", "id", d.Entry.ID, "reason", d.Reason)
		}
		freed += d.Entry.Bytes
		report.Deleted = append(report.Deleted, decisionJSON{toJSON(d.Entry), d.Reason})
		if !g.json {
			printDecision(g.stdout, verb, d)
		}
	}
	keep := "kept"
	if f.dryRun {
		keep = "would keep"
	}
	for _, d := range decisions {
		if d.Delete {
			continue
		}
		report.Kept = append(report.Kept, decisionJSON{toJSON(d.Entry), d.Reason})
		if !g.json {
			printDecision(g.stdout, keep, d)
		}
	}
	if len(args) == 0 {
		if report.WAL, err = pruneWAL(ctx, g, store, decisions, f.dryRun); err != nil {
			return err
		}
	}
	printWALPrune(g, verb, report.WAL)
	metrics.deleteDone(cat, report.Deleted, freed, f.dryRun)
	if g.json {
		writeJSON(g.stdout, report)
		return nil
	}
	fmt.Fprintf(g.stdout, "%s %s (%s), %s %d\n", verb, plural(len(report.Deleted), "backup", "backups"), humanBytes(freed), keep, len(report.Kept))
	return nil
}

func printDecision(w io.Writer, verb string, d catalog.Decision) {
	fmt.Fprintf(w, "%s %s  %s  %-10s  %9s  %s\n", verb, d.Entry.ID, formatTime(d.Entry.Time()),
		d.Entry.Status(), humanBytes(d.Entry.Bytes), d.Reason)
}
