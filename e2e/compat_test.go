package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/pgcloudbackup/pgcloudbackup/internal/pgtest"
)

// TestRestoresOlderRelease: backups taken by an earlier build (the binary
// named by PGCLOUDBACKUP_OLD_BINARY, e.g. main's) verify and restore with
// this one, for every compression and with a tablespace: the volume names
// it wrote ("base.00001.tar.zst", "<oid>.00001.tar", ...) and its manifests
// are still read. Skipped without that variable: it needs a second build.
func TestRestoresOlderRelease(t *testing.T) {
	old := os.Getenv("PGCLOUDBACKUP_OLD_BINARY")
	if old == "" {
		t.Skip("PGCLOUDBACKUP_OLD_BINARY is not set")
	}
	c := pgtest.New(t, pgtest.Options{})
	sample := c.LoadSample(pgtest.SampleOptions{})
	for _, name := range []string{"none", "gzip", "lz4", "zstd"} {
		t.Run(name, func(t *testing.T) {
			bucket := "file://" + pgtest.TempDir(t, "bucket-")
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, old, "backup", "--bucket", bucket, "--fast", "--wal", "--compression", name, "--json")
			cmd.Env = append(cleanEnv(), c.Env()...)
			if r := runCmd(t, cmd); r.code != 0 {
				t.Fatalf("backup with %s: %s", old, r)
			}
			if r := cli(t, nil, "verify", "--bucket", bucket, "latest"); r.code != 0 {
				t.Fatalf("verify: %s", r)
			}
			if name != "zstd" {
				return // one full restore is enough: verify read every volume
			}
			root := pgtest.TempDir(t, "compat-")
			target := filepath.Join(root, "data")
			tsDir := filepath.Join(root, "ts")
			if r := cli(t, nil, "restore", "--bucket", bucket, "latest", "--target", target,
				"--tablespace-map", sample.TablespaceOID+"="+tsDir); r.code != 0 {
				t.Fatalf("restore: %s", r)
			}
			restored := startRestored(t, c, sample, root, target)
			restored.Stop()
		})
	}
}
