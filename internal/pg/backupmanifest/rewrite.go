package backupmanifest

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"time"
)

// ParseCRC32CChecksum inverts CRC32CChecksum.
func ParseCRC32CChecksum(s string) (uint32, error) {
	if len(s) != 8 {
		return 0, fmt.Errorf("CRC32C checksum %q is not 8 hex digits", s)
	}
	var b [4]byte
	if _, err := hex.Decode(b[:], []byte(s)); err != nil {
		return 0, fmt.Errorf("CRC32C checksum %q is not 8 hex digits", s)
	}
	v := binary.NativeEndian.Uint32(b[:])
	if CRC32CChecksum(v) != s {
		// Upper-case digits: not what the writer would reproduce.
		return 0, fmt.Errorf("CRC32C checksum %q does not round-trip", s)
	}
	return v, nil
}

// ReplacedFile is the new content of one file for ReplaceFile.
type ReplacedFile struct {
	Path    string
	Size    int64
	ModTime time.Time
	CRC32C  uint32
}

// ReplaceFile copies the backup_manifest read from src to dst with one
// file's entry replaced (a restore rewrites tablespace_map when tablespaces
// move), so the manifest describes exactly what is in the restored
// directory and pg_verifybackup still checks every other file against the
// backup's values. Every other byte is reproduced by the same writer; opts
// are the manifest's own version and system identifier. It streams: no
// entry is held. src must list the file; what reaches dst is only valid
// once ReplaceFile returned nil (src's checksum verified).
func ReplaceFile(dst io.Writer, src io.Reader, opts Options, f ReplacedFile) error {
	w, err := NewWriter(dst, opts)
	if err != nil {
		return err
	}
	found := false
	m, err := Scan(src, func(e File) error {
		if e.Path == f.Path {
			found = true
			return w.AddFile(f.Path, f.Size, f.ModTime, f.CRC32C)
		}
		if e.ChecksumAlgorithm != ChecksumAlgorithmCRC32C {
			return fmt.Errorf("file %s: checksum algorithm %q, only CRC32C is rewritten", e.Path, e.ChecksumAlgorithm)
		}
		mt, err := e.ModTime()
		if err != nil {
			return fmt.Errorf("%s: %w", e.Path, err)
		}
		crc, err := ParseCRC32CChecksum(e.Checksum)
		if err != nil {
			return fmt.Errorf("%s: %w", e.Path, err)
		}
		return w.AddFile(e.Path, e.Size, mt, crc)
	})
	if err != nil {
		return err
	}
	if m.Version != max(opts.Version, 1) || (m.Version == 2 && m.SystemIdentifier != opts.SystemIdentifier) {
		return fmt.Errorf("backup_manifest changed: version %d, system identifier %d", m.Version, m.SystemIdentifier)
	}
	if !found {
		return fmt.Errorf("backup_manifest does not list %s", f.Path)
	}
	return w.Finish(m.WALRanges)
}
