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
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/pgcloudbackup/pgcloudbackup/codec"
	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
	"github.com/pgcloudbackup/pgcloudbackup/internal/pg/backupmanifest"
	"github.com/pgcloudbackup/pgcloudbackup/internal/pg/control"
	"github.com/pgcloudbackup/pgcloudbackup/internal/pg/pagecheck"
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
	// Jobs is the number of archive parts written concurrently.
	Jobs int
	// Codec compresses the archives (it only names them here; the
	// uploader compresses).
	Codec codec.Codec
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

// laneBytes: an archive gets one concurrent part per this much data (up to
// Jobs), so small tablespaces stay one object.
const laneBytes = 64 << 20

// pingInterval: how often the backup session is checked while copying.
const pingInterval = 5 * time.Second

// backupRun is the state of one backup in progress.
type backupRun struct {
	opts        Options
	logger      *slog.Logger
	store       *storage.Store
	up          *uploader.Uploader
	id          string
	uploadCtx   context.Context
	ext         string
	contentType string

	verifyChecksums bool
	verifier        pagecheck.Verifier
	limiter         *rate.Limiter
	progress        *Progress

	// groupAccess: the cluster allows group access (PGDATA 0750); files
	// we write get 0640, directories 0750.
	groupAccess bool

	pgm    *backupmanifest.Writer
	pgmObj *uploader.Object

	mu            sync.Mutex
	failures      []manifest.ChecksumFailure
	failuresTotal int64
	pages         pageReport // new pages with data, partial pages
}

func (r *backupRun) objectKey(name string) string { return r.store.BackupKey(r.id, name) }

