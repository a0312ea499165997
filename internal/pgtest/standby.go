package pgtest

import (
	"path/filepath"
	"strconv"
	"testing"
)

// Standby makes a streaming standby of c (pg_basebackup -R, WAL streamed),
// starts it and returns it; it is stopped and removed when the test ends.
// A standby of a standby cascades: it follows its upstream to a new
// timeline when the upstream is promoted.
func (c *Cluster) Standby(t testing.TB) *Cluster {
	t.Helper()
	root := TempDir(t, "pgstandby-")
	s := &Cluster{
		BinDir:  c.BinDir,
		Root:    root,
		DataDir: filepath.Join(root, "data"),
		SockDir: root,
		LogFile: filepath.Join(root, "server.log"),
		t:       t,
	}
	// As the server's user, so the copy belongs to it.
	cmd := s.serverCmd("pg_basebackup", "-D", s.DataDir, "-R", "-X", "stream", "-c", "fast", "--no-sync",
		"-h", c.Host(), "-p", strconv.Itoa(c.Port), "-U", DBUser)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pg_basebackup for a standby: %v\n%s", err, out)
	}
	s.Port = FreePort(t)
	s.Start()
	t.Cleanup(s.stopQuietly)
	return s
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
