package restore

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
	"github.com/pgcloudbackup/pgcloudbackup/internal/pgtest"
)

func TestConfSettingsRefusals(t *testing.T) {
	bad := []struct {
		o       ConfOptions
		standby bool
		want    string
	}{
		{ConfOptions{Port: 70000}, false, "--port"},
		{ConfOptions{Port: -1}, false, "--port"},
		{ConfOptions{SocketDir: "relative/dir"}, false, "--socket-dir"},
		{ConfOptions{SocketDir: "/tmp,rel"}, false, "--socket-dir"},
		{ConfOptions{PrimaryConnInfo: "host=primary"}, false, "--standby"},
		{ConfOptions{PrimaryConnInfo: "host=p\nrestore_command = 'rm -rf /'"}, true, "control characters"},
		{ConfOptions{SocketDir: "/tmp\n"}, false, "control characters"},
	}
	for _, b := range bad {
		_, err := b.o.Settings(b.standby)
		if err == nil || failure.KindOf(err) != failure.Usage || !strings.Contains(err.Error(), b.want) {
			t.Errorf("%+v: got %v, want a usage error naming %s", b.o, err, b.want)
		}
	}
	s, err := ConfOptions{Port: 5433, SocketDir: "/run/pg-drill", PrimaryConnInfo: "host=p"}.Settings(true)
	if err != nil || len(s) != 3 {
		t.Fatalf("settings %v, %v", s, err)
	}
}

func TestQuoteConf(t *testing.T) {
	if got := QuoteConf(`a'b\c`); got != `'a''b\\c'` {
		t.Fatalf("QuoteConf: %s", got)
	}
}

// A postgresql.auto.conf that the backup made a symbolic link is never
// followed: whatever it points at stays unchanged.
func TestAppendAutoConfRefusesSymlink(t *testing.T) {
	dir := t.TempDir()
	outside := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(outside, []byte("precious\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "postgresql.auto.conf")); err != nil {
		t.Fatal(err)
	}
	err := AppendAutoConf(dir, "test", []Setting{{"port", "5433"}})
	if err == nil {
		t.Fatal("appended through a symbolic link")
	}
	if b, _ := os.ReadFile(outside); string(b) != "precious\n" {
		t.Fatalf("link target changed: %q", b)
	}
}

// PostgreSQL itself reads back what we wrote, quotes and backslashes
// included (postgres -C prints a setting as the server would use it).
func TestAppendAutoConfReadByPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	c := pgtest.New(t, pgtest.Options{})
	c.Stop()
	conninfo := `host=primary.internal port=5432 user=replicator application_name='drill \ o''brien'`
	sockDir := "/tmp/pg drill's sockets"
	settings, err := ConfOptions{Port: 6543, SocketDir: sockDir, PrimaryConnInfo: conninfo}.Settings(true)
	if err != nil {
		t.Fatal(err)
	}
	if err := AppendAutoConf(c.DataDir, "added by a test", settings); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"port": "6543", "unix_socket_directories": sockDir, "primary_conninfo": conninfo}
	for name, v := range want {
		cmd := pgtest.ServerCommand(filepath.Join(c.BinDir, "postgres"), "-D", c.DataDir, "-C", name)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("postgres -C %s: %v\n%s", name, err, out)
		}
		if got := strings.TrimSuffix(string(out), "\n"); got != v {
			t.Errorf("%s: PostgreSQL reads %q, want %q", name, got, v)
		}
	}
	// Still the server's file: it can rewrite it (ALTER SYSTEM).
	st, err := os.Stat(filepath.Join(c.DataDir, "postgresql.auto.conf"))
	if err != nil {
		t.Fatal(err)
	}
	dst, err := os.Stat(c.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Sys().(*syscall.Stat_t).Uid != dst.Sys().(*syscall.Stat_t).Uid {
		t.Error("postgresql.auto.conf changed owner")
	}
}
