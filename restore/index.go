package restore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
	"github.com/pgcloudbackup/pgcloudbackup/manifest"
	"github.com/pgcloudbackup/pgcloudbackup/storage"
)

// fileIndex is backup_manifest as a lookup table: every restored or
// verified file is checked against it, and at the end every listed file must
// have been seen. It holds one small entry per file of the backup.
type fileIndex struct {
	mu    sync.Mutex
	files map[string]*indexEntry
	pgm   *manifest.PGManifest
	raw   []byte
	// WAL files (not listed in backup_manifest) may add up to walLimit
	// bytes: none without WAL, else the backup's LSN range plus a
	// segment's worth at each end.
	walBytes, walLimit int64
}

type indexEntry struct {
	size     int64
	checksum string
	seen     bool
}

// loadIndex downloads backup_manifest, checks it against manifest.json's
// SHA-256 and its own Manifest-Checksum, and indexes it.
func loadIndex(ctx context.Context, store *storage.Store, m *manifest.Backup) (*fileIndex, error) {
	key := store.BackupKey(m.ID, m.BackupManifest.Key)
	if m.BackupManifest.Size > manifest.MaxPGManifestSize {
		return nil, failure.New(failure.Failed, "backup %s is damaged: manifest.json gives %s %d bytes, more than the %d this version reads",
			m.ID, key, m.BackupManifest.Size, int64(manifest.MaxPGManifestSize))
	}
	br, err := store.NewReader(ctx, key)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil, failure.New(failure.Failed, "backup %s is damaged: object %s is missing", m.ID, key)
		}
		return nil, store.Classify(err, "read "+key)
	}
	defer br.Close()
	// The bucket is untrusted: read no more than manifest.json declares
	// (one byte more shows a longer object).
	raw, err := manifest.ReadBounded(br, br.Size(), m.BackupManifest.Size, key)
	if err != nil {
		var fe *failure.Error
		if errors.As(err, &fe) {
			return nil, failure.New(failure.Failed, "backup %s is damaged: object %s is larger than manifest.json says (%d bytes)", m.ID, key, m.BackupManifest.Size)
		}
		return nil, store.Classify(err, "read "+key)
	}
	if int64(len(raw)) != m.BackupManifest.Size {
		return nil, failure.New(failure.Failed, "backup %s is damaged: object %s has %d bytes, manifest.json says %d", m.ID, key, len(raw), m.BackupManifest.Size)
	}
	sum := sha256.Sum256(raw)
	if got := hex.EncodeToString(sum[:]); m.BackupManifest.SHA256 != "" && got != m.BackupManifest.SHA256 {
		return nil, failure.New(failure.Failed, "backup %s is damaged: object %s has SHA-256 %s, manifest.json says %s", m.ID, key, got, m.BackupManifest.SHA256)
	}
	pgm, err := manifest.ReadPGManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, failure.New(failure.Failed, "backup %s is damaged: %s: %v", m.ID, key, err)
	}
	idx := &fileIndex{files: make(map[string]*indexEntry, len(pgm.Files)), pgm: pgm, raw: raw}
	if m.WALIncluded && m.StopLSN >= m.StartLSN {
		idx.walLimit = int64(m.StopLSN-m.StartLSN) + 2*maxWALMember
	}
	for _, f := range pgm.Files {
		if f.ChecksumAlgorithm != manifest.ChecksumAlgorithmCRC32C {
			return nil, fmt.Errorf("%s: file %s uses checksum algorithm %s; only CRC32C is supported", key, f.Path, f.ChecksumAlgorithm)
		}
		idx.files[f.Path] = &indexEntry{size: f.Size, checksum: f.Checksum}
	}
	return idx, nil
}

// isFile reports whether backup_manifest lists path as a file.
func (x *fileIndex) isFile(path string) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	_, ok := x.files[path]
	return ok
}

// expect checks a member's declared size before any of its data is
// written: a member backup_manifest does not list, or with another size,
// is refused (WAL, not listed, may be at most a WAL segment).
func (x *fileIndex) expect(path string, size int64) error {
	x.mu.Lock()
	e, ok := x.files[path]
	seen := ok && e.seen
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
	case size != e.size:
		return fmt.Errorf("file %s declares %d bytes, backup_manifest says %d", path, size, e.size)
	}
	return nil
}

// check records a file read from the archives and compares it with
// backup_manifest. WAL (pg_wal/...) is not listed there, as in PostgreSQL.
func (x *fileIndex) check(path string, size int64, crc uint32) error {
	x.mu.Lock()
	e, ok := x.files[path]
	if ok {
		if e.seen {
			x.mu.Unlock()
			return fmt.Errorf("file %s appears twice in the archives", path)
		}
		e.seen = true
	}
	x.mu.Unlock()
	if !ok {
		if strings.HasPrefix(path, "pg_wal/") {
			return nil
		}
		return fmt.Errorf("file %s is in the archives but not in backup_manifest", path)
	}
	if size != e.size {
		return fmt.Errorf("file %s has %d bytes, backup_manifest says %d", path, size, e.size)
	}
	if got := manifest.CRC32CChecksum(crc); got != e.checksum {
		return fmt.Errorf("file %s has CRC32C %s, backup_manifest says %s", path, got, e.checksum)
	}
	return nil
}

// missing lists the files backup_manifest names that the archives lacked.
func (x *fileIndex) missing() []string {
	x.mu.Lock()
	defer x.mu.Unlock()
	var out []string
	for p, e := range x.files {
		if !e.seen {
			out = append(out, p)
		}
	}
	return out
}

// missingError turns missing files into one error naming the first ones.
func missingError(missing []string) error {
	if len(missing) == 0 {
		return nil
	}
	shown := missing
	if len(shown) > 5 {
		shown = shown[:5]
	}
	return failure.Wrap(failure.Failed,
		fmt.Errorf("%d files listed in backup_manifest are missing from the archives: %s", len(missing), strings.Join(shown, ", ")),
		"an archive object is incomplete or was replaced")
}
