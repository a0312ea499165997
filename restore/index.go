package restore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
	"github.com/pgcloudbackup/pgcloudbackup/internal/hashio"
	"github.com/pgcloudbackup/pgcloudbackup/internal/pg/backupmanifest"
	"github.com/pgcloudbackup/pgcloudbackup/manifest"
	"github.com/pgcloudbackup/pgcloudbackup/storage"
)

// fileIndex is backup_manifest as a lookup table: every restored or
// verified file is checked against it, and at the end every listed file must
// have been seen. backup_manifest is streamed, never held: the index keeps
// ~24 bytes and the path of each file (backupmanifest.Index) and a bit for
// "seen", and the restore reads the object again to copy it into the
// target (pinned to the SHA-256 of the first read).
type fileIndex struct {
	mu   sync.Mutex
	idx  *backupmanifest.Index
	seen []uint64 // bit i: file i of idx was in the archives
	// hdr is the manifest without its files: version, system identifier,
	// WAL ranges.
	hdr *backupmanifest.Manifest
	// key, size and sha256 of the backup_manifest object as indexed.
	key    string
	size   int64
	sha256 string
	// WAL files (not listed in backup_manifest) may add up to walLimit
	// bytes: none without WAL, else the backup's LSN range plus a
	// segment's worth at each end.
	walBytes, walLimit int64
}

// minPGManifestEntry is fewer bytes than any backup_manifest entry our
// writer produces (~130 with the shortest path): it caps the index's
// initial allocation by the manifest's size.
const minPGManifestEntry = 100

// loadIndex streams backup_manifest, checks it against manifest.json's
// size and SHA-256 and its own Manifest-Checksum, and indexes it. The
// manifest may list at most the files manifest.json counts (its WAL files
// are counted there but not listed), which bounds the index whatever the
// object holds; the memory budget is computed from that count.
func loadIndex(ctx context.Context, store *storage.Store, m *manifest.Backup) (*fileIndex, error) {
	key := store.BackupKey(m.ID, m.BackupManifest.Key)
	var files int64
	for _, ts := range m.Tablespaces {
		files += ts.Files
	}
	b := backupmanifest.NewIndexBuilder(files, min(files, m.BackupManifest.Size/minPGManifestEntry))
	sum, hdr, err := streamPGManifest(ctx, store, m, key, func(f backupmanifest.File) error {
		if f.ChecksumAlgorithm != backupmanifest.ChecksumAlgorithmCRC32C {
			return fmt.Errorf("file %s uses checksum algorithm %q; only CRC32C is supported", f.Path, f.ChecksumAlgorithm)
		}
		crc, err := backupmanifest.ParseCRC32CChecksum(f.Checksum)
		if err != nil {
			return fmt.Errorf("file %s: %w", f.Path, err)
		}
		return b.Add(f.Path, f.Size, crc)
	})
	if err != nil {
		b.Abort()
		return nil, err
	}
	idx, err := b.Finish()
	if err != nil {
		return nil, failure.New(failure.Failed, "backup %s is damaged: %s: %v", m.ID, key, err)
	}
	x := &fileIndex{idx: idx, seen: make([]uint64, (idx.Len()+63)/64), hdr: hdr,
		key: key, size: m.BackupManifest.Size, sha256: sum}
	if m.WALIncluded && m.StopLSN >= m.StartLSN {
		x.walLimit = int64(m.StopLSN-m.StartLSN) + 2*maxWALMember
	}
	return x, nil
}

// streamPGManifest reads backup_manifest once, through fn (nil: only
// checked), checking its size and SHA-256 against manifest.json. It
// returns the SHA-256 it read and the manifest without its files.
func streamPGManifest(ctx context.Context, store *storage.Store, m *manifest.Backup, key string, fn func(backupmanifest.File) error) (string, *backupmanifest.Manifest, error) {
	var hdr *backupmanifest.Manifest
	sum, err := readPGManifest(ctx, store, m, key, func(r io.Reader) error {
		var err error
		hdr, err = backupmanifest.Scan(r, fn)
		return err
	})
	return sum, hdr, err
}

// readPGManifest opens backup_manifest and hands it to consume, bounded by
// manifest.json's size; then it checks the size and SHA-256 of what was
// read (all of it, whatever consume left) against manifest.json.
func readPGManifest(ctx context.Context, store *storage.Store, m *manifest.Backup, key string, consume func(io.Reader) error) (string, error) {
	if m.BackupManifest.Size > backupmanifest.MaxSize {
		return "", failure.New(failure.Failed, "backup %s is damaged: manifest.json gives %s %d bytes, more than the %d this version reads",
			m.ID, key, m.BackupManifest.Size, int64(backupmanifest.MaxSize))
	}
	br, err := store.NewReader(ctx, key)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return "", failure.New(failure.Failed, "backup %s is damaged: object %s is missing", m.ID, key)
		}
		return "", store.Classify(err, "read "+key)
	}
	defer br.Close()
	if br.Size() > m.BackupManifest.Size {
		return "", failure.New(failure.Failed, "backup %s is damaged: object %s is larger than manifest.json says (%d bytes)", m.ID, key, m.BackupManifest.Size)
	}
	// The bucket is untrusted: read no more than manifest.json declares
	// (one byte more shows a longer object).
	src := &readErrors{r: br}
	rr := &hashio.Reader{R: io.LimitReader(src, m.BackupManifest.Size+1), H: sha256.New()}
	cerr := consume(rr)
	if _, err := io.Copy(io.Discard, rr); err != nil && cerr == nil {
		cerr = err
	}
	switch {
	case ctx.Err() != nil:
		return "", ctx.Err()
	case src.err != nil:
		// The store failed, not the manifest.
		return "", store.Classify(src.err, "read "+key)
	case rr.N > m.BackupManifest.Size:
		return "", failure.New(failure.Failed, "backup %s is damaged: object %s is larger than manifest.json says (%d bytes)", m.ID, key, m.BackupManifest.Size)
	case rr.N != m.BackupManifest.Size:
		return "", failure.New(failure.Failed, "backup %s is damaged: object %s has %d bytes, manifest.json says %d", m.ID, key, rr.N, m.BackupManifest.Size)
	}
	sum := hex.EncodeToString(rr.H.Sum(nil))
	if m.BackupManifest.SHA256 != "" && sum != m.BackupManifest.SHA256 {
		return "", failure.New(failure.Failed, "backup %s is damaged: object %s has SHA-256 %s, manifest.json says %s", m.ID, key, sum, m.BackupManifest.SHA256)
	}
	if cerr != nil {
		return "", failure.New(failure.Failed, "backup %s is damaged: %s: %v", m.ID, key, cerr)
	}
	return sum, nil
}

