// Package engine takes a physical base backup of a running PostgreSQL
// cluster, following PostgreSQL's own basebackup.c: a non-exclusive backup
// in one SQL session, the exclusion rules, one tar archive per tablespace,
// page checksum verification, optional WAL, throttling and progress. The tar
// streams go straight to the uploader; nothing is staged locally.
//
// One file per phase of backupRun.runPhases: backup.go (checks, start),
// plan.go (tablespaces, walkers, estimate), copy.go (workers), final.go
// (stop, WAL, final volume, manifests); archive.go writes the volumes.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"runtime"
	"time"

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
