// Package restore turns a backup in the bucket back into a data directory
// PostgreSQL starts from, and verifies backups without writing anything.
// Every object is checked against manifest.json (size, SHA-256) and every
// file against backup_manifest (size, CRC32C) as it streams.
package restore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
	"github.com/pgcloudbackup/pgcloudbackup/internal/pg/backupmanifest"
	"github.com/pgcloudbackup/pgcloudbackup/internal/progress"
	"github.com/pgcloudbackup/pgcloudbackup/manifest"
	"github.com/pgcloudbackup/pgcloudbackup/storage"
)

// Options configure a restore.
type Options struct {
	// Target is the data directory to create: absent or empty.
	Target string
	// TablespaceMap moves tablespaces (OID -> new absolute location);
	// others go back to their original location, which must be absent or
	// empty.
	TablespaceMap map[uint32]string
	// Jobs is the number of archive objects downloaded and extracted at
	// once.
	Jobs int
	// Overwrite empties a non-empty target and non-empty tablespace
	// locations given in TablespaceMap, never an original tablespace
	// location and never anything of a running server.
	Overwrite bool
	// Recovery writes recovery.signal (targeted recovery, then promote);
	// Standby writes standby.signal.
	Recovery bool
	Standby  bool
	// RestoreCommand, if set, is written to postgresql.auto.conf (only
	// with Recovery or Standby: PostgreSQL reads it in archive recovery
	// only).
	RestoreCommand string
	// Owner (USER[:GROUP]) owns the restored files when running as root;
	// by default the owner of the target's parent directory.
	Owner    string
	Progress *progress.Counter
	Logger   *slog.Logger
}

// Result describes a finished restore.
type Result struct {
	Target      string            `json:"target"`
	Tablespaces map[string]string `json:"tablespaces"` // OID -> location
	Bytes       int64             `json:"bytes"`
	Files       int64             `json:"files"`
	Signal      string            `json:"signal,omitempty"`
}

// location is where one archive is restored.
type location struct {
	oid  uint32
	dir  string
	ts   manifest.Tablespace
	sink *dirSink
	// mapped: the user named this location (the target, or
	// --tablespace-map), so --overwrite may empty it.
	mapped bool
	// nonEmpty: it holds files that --overwrite removes, reclaim bytes.
	nonEmpty bool
	reclaim  int64
	// prepared: created or emptied by us, so a failure cleans it up;
	// createdTop is the topmost directory we created ("" if none).
	prepared   bool
	createdTop string
	// lock is an flock on the directory while we write into it, so two
	// restores into one directory cannot remove each other's files.
	lock *os.File
}

func (l *location) what() string {
	switch {
	case l.oid == 0:
		return "target directory"
	case l.mapped:
		return fmt.Sprintf("tablespace %d location", l.oid)
	default:
		return fmt.Sprintf("tablespace %d location (from the backup)", l.oid)
	}
}

