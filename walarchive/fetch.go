package walarchive

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/pgcloudbackup/pgcloudbackup/codec"
	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
	"github.com/pgcloudbackup/pgcloudbackup/internal/pg/wal"
	"github.com/pgcloudbackup/pgcloudbackup/storage"
)

// ErrNotArchived means the archive does not hold the file (and the bucket
// itself was reachable): recovery has reached the end of the archive.
var ErrNotArchived = errors.New("not in the WAL archive")

// FetchOptions shape Fetch.
type FetchOptions struct {
	// Attempts is how many times a failing download is tried (default 3).
	Attempts int
	// Backoff is the first wait between attempts, doubled each time
	// (default 1 s).
	Backoff time.Duration
	Logger  *slog.Logger
	// Spool, if set, is a prefetch directory (SpoolDir) consulted first
	// for segments.
	Spool string
}

// Fetch writes WAL file name from the archive to dest (PostgreSQL's %p),
// atomically: a temporary file in dest's directory, checked against the
// object's digest (and, for a segment, its page header), synced, then
// renamed. A file that is not archived gives ErrNotArchived; any other
// failure is retried, then returned, and must stop recovery.
func Fetch(ctx context.Context, store *storage.Store, name, dest string, opts FetchOptions) error {
	if err := CheckName(name); err != nil {
		return err
	}
	if dest == "" {
		return failure.New(failure.Usage, "no destination path")
	}
	if opts.Attempts <= 0 {
		opts.Attempts = 3
	}
	if opts.Backoff <= 0 {
		opts.Backoff = time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Spool != "" && storage.WALKind(name) == storage.WALSegment && takeFromSpool(opts.Spool, name, dest) {
		return nil
	}
	wait := opts.Backoff
	var err error
	for attempt := 1; ; attempt++ {
		err = fetchOnce(ctx, store, name, dest)
		if errors.Is(err, ErrNotArchived) && opts.Spool != "" {
			clearSpool(opts.Spool)
		}
		if err == nil || errors.Is(err, ErrNotArchived) || ctx.Err() != nil || attempt >= opts.Attempts {
			return err
		}
		opts.Logger.Warn("WAL fetch failed, retrying", "file", name, "attempt", attempt, "error", failure.OneLine(err))
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return err
		}
		wait *= 2
	}
}

func fetchOnce(ctx context.Context, store *storage.Store, name, dest string) (err error) {
	key := store.WALKey(name)
	tmp, err := os.CreateTemp(filepath.Dir(dest), "."+filepath.Base(dest)+".pgcb-*")
	if err != nil {
		return failure.Wrap(failure.Precondition, fmt.Errorf("fetch %s: %w", name, err), "")
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	limit := int64(maxFileSize)
	if k := storage.WALKind(name); k == storage.WALHistory || k == storage.WALBackup {
		limit = maxSmallFile
	}
	_, size, err := readObject(ctx, store, key, tmp, limit)
	if errors.Is(err, storage.ErrNotFound) {
		// Absent only if the archive itself answers: a wrong bucket or
		// denied access must stop recovery, not end it.
		// An empty archive is a wrong bucket or prefix (a directory
		// bucket even creates a mistyped path), not the end of the WAL.
		has, lerr := HasArchive(ctx, store)
		if lerr != nil {
			return lerr
		}
		if !has {
			return failure.Wrap(failure.Precondition, fmt.Errorf("fetch %s: there is no WAL archive in %s", name, store.Display),
				"check the bucket URL and prefix: it must be the one archive_command (wal-push) writes to")
		}
		return ErrNotArchived
	}
	if err != nil {
		return fmt.Errorf("fetch %s: %w", name, err)
	}
	if k := storage.WALKind(name); k == storage.WALSegment || k == storage.WALPartial {
		if err := checkSegment(tmp, name[:24], size); err != nil {
			return fmt.Errorf("fetch %s: object %s: %w", name, key, err)
		}
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("fetch %s: sync: %w", name, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("fetch %s: %w", name, err)
	}
	if err := os.Rename(tmp.Name(), dest); err != nil {
		return fmt.Errorf("fetch %s: %w", name, err)
	}
	return nil
}

// readObject streams the object at key, decompressed, into w (at most
// limit bytes), and checks it against its trailer. It returns the digest
// and size. A missing object is returned unclassified (errors.Is
// storage.ErrNotFound).
func readObject(ctx context.Context, store *storage.Store, key string, w io.Writer, limit int64) ([32]byte, int64, error) {
	var sum [32]byte
	r, err := store.NewReader(ctx, key)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return sum, 0, err
		}
		return sum, 0, store.Classify(err, "read "+key)
	}
	defer r.Close()
	tail := &tailKeeper{}
	zr, err := codec.Zstd.NewReader(io.TeeReader(r, tail))
	if err != nil {
		return sum, 0, err
	}
	defer zr.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(w, h), io.LimitReader(zr, limit+1))
	if err != nil {
		if ctx.Err() != nil {
			return sum, n, store.Classify(ctx.Err(), "read "+key)
		}
		return sum, n, fmt.Errorf("read %s: %w", key, err)
	}
	if n > limit {
		return sum, n, fmt.Errorf("object %s decompresses to more than %d bytes", key, limit)
	}
	// Anything the decoder did not consume (there should be nothing)
	// must still pass through the tail.
	if _, err := io.Copy(io.Discard, io.TeeReader(r, tail)); err != nil {
		return sum, n, fmt.Errorf("read %s: %w", key, err)
	}
	want, wantSize, err := decodeTrailer(tail.tail())
	if err != nil {
		return sum, n, fmt.Errorf("object %s: %w", key, err)
	}
	copy(sum[:], h.Sum(nil))
	if sum != want || n != wantSize {
		return sum, n, fmt.Errorf("object %s is damaged: %d bytes with SHA-256 %x, its trailer records %d bytes with %x", key, n, sum, wantSize, want)
	}
	return sum, n, nil
}

// checkSegment checks that the fetched file's first page is the start of
// the segment its name says, so a misplaced object is never replayed.
func checkSegment(f *os.File, segName string, size int64) error {
	if !validSegmentSize(size) {
		return fmt.Errorf("%d bytes is not a WAL segment size", size)
	}
	page := make([]byte, 40)
	if _, err := f.ReadAt(page, 0); err != nil {
		return fmt.Errorf("read segment header: %w", err)
	}
	_, seg, ok := wal.ParseFileName(segName, size)
	if !ok {
		return fmt.Errorf("bad segment name %s", segName)
	}
	h, err := wal.ParseSegmentHeader(page)
	if err != nil {
		return err
	}
	if int64(h.SegSize) != size {
		return fmt.Errorf("segment header says %d-byte segments, the file has %d bytes", h.SegSize, size)
	}
	if want := wal.LSN(uint64(seg) * uint64(size)); h.PageAddr != want {
		return fmt.Errorf("first page address %s, want %s: not segment %s", h.PageAddr, want, segName)
	}
	return nil
}

// HasArchive reports whether the bucket holds any archived WAL file.
func HasArchive(ctx context.Context, store *storage.Store) (bool, error) {
	objs, _, err := store.ListPage(ctx, store.WALPrefix(), nil, 1)
	if err != nil {
		return false, store.Classify(err, "list the WAL archive")
	}
	return len(objs) > 0, nil
}
