package restore

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
)

// ConfOptions are settings a restore writes into the restored
// postgresql.auto.conf, so the copy starts beside the original without
// clashing with it: its own port and socket directory, or streaming from a
// primary (archive_mode is --archive-mode's, see finishPITR).
type ConfOptions struct {
	Port            int    // 0: keep the backup's
	SocketDir       string // unix_socket_directories; "": keep
	PrimaryConnInfo string // primary_conninfo; needs standby.signal
}

// Setting is one parameter of postgresql.auto.conf.
type Setting struct{ Name, Value string }

// Line is the setting as a postgresql.conf line, its value quoted.
func (s Setting) Line() string { return s.Name + " = " + QuoteConf(s.Value) }

// Settings checks the options and returns the settings they make, in a
// fixed order. Call it before restoring, so a bad value changes nothing.
func (o ConfOptions) Settings(standby bool) ([]Setting, error) {
	var out []Setting
	if o.Port != 0 {
		if o.Port < 1 || o.Port > 65535 {
			return nil, failure.New(failure.Usage, "--port %d: want 1 to 65535", o.Port)
		}
		out = append(out, Setting{"port", strconv.Itoa(o.Port)})
	}
	if o.SocketDir != "" {
		for _, d := range strings.Split(o.SocketDir, ",") {
			if d = strings.TrimSpace(d); !filepath.IsAbs(d) && !strings.HasPrefix(d, "@") {
				return nil, failure.New(failure.Usage, "--socket-dir %q: want absolute directories (comma-separated)", o.SocketDir)
			}
		}
		out = append(out, Setting{"unix_socket_directories", o.SocketDir})
	}
	if o.PrimaryConnInfo != "" {
		if !standby {
			return nil, failure.New(failure.Usage, "--primary-conninfo needs --standby (a server streams from a primary only as a standby)")
		}
		out = append(out, Setting{"primary_conninfo", o.PrimaryConnInfo})
	}
	for _, s := range out {
		if strings.ContainsFunc(s.Value, func(r rune) bool { return r < ' ' || r == 0x7f }) {
			// A newline would end the setting and start another.
			return nil, failure.New(failure.Usage, "--%s: control characters are not allowed", flagName(s.Name))
		}
	}
	return out, nil
}

func flagName(setting string) string {
	switch setting {
	case "unix_socket_directories":
		return "socket-dir"
	case "primary_conninfo":
		return "primary-conninfo"
	}
	return setting
}

// QuoteConf quotes a value for postgresql.conf: single quotes, with quotes
// doubled and backslashes escaped (the configuration parser reads
// backslash escapes inside quoted values).
func QuoteConf(v string) string {
	v = strings.ReplaceAll(v, `\`, `\\`)
	return "'" + strings.ReplaceAll(v, "'", "''") + "'"
}

// AppendAutoConf appends settings to dataDir/postgresql.auto.conf under a
// comment line; later lines win over earlier ones, and ALTER SYSTEM keeps
// them. The file must be a regular file inside dataDir (a symbolic link
// from the backup is refused, never followed), and keeps the data
// directory's owner and mode 0600 when created.
func AppendAutoConf(dataDir, comment string, settings []Setting) error {
	if len(settings) == 0 {
		return nil
	}
	const name = "postgresql.auto.conf"
	root, err := os.OpenRoot(dataDir)
	if err != nil {
		return fmt.Errorf("open restored data directory: %w", err)
	}
	defer root.Close()
	if st, err := root.Lstat(name); err == nil && !st.Mode().IsRegular() {
		return fmt.Errorf("%s in %s is not a regular file (%s): not writing to it", name, dataDir, st.Mode().Type())
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("stat %s: %w", name, err)
	}
	var b strings.Builder
	old, err := root.ReadFile(name)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read %s: %w", name, err)
	}
	if len(old) > 0 && old[len(old)-1] != '\n' {
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "# %s\n", strings.ReplaceAll(comment, "\n", " "))
	for _, s := range settings {
		b.WriteString(s.Line() + "\n")
	}
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("open %s: %w", name, err)
	}
	if _, err := f.WriteString(b.String()); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", name, err)
	}
	if len(old) == 0 && os.Geteuid() == 0 {
		// Created by root: give it to the data directory's owner.
		if st, err := os.Stat(dataDir); err == nil {
			if sys, ok := st.Sys().(*syscall.Stat_t); ok {
				if err := f.Chown(int(sys.Uid), int(sys.Gid)); err != nil {
					f.Close()
					return fmt.Errorf("chown %s: %w", name, err)
				}
			}
		}
	}
	return f.Close()
}
