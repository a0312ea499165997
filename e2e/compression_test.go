package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgcloudbackup/pgcloudbackup/internal/pgtest"
)

// TestCompressions: each --compression gives archives the matching standard
// tool extracts, and that verify accepts; --progress logs its final state
// when stderr is not a terminal.
func TestCompressions(t *testing.T) {
	c := pgtest.New(t, pgtest.Options{})
	c.Pgbench(1)
	tools := map[string]string{"zstd": "zstd -dc", "lz4": "lz4 -dc", "gzip": "gzip -dc", "none": "cat"}
	for _, name := range []string{"zstd", "lz4", "gzip", "none"} {
		t.Run(name, func(t *testing.T) {
			dir := pgtest.TempDir(t, "bucket-")
			bucket := "file://" + dir
			r := cli(t, c.Env(), "backup", "--bucket", bucket, "--fast", "--compression", name, "--progress", "--json")
			if r.code != 0 {
				t.Fatalf("backup --compression %s: %s", name, r)
			}
			m := parseManifest(t, r)
			if m.Compression != name {
				t.Errorf("manifest compression %q", m.Compression)
			}
			if !strings.Contains(r.stderr, "msg=progress") || !strings.Contains(r.stderr, "percent=100") {
				t.Errorf("--progress without a terminal logged no final progress line:\n%s", r.stderr)
			}
			out := t.TempDir()
			for _, o := range m.Tablespaces[0].Objects {
				sh(t, fmt.Sprintf("%s %q | tar -xf - -C %q", tools[name], filepath.Join(dir, "backups", m.ID, o.Key), out))
			}
			if v := strings.TrimSpace(string(mustRead(t, filepath.Join(out, "PG_VERSION")))); v != fmt.Sprint(c.Version()) {
				t.Errorf("PG_VERSION %q after extracting with %s", v, tools[name])
			}
			if r := cli(t, nil, "verify", "--bucket", bucket, "latest"); r.code != 0 {
				t.Errorf("verify: %s", r)
			}
		})
	}
}
