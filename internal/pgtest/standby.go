package pgtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Standby makes a streaming standby of c, for any major and without
// client programs (the npm builds have none): a physical replication slot on
// c keeps the WAL, a low-level base backup (pg_backup_start/stop, or
// pg_start_backup/pg_stop_backup before 15) copies the data directory, and
// the copy starts with standby.signal, primary_conninfo and
// primary_slot_name. It waits until the standby accepts read-only
// connections; it is stopped when the test ends. A standby of a standby
// cascades: it follows its upstream to a new timeline when the upstream is
// promoted. Clusters with tablespaces are not supported (their directories
// would collide on one host).
func (c *Cluster) Standby(t testing.TB) *Cluster {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(c.DataDir, "pg_tblspc"))
	if err != nil || len(ents) != 0 {
		t.Fatalf("Standby: the primary must have no tablespaces (pg_tblspc: %d entries, %v)", len(ents), err)
	}
	slot := fmt.Sprintf("standby_%d", time.Now().UnixNano()%1e9)
	c.Exec("postgres", fmt.Sprintf("SELECT pg_create_physical_replication_slot('%s', true)", slot))

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	conn := c.Connect("postgres")
	start, stop := "SELECT pg_backup_start('pgtest standby', true)", "SELECT labelfile FROM pg_backup_stop(false)"
	if c.Major < 15 {
		start, stop = "SELECT pg_start_backup('pgtest standby', true, false)", "SELECT labelfile FROM pg_stop_backup(false, false)"
	}
	if _, err := conn.Exec(ctx, start); err != nil {
		t.Fatalf("start the standby's base backup: %v", err)
	}
	root := TempDir(t, "pgstandby-")
	s := &Cluster{
		BinDir:  c.BinDir,
		Major:   c.Major,
		Root:    root,
		DataDir: filepath.Join(root, "data"),
		SockDir: root,
		LogFile: filepath.Join(root, "server.log"),
		t:       t,
	}
	if err := copyForStandby(c.DataDir, s.DataDir); err != nil {
		t.Fatalf("copy the primary's data directory: %v", err)
	}
	var label string
	if err := conn.QueryRow(ctx, stop).Scan(&label); err != nil {
		t.Fatalf("stop the standby's base backup: %v", err)
	}
	_ = conn.Close(ctx)
	if err := os.WriteFile(filepath.Join(s.DataDir, "backup_label"), []byte(label), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.DataDir, "standby.signal"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	AppendConf(t, s.DataDir, map[string]string{
		"primary_conninfo":  fmt.Sprintf("'host=%s port=%d user=%s application_name=pgtest_standby'", c.Host(), c.Port, DBUser),
		"primary_slot_name": "'" + slot + "'",
		"hot_standby":       "on",
	})
	if RunningAsRoot() {
		ChownToServerUser(t, root)
	}
	s.Port = FreePort(t)
	s.Start()
	t.Cleanup(s.stopQuietly)
	return s
}

// copyForStandby copies a running cluster's data directory the way a base
// backup does, leaving out what a standby must not start with: the server's
// lock and options files, WAL (streamed from the slot instead), replication
// slots and temporary state.
func copyForStandby(src, dst string) error {
	emptyDirs := map[string]bool{"pg_wal": true, "pg_replslot": true, "pg_stat_tmp": true, "pg_dynshmem": true,
		"pg_notify": true, "pg_serial": true, "pg_snapshots": true, "pg_subtrans": true}
	skipFiles := map[string]bool{"postmaster.pid": true, "postmaster.opts": true, "backup_label": true, "tablespace_map": true}
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // vanished while copying: WAL replay recreates it
		}
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			if err := os.MkdirAll(target, 0o700); err != nil {
				return err
			}
			if rel == "pg_wal" {
				// Keep archive_status (and summaries, 17+) as empty directories.
				for _, sub := range []string{"archive_status", "summaries"} {
					if _, err := os.Stat(filepath.Join(p, sub)); err == nil {
						if err := os.Mkdir(filepath.Join(target, sub), 0o700); err != nil {
							return err
						}
					}
				}
			}
			if emptyDirs[rel] {
				return filepath.SkipDir
			}
			return nil
		}
		if skipFiles[rel] || strings.HasPrefix(d.Name(), "pgsql_tmp") || !d.Type().IsRegular() {
			return nil
		}
		return copyFile(p, target)
	})
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return out.Close()
}

// Promote ends recovery on a standby (pg_ctl promote) and waits until it
// accepts writes on its new timeline.
func (c *Cluster) Promote() {
	c.t.Helper()
	out, err := c.serverCmd("pg_ctl", "-D", c.DataDir, "-w", "-t", "120", "promote").CombinedOutput()
	if err != nil {
		c.t.Fatalf("pg_ctl promote %s: %v\n%s", c.DataDir, err, out)
	}
}
