// Package engine takes a physical base backup of a running PostgreSQL
// cluster, following PostgreSQL's own basebackup.c: a non-exclusive backup
// in one SQL session, the exclusion rules, one tar archive per tablespace,
// page checksum verification, optional WAL, throttling and progress. The tar
// streams go straight to the uploader; nothing is staged locally.
package engine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/pgcloudbackup/pgcloudbackup/codec"
	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
	"github.com/pgcloudbackup/pgcloudbackup/internal/pg/control"
	"github.com/pgcloudbackup/pgcloudbackup/internal/pg/pagecheck"
	"github.com/pgcloudbackup/pgcloudbackup/internal/pg/wal"
	"github.com/pgcloudbackup/pgcloudbackup/internal/progress"
	"github.com/pgcloudbackup/pgcloudbackup/manifest"
	"github.com/pgcloudbackup/pgcloudbackup/storage"
	"github.com/pgcloudbackup/pgcloudbackup/uploader"
)

// Options configure one backup.
type Options struct {
	// DSN is a libpq connection string; "" uses the libpq environment.
	DSN string
	// PGData is the data directory; "" asks the server (data_directory).
	PGData string
	Label  string
	// Fast requests an immediate checkpoint instead of a spread one.
	Fast bool
	// IncludeWAL forces the WAL from start to stop into the backup. By
	// default (neither IncludeWAL nor NoWAL) the backup includes its WAL
	// unless the server provably archives it, so that every backup can be
	// restored by something.
	IncludeWAL bool
	// NoWAL leaves the WAL out: the backup then restores only from a WAL
	// archive.
	NoWAL bool
	// MaxRate limits the data read, in bytes per second (0: unlimited).
	MaxRate int64
	// NoVerifyChecksums turns page checksum verification off.
	NoVerifyChecksums bool
	// Jobs is the number of volumes written concurrently (--jobs).
	Jobs int
	// Progress, if set, is updated as data is copied.
	Progress    *Progress
	Logger      *slog.Logger
	ToolVersion string
	// UploadContext carries the uploads. Cancelling the ctx given to
	// Backup stops the backup gracefully (pipes are closed with an error,
	// which aborts multipart uploads cleanly); cancelling UploadContext is
	// the hard stop. Default: ctx without its cancellation.
	UploadContext context.Context
	// Now returns the current time (tests may fix it).
	Now func() time.Time

	// afterDiscovery, if set, runs once the tablespaces are listed (tests:
	// drop one in the window basebackup.c tolerates).
	afterDiscovery func()
}

// Progress is shared with whoever displays progress.
type Progress = progress.Counter

// bytesPerJob: an archive is written by one job per this much data (up
// to Jobs), each into its own volumes, so small tablespaces stay one
// volume.
const bytesPerJob = 64 << 20

// pingInterval: how often the backup session is checked while copying.
const pingInterval = 5 * time.Second

// backupRun is the state of one backup in progress.
type backupRun struct {
	opts      Options
	logger    *slog.Logger
	store     *storage.Store
	up        *uploader.Uploader
	id        string
	uploadCtx context.Context

	verifyChecksums bool
	verifier        pagecheck.Verifier // set once the backup started
	progress        *Progress
	volumes         volumeOpener

	// groupAccess: the cluster allows group access (PGDATA 0750); files
	// we write get 0640, directories 0750.
	groupAccess bool

	// pgManifestUpload is backup_manifest's upload, open from the copy to
	// the end (written by report.pgManifest).
	pgManifestUpload *uploader.Object
	report           *copyReport
}

func (r *backupRun) objectKey(name string) string { return r.store.BackupKey(r.id, name) }

// newWorker returns a worker that reports to the run.
func (r *backupRun) newWorker() *worker {
	var v *pagecheck.Verifier
	if r.verifyChecksums {
		v = &r.verifier
	}
	return newWorker(r.report, r.logger, v)
}

