package restore

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"sync"
	"syscall"

	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
)

// dirSink writes archive members below one directory (the data directory or
// a tablespace location) through os.Root, which refuses any path that would
// leave the directory, also through symbolic links: a hostile archive cannot
// write outside its target.
type dirSink struct {
	root *os.Root
	// links are the only symbolic links the archive may create:
	// pg_tblspc/<oid> -> where that tablespace is restored.
	links map[string]string
	// chown: running as root, set ownership: fixed (uid, gid) for every
	// file, or with fixed nil the archive's (as tar does).
	chown bool
	fixed *[2]int
	bufs  *sync.Pool
	// filePerm is the mode of the files the restore writes itself.
	filePerm fs.FileMode
	// hold is written under a temporary name and put in place by release.
	hold string

	mu    sync.Mutex
	owner *[2]int // fixed, or the first member's owner: given to the directory itself
}

func newDirSink(dir string, links map[string]string, chown bool) (*dirSink, error) {
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("open restore directory %s: %w", dir, err)
	}
	return &dirSink{
		root:  r,
		links: links,
		chown: chown,
		bufs:  &sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }},
	}, nil
}

func (s *dirSink) close() error { return s.root.Close() }

func (s *dirSink) where(name string) string { return path.Join(s.root.Name(), name) }

// writeError explains an error writing into the target; a full disk gets
// its own hint.
func (s *dirSink) writeError(what, name string, err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return failure.Wrap(failure.Failed, fmt.Errorf("%s %s: no space left on device", what, s.where(name)),
			"free space on the target filesystem (the partial restore was removed) and restore again")
	}
	return fmt.Errorf("%s %s: %w", what, s.where(name), err)
}

// setOwner makes every file belong to uid, gid.
func (s *dirSink) setOwner(ids *[2]int) {
	s.fixed = ids
	s.owner = ids
}

func (s *dirSink) recordOwner(h *tar.Header) [2]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fixed != nil {
		return *s.fixed
	}
	if s.owner == nil {
		s.owner = &[2]int{h.Uid, h.Gid}
	}
	return [2]int{h.Uid, h.Gid}
}

// Modes are the member's, limited to what PostgreSQL itself creates
// (0700/0750 directories, 0600/0640 files, initdb -g giving the group
// bits): a tampered archive cannot make anything world-writable or setuid.
func dirMode(h *tar.Header) fs.FileMode  { return fs.FileMode(h.Mode).Perm()&0o750 | 0o700 }
func fileMode(h *tar.Header) fs.FileMode { return fs.FileMode(h.Mode).Perm()&0o640 | 0o600 }

func (s *dirSink) ownAndTime(name string, h *tar.Header, link bool) error {
	if s.chown {
		ids := s.recordOwner(h)
		if err := s.root.Lchown(name, ids[0], ids[1]); err != nil {
			return s.writeError("chown", name, err)
		}
	}
	if !link {
		if err := s.root.Chtimes(name, h.ModTime, h.ModTime); err != nil {
			return s.writeError("set times of", name, err)
		}
	}
	return nil
}

func (s *dirSink) dir(name string, h *tar.Header) error {
	if err := notThroughLink(s.links, name); err != nil {
		return err
	}
	if err := s.root.MkdirAll(name, 0o700); err != nil {
		return s.writeError("create directory", name, err)
	}
	if err := s.root.Chmod(name, dirMode(h)); err != nil {
		return s.writeError("chmod", name, err)
	}
	return s.ownAndTime(name, h, false)
}

// holdSuffix marks a held file until release.
const holdSuffix = ".pgcloudbackup-partial"

