package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgcloudbackup/pgcloudbackup/internal/pgtest"
)

// A DR drill on the production host: the restored copy starts on its own
// port and socket directory, with archiving off, from what restore wrote —
// pg_ctl gets no -p/-k. A bad flag refuses before anything is restored.
func TestRestorePortSocketNoArchive(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	c := pgtest.New(t, pgtest.Options{Conf: map[string]string{"archive_mode": "on", "archive_command": "'true'"}})
	b := newTestBucket(t)
	if r := b.cli("backup", "--dsn", c.ConnString(""), "--fast", "--wal", "-q"); r.code != 0 {
		t.Fatalf("backup: exit %d\n%s", r.code, r.stderr)
	}
	work := pgtest.TempDir(t, "drill-")
	target := filepath.Join(work, "data")
	sock := filepath.Join(work, "sock")
	if err := os.Mkdir(sock, 0o755); err != nil {
		t.Fatal(err)
	}
	if pgtest.RunningAsRoot() {
		pgtest.ChownToServerUser(t, sock)
	}

	// Refused before restoring: nothing is created.
	r := b.cli("restore", "latest", "--target", target, "--primary-conninfo", "host=primary")
	wantOneLineError(t, r, exitUsage, "--standby")
	if _, err := os.Stat(target); !os.IsNotExist(err) {
		t.Fatalf("a refused restore created the target: %v", err)
	}

	port := pgtest.FreePort(t)
	r = b.cli("restore", "latest", "--target", target, "--port", strconv.Itoa(port), "--socket-dir", sock, "--archive-mode", "off", "-q")
	if r.code != 0 {
		t.Fatalf("restore: exit %d\n%s", r.code, r.stderr)
	}
	startRestored(t, c.BinDir, target, filepath.Join(work, "server.log"))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Through the new socket directory and port: proves both took effect.
	conn, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres", sock, port))
	if err != nil {
		t.Fatalf("connect to the restored server on its own socket/port: %v", err)
	}
	defer conn.Close(ctx)
	for name, want := range map[string]string{"archive_mode": "off", "port": strconv.Itoa(port), "unix_socket_directories": sock} {
		var got string
		if err := conn.QueryRow(ctx, "SELECT current_setting($1)", name).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	conf, _ := os.ReadFile(filepath.Join(target, "postgresql.auto.conf"))
	if !strings.Contains(string(conf), "# added by pgcloudbackup restore of backup ") {
		t.Errorf("postgresql.auto.conf does not say where the settings came from:\n%s", conf)
	}
}

// A streaming standby in one command: restore --standby --primary-conninfo,
// start it, and a row written on the primary arrives on the standby.
func TestRestoreStreamingStandby(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	c := pgtest.New(t, pgtest.Options{})
	b := newTestBucket(t)
	if r := b.cli("backup", "--dsn", c.ConnString(""), "--fast", "--wal", "-q"); r.code != 0 {
		t.Fatalf("backup: exit %d\n%s", r.code, r.stderr)
	}
	work := pgtest.TempDir(t, "standby-")
	target := filepath.Join(work, "data")
	port := pgtest.FreePort(t)
	primary := fmt.Sprintf("host=127.0.0.1 port=%d user=postgres application_name=drill", c.Port)
	r := b.cli("restore", "latest", "--target", target, "--standby", "--primary-conninfo", primary,
		"--port", strconv.Itoa(port), "--socket-dir", work, "-q")
	if r.code != 0 {
		t.Fatalf("restore: exit %d\n%s", r.code, r.stderr)
	}
	logFile := filepath.Join(work, "server.log")
	startRestored(t, c.BinDir, target, logFile)

	c.Exec("postgres", "CREATE TABLE after_backup AS SELECT 42 AS answer")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres", work, port))
	if err != nil {
		t.Fatalf("connect to the standby: %v", err)
	}
	defer conn.Close(ctx)
	var inRecovery bool
	if err := conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery); err != nil || !inRecovery {
		t.Fatalf("restored server is not a standby: %v %v", inRecovery, err)
	}
	// Wait (bounded) for the primary's row to stream in.
	for {
		var n int
		err := conn.QueryRow(ctx, "SELECT answer FROM after_backup").Scan(&n)
		if err == nil && n == 42 {
			break
		}
		if ctx.Err() != nil {
			log, _ := os.ReadFile(logFile)
			t.Fatalf("the primary's new row never reached the standby: %v\n%s", err, log)
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	var sender string
	if err := c.Connect("postgres").QueryRow(ctx, "SELECT application_name FROM pg_stat_replication").Scan(&sender); err != nil || sender != "drill" {
		t.Errorf("pg_stat_replication on the primary: %q, %v", sender, err)
	}
}

// startRestored starts the server a restore wrote into target with its own
// settings (pg_ctl start, as the operator would) and stops it at the end.
func startRestored(t *testing.T, binDir, target, logFile string) {
	t.Helper()
	if pgtest.RunningAsRoot() {
		pgtest.ChownToServerUser(t, target)
	}
	start := pgtest.ServerCommand(filepath.Join(binDir, "pg_ctl"), "-D", target, "-l", logFile, "-w", "-t", "120", "start")
	if out, err := start.CombinedOutput(); err != nil {
		log, _ := os.ReadFile(logFile)
		t.Fatalf("pg_ctl start: %v\n%s\n%s", err, out, log)
	}
	t.Cleanup(func() { _ = pgtest.StopServer(binDir, target, "immediate") })
}
