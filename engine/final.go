package engine

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
	"github.com/pgcloudbackup/pgcloudbackup/internal/pg/backupmanifest"
	"github.com/pgcloudbackup/pgcloudbackup/internal/pg/wal"
	"github.com/pgcloudbackup/pgcloudbackup/manifest"
	"github.com/pgcloudbackup/pgcloudbackup/storage"
	"github.com/pgcloudbackup/pgcloudbackup/uploader"
)

// decideWAL settles, before the backup starts, whether it includes its WAL:
// always with --wal, never with --no-wal, and otherwise unless the server
// provably archives it, so that a backup is restorable by default. A backup
// that includes its WAL reserves it with a temporary replication slot.
func (r *backupRun) decideWAL(ctx context.Context, s *session) (bool, archiveState, error) {
	archive, err := s.archiveStatus(ctx)
	if err != nil {
		return false, archive, err
	}
	include := true
	switch {
	case r.opts.NoWAL && archive.Healthy:
		include = false
		r.logger.Warn("WAL not included (--no-wal): this backup restores only from the server's WAL archive", "archiving", archive.Reason)
	case r.opts.NoWAL:
		include = false
		r.logger.Warn("WAL not included (--no-wal), and the server's WAL is not provably archived: nothing may be able to restore this backup; `verify` will fail it",
			"archiving", archive.Reason)
	case r.opts.IncludeWAL:
		r.logger.Info("including the WAL (--wal)")
	case archive.Healthy:
		include = false
		r.logger.Info("WAL not included: the server archives its WAL, which a restore needs (--wal includes it)", "archiving", archive.Reason)
	default:
		r.logger.Info("including the WAL so the backup restores without an archive", "archiving", archive.Reason)
	}
	if include {
		// Unique on the server even for backups started by one process at
		// the same instant (slot names: [a-z0-9_], at most 63 bytes).
		var nonce [4]byte
		_, _ = rand.Read(nonce[:])
		slot := fmt.Sprintf("pgcloudbackup_%d_%x", os.Getpid(), nonce)
		if err := s.reserveWAL(ctx, slot); err != nil {
			return false, archive, err
		}
	}
	return include, archive, nil
}

// walPlan is the WAL a backup needs: per timeline, from start to stop, and
// the segment files that hold it.
type walPlan struct {
	walDir    string
	spans     []wal.Span // newest timeline first
	files     []wal.SegmentFile
	timelines []uint32 // history of the end timeline
	segSize   int64
	pageSize  int
	sysID     uint64
}

// planWAL finds the timelines the backup's WAL lies on. A standby may have
// followed its upstream to a new timeline during the backup: then the WAL
// is on several timelines, which the end timeline's history file says, as
// basebackup.c reads it.
func (r *backupRun) planWAL(ctx context.Context, s *session, pgdata string, startTLI uint32, start, stop wal.LSN) (*walPlan, error) {
	endTLI, err := s.endTimeline(ctx, startTLI)
	if err != nil {
		return nil, err
	}
	p := &walPlan{walDir: filepath.Join(pgdata, "pg_wal"), segSize: s.info.WALSegmentSize,
		pageSize: s.info.WALBlockSize, sysID: s.info.SystemIdentifier}
	history := []wal.Timeline{{TLI: endTLI}}
	if endTLI > 1 {
		path := filepath.Join(p.walDir, wal.HistoryFileName(endTLI))
		data, err := os.ReadFile(path)
		switch {
		case err == nil:
			if history, err = wal.ParseHistory(endTLI, data); err != nil {
				return nil, fmt.Errorf("read %s: %w", path, err)
			}
		case errors.Is(err, fs.ErrNotExist) && endTLI == startTLI:
			// The history only serves to check the timelines of pages
			// older than the backup; without it, allow any older one.
			r.logger.Debug("no timeline history file; WAL pages of any older timeline accepted", "file", path)
			for tli := uint32(1); tli < endTLI; tli++ {
				history = append(history, wal.Timeline{TLI: tli})
			}
		default:
			return nil, fmt.Errorf("read the history of timeline %d, on which the backup ended: %w", endTLI, err)
		}
	}
	if p.spans, err = wal.BackupSpans(history, startTLI, start, stop); err != nil {
		return nil, fmt.Errorf("backup WAL from %s (timeline %d) to %s (timeline %d): %w", start, startTLI, stop, endTLI, err)
	}
	p.files = wal.SegmentFiles(p.spans, p.segSize)
	for _, t := range history {
		p.timelines = append(p.timelines, t.TLI)
	}
	return p, nil
}