// Backup takes a base backup into store and returns its manifest. A backup
// that completes with page checksum failures returns the manifest (with
// ChecksumFailuresTotal > 0) and no error; the caller decides the exit code.
// On any error nothing that looks like a complete backup is left behind:
// manifest.json is written last, and the partial objects are removed.
func Backup(ctx context.Context, store *storage.Store, up *uploader.Uploader, opts Options) (_ *manifest.Backup, err error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Jobs <= 0 {
		opts.Jobs = runtime.NumCPU()
	}
	if err := CheckLabel(opts.Label); err != nil {
		return nil, err
	}
	if opts.IncludeWAL && opts.NoWAL {
		return nil, failure.New(failure.Usage, "--wal and --no-wal contradict each other")
	}
	if up == nil {
		return nil, errors.New("engine: no uploader given")
	}
	if opts.UploadContext == nil {
		opts.UploadContext = context.WithoutCancel(ctx)
	}
	logger := opts.Logger

	// The ID is reserved before the server is touched: the reservation is
	// also the check that we may write the bucket, so a bucket we cannot
	// use never costs a checkpoint or puts the server in backup mode.
	if err := store.CheckAccess(ctx); err != nil {
		return nil, err
	}
	res, err := newBackupID(ctx, store, opts.Now())
	if err != nil {
		return nil, err
	}
	id := res.ID
	defer res.Close() // stops refreshing the reservation; the marker stays
	var run *backupRun
	// From here on a failure removes what this backup wrote, and only
	// that (see cleanup).
	defer func() {
		if err != nil {
			cleanup(res, run, opts.UploadContext, logger.With("backup", id), err)
		}
	}()

	s, err := connect(ctx, opts.DSN, logger)
	if err != nil {
		return nil, err
	}
	// Closing the session aborts a backup still in progress on the server:
	// whatever happens below, the server does not stay in backup mode.
	defer s.close()
	if err := s.inspect(ctx); err != nil {
		return nil, err
	}
	pgdata, err := resolveDataDir(opts.PGData, s.info.DataDirectory)
	if err != nil {
		return nil, err
	}
	ctl, err := checkDataDirectory(pgdata, s.info.SystemIdentifier, s.info.Address)
	if err != nil {
		return nil, err
	}
	if pm, err := s.postmaster(ctx); err != nil {
		return nil, err
	} else if err := checkPostmaster(pgdata, pm, s.info.Address); err != nil {
		return nil, err
	}
	run = newBackupRun(store, up, id, opts, s.info)
	return run.runPhases(ctx, s, pgdata, ctl)
}

// newBackupRun sets up the run once the server is checked: the codec, the
// volumes and the reports all come from up and opts.
func newBackupRun(store *storage.Store, up *uploader.Uploader, id string, opts Options, info serverInfo) *backupRun {
	logger := opts.Logger.With("backup", id)
	r := &backupRun{
		opts:            opts,
		logger:          logger,
		store:           store,
		up:              up,
		id:              id,
		uploadCtx:       opts.UploadContext,
		verifyChecksums: info.DataChecksums && !opts.NoVerifyChecksums,
		progress:        opts.Progress,
		volumes: volumeOpener{up: up, uploadCtx: opts.UploadContext, store: store, id: id,
			contentType: archiveContentType(up.Codec())},
		report: &copyReport{logger: logger, progress: opts.Progress},
	}
	if opts.MaxRate > 0 {
		r.volumes.limiter = newThrottle(opts.MaxRate)
	}
	if info.DataChecksums && opts.NoVerifyChecksums {
		r.logger.Info("page checksum verification disabled (--no-verify-checksums)")
	} else if !info.DataChecksums {
		r.logger.Info("data checksums are off in this cluster: pages are not verified")
	}
	return r
}

func resolveDataDir(flag, fromServer string) (string, error) {
	dir := flag
	if dir == "" {
		dir = fromServer
	}
	if dir == "" {
		return "", failure.Wrap(failure.Precondition,
			errors.New("the server does not show its data_directory to this role"),
			"give --pgdata, or connect as a superuser or a member of pg_read_all_settings")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("resolve data directory %s: %w", dir, err)
	}
	return abs, nil
}

// newBackupID reserves a time-sortable ID that no other run can take (see
// storage.Store.Reserve); on a conflict it takes the next one.
func newBackupID(ctx context.Context, store *storage.Store, now time.Time) (*storage.Reservation, error) {
	return store.Reserve(ctx, now)
}

// archiveContentType is the MIME type of the volumes: the codec's, or
// plain tar when they are not compressed.
func archiveContentType(c codec.Codec) string {
	if ct := c.ContentType(); ct != "" {
		return ct
	}
	return "application/x-tar"
}

