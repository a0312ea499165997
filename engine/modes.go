package engine

import (
	"fmt"
	"io/fs"
	"os"
)

// groupAccess reports whether the cluster allows group access: PostgreSQL
// decides it from the data directory's mode (0750 rather than 0700,
// GetDataDirectoryCreatePerm), and then creates files 0640 and directories
// 0750.
func groupAccess(pgdata string) (bool, error) {
	st, err := os.Stat(pgdata)
	if err != nil {
		return false, fmt.Errorf("stat data directory %s: %w", pgdata, err)
	}
	return st.Mode().Perm()&0o070 != 0, nil
}

// dirCreateMode is pg_dir_create_mode for the cluster.
func dirCreateMode(group bool) fs.FileMode {
	if group {
		return 0o750
	}
	return 0o700
}

// injectedMode is the mode of a file we write into the backup (0600 as
// given, 0640 in a group-access cluster, as pg_file_create_mode).
func injectedMode(mode fs.FileMode, group bool) fs.FileMode {
	if group {
		return mode | (mode&0o400)>>3
	}
	return mode
}
