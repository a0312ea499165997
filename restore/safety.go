package restore

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
)

// A restore never removes or writes anything of a running PostgreSQL
// server: its data directory, its tablespace directories, its WAL
// directory, wherever they sit relative to the restore's directories. The
// running servers are found two ways: every process of the host named
// postgres (its working directory is its data directory; as root every
// one is visible, otherwise the user's own), and every postmaster.pid at,
// above and inside the restore's directories whose process is a live
// postgres. What they own is compared by file identity (device, inode), so
// symbolic links, bind mounts and other mount namespaces do not hide it.

// fileID identifies a directory independently of the path that leads to it.
type fileID struct{ dev, ino uint64 }

func idOf(path string) (fileID, bool) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return fileID{}, false
	}
	return fileID{uint64(st.Dev), st.Ino}, true
}

// inUse is what running servers own, each with what to call it.
type inUse struct {
	what     map[fileID]string
	clusters map[fileID]bool // data directories already added
	logger   *slog.Logger
}

func newInUse(logger *slog.Logger) *inUse {
	return &inUse{what: map[fileID]string{}, clusters: map[fileID]bool{}, logger: logger}
}

// addCluster records a running server's data directory (reached through
// access: a path of ours or /proc/<pid>/cwd), its tablespaces and its WAL
// directory. rootPrefix resolves the absolute links inside it (the
// server's root: "" or /proc/<pid>/root); shown is its path for messages.
func (u *inUse) addCluster(access, rootPrefix, shown string, pid int) {
	id, ok := idOf(access)
	if !ok || u.clusters[id] {
		return
	}
	u.clusters[id] = true
	server := fmt.Sprintf("the running PostgreSQL server (PID %d) on %s", pid, shown)
	u.what[id] = "the data directory of " + server
	u.logger.Debug("running PostgreSQL server found", "pid", pid, "data_directory", shown)
	follow := func(link string) (string, string, bool) {
		target, err := os.Readlink(link)
		if err != nil {
			return "", "", false
		}
		if filepath.IsAbs(target) {
			return rootPrefix + target, target, true
		}
		return filepath.Join(filepath.Dir(link), target), target, true
	}
	ents, _ := os.ReadDir(filepath.Join(access, "pg_tblspc"))
	for _, e := range ents {
		if e.Type()&fs.ModeSymlink == 0 {
			continue // in-place tablespace: inside the data directory
		}
		if p, target, ok := follow(filepath.Join(access, "pg_tblspc", e.Name())); ok {
			if tid, ok := idOf(p); ok {
				u.what[tid] = fmt.Sprintf("tablespace %s (%s) of %s", e.Name(), target, server)
			}
		}
	}
	wal := filepath.Join(access, "pg_wal")
	if st, err := os.Lstat(wal); err == nil && st.Mode()&fs.ModeSymlink != 0 {
		if p, target, ok := follow(wal); ok {
			if wid, ok := idOf(p); ok {
				u.what[wid] = fmt.Sprintf("the WAL directory (%s) of %s", target, server)
			}
		}
	}
}

// scanProcesses adds every running postgres process's data directory.
func (u *inUse) scanProcesses() {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || !isPostgres(pid) {
			continue
		}
		cwd := fmt.Sprintf("/proc/%d/cwd", pid)
		shown, err := os.Readlink(cwd)
		if err != nil {
			continue // another user's process: its pid file still finds it
		}
		if _, err := os.Stat(filepath.Join(cwd, "PG_VERSION")); err != nil {
			continue // not in a data directory (e.g. postgres --version)
		}
		u.addCluster(cwd, fmt.Sprintf("/proc/%d/root", pid), shown, pid)
	}
}

// isPostgres reports whether process pid runs the PostgreSQL server
// (postgres, or postmaster in old installations).
func isPostgres(pid int) bool {
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return false
	}
	switch strings.TrimSpace(string(comm)) {
	case "postgres", "postmaster":
		return true
	}
	if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil {
		switch filepath.Base(strings.TrimSuffix(exe, " (deleted)")) {
		case "postgres", "postmaster":
			return true
		}
	}
	return false
}