// release puts the held file in place and makes the rename durable.
func (s *dirSink) release() error {
	if s.hold == "" {
		return nil
	}
	if _, err := s.root.Lstat(s.hold + holdSuffix); errors.Is(err, fs.ErrNotExist) {
		return nil // the archive had none (backup_manifest said so)
	}
	if err := s.root.Rename(s.hold+holdSuffix, s.hold); err != nil {
		return s.writeError("rename", s.hold+holdSuffix, err)
	}
	d, err := s.root.Open(path.Dir(s.hold))
	if err != nil {
		return s.writeError("open", path.Dir(s.hold), err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return s.writeError("sync", path.Dir(s.hold), err)
	}
	return nil
}

func (s *dirSink) file(name string, h *tar.Header, r io.Reader) error {
	if err := notThroughLink(s.links, name); err != nil {
		return err
	}
	if name == s.hold {
		name += holdSuffix
	}
	if dir := path.Dir(name); dir != "." {
		if err := s.root.MkdirAll(dir, 0o700); err != nil {
			return s.writeError("create directory", dir, err)
		}
	}
	// O_EXCL: a member that appears twice, or lands on something that
	// exists, is an error rather than a silent overwrite.
	mode := fileMode(h)
	f, err := s.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return s.writeError("create", name, err)
	}
	if mode&0o040 != 0 {
		// The umask may have taken the group bits of a group-access
		// cluster away.
		if err := f.Chmod(mode); err != nil {
			f.Close()
			return s.writeError("chmod", name, err)
		}
	}
	bp := s.bufs.Get().(*[]byte)
	// Hide *os.File's ReadFrom: it would allocate its own buffer per file.
	_, err = io.CopyBuffer(struct{ io.Writer }{f}, r, *bp)
	s.bufs.Put(bp)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return s.writeError("write", name, err)
	}
	return s.ownAndTime(name, h, false)
}

func (s *dirSink) symlink(name string, h *tar.Header) error {
	target, err := allowedLink(s.links, name, h)
	if err != nil {
		return err
	}
	if err := s.root.MkdirAll(path.Dir(name), 0o700); err != nil {
		return s.writeError("create directory", path.Dir(name), err)
	}
	if err := s.root.Symlink(target, name); err != nil {
		return s.writeError("create symbolic link", name, err)
	}
	return s.ownAndTime(name, h, true)
}

// allowedLink returns where a symbolic link member may point: only
// pg_tblspc/<oid> of a tablespace of the backup, to where it is restored.
func allowedLink(links map[string]string, name string, h *tar.Header) (string, error) {
	target, ok := links[name]
	if !ok {
		return "", failure.Wrap(failure.Failed,
			fmt.Errorf("member %q is a symbolic link (to %q) where a base backup has none", h.Name, h.Linkname),
			"the archive was tampered with: refusing to restore it")
	}
	return target, nil
}

// notThroughLink refuses a member below a tablespace link (pg_tblspc/<oid>/x
// in the data directory's archive): it would be written through the link
// into the tablespace, which has an archive of its own. os.Root refuses it
// too (the link leads outside); this says why.
func notThroughLink(links map[string]string, name string) error {
	for link := range links {
		if strings.HasPrefix(name, link+"/") {
			return failure.Wrap(failure.Failed,
				fmt.Errorf("member %q would be written through the tablespace link %s", name, link),
				"the archive was tampered with: refusing to restore it")
		}
	}
	return nil
}

// discardSink checks members without writing them (verify).
type discardSink struct {
	links map[string]string
	bufs  *sync.Pool
}

func newDiscardSink(links map[string]string) *discardSink {
	return &discardSink{links: links, bufs: &sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}}
}

func (d discardSink) dir(name string, _ *tar.Header) error { return notThroughLink(d.links, name) }

func (d discardSink) file(name string, _ *tar.Header, r io.Reader) error {
	if err := notThroughLink(d.links, name); err != nil {
		return err
	}
	bp := d.bufs.Get().(*[]byte)
	defer d.bufs.Put(bp)
	_, err := io.CopyBuffer(io.Discard, r, *bp)
	return err
}

func (d discardSink) symlink(name string, h *tar.Header) error {
	_, err := allowedLink(d.links, name, h)
	return err
}
