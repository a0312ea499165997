package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
)

// controlFileSize is PG_CONTROL_FILE_SIZE: pg_control is always this long.
const controlFileSize = 8192

// controlData is the part of pg_control (ControlFileData) we read: the
// leading fields whose layout has not changed since PostgreSQL 9.
type controlData struct {
	SystemIdentifier uint64
	ControlVersion   uint32
	CatalogVersion   uint32
}

func parseControlData(b []byte) (controlData, error) {
	if len(b) < 16 {
		return controlData{}, fmt.Errorf("pg_control is %d bytes, too short", len(b))
	}
	le := binary.LittleEndian
	return controlData{
		SystemIdentifier: le.Uint64(b[0:]),
		ControlVersion:   le.Uint32(b[8:]),
		CatalogVersion:   le.Uint32(b[12:]),
	}, nil
}

// checkDataDirectory checks that dir is a data directory we can read and
// that it belongs to the cluster the session is connected to.
func checkDataDirectory(dir string, sysid uint64, addr string) (controlData, error) {
	path := filepath.Join(dir, "global", "pg_control")
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return controlData{}, failure.Wrap(failure.Precondition,
			fmt.Errorf("%s is not a PostgreSQL data directory (no global/pg_control)", dir),
			"run on the database host, and give --pgdata if the server's data_directory is not visible here")
	case errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EACCES):
		return controlData{}, failure.Wrap(failure.Precondition,
			fmt.Errorf("cannot read the data directory %s: permission denied", dir),
			"run as the OS user that owns the cluster (usually postgres)")
	case err != nil:
		return controlData{}, fmt.Errorf("read %s: %w", path, err)
	}
	cd, err := parseControlData(b)
	if err != nil {
		return controlData{}, fmt.Errorf("read %s: %w", path, err)
	}
	if cd.SystemIdentifier != sysid {
		return controlData{}, failure.Wrap(failure.Precondition,
			fmt.Errorf("data directory %s belongs to cluster %d, but the server at %s is cluster %d", dir, cd.SystemIdentifier, addr, sysid),
			"give the --pgdata of the server you connect to (or connect to the server of that directory)")
	}
	return cd, nil
}
