package pgtest

import (
	"os"
	"path/filepath"
	"testing"
)

func TestClusterLifecycle(t *testing.T) {
	c := New(t, Options{})
	if got := c.QueryString("postgres", "SHOW data_checksums"); got != "on" {
		t.Fatalf("data_checksums = %q, want on", got)
	}
	c.Exec("postgres", "CREATE TABLE t(i int); INSERT INTO t SELECT generate_series(1,100)")
	if got := c.QueryString("postgres", "SELECT count(*)::text FROM t"); got != "100" {
		t.Fatalf("count = %s", got)
	}
	p := c.RelationPath("postgres", "t")
	if _, err := os.Stat(filepath.Join(c.DataDir, p)); err != nil {
		t.Fatalf("relation file: %v", err)
	}
	c.Stop()
	c.Start()
	if got := c.QueryString("postgres", "SELECT count(*)::text FROM t"); got != "100" {
		t.Fatalf("count after restart = %s", got)
	}
}
