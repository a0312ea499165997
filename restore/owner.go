package restore

import (
	"fmt"
	"os"
	"os/user"
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

// lookupOwner resolves USER[:GROUP] (names or numbers); without a group,
// the user's primary group.
func lookupOwner(spec string) (uid, gid int, err error) {
	name, group, hasGroup := strings.Cut(spec, ":")
	if u, err := user.Lookup(name); err == nil {
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
	} else if n, nerr := strconv.ParseUint(name, 10, 31); nerr == nil {
		// A uid without a passwd entry (a container's server user):
		// its group is the same number unless given.
		uid, gid = int(n), int(n)
		if u, err := user.LookupId(name); err == nil {
			gid, _ = strconv.Atoi(u.Gid)
		}
	} else {
		return 0, 0, fmt.Errorf("no such user")
	}
	if hasGroup {
		if g, err := user.LookupGroup(group); err == nil {
			gid, _ = strconv.Atoi(g.Gid)
		} else if n, nerr := strconv.ParseUint(group, 10, 31); nerr == nil {
			gid = int(n)
		} else {
			return 0, 0, fmt.Errorf("no such group %q", group)
		}
	}
	return uid, gid, nil
}
