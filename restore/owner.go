package restore

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
)

// owner is who owns the restored files when the restore runs as root.
// The backup's numeric uid/gid are only right on the host it came from: by
// default the files go to the owner of the directory the target is made in
// (where the server user keeps its clusters), or to --owner.
type owner struct {
	chown bool    // running as root: set ownership at all
	ids   *[2]int // uid, gid for everything; nil: keep the archive's
	how   string  // for the log
}

// chooseOwner decides the ownership of a restore into target.
func chooseOwner(target, spec string) (owner, error) {
	root := os.Geteuid() == 0
	if spec != "" {
		uid, gid, err := lookupOwner(spec)
		if err != nil {
			return owner{}, failure.Wrap(failure.Usage, fmt.Errorf("--owner %s: %w", spec, err), "give a user name or uid, optionally :group")
		}
		if !root {
			if uid != os.Geteuid() {
				return owner{}, failure.New(failure.Usage, "--owner %s: only root can give files to another user", spec)
			}
			return owner{how: "the current user"}, nil
		}
		return owner{chown: true, ids: &[2]int{uid, gid}, how: fmt.Sprintf("%s (--owner)", spec)}, nil
	}
	if !root {
		return owner{how: "the current user"}, nil
	}
	parent, err := existingAncestor(filepath.Dir(target))
	if err != nil {
		return owner{}, failure.Wrap(failure.Precondition, fmt.Errorf("resolve the parent of %s: %w", target, err), "")
	}
	st, err := os.Stat(parent)
	if err != nil {
		return owner{}, failure.Wrap(failure.Precondition, fmt.Errorf("stat %s: %w", parent, err), "")
	}
	sys := st.Sys().(*syscall.Stat_t)
	if sys.Uid == 0 {
		// root can run no server: the parent tells us nothing.
		return owner{chown: true, how: fmt.Sprintf("the backup's numeric owners (%s belongs to root; pass --owner USER to choose)", parent)}, nil
	}
	return owner{chown: true, ids: &[2]int{int(sys.Uid), int(sys.Gid)},
		how: fmt.Sprintf("%d:%d, the owner of %s", sys.Uid, sys.Gid, parent)}, nil
}

// lookupOwner resolves USER[:GROUP] (names from /etc/passwd and
// /etc/group, or numbers); without a group, the user's primary group.
// (Not os/user: with cgo it links the NSS libraries, some 9 MiB of RSS.)
func lookupOwner(spec string) (uid, gid int, err error) {
	name, group, hasGroup := strings.Cut(spec, ":")
	if f, ok := dbEntry("/etc/passwd", name, 0); ok && len(f) > 3 {
		uid, err1 := strconv.Atoi(f[2])
		gid, err2 := strconv.Atoi(f[3])
		if err1 != nil || err2 != nil {
			return 0, 0, fmt.Errorf("bad /etc/passwd entry for %s", name)
		}
		return withGroup(uid, gid, group, hasGroup)
	}
	n, nerr := strconv.ParseUint(name, 10, 31)
	if nerr != nil {
		return 0, 0, fmt.Errorf("no such user")
	}
	// A uid without a passwd entry (a container's server user): its
	// group is the same number unless given.
	uid, gid = int(n), int(n)
	if f, ok := dbEntry("/etc/passwd", name, 2); ok && len(f) > 3 {
		if g, err := strconv.Atoi(f[3]); err == nil {
			gid = g
		}
	}
	return withGroup(uid, gid, group, hasGroup)
}

func withGroup(uid, gid int, group string, hasGroup bool) (int, int, error) {
	if !hasGroup {
		return uid, gid, nil
	}
	if f, ok := dbEntry("/etc/group", group, 0); ok && len(f) > 2 {
		g, err := strconv.Atoi(f[2])
		if err != nil {
			return 0, 0, fmt.Errorf("bad /etc/group entry for %s", group)
		}
		return uid, g, nil
	}
	if n, err := strconv.ParseUint(group, 10, 31); err == nil {
		return uid, int(n), nil
	}
	return 0, 0, fmt.Errorf("no such group %q", group)
}

// dbEntry finds the line of a colon-separated database (passwd, group)
// whose field col equals key.
func dbEntry(path, key string, col int) ([]string, bool) {
	data, err := os.ReadFile(path)
	if err != nil || key == "" {
		return nil, false
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Split(line, ":")
		if len(f) > col && f[col] == key && !strings.HasPrefix(line, "#") {
			return f, true
		}
	}
	return nil, false
}
