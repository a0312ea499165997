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
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
	"github.com/pgcloudbackup/pgcloudbackup/internal/pg/backupmanifest"
	"github.com/pgcloudbackup/pgcloudbackup/internal/pg/wal"
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

// writeFinalPart writes the last part of the data directory's archive, after
// the backup stopped: backup_label and tablespace_map as pg_backup_stop
// returned them, pg_control (read after every other file), and, when wl is
// not nil, the WAL from start to stop plus the timeline history files.
func (r *backupRun) writeFinalPart(ctx context.Context, base *archive, controlInfo fs.FileInfo,
	control []byte, stop stopResult, wl *walPlan) (err error) {
	hint := int64(64 << 10)
	if wl != nil {
		hint += int64(len(wl.files)) * wl.segSize
	}
	pw := newPartWriter(r, base, hint)
	defer func() {
		if err != nil {
			pw.abort(err)
		}
	}()
	w := newWorker(r)

	// Injected files take the data directory owner's identity.
	owner := fileEntry("", controlInfo)
	injected := func(name string, mode fs.FileMode) *entry {
		e := *owner
		e.name, e.mode, e.mtime = name, injectedMode(mode, r.groupAccess), r.opts.Now()
		return &e
	}
	if err := w.putBytes(ctx, pw, injected("backup_label", 0o600), []byte(stop.LabelFile), true); err != nil {
		return err
	}
	if stop.TablespaceMap != "" {
		if err := w.putBytes(ctx, pw, injected("tablespace_map", 0o600), []byte(stop.TablespaceMap), true); err != nil {
			return err
		}
	}
	ctl := fileEntry("global/pg_control", controlInfo)
	if err := w.putBytes(ctx, pw, ctl, control, true); err != nil {
		return err
	}
	if wl != nil {
		if err := r.addWAL(ctx, w, pw, wl, injected); err != nil {
			return err
		}
	}
	return pw.close()
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
func (r *backupRun) addWAL(ctx context.Context, w *worker, pw *partWriter, wl *walPlan,
	injected func(string, fs.FileMode) *entry) error {
	var magic uint16
	for _, f := range wl.files {
		name := f.Name(wl.segSize)
		pc := wal.NewPageChecker(wal.PageCheck{File: f, SegSize: wl.segSize, PageSize: wl.pageSize,
			SysID: wl.sysID, Magic: magic, Timelines: wl.timelines})
		if err := w.putWALSegment(ctx, pw, filepath.Join(wl.walDir, name), name, wl.segSize, pc); err != nil {
			return err
		}
		magic = pc.Magic()
		if err := w.putBytes(ctx, pw, injected("pg_wal/archive_status/"+name+".done", 0o600), nil, false); err != nil {
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
		if err := w.put(ctx, pw, e, false); err != nil {
			return err
		}
		if err := w.putBytes(ctx, pw, injected("pg_wal/archive_status/"+name+".done", 0o600), nil, false); err != nil {
			return err
		}
	}
	r.logger.Info("WAL included", "segments", len(wl.files), "history_files", len(history))
	return nil
}

// putWALSegment stores one WAL segment through a single file handle,
// passing every byte through the page checker before it is stored: what is
// checked is what is stored. A segment that is missing, has the wrong
// size, shrinks or whose pages are not the ones the backup needs (recycled
// for a later segment meanwhile) fails the backup.
func (w *worker) putWALSegment(ctx context.Context, pw *partWriter, src, name string, segSize int64, pc *wal.PageChecker) error {
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
	if err := pw.header(ctx, &w.hdr); err != nil {
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
		// pw throttles: every byte of the archive stream counts.
		if _, err := pw.Write(chunk); err != nil {
			return fmt.Errorf("archive %s: %w", src, err)
		}
		off += int64(len(chunk))
		w.run.progress.Add(int64(len(chunk)))
	}
	if err := pc.Done(); err != nil {
		return err
	}
	pw.arc.addFile(segSize)
	return nil
}