// runPhases runs the backup proper, phase by phase: start (the WAL
// decision and the checkpoint), plan (tablespaces, walkers, estimate), copy
// (workers writing volumes), finish (stop, final volume, manifests).
func (r *backupRun) runPhases(ctx context.Context, s *session, pgdata string, ctl control.Data) (*manifest.Backup, error) {
	st, err := r.start(ctx, s, pgdata)
	if err != nil {
		return nil, err
	}
	p, err := r.plan(ctx, s, pgdata, ctl)
	if err != nil {
		return nil, err
	}
	if err := r.copy(ctx, s, p); err != nil {
		return nil, err
	}
	return r.finish(ctx, s, p, st)
}

// started is what the start phase settled.
type started struct {
	label      string
	time       time.Time
	lsn        wal.LSN
	includeWAL bool
	archiving  archiveState
}

// start decides whether the backup includes its WAL, then starts it on the
// server (the checkpoint); the page verifier needs its start LSN.
func (r *backupRun) start(ctx context.Context, s *session, pgdata string) (*started, error) {
	includeWAL, archiving, err := r.decideWAL(ctx, s)
	if err != nil {
		return nil, err
	}
	st := &started{label: r.opts.Label, includeWAL: includeWAL, archiving: archiving}
	if st.label == "" {
		st.label = "pgcloudbackup " + r.id
	}
	if !r.opts.Fast {
		r.logger.Info("waiting for the server's checkpoint (spread; --fast asks for an immediate one)")
	}
	r.progress.SetPhase("checkpoint")
	st.time = r.opts.Now().UTC()
	if st.lsn, err = s.start(ctx, st.label, r.opts.Fast); err != nil {
		return nil, err
	}
	r.logger.Info("backup started", "start_lsn", st.lsn.String(), "pgdata", pgdata)
	r.verifier = pagecheck.Verifier{StartLSN: uint64(st.lsn), SegmentBlocks: s.info.SegmentBlocks,
		RelationBlockNumbers: s.info.VersionNum >= 170000}
	return st, nil
}

// backupPlan is what the backup copies.
type backupPlan struct {
	pgdata   string
	archives []*archive // tablespaces by OID, then the data directory
	walkers  map[*archive]*walker
}

// base is the data directory's archive.
func (p *backupPlan) base() *archive { return p.archives[len(p.archives)-1] }

// plan lists the archives (one per tablespace, then the data directory),
// sets up their walkers, and estimates their sizes for progress and volume
// sizing.
func (r *backupRun) plan(ctx context.Context, s *session, pgdata string, ctl control.Data) (*backupPlan, error) {
	info := s.info
	archives, skipContents, err := r.discoverTablespaces(ctx, s, pgdata, info, ctl)
	if err != nil {
		return nil, err
	}
	if r.opts.afterDiscovery != nil {
		r.opts.afterDiscovery()
	}
	if rel := statsTempRel(info.StatsTempDir, pgdata); rel != "" {
		skipContents[rel] = "stats_temp_directory"
	}
	base := &archive{name: storage.BaseArchive, spcName: "pg_default", location: pgdata}
	if r.groupAccess, err = groupAccess(pgdata); err != nil {
		return nil, err
	}
	dirMode := dirCreateMode(r.groupAccess)
	p := &backupPlan{pgdata: pgdata, walkers: map[*archive]*walker{}}
	for _, a := range archives {
		p.walkers[a] = &walker{root: a.location, inTablespace: true, dirMode: dirMode, versionNum: info.VersionNum, logger: r.logger}
	}
	p.walkers[base] = &walker{root: pgdata, skipContents: skipContents, dirMode: dirMode, versionNum: info.VersionNum, logger: r.logger}
	// Tablespaces first and the data directory last, as basebackup.c does,
	// so pg_control is copied after everything else.
	p.archives = append(archives, base)

	r.progress.SetPhase("estimate")
	var total int64
	for _, a := range p.archives {
		if a.estimate, err = estimate(ctx, p.walkers[a], a.walkStart); err != nil {
			return nil, err
		}
		total += a.estimate
	}
	r.progress.SetTotal(total + control.FileSize)
	return p, nil
}

