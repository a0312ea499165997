package restore

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/pgcloudbackup/pgcloudbackup/manifest"
)

// replaceManifestEntry re-writes backup_manifest with one file's content
// replaced (tablespace_map, after the tablespaces moved), so the manifest
// in the restored directory describes exactly what is there and
// pg_verifybackup still checks every other file against the backup's
// values. The rest is reproduced byte for byte by the same writer.
func replaceManifestEntry(index *fileIndex, name string, data []byte, modTime time.Time) ([]byte, error) {
	pgm := index.pgm
	var buf bytes.Buffer
	w, err := manifest.NewPGManifestWriter(&buf, manifest.PGManifestOptions{Version: pgm.Version, SystemIdentifier: pgm.SystemIdentifier})
	if err != nil {
		return nil, err
	}
	for _, f := range pgm.Files {
		if f.Path == name {
			crc := manifest.NewCRC32C()
			crc.Write(data)
			if err := w.AddFile(name, int64(len(data)), modTime, crc.Sum32()); err != nil {
				return nil, err
			}
			continue
		}
		mt, err := f.ModTime()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.Path, err)
		}
		crc, err := parseCRC32C(f.Checksum)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.Path, err)
		}
		if err := w.AddFile(f.Path, f.Size, mt, crc); err != nil {
			return nil, err
		}
	}
	if err := w.Finish(pgm.WALRanges); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// parseCRC32C inverts manifest.CRC32CChecksum.
func parseCRC32C(s string) (uint32, error) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 4 {
		return 0, fmt.Errorf("CRC32C checksum %q is not 8 hex digits", s)
	}
	v := binary.NativeEndian.Uint32(b)
	if manifest.CRC32CChecksum(v) != s {
		return 0, fmt.Errorf("CRC32C checksum %q does not round-trip", s)
	}
	return v, nil
}