// Restore restores backup m into opts.Target.
func Restore(ctx context.Context, store *storage.Store, m *manifest.Backup, opts Options) (_ *Result, err error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Jobs <= 0 {
		opts.Jobs = runtime.NumCPU()
	}
	defer func() {
		if err != nil && ctx.Err() != nil {
			err = interrupted("restore", ctx)
		}
	}()
	if err := CheckOptions(opts); err != nil {
		return nil, err
	}
	// Every check comes before the first change: a refused restore leaves
	// every directory exactly as it was.
	if err := CheckBackup(m); err != nil {
		return nil, err
	}
	locs, links, err := plan(m, opts)
	if err != nil {
		return nil, err
	}
	own, err := chooseOwner(locs[0].dir, opts.Owner)
	if err != nil {
		return nil, err
	}
	if err := checkHost(locs, opts.Overwrite, opts.Logger); err != nil {
		return nil, err
	}
	index, err := loadIndex(ctx, store, m)
	if err != nil {
		return nil, err
	}
	defer index.close()
	if err := checkObjects(ctx, store, m, opts.Jobs); err != nil {
		return nil, err
	}
	if own.chown {
		opts.Logger.Info("restored files will belong to " + own.how)
	}

	defer func() {
		for _, l := range locs {
			if l.lock != nil {
				l.lock.Close()
			}
		}
	}()
	// From here a failure removes what we wrote, so a retry finds empty
	// targets again.
	defer func() {
		if err != nil {
			for _, l := range locs {
				cleanup(l, opts.Logger)
			}
		}
	}()
	for _, l := range locs {
		if err := prepare(l, opts.Logger); err != nil {
			return nil, err
		}
	}
	for _, l := range locs {
		var lk map[string]string
		if l.oid == 0 {
			lk = links
		}
		if l.sink, err = newDirSink(l.dir, lk, own.chown); err != nil {
			return nil, err
		}
		if l.oid == 0 {
			l.sink.hold = "global/pg_control"
		}
		if own.ids != nil {
			l.sink.setOwner(own.ids)
		}
		defer l.sink.close()
	}
	opts.Progress.SetTotal(m.TotalSize())
	opts.Progress.SetPhase("restore")
	var parts []part
	for _, l := range locs {
		parts = append(parts, partsOf(l.ts, l.sink)...)
	}
	if err := readAll(ctx, store, m, index, parts, opts.Jobs, opts.Progress, nil); err != nil {
		return nil, err
	}
	if err := missingError(index); err != nil {
		return nil, err
	}

	base := locs[0]
	if err := finishDataDir(ctx, store, base, locs, m, index, opts); err != nil {
		return nil, err
	}
	opts.Progress.SetPhase("sync")
	for _, l := range locs {
		if err := syncDir(l.dir); err != nil {
			return nil, err
		}
	}
	// pg_control goes in last, once everything else is on disk: a restore
	// killed before this point leaves a directory no server starts from.
	if err := base.sink.release(); err != nil {
		return nil, err
	}
	res := &Result{Target: base.dir, Tablespaces: map[string]string{}, Bytes: m.TotalSize()}
	for _, l := range locs[1:] {
		res.Tablespaces[strconv.FormatUint(uint64(l.oid), 10)] = l.dir
	}
	for _, ts := range m.Tablespaces {
		res.Files += ts.Files
	}
	switch {
	case opts.Standby:
		res.Signal = "standby.signal"
	case opts.Recovery:
		res.Signal = "recovery.signal"
	}
	opts.Progress.SetPhase("done")
	return res, nil
}

// CheckOptions refuses option combinations that cannot do what they say.
func CheckOptions(opts Options) error {
	if opts.Recovery && opts.Standby {
		return failure.New(failure.Usage, "--recovery and --standby exclude each other")
	}
	if opts.RestoreCommand != "" && !opts.Recovery && !opts.Standby {
		return failure.Wrap(failure.Usage,
			errors.New("--restore-command does nothing without --recovery or --standby: PostgreSQL runs restore_command only in archive recovery"),
			"add --recovery (recover, then promote) or --standby")
	}
	return nil
}

// interrupted is the error of an operation stopped by a signal (or a
// cancelled context).
func interrupted(op string, ctx context.Context) error {
	msg := op + " interrupted"
	if c := context.Cause(ctx); c != nil && c != context.Canceled && c != context.DeadlineExceeded {
		msg = fmt.Sprintf("%s (%v)", msg, c)
	}
	if op == "restore" {
		msg += "; what it wrote was removed"
	}
	return failure.Wrap(failure.Interrupted, errors.New(msg), "")
}