// pidFileLive reads a postmaster.pid and says whether its server runs: the
// PID is alive and is a postgres process. A file we cannot read or parse,
// or a PID we cannot identify, counts as live: we cannot prove otherwise.
func pidFileLive(path string) (pid int, live bool) {
	f, err := os.Open(path)
	if err != nil {
		return 0, true
	}
	defer f.Close()
	head, _ := io.ReadAll(io.LimitReader(f, 4096))
	first, _, _ := bytes.Cut(head, []byte("\n"))
	pid, err = strconv.Atoi(strings.TrimSpace(string(first)))
	if err != nil || pid == 0 {
		return 0, true
	}
	if pid < 0 {
		pid = -pid // a single-user backend writes its PID negated
	}
	if err := unix.Kill(pid, 0); errors.Is(err, unix.ESRCH) {
		return pid, false
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
		return pid, true // alive (kill says so) but not visible here
	}
	if _, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err != nil {
		return pid, true
	}
	// Alive but another program: the PID was reused after a crash.
	return pid, isPostgres(pid)
}

// addPIDFile adds the server of a live postmaster.pid in dir.
func (u *inUse) addPIDFile(dir string) {
	pf := filepath.Join(dir, "postmaster.pid")
	if _, err := os.Lstat(pf); err != nil {
		return
	}
	pid, live := pidFileLive(pf)
	if !live {
		u.logger.Info("stale postmaster.pid: no server runs with its PID", "file", pf, "pid", pid)
		return
	}
	if _, ok := idOf(dir); ok {
		u.addCluster(dir, "", dir, pid)
	}
}

// existingAncestor returns the real path of p, or of its nearest existing
// ancestor when p does not exist (yet).
func existingAncestor(p string) (string, error) {
	for d := p; ; d = filepath.Dir(d) {
		if _, err := os.Lstat(d); err == nil {
			return filepath.EvalSymlinks(d)
		} else if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, unix.ENOTDIR) {
			return "", err
		}
		if d == "/" || d == "." {
			return d, nil
		}
	}
}

// findServers collects what running servers own near the given
// directories: all visible postgres processes, and postmaster.pid files
// at, above and inside each directory.
func findServers(dirs []string, logger *slog.Logger) (*inUse, error) {
	u := newInUse(logger)
	u.scanProcesses()
	for _, d := range dirs {
		real, err := existingAncestor(d)
		if err != nil {
			return nil, unsafeError(d, fmt.Errorf("resolve %s: %w", d, err))
		}
		for a := real; ; a = filepath.Dir(a) {
			u.addPIDFile(a)
			if a == "/" || a == "." {
				break
			}
		}
		if real != d && !sameFile(real, d) {
			continue // d does not exist: nothing inside it
		}
		err = filepath.WalkDir(real, func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if e.IsDir() {
				u.addPIDFile(p)
			}
			return nil
		})
		if err != nil {
			return nil, unsafeError(d, err)
		}
	}
	return u, nil
}

func sameFile(a, b string) bool {
	ia, ok1 := idOf(a)
	ib, ok2 := idOf(b)
	return ok1 && ok2 && ia == ib
}

func unsafeError(dir string, err error) error {
	return failure.Wrap(failure.Precondition,
		fmt.Errorf("cannot make sure %s holds nothing of a running PostgreSQL server: %w", dir, err),
		"run the restore as a user who can read it (or as root)")
}

// check refuses a restore directory that is, holds or lies inside
// anything a running server owns.
func (u *inUse) check(what, dir string) error {
	real, err := existingAncestor(dir)
	if err != nil {
		return unsafeError(dir, err)
	}
	refuse := func(format string, args ...any) error {
		return failure.Wrap(failure.Precondition, fmt.Errorf(format, args...),
			"stop that server first, or restore somewhere else; a restore never touches a running cluster")
	}
	for a := real; ; a = filepath.Dir(a) {
		if id, ok := idOf(a); ok {
			if w, ok := u.what[id]; ok {
				if a == real && sameFile(real, dir) {
					return refuse("%s %s is %s", what, dir, w)
				}
				return refuse("%s %s is inside %s", what, dir, w)
			}
		}
		if a == "/" || a == "." {
			break
		}
	}
	if !sameFile(real, dir) {
		return nil // does not exist yet: holds nothing
	}
	err = filepath.WalkDir(real, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !e.IsDir() || p == real {
			return nil
		}
		if id, ok := idOf(p); ok {
			if w, ok := u.what[id]; ok {
				return refuse("%s %s holds %s (%s)", what, dir, w, p)
			}
		}
		return nil
	})
	var fe *failure.Error
	if errors.As(err, &fe) {
		return err
	}
	if err != nil {
		return unsafeError(dir, err)
	}
	return nil
}
