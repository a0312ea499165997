package manifest

import (
	"fmt"
	"io"

	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
)

// The bucket is untrusted input: whatever reads a manifest from it reads at
// most these many bytes, so a huge or endless object cannot exhaust memory.
const (
	// MaxBackupJSONSize bounds manifest.json. A real one is a few KiB:
	// per tablespace its objects, plus the page checksum failures.
	MaxBackupJSONSize = 16 << 20
	// MaxLabelLen is PostgreSQL's limit on a backup label (MAXPGPATH).
	MaxLabelLen = 1024
	// MaxPathLen bounds a tablespace location (MAXPGPATH).
	MaxPathLen = 1024
)

// ReadBounded reads all of r, refusing more than limit bytes: what names
// the object in the error. declared is the size the store reports (-1 if
// unknown): a declared size over the limit is refused before reading.
func ReadBounded(r io.Reader, declared, limit int64, what string) ([]byte, error) {
	tooBig := func(n int64) error {
		return failure.Wrap(failure.Failed,
			fmt.Errorf("%s has %d bytes or more, more than the %d this version reads: not a backup manifest or a tampered one", what, n, limit),
			"")
	}
	if declared > limit {
		return nil, tooBig(declared)
	}
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, tooBig(int64(len(data)))
	}
	return data, nil
}
