package walarchive

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"github.com/pgcloudbackup/pgcloudbackup/codec"
	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
	"github.com/pgcloudbackup/pgcloudbackup/storage"
)

const (
	// maxFileSize bounds any WAL file: the largest wal_segment_size.
	maxFileSize = 1 << 30
	// maxSmallFile bounds .history and .backup files (a history file
	// grows by one short line per timeline).
	maxSmallFile = 16 << 20
)

// PushResult says what Push did with one file.
type PushResult struct {
	Name string `json:"name"`
	Key  string `json:"key"`
	Size int64  `json:"size"`
	// Stored is the compressed size uploaded (0 when already archived).
	Stored int64 `json:"stored"`
	// AlreadyArchived: the same content was in the archive already (a
	// retry after a crash); nothing was written.
	AlreadyArchived bool   `json:"already_archived"`
	SHA256          string `json:"sha256"`
}

// CheckName refuses anything but a WAL file name PostgreSQL writes: the
// name becomes part of an object key.
func CheckName(name string) error {
	if storage.WALKind(name) == "" {
		return failure.New(failure.Usage, "%q is not a WAL file name (a segment, .partial, .backup or .history file)", name)
	}
	return nil
}

// Push archives the WAL file at path under its base name. It returns only
// once the object is committed in the bucket. The write is a conditional
// create: if the name is archived already, the stored digest is compared
// and the same content is success (AlreadyArchived) while different content
// is an error; an archived file is never overwritten.
func Push(ctx context.Context, store *storage.Store, path string) (*PushResult, error) {
	name := filepath.Base(path)
	if err := CheckName(name); err != nil {
		return nil, err
	}
	kind := storage.WALKind(name)
	f, err := os.Open(path)
	if err != nil {
		return nil, failure.Wrap(failure.Precondition, fmt.Errorf("open WAL file: %w", err), "")
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, failure.New(failure.Precondition, "%s is not a regular file", path)
	}
	size := st.Size()
	switch {
	case (kind == storage.WALSegment || kind == storage.WALPartial) && !validSegmentSize(size):
		return nil, failure.New(failure.Precondition, "%s: %d bytes is not a WAL segment size (a power of two from 1 MiB to 1 GiB)", path, size)
	case (kind == storage.WALHistory || kind == storage.WALBackup) && size > maxSmallFile:
		return nil, failure.New(failure.Precondition, "%s: %d bytes is too large for a %s file", path, size, kind)
	}
	// First pass: the digest, which goes into the object's metadata (set
	// when the upload starts) and its trailer.
	h := sha256.New()
	if _, err := io.Copy(h, io.LimitReader(f, size+1)); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	res := &PushResult{Name: name, Key: store.WALKey(name), Size: size, SHA256: hex.EncodeToString(sum[:])}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}

	// Archived already (pushed ahead by an earlier call, or a retry after
	// a crash): compare, without sending the file again.
	attrs, err := store.Attributes(ctx, res.Key)
	switch {
	case err == nil:
		return alreadyArchived(ctx, store, res, attrs, sum, size)
	case !errors.Is(err, storage.ErrNotFound):
		return nil, fmt.Errorf("archive %s: %w", name, store.Classify(err, "look up "+res.Key))
	}

	counted := &countWriter{}
	w := store.NewWriter(ctx, res.Key, storage.WriteOptions{
		ContentType: "application/zstd",
		IfNotExist:  true,
		Metadata:    map[string]string{metaSHA256: res.SHA256, metaSize: strconv.FormatInt(size, 10)},
	})
	if err = compress(w, counted, f, sum, size); err != nil {
		err = w.Abort(err)
	} else {
		err = w.Commit()
	}
	if err == nil {
		res.Stored = counted.n
		return res, nil
	}
	if !errors.Is(err, storage.ErrExists) {
		return nil, fmt.Errorf("archive %s: %w", name, err)
	}
	// The name was taken meanwhile (another push of it ran at once).
	return alreadyArchived(ctx, store, res, nil, sum, size)
}

// alreadyArchived decides a push whose name is taken: the same content is
// success, anything else is refused.
func alreadyArchived(ctx context.Context, store *storage.Store, res *PushResult, attrs *storage.Attributes, sum [32]byte, size int64) (*PushResult, error) {
	name := res.Name
	same, err := sameContent(ctx, store, res.Key, attrs, sum, size)
	if err != nil {
		return nil, fmt.Errorf("archive %s: already in the archive, and comparing it failed: %w", name, err)
	}
	if !same {
		return nil, failure.Wrap(failure.Failed,
			fmt.Errorf("archive %s: a different file of that name is already archived (%s); refusing to overwrite it", name, res.Key),
			"two clusters may be archiving into the same prefix, or this cluster was restored without a new timeline: check the bucket URL")
	}
	res.AlreadyArchived = true
	return res, nil
}

// compress writes the zstd stream of f (size bytes, digest sum) and the
// trailer into w. A file that changes between the two reads is an error, so
// the trailer never lies about the object.
func compress(w io.Writer, counted *countWriter, f io.Reader, sum [32]byte, size int64) error {
	out := io.MultiWriter(w, counted)
	zw, err := codec.Zstd.NewWriter(out)
	if err != nil {
		return err
	}
	h := sha256.New()
	n, err := io.Copy(zw, io.TeeReader(io.LimitReader(f, size+1), h))
	if err != nil {
		_ = zw.Close()
		return fmt.Errorf("read WAL file: %w", err)
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if n != size || !bytes.Equal(h.Sum(nil), sum[:]) {
		return errors.New("the WAL file changed while it was archived")
	}
	_, err = out.Write(encodeTrailer(sum, size))
	return err
}

// sameContent reports whether the object at key holds a file with digest
// sum: from its metadata where the backend keeps it, else by reading it.
func sameContent(ctx context.Context, store *storage.Store, key string, attrs *storage.Attributes, sum [32]byte, size int64) (bool, error) {
	if attrs == nil {
		var err error
		if attrs, err = store.Attributes(ctx, key); err != nil {
			return false, store.Classify(err, "read attributes of "+key)
		}
	}
	if v, ok := attrs.Metadata[metaSHA256]; ok {
		return v == hex.EncodeToString(sum[:]) && attrs.Metadata[metaSize] == strconv.FormatInt(size, 10), nil
	}
	got, gotSize, err := readObject(ctx, store, key, io.Discard, maxFileSize)
	if err != nil {
		return false, err
	}
	return got == sum && gotSize == size, nil
}

func validSegmentSize(n int64) bool {
	return n >= 1<<20 && n <= maxFileSize && n&(n-1) == 0
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }
