package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/pgcloudbackup/pgcloudbackup/internal/pg/pagecheck"
)

type entryKind uint8

const (
	kindFile entryKind = iota
	kindDir
	kindSymlink
)

// entry is one member of an archive, as found by the walk.
type entry struct {
	kind entryKind
	// name is the member name inside the archive (slash-separated, relative).
	name string
	// src is the absolute path read from.
	src   string
	mode  fs.FileMode // permission bits
	size  int64       // stat size at walk time (files)
	mtime time.Time
	uid   int
	gid   int
	link  string // symlink target
	// verify: check page checksums of this file; segno is its segment number.
	verify bool
	segno  uint32
}

// walker walks one archive's tree and applies basebackup.c's rules. It
// streams: memory does not grow with the number of files (directories are
// read in batches; only pending directory names are kept).
type walker struct {
	root string // directory the archive's member names are relative to
	// inTablespace: the tree is a tablespace (root is its location).
	inTablespace bool
	// skipContents: relative directories stored empty — tablespaces
	// located inside the data directory (backed up as their own archive,
	// not twice) and the stats_temp_directory of PostgreSQL 13-14.
	skipContents map[string]string
	// dirMode is the mode of a directory stored in place of a symbolic
	// link (0700, or 0750 in a group-access cluster); 0 means 0700.
	dirMode fs.FileMode
	// versionNum is the server's server_version_num: some rules depend on it.
	versionNum int
	logger     *slog.Logger
}

// linkDirMode is the mode a symbolic link stored as a directory gets:
// pg_dir_create_mode, as basebackup.c gives it.
func (w *walker) linkDirMode() fs.FileMode {
	if w.dirMode == 0 {
		return 0o700
	}
	return w.dirMode
}

// walk visits every entry below root/start (start itself included when it
// is not ""), depth first. visit may keep the entry.
func (w *walker) walk(ctx context.Context, start string, visit func(*entry) error) error {
	pending := []string{start}
	if start != "" {
		info, err := os.Lstat(filepath.Join(w.root, start))
		if errors.Is(err, fs.ErrNotExist) && w.inTablespace {
			// The tablespace was dropped after it was listed: not an
			// error, it is archived empty (basebackup.c sendTablespace).
			return nil
		}
		if err != nil {
			return fmt.Errorf("stat %s: %w", filepath.Join(w.root, start), err)
		}
		if err := visit(w.newEntry(start, kindDir, info)); err != nil {
			return err
		}
	}
	for len(pending) > 0 {
		dir := pending[len(pending)-1]
		pending = pending[:len(pending)-1]
		more, err := w.walkDir(ctx, dir, visit)
		if err != nil {
			return err
		}
		pending = append(pending, more...)
	}
	return nil
}

// walkDir visits the entries of one directory and returns its
// subdirectories to descend into.
func (w *walker) walkDir(ctx context.Context, dir string, visit func(*entry) error) ([]string, error) {
	abs := filepath.Join(w.root, dir)
	f, err := os.Open(abs)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil // vanished during the backup (a dropped database): not an error
	}
	if err != nil {
		return nil, fmt.Errorf("open directory %s: %w", abs, err)
	}
	defer f.Close()
	dbDir := isDatabaseDir(dir, w.inTablespace) || w.isInPlaceTablespaceDBDir(dir)
	var subdirs []string
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		batch, err := f.ReadDir(256)
		for _, de := range batch {
			sub, err := w.visitOne(dir, de, dbDir, visit)
			if err != nil {
				return nil, err
			}
			if sub != "" {
				subdirs = append(subdirs, sub)
			}
		}
		if err == io.EOF {
			return subdirs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read directory %s: %w", abs, err)
		}
	}
}

