package engine

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
	"github.com/pgcloudbackup/pgcloudbackup/internal/pgtest"
)

// TestDataDirectoryIdentity: a --pgdata with the connected cluster's system
// identifier but another server's (a standby made by pg_basebackup and
// running on another port; the same copy stopped, as a restored copy; a
// cp -a of the running data directory, stale postmaster.pid included) is
// refused with exit 3 before anything is uploaded. These used to back up
// the wrong directory and exit 0. The server's own directory, reached
// through a symbolic link, is accepted.
func TestDataDirectoryIdentity(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	c := pgtest.New(t, pgtest.Options{})
	c.Exec("postgres", "CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g")

	root := pgtest.TempDir(t, "copies-")
	standby := filepath.Join(root, "standby")
	out, err := pgtest.ServerCommand(filepath.Join(c.BinDir, "pg_basebackup"), "-h", c.Host(), "-p", strconv.Itoa(c.Port),
		"-U", pgtest.DBUser, "-D", standby, "-R", "-X", "stream", "-c", "fast").CombinedOutput()
	if err != nil {
		t.Fatalf("pg_basebackup: %v\n%s", err, out)
	}
	port := pgtest.FreePort(t)
	if err := pgtest.StartServer(c.BinDir, standby, port, root, filepath.Join(root, "standby.log")); err != nil {
		t.Fatal(err)
	}
	defer pgtest.StopServer(c.BinDir, standby, "immediate")

	attempt := func(name, pgdata, want string) {
		t.Helper()
		store := memStore(t)
		opts := backupOptions(t, c)
		opts.PGData = pgdata
		_, err := Backup(context.Background(), store, newUploader(store), opts)
		if err == nil || failure.KindOf(err) != failure.Precondition || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: backup error = %v, want a precondition error containing %q", name, err, want)
		}
		assertEmptyStore(t, store)
	}
	attempt("running standby", standby, "names port "+strconv.Itoa(port))

	if err := pgtest.StopServer(c.BinDir, standby, "fast"); err != nil {
		t.Fatal(err)
	}
	attempt("stopped copy", standby, "no postmaster.pid")

	copied := filepath.Join(root, "copied")
	if out, err := exec.Command("cp", "-a", c.DataDir, copied).CombinedOutput(); err != nil {
		t.Fatalf("cp -a: %v\n%s", err, out)
	}
	attempt("copy with the original's postmaster.pid", copied, "belongs to the server of "+c.DataDir)

	// A copy whose stale postmaster.pid names a dead process (the directory
	// line rewritten to its own path, as a crashed copy's would be).
	pid, err := os.ReadFile(filepath.Join(copied, "postmaster.pid"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(pid), "\n")
	lines[0], lines[1] = "2147483646", copied
	if err := os.WriteFile(filepath.Join(copied, "postmaster.pid"), []byte(strings.Join(lines, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	attempt("stale postmaster.pid", copied, "not running")

	link := filepath.Join(root, "link")
	if err := os.Symlink(c.DataDir, link); err != nil {
		t.Fatal(err)
	}
	store := memStore(t)
	opts := backupOptions(t, c)
	opts.PGData = link
	if _, err := Backup(context.Background(), store, newUploader(store), opts); err != nil {
		t.Errorf("backup of the server's own directory through a link: %v", err)
	}
}

func TestCheckPostmasterStartTime(t *testing.T) {
	dir := t.TempDir()
	start := time.Unix(1_700_000_000, 0)
	write := func(pidStart int64) {
		content := strconv.Itoa(os.Getpid()) + "\n" + dir + "\n" + strconv.FormatInt(pidStart, 10) + "\n5432\n/tmp\n*\n  1234  5678\nready\n"
		if err := os.WriteFile(filepath.Join(dir, "postmaster.pid"), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	srv := postmasterIdentity{Port: 5432, StartTime: start.Add(1500 * time.Millisecond)}
	for pidStart, ok := range map[int64]bool{
		start.Unix(): true, start.Unix() - 30: true, start.Unix() + 1: true,
		start.Unix() + 2: false, start.Unix() - 3600: false,
	} {
		write(pidStart)
		if err := checkPostmaster(dir, srv, "test"); (err == nil) != ok {
			t.Errorf("postmaster.pid start %d, server %v: %v, want ok=%v", pidStart, srv.StartTime.Unix(), err, ok)
		}
	}
	write(start.Unix())
	if err := checkPostmaster(dir, postmasterIdentity{Port: 5433, StartTime: srv.StartTime}, "test"); err == nil {
		t.Error("a port mismatch passed")
	}
	pidFileWith := func(pid, dataDir string) {
		content := pid + "\n" + dataDir + "\n" + strconv.FormatInt(start.Unix(), 10) + "\n5432\n/tmp\n"
		if err := os.WriteFile(filepath.Join(dir, "postmaster.pid"), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// The directory's postmaster runs here, but the server was reached on
	// another host (a standby host with the same layout, started about
	// when the primary was): refused. On loopback: accepted.
	remote := srv
	remote.Remote = &net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 5432}
	if err := checkPostmaster(dir, remote, "test"); err == nil || !strings.Contains(err.Error(), "not an address of this host") {
		t.Errorf("server on another host: %v, want refused", err)
	}
	remote.Remote = &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 5432}
	if err := checkPostmaster(dir, remote, "test"); err != nil {
		t.Errorf("server on loopback: %v", err)
	}
	// A dead PID naming this directory: a stale file.
	pidFileWith("2147483646", dir)
	if err := checkPostmaster(dir, srv, "test"); err == nil || failure.KindOf(err) != failure.Precondition {
		t.Errorf("stale postmaster.pid: %v, want a precondition error", err)
	}
	// The server in a container sees its directory under a path that does
	// not exist here, and its PID is in another namespace: port and start
	// time decide.
	pidFileWith("2147483646", "/var/lib/postgresql/data-not-here")
	if err := checkPostmaster(dir, srv, "test"); err != nil {
		t.Errorf("postmaster.pid written in a container: %v", err)
	}
	containerIP := srv
	containerIP.Remote = &net.TCPAddr{IP: net.ParseIP("172.17.0.2"), Port: 5432}
	if err := checkPostmaster(dir, containerIP, "test"); err != nil {
		t.Errorf("server in a container reached at its bridge address: %v", err)
	}
	for _, bad := range []string{"", "garbage", "12\n/x\nnot-a-time\n5432\n", "12\n/x\n1700000000\nport\n"} {
		if err := os.WriteFile(filepath.Join(dir, "postmaster.pid"), []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := checkPostmaster(dir, srv, "test"); err == nil || failure.KindOf(err) != failure.Precondition {
			t.Errorf("postmaster.pid %q: %v, want a precondition error", bad, err)
		}
	}
}

// TestCheckLabel: a label PostgreSQL would refuse after its checkpoint (over
// 1024 bytes; it used to fail with exit 1 after connecting), or one that
// would add lines to backup_label, is a usage error found before anything
// is touched.
func TestCheckLabel(t *testing.T) {
	if err := CheckLabel(strings.Repeat("é", 512)); err != nil {
		t.Errorf("1024-byte label refused: %v", err)
	}
	for _, l := range []string{strings.Repeat("x", 1025), "nightly\nSTART TIMELINE: 9", "a\rb"} {
		if err := CheckLabel(l); err == nil || failure.KindOf(err) != failure.Usage {
			t.Errorf("label %.20q: %v, want a usage error", l, err)
		}
	}
	// Refused before connecting: the DSN points nowhere.
	opts := Options{DSN: "host=/nonexistent port=1", Label: strings.Repeat("x", 1025)}
	if _, err := Backup(context.Background(), memStore(t), nil, opts); err == nil || failure.KindOf(err) != failure.Usage {
		t.Errorf("Backup with a long label: %v, want a usage error before connecting", err)
	}
}
