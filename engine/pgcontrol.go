package engine

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
	"github.com/pgcloudbackup/pgcloudbackup/internal/pg/control"
)

// checkDataDirectory checks that dir is a data directory we can read and
// that it belongs to the cluster the session is connected to.
func checkDataDirectory(dir string, sysid uint64, addr string) (control.Data, error) {
	path := filepath.Join(dir, "global", "pg_control")
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return control.Data{}, failure.Wrap(failure.Precondition,
			fmt.Errorf("%s is not a PostgreSQL data directory (no global/pg_control)", dir),
			"run on the database host, and give --pgdata if the server's data_directory is not visible here")
	case errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EACCES):
		return control.Data{}, failure.Wrap(failure.Precondition,
			fmt.Errorf("cannot read the data directory %s: permission denied", dir),
			"run as the OS user that owns the cluster (usually postgres)")
	case err != nil:
		return control.Data{}, fmt.Errorf("read %s: %w", path, err)
	}
	cd, err := control.Parse(b)
	if err != nil {
		return control.Data{}, fmt.Errorf("read %s: %w", path, err)
	}
	if cd.SystemIdentifier != sysid {
		return control.Data{}, failure.Wrap(failure.Precondition,
			fmt.Errorf("data directory %s belongs to cluster %d, but the server at %s is cluster %d", dir, cd.SystemIdentifier, addr, sysid),
			"give the --pgdata of the server you connect to (or connect to the server of that directory)")
	}
	return cd, nil
}