func (r *backupRun) addChecksumFailure(path string, count int64, blocks []uint32) {
	r.logger.Warn("page checksum verification failed", "file", path, "failures", count, "blocks", manifest.FormatBlocks(blocks, 20))
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failures = append(r.failures, manifest.ChecksumFailure{Path: path, Count: count, Blocks: append([]uint32(nil), blocks...)})
	r.failuresTotal += count
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
	if opts.Codec == nil {
		return nil, errors.New("engine: no codec given")
	}
	if err := CheckLabel(opts.Label); err != nil {
		return nil, err
	}
	if opts.IncludeWAL && opts.NoWAL {
		return nil, failure.New(failure.Usage, "--wal and --no-wal contradict each other")
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
	run = &backupRun{
		opts:            opts,
		logger:          logger.With("backup", id),
		store:           store,
		up:              up,
		id:              id,
		uploadCtx:       opts.UploadContext,
		ext:             opts.Codec.Ext(),
		contentType:     archiveContentType(opts.Codec),
		verifyChecksums: s.info.DataChecksums && !opts.NoVerifyChecksums,
		progress:        opts.Progress,
	}
	if opts.MaxRate > 0 {
		run.limiter = newThrottle(opts.MaxRate)
	}
	if s.info.DataChecksums && opts.NoVerifyChecksums {
		run.logger.Info("page checksum verification disabled (--no-verify-checksums)")
	} else if !s.info.DataChecksums {
		run.logger.Info("data checksums are off in this cluster: pages are not verified")
	}
	return run.take(ctx, s, pgdata, ctl)
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

// archiveContentType is the MIME type of the archive parts: the codec's, or
// plain tar when they are not compressed.
func archiveContentType(c codec.Codec) string {
	if ct := c.ContentType(); ct != "" {
		return ct
	}
	return "application/x-tar"
}

// take runs the backup proper: start, copy, stop, WAL, manifests.
func (r *backupRun) take(ctx context.Context, s *session, pgdata string, ctl control.Data) (*manifest.Backup, error) {
	opts := r.opts
	info := s.info
	includeWAL, archiving, err := r.decideWAL(ctx, s)
	if err != nil {
		return nil, err
	}
	label := opts.Label
	if label == "" {
		label = "pgcloudbackup " + r.id
	}
	if !opts.Fast {
		r.logger.Info("waiting for the server's checkpoint (spread; --fast asks for an immediate one)")
	}
	r.progress.SetPhase("checkpoint")
	startTime := opts.Now().UTC()
	startLSN, err := s.start(ctx, label, opts.Fast)
	if err != nil {
		return nil, err
	}
	r.logger.Info("backup started", "start_lsn", startLSN.String(), "pgdata", pgdata)
	r.verifier = pagecheck.Verifier{StartLSN: uint64(startLSN), SegmentBlocks: info.SegmentBlocks,
		RelationBlockNumbers: info.VersionNum >= 170000}

	archives, skipContents, err := r.discoverTablespaces(ctx, s, pgdata, info, ctl)
	if err != nil {
		return nil, err
	}
	if opts.afterDiscovery != nil {
		opts.afterDiscovery()
	}
	if rel := statsTempRel(info.StatsTempDir, pgdata); rel != "" {
		skipContents[rel] = "stats_temp_directory"
	}
	base := &archive{name: "base", spcName: "pg_default", location: pgdata}
	if r.groupAccess, err = groupAccess(pgdata); err != nil {
		return nil, err
	}
	dirMode := dirCreateMode(r.groupAccess)
	walkers := map[*archive]*walker{}
	for _, a := range archives {
		walkers[a] = &walker{root: a.location, inTablespace: true, dirMode: dirMode, versionNum: info.VersionNum, logger: r.logger}
	}
	walkers[base] = &walker{root: pgdata, skipContents: skipContents, dirMode: dirMode, versionNum: info.VersionNum, logger: r.logger}
	// Tablespaces first and the data directory last, as basebackup.c does,
	// so pg_control is copied after everything else.
	archives = append(archives, base)

	r.progress.SetPhase("estimate")
	var total int64
	for _, a := range archives {
		if a.estimate, err = estimate(ctx, walkers[a], a.walkStart); err != nil {
			return nil, err
		}
		total += a.estimate
	}
	r.progress.SetTotal(total + control.FileSize)

	pgmKey := r.objectKey(storage.PGManifestName)
	r.pgmObj, err = r.up.Open(r.uploadCtx, pgmKey, uploader.ObjectOptions{Raw: true, ContentType: "application/json"})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", pgmKey, err)
	}
	r.pgm, err = backupmanifest.NewWriter(r.pgmObj, backupmanifest.Options{Version: backupmanifest.VersionFor(info.VersionNum), SystemIdentifier: info.SystemIdentifier})
	if err != nil {
		return nil, fmt.Errorf("start backup_manifest: %w", err)
	}

	r.progress.SetPhase("copy")
	workers := make([]*worker, r.opts.Jobs)
	for i := range workers {
		workers[i] = newWorker(r)
	}
	for _, a := range archives {
		if err := r.copyArchive(ctx, s, a, walkers[a], workers); err != nil {
			return nil, err
		}
		// Files grew, shrank, appeared or vanished since the estimate.
		r.progress.AddTotal(a.dataSize() - a.estimate)
	}

	// pg_control last: after every other file of the data directory.
	controlPath := filepath.Join(pgdata, "global", "pg_control")
	controlInfo, err := os.Lstat(controlPath)
	if err != nil {
		return nil, fmt.Errorf("stat %s: %w", controlPath, err)
	}
	controlBytes, err := os.ReadFile(controlPath)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", controlPath, err)
	}

	r.progress.SetPhase("stop")
	// Without its WAL the backup relies on the archive: let the server wait
	// until it holds the WAL the backup needs (a failing archiver would
	// make it wait forever, so not then).
	stop, err := s.stop(ctx, !includeWAL && archiving.Healthy)
	if err != nil {
		return nil, err
	}
	stopTime := opts.Now().UTC()
	tli, err := labelTimeline(stop.LabelFile)
	if err != nil {
		return nil, err
	}
	wl, err := r.planWAL(ctx, s, pgdata, tli, startLSN, stop.LSN)
	if err != nil {
		return nil, err
	}
	r.logger.Info("backup stopped", "stop_lsn", stop.LSN.String(), "timeline", tli, "end_timeline", wl.spans[0].TLI)

	r.progress.SetPhase("finish")
	included := wl
	if !includeWAL {
		included = nil
	}
	r.progress.AddTotal(finalPartEstimate(stop, included))
	if err := r.writeFinalPart(ctx, base, controlInfo, controlBytes, stop, included); err != nil {
		return nil, err
	}
	if err := r.pgm.Finish(wl.manifestRanges()); err != nil {
		return nil, fmt.Errorf("finish backup_manifest: %w", err)
	}
	pgmObj := r.pgmObj
	r.pgmObj = nil
	pgmRes, err := pgmObj.Close()
	if err != nil {
		return nil, fmt.Errorf("upload %s: %w", pgmKey, err)
	}

	m := &manifest.Backup{
		FormatVersion:     manifest.FormatVersion,
		ID:                r.id,
		Label:             label,
		Status:            manifest.StatusComplete,
		ToolVersion:       opts.ToolVersion,
		PGVersion:         info.Version,
		PGVersionNum:      info.VersionNum,
		SystemIdentifier:  strconv.FormatUint(info.SystemIdentifier, 10),
		Timeline:          tli,
		StartLSN:          startLSN,
		StopLSN:           stop.LSN,
		StartTime:         startTime,
		StopTime:          stopTime,
		WALIncluded:       includeWAL,
		WALArchive:        archiving.Status,
		Compression:       opts.Codec.Name(),
		ChecksumsVerified: r.verifyChecksums,
		BackupManifest:    manifestObject(pgmRes, r.objectKey("")),
	}
	// Data directory first in the manifest, then tablespaces by OID.
	m.Tablespaces = append(m.Tablespaces, base.manifestEntry(r.objectKey("")))
	for _, a := range archives[:len(archives)-1] {
		m.Tablespaces = append(m.Tablespaces, a.manifestEntry(r.objectKey("")))
	}
	r.mu.Lock()
	m.ChecksumFailures = r.failures
	m.ChecksumFailuresTotal = r.failuresTotal
	r.mu.Unlock()
	sort.Slice(m.ChecksumFailures, func(i, j int) bool { return m.ChecksumFailures[i].Path < m.ChecksumFailures[j].Path })
	r.pages.fill(m)

	data, err := m.Marshal()
	if err != nil {
		return nil, fmt.Errorf("encode manifest.json: %w", err)
	}
	// The manifest is written LAST: its presence is what makes the backup
	// exist.
	key := r.objectKey(storage.ManifestName)
	if _, err := r.up.Put(r.uploadCtx, key, data, "application/json"); err != nil {
		return nil, fmt.Errorf("upload %s: %w", key, err)
	}
	r.progress.Finish()
	r.progress.SetPhase("done")
	return m, nil
}

// copyArchive walks one archive and copies it with as many concurrent part
// writers as its size warrants, checking the backup session meanwhile.
func (r *backupRun) copyArchive(ctx context.Context, s *session, a *archive, w *walker, workers []*worker) error {
	lanes := int(a.estimate/laneBytes) + 1
	if lanes > len(workers) {
		lanes = len(workers)
	}
	hint := a.estimate/int64(lanes) + 1
	r.logger.Debug("archiving", "archive", a.name, "estimate", a.estimate, "parts", lanes)

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
	for i := 0; i < lanes; i++ {
		wk := workers[i]
		g.Go(func() error {
			return wk.archiveEntries(gctx, newPartWriter(r, a, hint), entries)
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

// estimate sums the sizes of the files an archive will hold (the seed's
// size-only walk), for progress and part sizing.
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
			manifestPrefix: backupmanifest.TablespacePath(uint32(oid)) + "/",
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
	if run != nil && run.pgmObj != nil {
		run.pgmObj.Abort(cause)
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
