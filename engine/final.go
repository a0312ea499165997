package engine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"syscall"

	"github.com/pgcloudbackup/pgcloudbackup/engine/wal"
	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
)

// writeFinalPart writes the last part of the data directory's archive, after
// the backup stopped: backup_label and tablespace_map as pg_backup_stop
// returned them, pg_control (read after every other file), and with --wal
// the WAL from start to stop plus the timeline history files.
func (r *backupRun) writeFinalPart(ctx context.Context, base *archive, pgdata string, controlInfo fs.FileInfo,
	control []byte, stop stopResult, tli uint32, start wal.LSN, info serverInfo) (err error) {
	var segments []string
	var rng wal.Range
	if r.opts.IncludeWAL {
		if rng, err = wal.RangeFor(tli, start, stop.LSN, info.WALSegmentSize); err != nil {
			return err
		}
		segments = rng.Names(info.WALSegmentSize)
	}
	hint := int64(len(segments))*info.WALSegmentSize + 64<<10
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
	if r.opts.IncludeWAL {
		if err := r.addWAL(ctx, w, pw, pgdata, rng, info, injected); err != nil {
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

// addWAL copies the backup's WAL segments from pg_wal, checking each is
// there, has the right size and really is that segment (not a recycled
// file), then the timeline history files; each gets an archive_status
// ".done" marker so a restored server does not archive them again.
func (r *backupRun) addWAL(ctx context.Context, w *worker, pw *partWriter, pgdata string, rng wal.Range,
	info serverInfo, injected func(string, fs.FileMode) *entry) error {
	walDir := filepath.Join(pgdata, "pg_wal")
	header := make([]byte, 64)
	seg := rng.First
	for _, name := range rng.Names(info.WALSegmentSize) {
		src := filepath.Join(walDir, name)
		f, err := os.Open(src)
		if errors.Is(err, fs.ErrNotExist) {
			return failure.Wrap(failure.Failed, fmt.Errorf("WAL segment %s needed by the backup is gone from pg_wal", name),
				"the server recycled it: allow a replication slot (max_replication_slots) or raise wal_keep_size")
		}
		if err != nil {
			return fmt.Errorf("open WAL segment %s: %w", src, err)
		}
		st, err := f.Stat()
		if err == nil && st.Size() != info.WALSegmentSize {
			err = fmt.Errorf("WAL segment %s has size %d, expected %d", src, st.Size(), info.WALSegmentSize)
		}
		if err == nil {
			if _, err = f.ReadAt(header, 0); err == nil {
				if cerr := wal.CheckSegment(header, seg, info.WALSegmentSize, info.SystemIdentifier); cerr != nil {
					err = fmt.Errorf("WAL segment %s: %w", src, cerr)
				}
			}
		}
		f.Close()
		if err != nil {
			return err
		}
		if err := putWALFile(ctx, w, pw, src, name, st, injected); err != nil {
			return err
		}
		seg++
	}
	// All history files: small, and the newest may be needed for recovery.
	dirents, err := os.ReadDir(walDir)
	if err != nil {
		return fmt.Errorf("read %s: %w", walDir, err)
	}
	var history []string
	for _, de := range dirents {
		if wal.IsHistoryFileName(de.Name()) {
			history = append(history, de.Name())
		}
	}
	sort.Strings(history)
	for _, name := range history {
		src := filepath.Join(walDir, name)
		st, err := os.Stat(src)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("stat %s: %w", src, err)
		}
		if err := putWALFile(ctx, w, pw, src, name, st, injected); err != nil {
			return err
		}
	}
	r.logger.Info("WAL included", "segments", len(rng.Names(info.WALSegmentSize)), "history_files", len(history))
	return nil
}

// putWALFile copies a WAL file into pg_wal and marks it archived
// (archive_status/<name>.done), as basebackup.c does: otherwise a restored
// server, once promoted, would archive it again.
func putWALFile(ctx context.Context, w *worker, pw *partWriter, src, name string, st fs.FileInfo,
	injected func(string, fs.FileMode) *entry) error {
	e := fileEntry("pg_wal/"+name, st)
	e.src = src
	if err := w.put(ctx, pw, e, false); err != nil {
		return err
	}
	return w.putBytes(ctx, pw, injected("pg_wal/archive_status/"+name+".done", 0o600), nil, false)
}