// plan decides where each archive goes and which tablespace links the base
// archive may create. It checks every location: absolute and clean, none
// inside another (the target included), so no archive can land in
// another's directory.
func plan(m *manifest.Backup, opts Options) ([]*location, map[string]string, error) {
	if opts.Target == "" {
		return nil, nil, failure.New(failure.Usage, "no --target directory given")
	}
	target, err := filepath.Abs(opts.Target)
	if err != nil {
		return nil, nil, fmt.Errorf("resolve %s: %w", opts.Target, err)
	}
	if target == "/" {
		return nil, nil, failure.New(failure.Usage, "--target %s: not the root directory", opts.Target)
	}
	known := map[uint32]bool{}
	for _, ts := range m.Tablespaces {
		known[ts.OID] = true
	}
	for oid, dir := range opts.TablespaceMap {
		if !known[oid] || oid == 0 {
			return nil, nil, failure.New(failure.Usage, "--tablespace-map %d=%s: backup %s has no tablespace with OID %d", oid, dir, m.ID, oid)
		}
		if err := checkLocation(dir); err != nil {
			return nil, nil, failure.New(failure.Usage, "--tablespace-map %d=%s: the location must be an absolute, clean path: %v", oid, dir, err)
		}
	}
	var locs []*location
	links := map[string]string{}
	for _, ts := range m.Tablespaces {
		l := &location{oid: ts.OID, ts: ts, dir: target, mapped: true}
		if ts.OID != 0 {
			l.dir, l.mapped = opts.TablespaceMap[ts.OID]
			if !l.mapped {
				l.dir = ts.Location
			}
			links[backupmanifest.TablespacePath(ts.OID)] = l.dir
		}
		locs = append(locs, l)
	}
	if len(locs) == 0 || locs[0].oid != 0 {
		return nil, nil, failure.New(failure.Failed, "backup %s has no data directory archive", m.ID)
	}
	// No location inside another, as written and as resolved through
	// symbolic links.
	for i, a := range locs {
		for _, b := range locs[:i] {
			if !nested(a.dir, b.dir) {
				continue
			}
			kind, hint := failure.Precondition, fmt.Sprintf("move tablespace %d with --tablespace-map %d=DIR", a.oid, a.oid)
			if a.mapped && b.mapped {
				kind, hint = failure.Usage, "give every tablespace its own directory, outside the target"
			}
			return nil, nil, failure.Wrap(kind, fmt.Errorf("%s %s and %s %s overlap: one would be restored into the other", b.what(), b.dir, a.what(), a.dir), hint)
		}
	}
	return locs, links, nil
}

// nested reports whether a and b are the same directory or one is inside
// the other, lexically or once symbolic links are resolved.
func nested(a, b string) bool {
	if within(a, b) || within(b, a) {
		return true
	}
	ra, rb := resolved(a), resolved(b)
	return within(ra, rb) || within(rb, ra)
}

// resolved is p with its existing part's symbolic links resolved.
func resolved(p string) string {
	rest := ""
	for d := p; ; d = filepath.Dir(d) {
		if r, err := filepath.EvalSymlinks(d); err == nil {
			return filepath.Join(r, rest)
		}
		if d == "/" || d == "." {
			return p
		}
		rest = filepath.Join(filepath.Base(d), rest)
	}
}

// checkHost checks every location on this host before anything changes:
// nothing of a running server, an original tablespace location never
// emptied, a non-empty target only with --overwrite, permissions.
func checkHost(locs []*location, overwrite bool, logger *slog.Logger) error {
	dirs := make([]string, len(locs))
	for i, l := range locs {
		dirs[i] = l.dir
	}
	servers, err := findServers(dirs, logger)
	if err != nil {
		return err
	}
	for _, l := range locs {
		if err := servers.check(l.what(), l.dir); err != nil {
			return err
		}
	}
	for _, l := range locs {
		st, err := os.Stat(l.dir)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			anc, err := existingAncestor(l.dir)
			if err == nil {
				err = unix.Access(anc, unix.W_OK|unix.X_OK)
			}
			if err != nil {
				return failure.Wrap(failure.Precondition, fmt.Errorf("cannot create %s %s: %s: %w", l.what(), l.dir, anc, err), "check the path and its permissions")
			}
			continue
		case err != nil:
			return failure.Wrap(failure.Precondition, fmt.Errorf("%s %s: %w", l.what(), l.dir, err), "check the path and its permissions")
		case !st.IsDir():
			return failure.New(failure.Precondition, "%s %s exists and is not a directory", l.what(), l.dir)
		}
		ents, err := os.ReadDir(l.dir)
		if err == nil {
			err = unix.Access(l.dir, unix.W_OK|unix.X_OK)
		}
		if err != nil {
			return failure.Wrap(failure.Precondition, fmt.Errorf("%s %s: %w", l.what(), l.dir, err), "check the path and its permissions")
		}
		if len(ents) == 0 {
			continue
		}
		switch {
		case !l.mapped:
			return failure.Wrap(failure.Precondition, fmt.Errorf("%s %s is not empty", l.what(), l.dir),
				fmt.Sprintf("restore the tablespace elsewhere with --tablespace-map %d=DIR; --overwrite never empties a location you did not name", l.oid))
		case !overwrite:
			hint := "restore into an empty directory, or pass --overwrite to replace its contents"
			if l.oid != 0 {
				hint = "give an empty directory, or pass --overwrite to replace its contents"
			}
			return failure.Wrap(failure.Precondition, fmt.Errorf("%s %s is not empty", l.what(), l.dir), hint)
		}
		if l.reclaim, err = oneFilesystem(l); err != nil {
			return err
		}
		l.nonEmpty = true
	}
	return checkSpace(locs)
}

// checkSpace refuses a restore that cannot fit: per file system, the file
// data going there must fit in the free space plus what --overwrite
// removes there. (A lower bound: a restore that passes may still fill the
// disk; it then fails and removes what it wrote.)
func checkSpace(locs []*location) error {
	type fsNeed struct {
		need, free int64
		where      string
	}
	byDev := map[uint64]*fsNeed{}
	for _, l := range locs {
		anc, err := existingAncestor(l.dir)
		if err != nil {
			return unsafeError(l.dir, err)
		}
		var st unix.Stat_t
		var sfs unix.Statfs_t
		if unix.Stat(anc, &st) != nil || unix.Statfs(anc, &sfs) != nil {
			continue // no figures: the write will tell
		}
		n := byDev[uint64(st.Dev)]
		if n == nil {
			n = &fsNeed{free: int64(sfs.Bavail) * int64(sfs.Bsize), where: anc}
			byDev[uint64(st.Dev)] = n
		}
		n.need += l.ts.Size
		n.free += l.reclaim
	}
	for _, n := range byDev {
		if n.need > n.free {
			return failure.Wrap(failure.Precondition,
				fmt.Errorf("not enough space on the file system of %s: the restore needs at least %d bytes there, %d are free", n.where, n.need, n.free),
				"free space, or restore elsewhere (--target, --tablespace-map)")
		}
	}
	return nil
}

// oneFilesystem refuses to empty a directory that holds a mount point:
// --overwrite removes what is in the directory, not other file systems
// mounted below it.
func oneFilesystem(l *location) (reclaim int64, err error) {
	real, err := filepath.EvalSymlinks(l.dir)
	if err != nil {
		return 0, unsafeError(l.dir, err)
	}
	var root unix.Stat_t
	if err := unix.Stat(real, &root); err != nil {
		return 0, unsafeError(l.dir, err)
	}
	var found string
	err = filepath.WalkDir(real, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		if !e.IsDir() {
			if st.Nlink == 1 {
				reclaim += st.Blocks * 512
			}
			return nil
		}
		if st.Dev != root.Dev {
			found = p
			return filepath.SkipAll
		}
		return nil
	})
	if err != nil {
		return 0, unsafeError(l.dir, err)
	}
	if found != "" {
		return 0, failure.Wrap(failure.Precondition, fmt.Errorf("%s %s holds a mount point (%s): --overwrite empties only one file system", l.what(), l.dir, found),
			"unmount it or empty the directory yourself")
	}
	return reclaim, nil
}