// copy opens backup_manifest and copies every archive, one after the
// other, each with as many jobs as its size warrants.
func (r *backupRun) copy(ctx context.Context, s *session, p *backupPlan) error {
	key := r.objectKey(storage.PGManifestName)
	obj, err := r.up.Open(r.uploadCtx, key, uploader.ObjectOptions{Raw: true, ContentType: "application/json"})
	if err != nil {
		return fmt.Errorf("open %s: %w", key, err)
	}
	r.pgManifestUpload = obj
	version := 1
	if s.info.VersionNum >= 170000 {
		version = 2
	}
	r.report.pgManifest, err = manifest.NewPGManifestWriter(obj, manifest.PGManifestOptions{Version: version, SystemIdentifier: s.info.SystemIdentifier})
	if err != nil {
		return fmt.Errorf("start backup_manifest: %w", err)
	}

	r.progress.SetPhase("copy")
	workers := make([]*worker, r.opts.Jobs)
	for i := range workers {
		workers[i] = r.newWorker()
	}
	for _, a := range p.archives {
		if err := r.copyArchive(ctx, s, a, p.walkers[a], workers); err != nil {
			return err
		}
		// Files grew, shrank, appeared or vanished since the estimate.
		r.progress.AddTotal(a.dataSize() - a.estimate)
	}
	return nil
}

// copyArchive walks one archive and copies it with as many jobs (each
// writing its own volumes) as its size warrants, checking the backup
// session meanwhile.
func (r *backupRun) copyArchive(ctx context.Context, s *session, a *archive, w *walker, workers []*worker) error {
	jobs := int(a.estimate/bytesPerJob) + 1
	if jobs > len(workers) {
		jobs = len(workers)
	}
	hint := a.estimate/int64(jobs) + 1
	r.logger.Debug("archiving", "archive", a.name, "estimate", a.estimate, "jobs", jobs)

	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	g, gctx := errgroup.WithContext(actx)
	entries := make(chan *entry, 256)
	g.Go(func() error {
		defer close(entries)
		err := w.walk(gctx, a.walkStart, func(e *entry) error {
			select {
			case entries <- e:
				return nil
			case <-gctx.Done():
				return context.Cause(gctx)
			}
		})
		if err != nil {
			return fmt.Errorf("walk %s: %w", w.root, err)
		}
		return nil
	})
	for _, wk := range workers[:jobs] {
		g.Go(func() error {
			return wk.archiveEntries(gctx, newVolumeWriter(&r.volumes, a, hint), entries)
		})
	}
	done := make(chan error, 1)
	go func() { done <- g.Wait() }()
	ticker := time.NewTicker(pingInterval)
	defer ticker.Stop()
	for {
		select {
		case err := <-done:
			if err != nil {
				if cause := context.Cause(actx); cause != nil && !errors.Is(cause, context.Canceled) {
					return cause
				}
				if ctx.Err() != nil {
					return context.Cause(ctx)
				}
			}
			return err
		case <-ticker.C:
			if err := s.ping(ctx); err != nil {
				cancel(err)
				<-done
				return err
			}
		}
	}
}

