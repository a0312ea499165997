// Package pgtest creates throw-away PostgreSQL clusters for tests: initdb
// --data-checksums in a temporary directory, a free port on loopback, and the
// server run as the "postgres" user when the tests run as root (PostgreSQL
// refuses to run as root).
package pgtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgcloudbackup/pgcloudbackup/internal/testenv"
)

// OSUser is the operating-system account that runs servers when the tests
// run as root.
const OSUser = "postgres"

// DBUser is the database superuser initdb creates.
const DBUser = "postgres"

// BinDir finds the PostgreSQL server binaries: $PG_BINDIR, then the newest
// /usr/lib/postgresql/<major>/bin, then pg_config --bindir.
func BinDir() (string, error) {
	if d := os.Getenv("PG_BINDIR"); d != "" {
		return d, nil
	}
	if d, err := newestDebianBinDir(); err == nil {
		return d, nil
	}
	out, err := exec.Command("pg_config", "--bindir").Output()
	if err == nil {
		d := strings.TrimSpace(string(out))
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", fmt.Errorf("no PostgreSQL server binaries (initdb) found: install postgresql or set PG_BINDIR")
}

func newestDebianBinDir() (string, error) {
	dirs, err := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if err != nil || len(dirs) == 0 {
		return "", fmt.Errorf("none")
	}
	sort.Slice(dirs, func(i, j int) bool {
		return majorOf(dirs[i]) > majorOf(dirs[j])
	})
	return filepath.Dir(dirs[0]), nil
}

func majorOf(initdbPath string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(initdbPath))))
	return n
}

// Options shape a new cluster.
type Options struct {
	// Major is the PostgreSQL major version to run (13, 17, ...); 0 means
	// the default server (BinDir). See BinDirFor for where each comes from.
	Major int
	// NoChecksums creates the cluster without data checksums.
	NoChecksums bool
	// Conf lines appended to postgresql.conf (key = value).
	Conf map[string]string
	// InitdbArgs are extra initdb arguments (e.g. -g for group access).
	InitdbArgs []string
}

// Cluster is a running throw-away PostgreSQL server.
type Cluster struct {
	BinDir  string
	Major   int    // major version of the server binaries
	Root    string // temporary directory owned by the server's user
	DataDir string
	SockDir string
	Port    int
	LogFile string

	t testing.TB
}

// RunningAsRoot reports whether the tests run as root (servers then run as
// the postgres user).
func RunningAsRoot() bool { return os.Geteuid() == 0 }