// close gives the index's memory back.
func (x *fileIndex) close() { x.idx.Close() }

// readErrors remembers the first error of the reader under it, so that a
// failing store is told apart from a damaged manifest.
type readErrors struct {
	r   io.Reader
	err error
}

func (r *readErrors) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF && r.err == nil {
		r.err = err
	}
	return n, err
}

// find returns the position of path in the index (which never changes
// once built, so it needs no lock).
func (x *fileIndex) find(path string) (int, bool) { return x.idx.Find(path) }

// isFile reports whether backup_manifest lists path as a file.
func (x *fileIndex) isFile(path string) bool {
	_, ok := x.find(path)
	return ok
}

func (x *fileIndex) seenLocked(i int) bool { return x.seen[i/64]&(1<<(i%64)) != 0 }

// expect checks a member's declared size before any of its data is
// written: a member backup_manifest does not list, or with another size,
// is refused (WAL, not listed, may be at most a WAL segment).
func (x *fileIndex) expect(path string, size int64) error {
	i, ok := x.find(path)
	x.mu.Lock()
	seen := ok && x.seenLocked(i)
	walBytes := x.walBytes + size
	if !ok && strings.HasPrefix(path, "pg_wal/") && size <= maxWALMember && walBytes <= x.walLimit {
		x.walBytes = walBytes
	}
	x.mu.Unlock()
	switch {
	case !ok && strings.HasPrefix(path, "pg_wal/"):
		if size > maxWALMember {
			return fmt.Errorf("WAL file %s declares %d bytes, more than the largest WAL segment (%d)", path, size, maxWALMember)
		}
		if walBytes > x.walLimit {
			return fmt.Errorf("WAL file %s: the archives hold more WAL (%d bytes) than the backup's LSN range allows (%d; WAL included: %v)", path, walBytes, x.walLimit, x.walLimit > 0)
		}
		return nil
	case !ok:
		return fmt.Errorf("file %s is in the archives but not in backup_manifest", path)
	case seen:
		return fmt.Errorf("file %s appears twice in the archives", path)
	case size != x.idx.Size(i):
		return fmt.Errorf("file %s declares %d bytes, backup_manifest says %d", path, size, x.idx.Size(i))
	}
	return nil
}

// check records a file read from the archives and compares it with
// backup_manifest. WAL (pg_wal/...) is not listed there, as in PostgreSQL.
func (x *fileIndex) check(path string, size int64, crc uint32) error {
	i, ok := x.find(path)
	if !ok {
		if strings.HasPrefix(path, "pg_wal/") {
			return nil
		}
		return fmt.Errorf("file %s is in the archives but not in backup_manifest", path)
	}
	x.mu.Lock()
	if x.seenLocked(i) {
		x.mu.Unlock()
		return fmt.Errorf("file %s appears twice in the archives", path)
	}
	x.seen[i/64] |= 1 << (i % 64)
	x.mu.Unlock()
	if want := x.idx.Size(i); size != want {
		return fmt.Errorf("file %s has %d bytes, backup_manifest says %d", path, size, want)
	}
	if want := x.idx.CRC32C(i); crc != want {
		return fmt.Errorf("file %s has CRC32C %s, backup_manifest says %s", path, backupmanifest.CRC32CChecksum(crc), backupmanifest.CRC32CChecksum(want))
	}
	return nil
}

// missing lists the files backup_manifest names that the archives lacked
// (the first max of them) and how many there are.
func (x *fileIndex) missing(max int) ([]string, int) {
	x.mu.Lock()
	defer x.mu.Unlock()
	var out []string
	n := 0
	for i := 0; i < x.idx.Len(); i++ {
		if !x.seenLocked(i) {
			if n < max {
				out = append(out, x.idx.Path(i))
			}
			n++
		}
	}
	return out, n
}

// missingError turns missing files into one error naming the first ones.
func missingError(x *fileIndex) error {
	shown, n := x.missing(5)
	if n == 0 {
		return nil
	}
	return failure.Wrap(failure.Failed,
		fmt.Errorf("%d files listed in backup_manifest are missing from the archives: %s", n, strings.Join(shown, ", ")),
		"an archive object is incomplete or was replaced")
}