// estimate sums the sizes of the files an archive will hold (a size-only
// walk), for progress and volume sizing.
func estimate(ctx context.Context, w *walker, start string) (int64, error) {
	quiet := *w
	quiet.logger = slog.New(slog.DiscardHandler)
	var total int64
	err := quiet.walk(ctx, start, func(e *entry) error {
		total += e.size
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("estimate size of %s: %w", w.root, err)
	}
	return total, nil
}

// statsTempRel returns stats_temp_directory relative to the data directory
// when it is inside it and not the default (which the name rules cover).
func statsTempRel(setting, pgdata string) string {
	if setting == "" || setting == "pg_stat_tmp" {
		return ""
	}
	p := setting
	if filepath.IsAbs(p) {
		rel, err := filepath.Rel(pgdata, p)
		if err != nil || rel == "." || strings.HasPrefix(rel, "..") {
			return ""
		}
		p = rel
	}
	return filepath.ToSlash(filepath.Clean(p))
}

// discoverTablespaces finds the tablespaces from pg_tblspc's links. A
// tablespace located inside the data directory is kept out of the data
// directory's archive (its directory is stored empty) so it is not backed up
// twice; in-place tablespaces (directories in pg_tblspc) stay in base.
func (r *backupRun) discoverTablespaces(ctx context.Context, s *session, pgdata string, info serverInfo, ctl control.Data) ([]*archive, map[string]string, error) {
	names := map[uint32]string{}
	rows, err := s.conn.Query(ctx, "SELECT oid::bigint, spcname FROM pg_tablespace")
	if err != nil {
		return nil, nil, fmt.Errorf("list tablespaces: %w", err)
	}
	for rows.Next() {
		var oid int64
		var name string
		if err := rows.Scan(&oid, &name); err != nil {
			return nil, nil, fmt.Errorf("list tablespaces: %w", err)
		}
		names[uint32(oid)] = name
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("list tablespaces: %w", err)
	}

	versionDir := fmt.Sprintf("PG_%d_%d", info.VersionNum/10000, ctl.CatalogVersion)
	tblspc := filepath.Join(pgdata, "pg_tblspc")
	dirents, err := os.ReadDir(tblspc)
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", tblspc, err)
	}
	realPGData, err := filepath.EvalSymlinks(pgdata)
	if err != nil {
		return nil, nil, fmt.Errorf("resolve %s: %w", pgdata, err)
	}
	skip := map[string]string{}
	var archives []*archive
	for _, de := range dirents {
		oid, err := strconv.ParseUint(de.Name(), 10, 32)
		if err != nil || de.Type()&fs.ModeSymlink == 0 {
			continue // not a tablespace link (in-place tablespaces are directories)
		}
		link := filepath.Join(tblspc, de.Name())
		target, err := os.Readlink(link)
		if errors.Is(err, fs.ErrNotExist) {
			r.logger.Info("tablespace dropped during the backup", "oid", de.Name())
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("read tablespace link %s: %w", link, err)
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(tblspc, target)
		}
		if _, err := os.Stat(filepath.Join(target, versionDir)); errors.Is(err, fs.ErrNotExist) {
			// Dropped between listing pg_tblspc and now: basebackup.c
			// archives it empty; WAL replay drops it on the restored
			// cluster.
			r.logger.Info("tablespace dropped during the backup: archived empty", "oid", de.Name(), "location", target)
		} else if err != nil {
			return nil, nil, fmt.Errorf("tablespace %s at %s: %w", de.Name(), target, err)
		}
		if real, err := filepath.EvalSymlinks(target); err == nil {
			if rel, err := filepath.Rel(realPGData, real); err == nil && rel != "." && !strings.HasPrefix(rel, "..") {
				skip[filepath.ToSlash(rel)] = "tablespace inside the data directory, archived on its own"
			}
		}
		archives = append(archives, &archive{
			name:           de.Name(),
			oid:            uint32(oid),
			spcName:        names[uint32(oid)],
			location:       target,
			manifestPrefix: manifest.TablespacePath(uint32(oid)) + "/",
			walkStart:      versionDir,
		})
	}
	sort.Slice(archives, func(i, j int) bool { return archives[i].oid < archives[j].oid })
	return archives, skip, nil
}

// cleanup removes what a failed backup wrote, and only that: the objects
// its reservation recorded, their pending multipart uploads, then the
// marker. It runs on the upload context, not the one given to Backup
// (which may be why we are here): a first signal still cleans up, a second
// (hard stop) does not wait for it. run is nil when the backup failed
// before it began copying.
func cleanup(res *storage.Reservation, run *backupRun, uploadCtx context.Context, logger *slog.Logger, cause error) {
	if run != nil && run.pgManifestUpload != nil {
		run.pgManifestUpload.Abort(cause)
	}
	ctx, cancel := context.WithTimeout(uploadCtx, time.Minute)
	defer cancel()
	logger.Debug("removing what the failed backup wrote", "cause", cause)
	n, err := res.Discard(ctx)
	if err != nil {
		logger.Warn(fmt.Sprintf("could not remove everything the failed backup wrote; it stays listed as incomplete ('pgcloudbackup list --all') and 'pgcloudbackup delete %s' removes it", res.ID), "error", err)
		return
	}
	if n > 0 {
		logger.Info("removed the objects of the failed backup", "objects", n)
	}
}