// checkObjects makes sure every archive object is a volume of its
// tablespace's archive, there with the size manifest.json gives, before
// anything changes on disk.
func checkObjects(ctx context.Context, store *storage.Store, m *manifest.Backup, jobs int) error {
	for _, ts := range m.Tablespaces {
		for _, o := range ts.Objects {
			key := store.BackupKey(m.ID, o.Key)
			if _, err := volumeOf(o.Key, ts.OID); err != nil {
				return damaged(key, err)
			}
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(jobs)
	for _, ts := range m.Tablespaces {
		for _, o := range ts.Objects {
			g.Go(func() error {
				key := store.BackupKey(m.ID, o.Key)
				a, err := store.Attributes(gctx, key)
				if errors.Is(err, storage.ErrNotFound) {
					return failure.New(failure.Failed, "backup %s is damaged: object %s is missing", m.ID, key)
				}
				if err != nil {
					return store.Classify(err, "read "+key)
				}
				if a.Size != o.Size {
					return damaged(key, fmt.Errorf("%d bytes stored, manifest.json says %d", a.Size, o.Size))
				}
				return nil
			})
		}
	}
	return g.Wait()
}

// prepare creates a location (with missing parents) or empties it for
// --overwrite: the first change a restore makes.
func prepare(l *location, logger *slog.Logger) error {
	if _, err := os.Lstat(l.dir); errors.Is(err, fs.ErrNotExist) {
		top := l.dir
		for d := filepath.Dir(l.dir); ; d = filepath.Dir(d) {
			if _, err := os.Lstat(d); err == nil || d == "/" || d == "." {
				break
			}
			top = d
		}
		// Parents traversable by the server's user; the directory itself
		// gets its final mode when the restore is done.
		if err := os.MkdirAll(filepath.Dir(l.dir), 0o755); err != nil {
			return failure.Wrap(failure.Precondition, fmt.Errorf("create %s: %w", filepath.Dir(l.dir), err), "check the path and its permissions")
		}
		if err := os.Mkdir(l.dir, 0o700); err != nil {
			return failure.Wrap(failure.Precondition, fmt.Errorf("create %s: %w", l.dir, err), "check the path and its permissions")
		}
		if err := lockDir(l); err != nil {
			return err
		}
		l.prepared, l.createdTop = true, top
		return nil
	}
	if err := lockDir(l); err != nil {
		return err
	}
	l.prepared = true
	if l.nonEmpty {
		logger.Info("--overwrite: removing the contents of "+l.what(), "dir", l.dir)
		ents, err := os.ReadDir(l.dir)
		if err != nil {
			return fmt.Errorf("empty %s for --overwrite: %w", l.dir, err)
		}
		for _, e := range ents {
			if err := os.RemoveAll(filepath.Join(l.dir, e.Name())); err != nil {
				return fmt.Errorf("empty %s for --overwrite: %w", l.dir, err)
			}
		}
	}
	return nil
}

// lockDir takes an exclusive flock on a restore location (before anything
// in it is removed or written): a second restore into it is refused.
func lockDir(l *location) error {
	f, err := os.Open(l.dir)
	if err != nil {
		return fmt.Errorf("open %s: %w", l.dir, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return failure.Wrap(failure.Precondition, fmt.Errorf("another restore is writing into %s %s", l.what(), l.dir), "wait for it to finish, or restore elsewhere")
		}
		return fmt.Errorf("lock %s: %w", l.dir, err)
	}
	l.lock = f
	return nil
}

// cleanup removes what a failed restore wrote: the directories it created,
// the contents of those it found.
func cleanup(l *location, logger *slog.Logger) {
	if !l.prepared {
		return
	}
	if l.createdTop != "" {
		if err := os.RemoveAll(l.createdTop); err != nil {
			logger.Warn("could not remove the partial restore", "dir", l.createdTop, "error", err)
		}
		return
	}
	ents, err := os.ReadDir(l.dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(l.dir, e.Name())); err != nil {
			logger.Warn("could not remove the partial restore", "path", filepath.Join(l.dir, e.Name()), "error", err)
		}
	}
}

// partsOf lists a tablespace's objects in order.
func partsOf(ts manifest.Tablespace, s sink) []part {
	prefix := ""
	if ts.OID != 0 {
		prefix = backupmanifest.TablespacePath(ts.OID) + "/"
	}
	out := make([]part, 0, len(ts.Objects))
	for _, o := range ts.Objects {
		out = append(out, part{oid: ts.OID, prefix: prefix, obj: o, sink: s})
	}
	return out
}

// readAll reads the parts with jobs workers. With collect set, errors are
// collected per object and reading goes on (verify); otherwise the first
// error stops everything (restore).
func readAll(ctx context.Context, store *storage.Store, m *manifest.Backup, index *fileIndex, parts []part,
	jobs int, p *progress.Counter, collect func(error)) error {
	// Largest objects first: the slowest finish is the biggest one.
	sort.SliceStable(parts, func(i, j int) bool { return parts[i].obj.Size > parts[j].obj.Size })
	g, gctx := errgroup.WithContext(ctx)
	queue := make(chan part)
	g.Go(func() error {
		defer close(queue)
		for _, pt := range parts {
			select {
			case queue <- pt:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		return nil
	})
	for i := 0; i < jobs && i < len(parts); i++ {
		rd := &reader{store: store, backup: m, index: index, progress: p, crc: backupmanifest.NewCRC32C()}
		g.Go(func() error {
			for pt := range queue {
				err := rd.read(gctx, pt)
				if err != nil && collect != nil && gctx.Err() == nil {
					collect(err)
					continue
				}
				if err != nil {
					return err
				}
			}
			return nil
		})
	}
	err := g.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// finishDataDir writes what completes the data directory: backup_manifest
// (so pg_verifybackup can check the restored directory), tablespace_map
// pointing at the restored locations, recovery settings, and the modes and
// ownership of the restored directories.
func finishDataDir(ctx context.Context, store *storage.Store, base *location, locs []*location, m *manifest.Backup, index *fileIndex, opts Options) error {
	// initdb -g (group access) shows in the modes of the archived
	// directories: the data directory and tablespaces get the same.
	dirPerm := fs.FileMode(0o700)
	if st, err := base.sink.root.Stat("global"); err == nil && st.Mode().Perm()&0o050 == 0o050 {
		dirPerm = 0o750
	}
	base.sink.filePerm = 0o600 | dirPerm&0o040
	var replace *backupmanifest.ReplacedFile
	if len(locs) > 1 {
		// Always rewritten from the checked locations: PostgreSQL makes
		// the pg_tblspc links from this file when it starts.
		if old, err := base.sink.root.ReadFile("tablespace_map"); err == nil {
			data := tablespaceMap(locs[1:])
			if !bytes.Equal(old, data) {
				if err := writeFile(base.sink, "tablespace_map", data); err != nil {
					return err
				}
				crc := backupmanifest.NewCRC32C()
				crc.Write(data)
				replace = &backupmanifest.ReplacedFile{Path: "tablespace_map", Size: int64(len(data)), ModTime: time.Now(), CRC32C: crc.Sum32()}
			}
		}
	}
	if err := writePGManifest(ctx, store, m, index, base.sink, replace); err != nil {
		return err
	}
	if err := recoverySettings(base.sink, m, opts); err != nil {
		return err
	}
	for _, l := range locs {
		if err := os.Chmod(l.dir, dirPerm); err != nil {
			return fmt.Errorf("chmod %s: %w", l.dir, err)
		}
		if base.sink.chown && l.sink.owner != nil {
			if err := os.Chown(l.dir, l.sink.owner[0], l.sink.owner[1]); err != nil {
				return fmt.Errorf("chown %s: %w", l.dir, err)
			}
		}
	}
	return nil
}

// tablespaceMap renders tablespace_map for the restored locations, with
// PostgreSQL's escaping of backslash and line breaks.
func tablespaceMap(locs []*location) []byte {
	var b strings.Builder
	for _, l := range locs {
		fmt.Fprintf(&b, "%d ", l.oid)
		for _, c := range l.dir {
			if c == '\\' || c == '\n' || c == '\r' {
				b.WriteByte('\\')
			}
			b.WriteRune(c)
		}
		b.WriteByte('\n')
	}
	return []byte(b.String())
}

// writeFile replaces (or creates) a small file in the data directory with
// the data directory's file mode (0600, 0640 with group access) and owner.
func writeFile(s *dirSink, name string, data []byte) error {
	_ = s.root.Remove(name)
	perm := s.smallFilePerm()
	if err := s.root.WriteFile(name, data, perm); err != nil {
		return s.writeError("write", name, err)
	}
	return s.modeAndOwner(name, perm)
}

// smallFilePerm is the mode of the files the restore writes itself.
func (s *dirSink) smallFilePerm() fs.FileMode {
	if s.filePerm == 0 {
		return 0o600
	}
	return s.filePerm
}

// modeAndOwner gives a file the restore wrote its mode (whatever the
// umask) and the data directory's owner.
func (s *dirSink) modeAndOwner(name string, perm fs.FileMode) error {
	if err := s.root.Chmod(name, perm); err != nil {
		return s.writeError("chmod", name, err)
	}
	if s.chown && s.owner != nil {
		if err := s.root.Lchown(name, s.owner[0], s.owner[1]); err != nil {
			return s.writeError("chown", name, err)
		}
	}
	return nil
}

// recoverySettings writes the signal file and restore_command asked for,
// and warns when the restored server could not become consistent.
func recoverySettings(s *dirSink, m *manifest.Backup, opts Options) error {
	if opts.RestoreCommand != "" {
		conf, err := s.root.ReadFile("postgresql.auto.conf")
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return s.writeError("read", "postgresql.auto.conf", err)
		}
		line := fmt.Sprintf("# added by pgcloudbackup restore of backup %s\n%s\n",
			m.ID, Setting{"restore_command", opts.RestoreCommand}.Line())
		if len(conf) > 0 && conf[len(conf)-1] != '\n' {
			conf = append(conf, '\n')
		}
		if err := writeFile(s, "postgresql.auto.conf", append(conf, line...)); err != nil {
			return err
		}
	}
	signal := ""
	switch {
	case opts.Standby:
		signal = "standby.signal"
	case opts.Recovery:
		signal = "recovery.signal"
	}
	// A backup of a standby carries its standby.signal (basebackup.c copies
	// it too). Left there it would make the restore follow the old primary
	// with that standby's slot, and override a recovery.signal asked for:
	// only the signal asked for stays.
	for _, name := range []string{"standby.signal", "recovery.signal"} {
		if name == signal {
			continue
		}
		if _, err := s.root.Lstat(name); err == nil {
			if err := s.root.Remove(name); err != nil {
				return s.writeError("remove", name, err)
			}
			opts.Logger.Info("left out a signal file the backup carried (from a standby?); --standby or --recovery writes one", "file", name)
		}
	}
	if signal != "" {
		if err := writeFile(s, signal, nil); err != nil {
			return err
		}
	}
	if !m.WALIncluded && opts.RestoreCommand == "" {
		opts.Logger.Warn("this backup holds no WAL: the server needs restore_command (--restore-command) to fetch WAL from your archive before it can start")
	}
	return nil
}

// syncDir flushes the filesystem holding dir (syncfs: one call instead of
// an fsync per file).
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open %s for sync: %w", dir, err)
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
