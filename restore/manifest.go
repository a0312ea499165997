package restore

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"

	"github.com/pgcloudbackup/pgcloudbackup/internal/pg/backupmanifest"
	"github.com/pgcloudbackup/pgcloudbackup/manifest"
	"github.com/pgcloudbackup/pgcloudbackup/storage"
)

// writePGManifest copies backup_manifest into the restored data directory,
// so pg_verifybackup can check it, reading the object again rather than
// holding it since the index was built: the copy must have the SHA-256 the
// index was built from. With replace set (tablespace_map, after the
// tablespaces moved) that file's entry is rewritten, so the manifest
// describes exactly what is in the directory.
func writePGManifest(ctx context.Context, store *storage.Store, m *manifest.Backup, index *fileIndex, s *dirSink, replace *backupmanifest.ReplacedFile) error {
	const name = "backup_manifest"
	_ = s.root.Remove(name)
	perm := s.smallFilePerm()
	f, err := s.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return s.writeError("create", name, err)
	}
	fw := &writeErrors{w: f}
	bw := bufio.NewWriterSize(fw, 64<<10)
	sum, err := readPGManifest(ctx, store, m, index.key, func(r io.Reader) error {
		if replace == nil {
			_, err := io.Copy(bw, r)
			return err
		}
		return backupmanifest.ReplaceFile(bw, r, backupmanifest.Options{Version: index.hdr.Version, SystemIdentifier: index.hdr.SystemIdentifier}, *replace)
	})
	if err == nil {
		err = bw.Flush()
	}
	if fw.err != nil {
		// The target failed, not the manifest.
		err = s.writeError("write", name, fw.err)
	}
	if err == nil && sum != index.sha256 {
		err = fmt.Errorf("backup %s: object %s changed while the backup was being restored (SHA-256 %s, then %s)", m.ID, index.key, index.sha256, sum)
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = s.writeError("write", name, cerr)
	}
	if err != nil {
		_ = s.root.Remove(name)
		if replace != nil {
			return fmt.Errorf("update backup_manifest for the moved tablespaces: %w", err)
		}
		return err
	}
	return s.modeAndOwner(name, perm)
}

// writeErrors remembers the first error of the writer under it.
type writeErrors struct {
	w   io.Writer
	err error
}

func (w *writeErrors) Write(p []byte) (int, error) {
	n, err := w.w.Write(p)
	if err != nil && w.err == nil {
		w.err = err
	}
	return n, err
}
