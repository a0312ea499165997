package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/pgcloudbackup/pgcloudbackup/internal/pgtest"
	"github.com/pgcloudbackup/pgcloudbackup/internal/testenv"
)

// previousRelease is the commit of the release before the storage,
// layout and manifest redesign: its backups must stay readable.
const previousRelease = "984e4a1b04da0a284bb999d702aa79a0dc3d1dda"

// TestRestoresOlderRelease: backups taken by an earlier build verify and
// restore with this one, for every compression and with a tablespace: the
// volume names it wrote ("base.00001.tar.zst", "<oid>.00001.tar", ...) and
// its manifests are still read. The earlier build is the binary named by
// PGCLOUDBACKUP_OLD_BINARY, else previousRelease built from this checkout's
// history (skipped when the checkout does not hold it: a shallow clone).
func TestRestoresOlderRelease(t *testing.T) {
	old := os.Getenv("PGCLOUDBACKUP_OLD_BINARY")
	if old == "" {
		old = buildRelease(t, previousRelease)
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

// buildRelease builds the pgcloudbackup of commit rev from this checkout's
// history into a temporary directory and returns the binary.
func buildRelease(t *testing.T, rev string) string {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("git", "-C", root, "cat-file", "-e", rev+"^{commit}").CombinedOutput(); err != nil {
		t.Skipf("commit %s is not in this checkout (a shallow clone?): %v %s", rev[:12], err, out)
	}
	src := t.TempDir()
	archive := exec.Command("git", "-C", root, "archive", "--format=tar", rev)
	extract := exec.Command("tar", "-x", "-C", src)
	pipe, err := archive.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	extract.Stdin = pipe
	if err := extract.Start(); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	archive.Stderr = &stderr
	if err := archive.Run(); err != nil {
		t.Fatalf("git archive %s: %v %s", rev[:12], err, stderr.Bytes())
	}
	if err := extract.Wait(); err != nil {
		t.Fatalf("extract %s: %v", rev[:12], err)
	}
	bin := filepath.Join(t.TempDir(), "pgcloudbackup-"+rev[:12])
	build := exec.Command("go", "build", "-o", bin, "./cmd/pgcloudbackup")
	build.Dir = src
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", rev[:12], err, out)
	}
	return bin
}
