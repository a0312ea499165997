package engine

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/pgcloudbackup/pgcloudbackup/internal/pg/backupmanifest"
	"github.com/pgcloudbackup/pgcloudbackup/internal/pg/pagecheck"
	"github.com/pgcloudbackup/pgcloudbackup/storage"
	"github.com/pgcloudbackup/pgcloudbackup/uploader"
)

// chunkSize is how much of a file one read takes: a multiple of the page
// size, large enough to amortise syscalls, small enough to stay in cache.
const chunkSize = 256 << 10

// bytesPerJob: an archive is written by one job per this much data (up
// to Jobs), each into its own volumes, so small tablespaces stay one
// volume.
const bytesPerJob = 64 << 20

// pingInterval: how often the backup session is checked while copying.
const pingInterval = 5 * time.Second

// copy opens backup_manifest and copies every archive, one after the
// other, each with as many jobs as its size warrants.
func (r *backupRun) copy(ctx context.Context, s *session, p *backupPlan) error {
	key := r.objectKey(storage.PGManifestName)
	obj, err := r.up.Open(r.uploadCtx, key, uploader.ObjectOptions{Raw: true, ContentType: "application/json"})
	if err != nil {
		return fmt.Errorf("open %s: %w", key, err)
	}
	r.pgManifestUpload = obj
	r.report.pgManifest, err = backupmanifest.NewWriter(obj, backupmanifest.Options{Version: backupmanifest.VersionFor(s.info.VersionNum), SystemIdentifier: s.info.SystemIdentifier})
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

// copyOutput is what a worker reports besides the bytes it archives:
// backup_manifest entries, progress, and page findings. It is safe for
// concurrent use (copyReport).
type copyOutput interface {
	// recordFile lists a file in backup_manifest.
	recordFile(path string, size int64, mtime time.Time, crc uint32) error
	// copied counts bytes read for progress.
	copied(n int64)
	checksumFailures(path string, count int64, blocks []uint32)
	newPagesWithData(path string, count int64, blocks []uint32)
	partialPage(path string, block uint32, size int64)
}

// worker copies entries into the volumes its volumeWriter opens. Its
// buffers are reused for every file (no per-file allocations on the data
// path).
type worker struct {
	out      copyOutput
	logger   *slog.Logger
	verifier *pagecheck.Verifier // nil: pages are not verified
	buf      []byte
	page     []byte
	crc      hash.Hash32
	hdr      tar.Header
	pc       pagecheck.File
	file     *os.File // file being copied, for page re-reads
}

func newWorker(out copyOutput, logger *slog.Logger, verifier *pagecheck.Verifier) *worker {
	return &worker{
		out:      out,
		logger:   logger,
		verifier: verifier,
		buf:      make([]byte, chunkSize),
		page:     make([]byte, pagecheck.BlockSize),
		crc:      backupmanifest.NewCRC32C(),
	}
}

// archiveEntries copies the entries of one archive until the channel closes.
func (w *worker) archiveEntries(ctx context.Context, vw *volumeWriter, entries <-chan *entry) (err error) {
	defer func() {
		if err != nil {
			vw.abort(err)
		}
	}()
	for e := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := w.put(ctx, vw, e, true); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return vw.close()
}

// put stores one entry. inManifest: list the file in backup_manifest (WAL
// is not listed; pg_verifybackup checks it with pg_waldump instead).
func (w *worker) put(ctx context.Context, vw *volumeWriter, e *entry, inManifest bool) error {
	if e.kind != kindFile {
		tarHeader(&w.hdr, e)
		return vw.header(ctx, &w.hdr)
	}
	f, err := os.Open(e.src)
	if errors.Is(err, fs.ErrNotExist) {
		// Dropped while we walked (a dropped table, a recycled file): WAL
		// replay recreates whatever the restored cluster needs.
		w.logger.Debug("file vanished during backup", "path", e.src)
		return nil
	}
	if err != nil {
		return fmt.Errorf("open %s: %w", e.src, err)
	}
	defer f.Close()
	// Read-ahead: the kernel fetches the file while we compress the last.
	_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_SEQUENTIAL)
	_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_WILLNEED)

	tarHeader(&w.hdr, e)
	if err := vw.header(ctx, &w.hdr); err != nil {
		return err
	}
	crc, err := w.copyData(ctx, vw, f, e)
	if err != nil {
		return err
	}
	vw.arc.addFile(e.size)
	if inManifest {
		if err := w.out.recordFile(vw.arc.manifestPrefix+e.name, e.size, e.mtime, crc); err != nil {
			return fmt.Errorf("record %s in backup_manifest: %w", e.name, err)
		}
	}
	return nil
}

