package engine

import (
	"context"
	"io/fs"
	"os"
	"strings"
	"testing"

	"github.com/pgcloudbackup/pgcloudbackup/internal/pgtest"
)

// TestInjectedFileModes: backup_label, tablespace_map and the WAL .done
// markers we write are 0640 in a group-access cluster (data directory
// 0750), 0600 otherwise, as PostgreSQL creates files; they used to be 0600
// always.
func TestInjectedFileModes(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	c := pgtest.New(t, pgtest.Options{})
	tsDir := pgtest.TempDir(t, "ts-")
	c.Exec("postgres", "CREATE TABLESPACE spc LOCATION '"+tsDir+"'")
	for _, tc := range []struct {
		dataMode fs.FileMode
		want     fs.FileMode
	}{{0o750, 0o640}, {0o700, 0o600}} {
		if err := os.Chmod(c.DataDir, tc.dataMode); err != nil {
			t.Fatal(err)
		}
		store := memStore(t)
		opts := backupOptions(t, c)
		opts.IncludeWAL = true
		m, err := Backup(context.Background(), store, newUploader(store), opts)
		if err != nil {
			t.Fatalf("backup: %v", err)
		}
		members := readBackup(t, store, store.BackupKey(m.ID, ""), m)
		checked := 0
		for name, mem := range members {
			if name == "base/backup_label" || name == "base/tablespace_map" || strings.HasSuffix(name, ".done") {
				checked++
				if got := fs.FileMode(mem.hdr.Mode).Perm(); got != tc.want {
					t.Errorf("data directory %v: %s has mode %v, want %v", tc.dataMode, name, got, tc.want)
				}
			}
		}
		if checked < 3 {
			t.Errorf("data directory %v: only %d injected files found (backup_label, tablespace_map, .done markers)", tc.dataMode, checked)
		}
	}
}
