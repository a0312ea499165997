package engine

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"

	"github.com/pgcloudbackup/pgcloudbackup/internal/pg/backupmanifest"
	"github.com/pgcloudbackup/pgcloudbackup/internal/pg/pagecheck"
)

// chunkSize is how much of a file one read takes: a multiple of the page
// size, large enough to amortise syscalls, small enough to stay in cache.
const chunkSize = 256 << 10

// worker copies entries into its own part objects. Its buffers are reused
// for every file (no per-file allocations on the data path).
type worker struct {
	run  *backupRun
	buf  []byte
	page []byte
	crc  hash.Hash32
	hdr  tar.Header
	pc   pagecheck.File
	file *os.File // file being copied, for page re-reads
}

func newWorker(run *backupRun) *worker {
	return &worker{
		run:  run,
		buf:  make([]byte, chunkSize),
		page: make([]byte, pagecheck.BlockSize),
		crc:  backupmanifest.NewCRC32C(),
	}
}

// archiveEntries copies the entries of one archive until the channel closes.
func (w *worker) archiveEntries(ctx context.Context, pw *partWriter, entries <-chan *entry) (err error) {
	defer func() {
		if err != nil {
			pw.abort(err)
		}
	}()
	for e := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := w.put(ctx, pw, e, true); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return pw.close()
}

// put stores one entry. inManifest: list the file in backup_manifest (WAL
// is not listed; pg_verifybackup checks it with pg_waldump instead).
func (w *worker) put(ctx context.Context, pw *partWriter, e *entry, inManifest bool) error {
	if e.kind != kindFile {
		tarHeader(&w.hdr, e)
		return pw.header(ctx, &w.hdr)
	}
	f, err := os.Open(e.src)
	if errors.Is(err, fs.ErrNotExist) {
		// Dropped while we walked (a dropped table, a recycled file): WAL
		// replay recreates whatever the restored cluster needs.
		w.run.logger.Debug("file vanished during backup", "path", e.src)
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
	if err := pw.header(ctx, &w.hdr); err != nil {
		return err
	}
	crc, err := w.copyData(ctx, pw, f, e)
	if err != nil {
		return err
	}
	pw.arc.addFile(e.size)
	if inManifest {
		if err := w.run.pgm.AddFile(pw.arc.manifestPrefix+e.name, e.size, e.mtime, crc); err != nil {
			return fmt.Errorf("record %s in backup_manifest: %w", e.name, err)
		}
	}
	return nil
}

// copyData streams exactly e.size bytes of f into the archive. A file that
// shrank while we read it is padded with zeros, one that grew is cut at its
// stat size: WAL replay fixes both, as in basebackup.c.
func (w *worker) copyData(ctx context.Context, pw *partWriter, f *os.File, e *entry) (uint32, error) {
	w.crc.Reset()
	verify := e.verify && w.run.verifyChecksums
	if verify {
		w.pc.Reset(&w.run.verifier, e.segno)
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
				w.run.logger.Debug("file shrank during backup; padding with zeros", "path", e.src, "size", e.size, "read", off+int64(n))
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
		if _, err := pw.Write(chunk); err != nil {
			return 0, fmt.Errorf("archive %s: %w", e.src, err)
		}
		off += want
		w.run.progress.Add(want)
	}
	if verify {
		path := pw.arc.manifestPrefix + e.name
		if count, blocks := w.pc.Failures(); count > 0 {
			w.run.addChecksumFailure(path, count, blocks)
		}
		if count, blocks := w.pc.NewPagesWithData(); count > 0 {
			w.run.pages.addNewWithData(w.run.logger, path, count, blocks)
		}
		if blk, ok := w.pc.Partial(); ok && !truncated {
			w.run.pages.addPartial(w.run.logger, path, blk, e.size)
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
func (w *worker) putBytes(ctx context.Context, pw *partWriter, e *entry, data []byte, inManifest bool) error {
	e.size = int64(len(data))
	tarHeader(&w.hdr, e)
	if err := pw.header(ctx, &w.hdr); err != nil {
		return err
	}
	if _, err := pw.Write(data); err != nil {
		return fmt.Errorf("archive %s: %w", e.name, err)
	}
	pw.arc.addFile(e.size)
	w.run.progress.Add(e.size)
	if !inManifest {
		return nil
	}
	w.crc.Reset()
	w.crc.Write(data)
	if err := w.run.pgm.AddFile(pw.arc.manifestPrefix+e.name, e.size, e.mtime, w.crc.Sum32()); err != nil {
		return fmt.Errorf("record %s in backup_manifest: %w", e.name, err)
	}
	return nil
}