// copyData streams exactly e.size bytes of f into the archive. A file that
// shrank while we read it is padded with zeros, one that grew is cut at its
// stat size: WAL replay fixes both, as in basebackup.c.
func (w *worker) copyData(ctx context.Context, vw *volumeWriter, f *os.File, e *entry) (uint32, error) {
	w.crc.Reset()
	verify := e.verify && w.verifier != nil
	if verify {
		w.pc.Reset(w.verifier, e.segno)
		w.file = f
	}
	var off int64
	truncated := false
	for off < e.size {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		want := int64(len(w.buf))
		if rest := e.size - off; rest < want {
			want = rest
		}
		chunk := w.buf[:want]
		n := 0
		if !truncated {
			var err error
			n, err = io.ReadFull(f, chunk)
			if err == io.ErrUnexpectedEOF || err == io.EOF {
				truncated = true
				w.logger.Debug("file shrank during backup; padding with zeros", "path", e.src, "size", e.size, "read", off+int64(n))
			} else if err != nil {
				return 0, fmt.Errorf("read %s: %w", e.src, err)
			}
		}
		clear(chunk[n:])
		if verify && n > 0 {
			if err := w.pc.Check(chunk[:n], uint32(off/pagecheck.BlockSize), w.reread); err != nil {
				return 0, fmt.Errorf("verify page checksums of %s: %w", e.src, err)
			}
		}
		w.crc.Write(chunk)
		if _, err := vw.Write(chunk); err != nil {
			return 0, fmt.Errorf("archive %s: %w", e.src, err)
		}
		off += want
		w.out.copied(want)
	}
	if verify {
		path := vw.arc.manifestPrefix + e.name
		if count, blocks := w.pc.Failures(); count > 0 {
			w.out.checksumFailures(path, count, blocks)
		}
		if count, blocks := w.pc.NewPagesWithData(); count > 0 {
			w.out.newPagesWithData(path, count, blocks)
		}
		if blk, ok := w.pc.Partial(); ok && !truncated {
			w.out.partialPage(path, blk, e.size)
		}
		w.file = nil
	}
	return w.crc.Sum32(), nil
}

// reread reads one block again for the torn-page retry. A file truncated
// meanwhile answers io.EOF, which pagecheck takes as "not a failure" (WAL
// replay recreates the block).
func (w *worker) reread(blkno uint32, page []byte) error {
	_, err := w.file.ReadAt(page, int64(blkno)*pagecheck.BlockSize)
	return err
}

// putBytes stores an in-memory file (backup_label, tablespace_map,
// pg_control, archive_status markers), listed in backup_manifest when
// inManifest.
func (w *worker) putBytes(ctx context.Context, vw *volumeWriter, e *entry, data []byte, inManifest bool) error {
	e.size = int64(len(data))
	tarHeader(&w.hdr, e)
	if err := vw.header(ctx, &w.hdr); err != nil {
		return err
	}
	if _, err := vw.Write(data); err != nil {
		return fmt.Errorf("archive %s: %w", e.name, err)
	}
	vw.arc.addFile(e.size)
	w.out.copied(e.size)
	if !inManifest {
		return nil
	}
	w.crc.Reset()
	w.crc.Write(data)
	if err := w.out.recordFile(vw.arc.manifestPrefix+e.name, e.size, e.mtime, w.crc.Sum32()); err != nil {
		return fmt.Errorf("record %s in backup_manifest: %w", e.name, err)
	}
	return nil
}