// manifestRanges are backup_manifest's "WAL-Ranges": one per timeline.
func (p *walPlan) manifestRanges() []backupmanifest.WALRange {
	out := make([]backupmanifest.WALRange, 0, len(p.spans))
	for _, s := range p.spans {
		out = append(out, backupmanifest.WALRange{Timeline: s.TLI, Start: s.Start, End: s.End})
	}
	return out
}

// finish ends the backup after the copy: pg_control is read (after every
// other file), the server stops the backup, the final volume gets what
// only the stop gives, then backup_manifest and, last, manifest.json.
func (r *backupRun) finish(ctx context.Context, s *session, p *backupPlan, st *started) (*manifest.Backup, error) {
	// pg_control last: after every other file of the data directory.
	ctl, err := readControlFile(p.pgdata)
	if err != nil {
		return nil, err
	}
	sp, err := r.stop(ctx, s, p, st)
	if err != nil {
		return nil, err
	}

	r.progress.SetPhase("finish")
	fv := finalVolume{base: p.base(), control: ctl, stop: sp.result}
	if st.includeWAL {
		fv.wal = sp.wal
	}
	r.progress.AddTotal(fv.estimate())
	if err := r.writeFinalVolume(ctx, fv); err != nil {
		return nil, err
	}
	pgManifest, err := r.finishPGManifest(sp.wal)
	if err != nil {
		return nil, err
	}
	m := r.describe(s.info, p, st, sp, pgManifest)
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

// stopped is what the server's stop settled.
type stopped struct {
	result stopResult
	time   time.Time
	tli    uint32   // the timeline backup_label names
	wal    *walPlan // the WAL the backup needs, whether included or not
}

// stop ends the backup on the server and finds the WAL it needs.
func (r *backupRun) stop(ctx context.Context, s *session, p *backupPlan, st *started) (*stopped, error) {
	r.progress.SetPhase("stop")
	// Without its WAL the backup relies on the archive: let the server wait
	// until it holds the WAL the backup needs (a failing archiver would
	// make it wait forever, so not then).
	res, err := s.stop(ctx, !st.includeWAL && st.archiving.Healthy)
	if err != nil {
		return nil, err
	}
	sp := &stopped{result: res, time: r.opts.Now().UTC()}
	if sp.tli, err = labelTimeline(res.LabelFile); err != nil {
		return nil, err
	}
	if sp.wal, err = r.planWAL(ctx, s, p.pgdata, sp.tli, st.lsn, res.LSN); err != nil {
		return nil, err
	}
	r.logger.Info("backup stopped", "stop_lsn", res.LSN.String(), "timeline", sp.tli, "end_timeline", sp.wal.spans[0].TLI)
	return sp, nil
}

// describe is the backup's manifest.json: the data directory first, then
// the tablespaces by OID, and the page findings.
func (r *backupRun) describe(info serverInfo, p *backupPlan, st *started, sp *stopped, pgManifest uploader.Result) *manifest.Backup {
	dir := r.objectKey("")
	m := &manifest.Backup{
		FormatVersion:     manifest.FormatVersion,
		ID:                r.id,
		Label:             st.label,
		Status:            manifest.StatusComplete,
		ToolVersion:       r.opts.ToolVersion,
		PGVersion:         info.Version,
		PGVersionNum:      info.VersionNum,
		SystemIdentifier:  strconv.FormatUint(info.SystemIdentifier, 10),
		Timeline:          sp.tli,
		StartLSN:          st.lsn,
		StopLSN:           sp.result.LSN,
		StartTime:         st.time,
		StopTime:          sp.time,
		WALIncluded:       st.includeWAL,
		WALArchive:        st.archiving.Status,
		Compression:       r.up.Codec().Name(),
		ChecksumsVerified: r.verifyChecksums,
		BackupManifest:    manifestObject(pgManifest, dir),
	}
	m.Tablespaces = append(m.Tablespaces, p.base().manifestEntry(dir))
	for _, a := range p.archives[:len(p.archives)-1] {
		m.Tablespaces = append(m.Tablespaces, a.manifestEntry(dir))
	}
	r.report.fill(m)
	return m
}

// controlFile is pg_control as read at the end of the copy.
type controlFile struct {
	info fs.FileInfo
	data []byte
}

func readControlFile(pgdata string) (controlFile, error) {
	path := filepath.Join(pgdata, "global", "pg_control")
	info, err := os.Lstat(path)
	if err != nil {
		return controlFile{}, fmt.Errorf("stat %s: %w", path, err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return controlFile{}, fmt.Errorf("read %s: %w", path, err)
	}
	return controlFile{info: info, data: data}, nil
}

// finishPGManifest ends backup_manifest with its WAL ranges and completes
// its upload.
func (r *backupRun) finishPGManifest(wl *walPlan) (uploader.Result, error) {
	if err := r.report.pgManifest.Finish(wl.manifestRanges()); err != nil {
		return uploader.Result{}, fmt.Errorf("finish backup_manifest: %w", err)
	}
	obj := r.pgManifestUpload
	r.pgManifestUpload = nil
	res, err := obj.Close()
	if err != nil {
		return uploader.Result{}, fmt.Errorf("upload %s: %w", r.objectKey(storage.PGManifestName), err)
	}
	return res, nil
}

// finalVolume is the last volume of the data directory's archive, written
// after the backup stopped.
type finalVolume struct {
	base    *archive
	control controlFile // read after every other file
	stop    stopResult  // backup_label and tablespace_map
	wal     *walPlan    // nil: the WAL is not included
}

// estimate is what the final volume adds to the progress total besides
// pg_control (counted from the start): backup_label, tablespace_map and
// the WAL segments it includes.
func (f *finalVolume) estimate() int64 {
	n := int64(len(f.stop.LabelFile) + len(f.stop.TablespaceMap))
	if f.wal != nil {
		n += int64(len(f.wal.files)) * f.wal.segSize
	}
	return n
}

// writeFinalVolume writes the final volume: backup_label and
// tablespace_map as pg_backup_stop returned them, pg_control, and, when
// the WAL is included, the WAL from start to stop plus the timeline
// history files.
func (r *backupRun) writeFinalVolume(ctx context.Context, f finalVolume) (err error) {
	hint := int64(64 << 10)
	if f.wal != nil {
		hint += int64(len(f.wal.files)) * f.wal.segSize
	}
	vw := newVolumeWriter(&r.volumes, f.base, hint)
	defer func() {
		if err != nil {
			vw.abort(err)
		}
	}()
	w := r.newWorker()

	// Injected files take the data directory owner's identity.
	owner := fileEntry("", f.control.info)
	injected := func(name string, mode fs.FileMode) *entry {
		e := *owner
		e.name, e.mode, e.mtime = name, injectedMode(mode, r.groupAccess), r.opts.Now()
		return &e
	}
	if err := w.putBytes(ctx, vw, injected("backup_label", 0o600), []byte(f.stop.LabelFile), true); err != nil {
		return err
	}
	if f.stop.TablespaceMap != "" {
		if err := w.putBytes(ctx, vw, injected("tablespace_map", 0o600), []byte(f.stop.TablespaceMap), true); err != nil {
			return err
		}
	}
	ctl := fileEntry("global/pg_control", f.control.info)
	if err := w.putBytes(ctx, vw, ctl, f.control.data, true); err != nil {
		return err
	}
	if f.wal != nil {
		if err := w.addWAL(ctx, vw, f.wal, injected); err != nil {
			return err
		}
	}
	return vw.close()
}

func fileEntry(name string, info fs.FileInfo) *entry {
	e := &entry{kind: kindFile, name: name, mode: info.Mode().Perm(), mtime: info.ModTime(), size: info.Size()}
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		e.uid, e.gid = int(st.Uid), int(st.Gid)
	}
	return e
}

// addWAL stores the backup's WAL segments from pg_wal, oldest first, each
// checked page by page as it is stored, then the timeline history files.
// Each gets an archive_status ".done" marker, written only once the file is
// stored, so a restored server does not archive them again.
func (w *worker) addWAL(ctx context.Context, vw *volumeWriter, wl *walPlan, injected func(string, fs.FileMode) *entry) error {
	var magic uint16
	for _, f := range wl.files {
		name := f.Name(wl.segSize)
		pc := wal.NewPageChecker(wal.PageCheck{File: f, SegSize: wl.segSize, PageSize: wl.pageSize,
			SysID: wl.sysID, Magic: magic, Timelines: wl.timelines})
		if err := w.putWALSegment(ctx, vw, filepath.Join(wl.walDir, name), name, wl.segSize, pc); err != nil {
			return err
		}
		magic = pc.Magic()
		if err := w.putBytes(ctx, vw, injected("pg_wal/archive_status/"+name+".done", 0o600), nil, false); err != nil {
			return err
		}
	}
	// All history files: small, and the newest may be needed for recovery.
	dirents, err := os.ReadDir(wl.walDir)
	if err != nil {
		return fmt.Errorf("read %s: %w", wl.walDir, err)
	}
	var history []string
	for _, de := range dirents {
		if wal.IsHistoryFileName(de.Name()) {
			history = append(history, de.Name())
		}
	}
	sort.Strings(history)
	for _, name := range history {
		src := filepath.Join(wl.walDir, name)
		st, err := os.Stat(src)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("stat %s: %w", src, err)
		}
		e := fileEntry("pg_wal/"+name, st)
		e.src = src
		if err := w.put(ctx, vw, e, false); err != nil {
			return err
		}
		if err := w.putBytes(ctx, vw, injected("pg_wal/archive_status/"+name+".done", 0o600), nil, false); err != nil {
			return err
		}
	}
	w.logger.Info("WAL included", "segments", len(wl.files), "history_files", len(history))
	return nil
}