// visitOne decides about one directory entry; it returns the relative path
// of a directory to descend into, or "".
func (w *walker) visitOne(dir string, de fs.DirEntry, dbDir bool, visit func(*entry) error) (string, error) {
	name := de.Name()
	rel := join(dir, name)
	info, err := de.Info() // lstat
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil // vanished between readdir and stat: not an error
	}
	if err != nil {
		return "", fmt.Errorf("stat %s: %w", filepath.Join(w.root, rel), err)
	}
	isDir := info.IsDir()
	isLink := info.Mode()&fs.ModeSymlink != 0
	decision, reason := excludeByName(name, isDir)
	if isLink && decision == include {
		// An excluded directory may be a symbolic link (pg_stat_tmp on
		// tmpfs, pg_replslot elsewhere): basebackup.c stores it as an
		// empty directory, which the restored server needs.
		if d, r := excludeByName(name, true); d == keepDirEmpty {
			decision, reason = d, r
		}
	}
	if decision == include {
		decision, reason = excludeForVersion(name, w.versionNum)
	}
	if decision == include && dbDir && !isDir {
		decision, reason = excludeInDatabaseDir(name, func(relNumber string) bool {
			_, err := os.Lstat(filepath.Join(w.root, dir, relNumber+"_init"))
			return err == nil
		})
	}
	if decision == skipEntry {
		w.logger.Debug("excluded", "path", rel, "reason", reason)
		return "", nil
	}
	if !w.inTablespace {
		switch rel {
		case "pg_wal":
			// WAL is not copied from the walk: it comes from the archive,
			// or with --wal is added after the backup stops. Keep the
			// directory (as a directory even if it is a symlink) and its
			// archive_status subdirectory.
			e := w.newEntry(rel, kindDir, info)
			if isLink {
				e.mode = w.linkDirMode()
			}
			if err := visit(e); err != nil {
				return "", err
			}
			status := *e
			status.name = "pg_wal/archive_status"
			if err := visit(&status); err != nil || w.versionNum < 170000 {
				return "", err
			}
			// PostgreSQL 17 and later also keep pg_wal/summaries, empty
			// like archive_status: WAL summaries describe this server's
			// WAL, not the restored one's.
			summaries := *e
			summaries.name = "pg_wal/summaries"
			return "", visit(&summaries)
		case "global/pg_control":
			// Copied by the engine after every other file.
			return "", nil
		}
	}
	if reason, ok := w.skipContents[rel]; ok && (isDir || isLink) {
		decision = keepDirEmpty
		w.logger.Debug("directory kept empty", "path", rel, "reason", reason)
	}
	mode := info.Mode()
	switch {
	case isLink && decision == keepDirEmpty:
		e := w.newEntry(rel, kindDir, info)
		e.mode = w.linkDirMode()
		w.logger.Debug("symbolic link to an excluded directory stored as an empty directory", "path", rel)
		return "", visit(e)
	case isLink:
		// Symbolic links are kept only in pg_tblspc (tablespaces); anywhere
		// else basebackup.c skips them as special files.
		if !w.inTablespace && dir == "pg_tblspc" {
			target, err := os.Readlink(filepath.Join(w.root, rel))
			if errors.Is(err, fs.ErrNotExist) {
				return "", nil
			}
			if err != nil {
				return "", fmt.Errorf("read symbolic link %s: %w", filepath.Join(w.root, rel), err)
			}
			e := w.newEntry(rel, kindSymlink, info)
			e.link = target
			return "", visit(e)
		}
		w.logger.Warn("skipping special file", "path", filepath.Join(w.root, rel), "type", "symbolic link")
		return "", nil
	case isDir:
		if err := visit(w.newEntry(rel, kindDir, info)); err != nil {
			return "", err
		}
		if decision == keepDirEmpty {
			return "", nil
		}
		return rel, nil
	case mode.IsRegular():
		e := w.newEntry(rel, kindFile, info)
		e.verify, e.segno = w.shouldVerify(rel)
		return "", visit(e)
	default:
		w.logger.Warn("skipping special file", "path", filepath.Join(w.root, rel), "type", mode.Type().String())
		return "", nil
	}
}

// shouldVerify applies the page checksum rules of the server's version
// (from 17 on, only files that parse as relation files). Files of an
// in-place tablespace (pg_tblspc/<oid>/PG_*/...) are verified like a
// tablespace's.
func (w *walker) shouldVerify(rel string) (bool, uint32) {
	rule := pagecheck.ShouldVerify
	if w.versionNum >= 170000 {
		rule = pagecheck.ShouldVerifyRelation
	}
	if w.inTablespace {
		return rule(rel, true)
	}
	if rest, ok := inPlaceTablespacePath(rel); ok {
		return rule(rest, true)
	}
	return rule(rel, false)
}

// inPlaceTablespacePath returns the path below pg_tblspc/<oid>/ for a file
// inside an in-place tablespace (a directory, not a link, in pg_tblspc).
func inPlaceTablespacePath(rel string) (string, bool) {
	rest, ok := strings.CutPrefix(rel, "pg_tblspc/")
	if !ok {
		return "", false
	}
	oid, rest, ok := strings.Cut(rest, "/")
	if !ok || !allDigits(oid) {
		return "", false
	}
	return rest, true
}

func (w *walker) isInPlaceTablespaceDBDir(dir string) bool {
	if w.inTablespace {
		return false
	}
	rest, ok := inPlaceTablespacePath(dir)
	return ok && isDatabaseDir(rest, true)
}

func (w *walker) newEntry(rel string, kind entryKind, info fs.FileInfo) *entry {
	e := &entry{
		kind:  kind,
		name:  rel,
		src:   filepath.Join(w.root, rel),
		mode:  info.Mode().Perm(),
		mtime: info.ModTime(),
	}
	if kind == kindFile {
		e.size = info.Size()
	}
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		e.uid, e.gid = int(st.Uid), int(st.Gid)
	}
	return e
}

func join(dir, name string) string {
	if dir == "" {
		return name
	}
	return path.Join(dir, name)
}
