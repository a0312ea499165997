package main

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pgcloudbackup/pgcloudbackup/internal/progress"
	"github.com/pgcloudbackup/pgcloudbackup/restore"
)

type restoreFlags struct {
	target         string
	tablespaceMap  []string
	jobs           int
	memory         string
	overwrite      bool
	recovery       bool
	standby        bool
	restoreCommand string
	owner          string
	progress       bool
	pitr           pitrFlags
	conf           restore.ConfOptions
}

func newRestoreCommand(g *globalOptions) *cobra.Command {
	f := &restoreFlags{}
	cmd := &cobra.Command{
		Use:   "restore <id|latest> --target DIR",
		Short: "Restore a backup into a new data directory",
		Long: `Restore a backup into a data directory PostgreSQL starts from.

The archive objects are downloaded in parallel, checked (size and SHA-256
against manifest.json, every file's size and CRC32C against backup_manifest),
decompressed and extracted. Tablespaces go back to their original locations
unless moved with --tablespace-map OID=DIR; pg_tblspc links and
tablespace_map follow. backup_manifest is written into the data directory so
pg_verifybackup can check it. The target (and each tablespace location) must
be absent or empty; archive entries that would leave them are refused. On
failure nothing of the partial restore is left behind.

Point-in-time recovery: --target-time, --target-lsn, --target-xid or
--target-name (with --target-action and --target-timeline), or plain
--recovery / --standby, write recovery.signal (standby.signal) and a
restore_command running this program's wal-fetch on the same bucket.
"latest" is then the newest backup that can reach the target. The restored
server gets archive_mode = off unless --archive-mode preserve.

Every check comes before the first change. A restore never touches anything
of a running PostgreSQL server (data directory, tablespaces, WAL directory),
wherever it sits. --overwrite empties only the directories you named: the
target and the locations given with --tablespace-map; an original tablespace
location from the backup must be absent or empty.

Run it as the OS user that will run the server, or as root: files then
belong to --owner USER, or by default to the owner of the target's parent
directory (the backup's numeric owners when that is root).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRestore(cmd.Context(), g, f, args[0], cmd.Flags().Changed("jobs"))
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.target, "target", "D", "", "data directory to create (absent or empty)")
	fl.StringArrayVarP(&f.tablespaceMap, "tablespace-map", "T", nil, "move a tablespace: OID=DIR (repeatable)")
	fl.IntVarP(&f.jobs, "jobs", "j", runtime.NumCPU(), "objects downloaded and extracted at once")
	fl.StringVar(&f.memory, "memory", "", "memory budget, e.g. 32MiB: jobs left at its default shrinks to fit (default: jobs × 4MiB + files × 96 bytes + 20MiB)")
	fl.BoolVar(&f.overwrite, "overwrite", false, "empty the target and --tablespace-map directories first (never an original tablespace location, never a running server's files)")
	fl.BoolVar(&f.recovery, "recovery", false, "write recovery.signal (recover from the archive, then promote)")
	fl.BoolVar(&f.standby, "standby", false, "write standby.signal (start as a standby)")
	fl.StringVar(&f.restoreCommand, "restore-command", "", "restore_command to write to postgresql.auto.conf (needs --recovery or --standby)")
	fl.StringVar(&f.owner, "owner", "", "as root: USER[:GROUP] to own the restored files (default: the owner of the target's parent directory)")
	fl.BoolVarP(&f.progress, "progress", "P", false, "show progress")
	addPITRFlags(cmd, &f.pitr)
	fl.IntVar(&f.conf.Port, "port", 0, "port for the restored server (written to postgresql.auto.conf)")
	fl.StringVar(&f.conf.SocketDir, "socket-dir", "", "unix_socket_directories for the restored server (postgresql.auto.conf)")
	fl.StringVar(&f.conf.PrimaryConnInfo, "primary-conninfo", "", "with --standby: primary_conninfo to stream from (keep passwords in the standby's .pgpass)")
	return cmd
}

func parseTablespaceMap(specs []string) (map[uint32]string, error) {
	out := map[uint32]string{}
	for _, s := range specs {
		oid, dir, ok := strings.Cut(s, "=")
		n, err := strconv.ParseUint(oid, 10, 32)
		if !ok || err != nil || dir == "" {
			return nil, usageError("--tablespace-map %q: want OID=DIR", s)
		}
		if _, dup := out[uint32(n)]; dup {
			return nil, usageError("--tablespace-map: OID %d given twice", n)
		}
		out[uint32(n)] = dir
	}
	return out, nil
}

func runRestore(ctx context.Context, g *globalOptions, f *restoreFlags, ref string, jobsSet bool) error {
	if f.target == "" {
		return usageError("restore needs --target DIR")
	}
	// First: a recovery target turns on --recovery and brings the
	// restore_command running wal-fetch, which the options below carry.
	if err := preparePITR(g, f); err != nil {
		return err
	}
	opts := restore.Options{
		Target:         f.target,
		Jobs:           f.jobs,
		Overwrite:      f.overwrite,
		Recovery:       f.recovery,
		Standby:        f.standby,
		RestoreCommand: f.restoreCommand,
		Owner:          f.owner,
		Logger:         g.logger,
	}
	if err := restore.CheckOptions(opts); err != nil {
		return err
	}
	if err := checkJobs(f.jobs); err != nil {
		return err
	}
	memLimit, err := parseMemory(f.memory)
	if err != nil {
		return err
	}
	// Checked before the bucket is read, without the file term, so a
	// budget too small for the jobs alone is refused at once.
	if _, _, err := fitRestore(memLimit, f.jobs, jobsSet, 0); err != nil {
		return err
	}
	tsMap, err := parseTablespaceMap(f.tablespaceMap)
	if err != nil {
		return err
	}
	// Checked before anything is restored: a bad value changes nothing.
	confSettings, err := f.conf.Settings(f.standby)
	if err != nil {
		return err
	}
	store, e, err := findRestoreBackup(ctx, g, ref, f.pitr.target, f.recovery || f.standby)
	if err != nil {
		if ctx.Err() != nil {
			return interruptedError("restore", ctx)
		}
		return err
	}
	defer store.Close()
	m := e.Manifest
	var counts []int64
	for _, ts := range m.Tablespaces {
		counts = append(counts, ts.Files)
	}
	jobs, budget, err := fitRestore(memLimit, f.jobs, jobsSet, sumFiles(counts))
	if err != nil {
		return err
	}
	f.jobs = jobs
	opts.Jobs = jobs
	// Opening the bucket released the start-up pages; those only finding
	// the backup used (catalog, manifest.json) leave before the restore's
	// work too.
	releaseStartupPages()
	defer setRunMemory(budget, restoreGCPercent)()
	if dropped, err := dropFetchForStreaming(ctx, g, store, f); err != nil {
		return err
	} else if dropped {
		opts.RestoreCommand = ""
	}
	counter := &progress.Counter{}
	stop := startProgress(g, counter, f.progress)
	began := time.Now()
	g.logger.Info("restore starting", "id", m.ID, "target", f.target)
	opts.TablespaceMap = tsMap
	opts.Progress = counter
	res, err := restore.Restore(ctx, store, m, opts)
	stop()
	if err != nil {
		return err
	}
	if err := restore.AppendAutoConf(res.Target, "added by pgcloudbackup restore of backup "+m.ID, append(pitrSettings(f), confSettings...)); err != nil {
		return fmt.Errorf("backup %s restored into %s, but its settings were not written (add them to postgresql.auto.conf by hand): %w", m.ID, res.Target, err)
	}
	elapsed := time.Since(began)
	g.logger.Info("restore complete", "id", m.ID, "target", res.Target, "elapsed", humanDuration(elapsed))
	if g.json {
		writeJSON(g.stdout, map[string]any{"status": "restored", "id": m.ID, "restore": res})
		return nil
	}
	fmt.Fprintf(g.stdout, "backup %s restored into %s in %s (%s, %d files)\n", m.ID, res.Target, humanDuration(elapsed), humanBytes(res.Bytes), res.Files)
	for oid, dir := range res.Tablespaces {
		fmt.Fprintf(g.stdout, "  tablespace %s: %s\n", oid, dir)
	}
	if res.Signal != "" {
		fmt.Fprintf(g.stdout, "  %s written\n", res.Signal)
	}
	return nil
}