// putWALSegment stores one WAL segment through a single file handle,
// passing every byte through the page checker before it is stored: what is
// checked is what is stored. A segment that is missing, has the wrong
// size, shrinks or whose pages are not the ones the backup needs (recycled
// for a later segment meanwhile) fails the backup.
func (w *worker) putWALSegment(ctx context.Context, vw *volumeWriter, src, name string, segSize int64, pc *wal.PageChecker) error {
	f, err := os.Open(src)
	if errors.Is(err, fs.ErrNotExist) {
		return failure.Wrap(failure.Failed, fmt.Errorf("WAL segment %s needed by the backup is not in pg_wal", name),
			"the server removed or recycled it; a backup that includes its WAL reserves it with a replication slot, so this is unexpected: try again")
	}
	if err != nil {
		return fmt.Errorf("open WAL segment %s: %w", src, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat WAL segment %s: %w", src, err)
	}
	if st.Size() != segSize {
		return fmt.Errorf("WAL segment %s has size %d, expected %d", src, st.Size(), segSize)
	}
	_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_SEQUENTIAL)
	e := fileEntry("pg_wal/"+name, st)
	tarHeader(&w.hdr, e)
	if err := vw.header(ctx, &w.hdr); err != nil {
		return err
	}
	for off := int64(0); off < segSize; {
		if err := ctx.Err(); err != nil {
			return err
		}
		chunk := w.buf[:min(int64(len(w.buf)), segSize-off)]
		if _, err := io.ReadFull(f, chunk); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
				return fmt.Errorf("WAL segment %s shrank while it was read", src)
			}
			return fmt.Errorf("read %s: %w", src, err)
		}
		if _, err := pc.Write(chunk); err != nil {
			return failure.Wrap(failure.Failed, err, "the WAL the backup needs changed under it; take the backup again")
		}
		// vw throttles: every byte of the archive stream counts.
		if _, err := vw.Write(chunk); err != nil {
			return fmt.Errorf("archive %s: %w", src, err)
		}
		off += int64(len(chunk))
		w.out.copied(int64(len(chunk)))
	}
	if err := pc.Done(); err != nil {
		return err
	}
	vw.arc.addFile(segSize)
	return nil
}
