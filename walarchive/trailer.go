// Package walarchive archives PostgreSQL WAL files into the bucket
// (archive_command: Push) and fetches them back for recovery
// (restore_command: Fetch).
//
// Each file is stored as one zstd stream (plain `zstd -d` restores it)
// followed by a zstd skippable frame holding the SHA-256 and size of the
// uncompressed file. The trailer travels with the object on every backend
// (a file:// bucket keeps no object metadata), and Fetch checks it before a
// byte reaches the server's pg_wal. On backends with metadata the digest is
// also stored there, so a repeated push is compared without a download.
package walarchive

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// trailerMagic is a zstd skippable-frame magic number (0x184D2A50-5F are
// reserved for them; decoders skip the frame).
const trailerMagic = 0x184D2A5C

// trailerTag identifies our payload inside the skippable frame.
var trailerTag = []byte("PGCBWAL1")

const (
	trailerPayload = 8 + 32 + 8 // tag, SHA-256, size
	trailerSize    = 8 + trailerPayload
)

// metaSHA256 and metaSize are the object metadata keys (where the backend
// keeps metadata).
const (
	metaSHA256 = "sha256"
	metaSize   = "size"
)

// encodeTrailer returns the skippable frame recording sum and size.
func encodeTrailer(sum [32]byte, size int64) []byte {
	b := make([]byte, 0, trailerSize)
	b = binary.LittleEndian.AppendUint32(b, trailerMagic)
	b = binary.LittleEndian.AppendUint32(b, trailerPayload)
	b = append(b, trailerTag...)
	b = append(b, sum[:]...)
	b = binary.LittleEndian.AppendUint64(b, uint64(size))
	return b
}

var errNoTrailer = errors.New("no pgcloudbackup checksum trailer at the end of the object: not written by wal-push, or truncated")

// decodeTrailer parses the last trailerSize bytes of an object.
func decodeTrailer(b []byte) (sum [32]byte, size int64, err error) {
	if len(b) != trailerSize ||
		binary.LittleEndian.Uint32(b[0:]) != trailerMagic ||
		binary.LittleEndian.Uint32(b[4:]) != trailerPayload ||
		!bytes.Equal(b[8:16], trailerTag) {
		return sum, 0, errNoTrailer
	}
	copy(sum[:], b[16:48])
	n := binary.LittleEndian.Uint64(b[48:])
	if n > maxFileSize {
		return sum, 0, fmt.Errorf("checksum trailer claims %d bytes, more than any WAL file", n)
	}
	return sum, int64(n), nil
}

// tailKeeper remembers the last trailerSize bytes written to it.
type tailKeeper struct{ b []byte }

func (t *tailKeeper) Write(p []byte) (int, error) {
	if len(p) >= trailerSize {
		t.b = append(t.b[:0], p[len(p)-trailerSize:]...)
		return len(p), nil
	}
	t.b = append(t.b, p...)
	if len(t.b) > trailerSize {
		n := copy(t.b, t.b[len(t.b)-trailerSize:])
		t.b = t.b[:n]
	}
	return len(p), nil
}

func (t *tailKeeper) tail() []byte { return t.b }