// TempDir returns a new temporary directory the server's user can use:
// created under os.TempDir (whose parents are traversable), chowned to the
// postgres user when running as root, and removed when the test ends.
func TempDir(t testing.TB, pattern string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", pattern)
	if err != nil {
		t.Fatalf("temp dir: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if RunningAsRoot() {
		ChownToServerUser(t, dir)
	}
	return dir
}

// ChownToServerUser hands path (recursively) to the postgres OS user.
func ChownToServerUser(t testing.TB, path string) {
	t.Helper()
	u, err := user.Lookup(OSUser)
	if err != nil {
		t.Fatalf("look up OS user %s: %v", OSUser, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	err = filepath.Walk(path, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
	if err != nil {
		t.Fatalf("chown %s: %v", path, err)
	}
}

// ServerCommand builds a command that runs as the server's OS user (directly
// when not root; through setpriv ... exec when root, so that signals reach
// the program itself and not a wrapper).
func ServerCommand(name string, args ...string) *exec.Cmd {
	if !RunningAsRoot() {
		return exec.Command(name, args...)
	}
	full := append([]string{"--reuid=" + OSUser, "--regid=" + OSUser, "--init-groups", "--", name}, args...)
	cmd := exec.Command("setpriv", full...)
	cmd.Env = append(os.Environ(), "HOME=/tmp")
	return cmd
}

// New creates, configures and starts a cluster; it is stopped and removed
// when the test ends. Without PostgreSQL binaries the test is skipped
// (failed when CI is set).
func New(t testing.TB, opts Options) *Cluster {
	t.Helper()
	bin, err := BinDirFor(opts.Major)
	if err != nil {
		testenv.Unavailable(t, "%v", err)
	}
	major, err := BinMajor(bin)
	if err != nil {
		t.Fatalf("%v", err)
	}
	if RunningAsRoot() {
		if _, err := user.Lookup(OSUser); err != nil {
			testenv.Unavailable(t, "running as root needs an OS user %q to run PostgreSQL: %v", OSUser, err)
		}
		if _, err := exec.LookPath("setpriv"); err != nil {
			testenv.Unavailable(t, "running as root needs setpriv (util-linux): %v", err)
		}
	}
	root := TempDir(t, "pgtest-")
	c := &Cluster{
		BinDir:  bin,
		Major:   major,
		Root:    root,
		DataDir: filepath.Join(root, "data"),
		SockDir: root,
		LogFile: filepath.Join(root, "server.log"),
		t:       t,
	}
	args := []string{"-D", c.DataDir, "-U", DBUser, "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"}
	switch {
	case !opts.NoChecksums:
		args = append(args, "--data-checksums")
	case major >= 18:
		// initdb enables data checksums by default since PostgreSQL 18.
		args = append(args, "--no-data-checksums")
	}
	args = append(args, opts.InitdbArgs...)
	if out, err := c.serverCmd("initdb", args...).CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	conf := map[string]string{
		"fsync":                      "off", // throw-away cluster: speed over durability
		"max_wal_senders":            "4",
		"max_replication_slots":      "4",
		"shared_buffers":             "32MB",
		"log_min_messages":           "warning",
		"unix_socket_permissions":    "0777",
		"listen_addresses":           "'127.0.0.1'",
		"allow_in_place_tablespaces": "on",
	}
	for k, v := range opts.Conf {
		conf[k] = v
	}
	c.AppendConf(conf)
	c.startOnFreePort()
	t.Cleanup(c.stopQuietly)
	return c
}

// startOnFreePort starts the server on a port that was free a moment ago,
// and on a fresh one when another process took it before the server bound
// it (up to three tries).
func (c *Cluster) startOnFreePort() {
	c.t.Helper()
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		c.Port = FreePort(c.t)
		if err = StartServer(c.BinDir, c.DataDir, c.Port, c.SockDir, c.LogFile); err == nil {
			return
		}
		if !portTaken(err) {
			break
		}
	}
	c.t.Fatalf("%v", err)
}

// portTaken: the server could not bind its port.
func portTaken(err error) bool {
	s := err.Error()
	return strings.Contains(s, "could not bind") || strings.Contains(s, "Address already in use") ||
		strings.Contains(s, "could not create any TCP/IP sockets")
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// AppendConf appends settings to postgresql.conf (takes effect on restart or
// reload).
func (c *Cluster) AppendConf(conf map[string]string) {
	c.t.Helper()
	AppendConf(c.t, c.DataDir, conf)
}

// AppendConf appends settings to dataDir/postgresql.conf.
func AppendConf(t testing.TB, dataDir string, conf map[string]string) {
	t.Helper()
	keys := make([]string, 0, len(conf))
	for k := range conf {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("\n# pgtest\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "%s = %s\n", k, conf[k])
	}
	f, err := os.OpenFile(filepath.Join(dataDir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatalf("open postgresql.conf: %v", err)
	}
	defer f.Close()
	if _, err := f.WriteString(b.String()); err != nil {
		t.Fatalf("append postgresql.conf: %v", err)
	}
}

func (c *Cluster) serverCmd(prog string, args ...string) *exec.Cmd {
	return ServerCommand(filepath.Join(c.BinDir, prog), args...)
}

// Start starts the server and waits until it accepts connections.
func (c *Cluster) Start() {
	c.t.Helper()
	if err := StartServer(c.BinDir, c.DataDir, c.Port, c.SockDir, c.LogFile); err != nil {
		c.t.Fatalf("%v", err)
	}
}

// StartServer starts a server on an existing data directory (owned by the
// server's OS user) and waits until it is ready.
func StartServer(binDir, dataDir string, port int, sockDir, logFile string) error {
	opts := fmt.Sprintf("-p %d -k %s", port, sockDir)
	cmd := ServerCommand(filepath.Join(binDir, "pg_ctl"), "-D", dataDir, "-l", logFile, "-w", "-t", "120", "-o", opts, "start")
	if out, err := cmd.CombinedOutput(); err != nil {
		log, _ := os.ReadFile(logFile)
		return fmt.Errorf("pg_ctl start %s: %v\n%s\n--- server log ---\n%s", dataDir, err, out, tail(string(log), 4000))
	}
	return nil
}

// StopServer stops the server on dataDir with the given mode (fast, immediate).
func StopServer(binDir, dataDir, mode string) error {
	cmd := ServerCommand(filepath.Join(binDir, "pg_ctl"), "-D", dataDir, "-m", mode, "-w", "stop")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("pg_ctl stop -m %s %s: %v\n%s", mode, dataDir, err, out)
	}
	return nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// Stop stops the server (fast shutdown).
func (c *Cluster) Stop() {
	c.t.Helper()
	if err := StopServer(c.BinDir, c.DataDir, "fast"); err != nil {
		c.t.Fatalf("%v", err)
	}
}

// Crash stops the server the hard way (immediate shutdown: no checkpoint,
// sessions cut), as a server failure during a backup would.
func (c *Cluster) Crash() {
	c.t.Helper()
	if err := StopServer(c.BinDir, c.DataDir, "immediate"); err != nil {
		c.t.Fatalf("%v", err)
	}
}

func (c *Cluster) stopQuietly() {
	if _, err := os.Stat(filepath.Join(c.DataDir, "postmaster.pid")); err == nil {
		_ = StopServer(c.BinDir, c.DataDir, "immediate")
	}
}

// Host is the address clients use.
func (c *Cluster) Host() string { return "127.0.0.1" }

// ConnString is a keyword/value connection string for database db.
func (c *Cluster) ConnString(db string) string {
	if db == "" {
		db = "postgres"
	}
	return fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", c.Host(), c.Port, DBUser, db)
}

// Env is the libpq environment that points client programs at the cluster.
func (c *Cluster) Env() []string {
	return []string{
		"PGHOST=" + c.Host(),
		"PGPORT=" + strconv.Itoa(c.Port),
		"PGUSER=" + DBUser,
		"PGDATABASE=postgres",
		"PGSSLMODE=disable",
	}
}

// Connect opens a session to database db; it is closed when the test ends.
func (c *Cluster) Connect(db string) *pgx.Conn {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.ConnString(db))
	if err != nil {
		c.t.Fatalf("connect to test cluster: %v", err)
	}
	c.t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// Exec runs SQL (one or more statements, simple protocol) in database db.
func (c *Cluster) Exec(db, sql string) {
	c.t.Helper()
	conn := c.Connect(db)
	if _, err := conn.Exec(context.Background(), sql); err != nil {
		c.t.Fatalf("exec %q: %v", short(sql), err)
	}
	_ = conn.Close(context.Background())
}

// QueryString runs a query that returns one value and returns it as text.
func (c *Cluster) QueryString(db, sql string) string {
	c.t.Helper()
	conn := c.Connect(db)
	defer conn.Close(context.Background())
	var s string
	if err := conn.QueryRow(context.Background(), sql).Scan(&s); err != nil {
		c.t.Fatalf("query %q: %v", short(sql), err)
	}
	return s
}

func short(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// Client runs a client program from the cluster's bin directory (pgbench,
// psql, pg_basebackup, ...) pointed at the cluster, as the current user.
// Server-only installations (the npm builds) have no client programs: the
// default server's are used instead (clients talk to older and newer servers).
func (c *Cluster) Client(prog string, args ...string) *exec.Cmd {
	path := filepath.Join(c.BinDir, prog)
	if _, err := os.Stat(path); err != nil {
		if def, derr := BinDir(); derr == nil {
			path = filepath.Join(def, prog)
		}
	}
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), c.Env()...)
	return cmd
}

// Pgbench initialises pgbench tables at the given scale in database postgres.
func (c *Cluster) Pgbench(scale int) {
	c.t.Helper()
	out, err := c.Client("pgbench", "-i", "-q", "-s", strconv.Itoa(scale), "postgres").CombinedOutput()
	if err != nil {
		c.t.Fatalf("pgbench -i: %v\n%s", err, out)
	}
}

// Version returns the server's major version (e.g. 15).
func (c *Cluster) Version() int {
	c.t.Helper()
	n, err := strconv.Atoi(c.QueryString("postgres", "SHOW server_version_num"))
	if err != nil {
		c.t.Fatalf("server_version_num: %v", err)
	}
	return n / 10000
}

// RelationPath returns the data-directory-relative path of a relation's main
// fork (pg_relation_filepath).
func (c *Cluster) RelationPath(db, rel string) string {
	c.t.Helper()
	return c.QueryString(db, fmt.Sprintf("SELECT pg_relation_filepath('%s')", rel))
}

// Adopt starts a server on an existing data directory (a restored backup),
// owned by the server's OS user when running as root; it is stopped when the
// test ends. The directory's parents must be traversable by that user.
func Adopt(t testing.TB, dataDir string) *Cluster {
	t.Helper()
	return AdoptMajor(t, dataDir, 0)
}

// AdoptMajor is Adopt with the server of the given major (0: the default).
func AdoptMajor(t testing.TB, dataDir string, major int) *Cluster {
	t.Helper()
	bin, err := BinDirFor(major)
	if err != nil {
		testenv.Unavailable(t, "%v", err)
	}
	if major == 0 {
		if major, err = BinMajor(bin); err != nil {
			t.Fatalf("%v", err)
		}
	}
	root := TempDir(t, "pgadopt-")
	c := &Cluster{BinDir: bin, Major: major, Root: root, DataDir: dataDir, SockDir: root, LogFile: filepath.Join(root, "server.log"), t: t}
	if RunningAsRoot() {
		ChownToServerUser(t, dataDir)
	}
	if err := os.Chmod(dataDir, 0o700); err != nil {
		t.Fatalf("chmod %s: %v", dataDir, err)
	}
	c.startOnFreePort()
	t.Cleanup(c.stopQuietly)
	return c
}

// Log returns the server log (for failure messages).
func (c *Cluster) Log() string {
	b, _ := os.ReadFile(c.LogFile)
	return tail(string(b), 8000)
}
