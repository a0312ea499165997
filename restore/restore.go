// Package restore turns a backup in the bucket back into a data directory
// PostgreSQL starts from, and verifies backups without writing anything.
// Every object is checked against manifest.json (size, SHA-256) and every
// file against backup_manifest (size, CRC32C) as it streams.
package restore

import (
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
	// Overwrite empties a non-empty target (never one with a server
	// running on it).
	Overwrite bool
	// Recovery writes recovery.signal (targeted recovery, then promote);
	// Standby writes standby.signal.
	Recovery bool
	Standby  bool
	// RestoreCommand, if set, is written to postgresql.auto.conf.
	RestoreCommand string
	Progress       *progress.Counter
	Logger         *slog.Logger
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
	// created: we made the directory (remove it on failure), else we only
	// empty it.
	created bool
}

// Restore restores backup m into opts.Target.
func Restore(ctx context.Context, store *storage.Store, m *manifest.Backup, opts Options) (_ *Result, err error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Jobs <= 0 {
		opts.Jobs = runtime.NumCPU()
	}
	if opts.Recovery && opts.Standby {
		return nil, failure.New(failure.Usage, "--recovery and --standby exclude each other")
	}
	locs, links, err := plan(m, opts)
	if err != nil {
		return nil, err
	}
	for _, l := range locs {
		if err := prepare(l, opts.Overwrite); err != nil {
			return nil, err
		}
	}
	// From here a failure removes what we wrote, so a retry finds empty
	// targets again.
	defer func() {
		if err != nil {
			for _, l := range locs {
				cleanup(l, opts.Logger)
			}
		}
	}()

	index, err := loadIndex(ctx, store, m)
	if err != nil {
		return nil, err
	}
	chown := os.Geteuid() == 0
	for _, l := range locs {
		var lk map[string]string
		if l.oid == 0 {
			lk = links
		}
		if l.sink, err = newDirSink(l.dir, lk, chown); err != nil {
			return nil, err
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
	if err := missingError(index.missing()); err != nil {
		return nil, err
	}

	base := locs[0]
	if err := finishDataDir(base, locs, m, index, opts); err != nil {
		return nil, err
	}
	opts.Progress.SetPhase("sync")
	for _, l := range locs {
		if err := syncDir(l.dir); err != nil {
			return nil, err
		}
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

// plan decides where each archive goes and which tablespace links the base
// archive may create.
func plan(m *manifest.Backup, opts Options) ([]*location, map[string]string, error) {
	if opts.Target == "" {
		return nil, nil, failure.New(failure.Usage, "no --target directory given")
	}
	target, err := filepath.Abs(opts.Target)
	if err != nil {
		return nil, nil, fmt.Errorf("resolve %s: %w", opts.Target, err)
	}
	known := map[uint32]bool{}
	for _, ts := range m.Tablespaces {
		known[ts.OID] = true
	}
	for oid, dir := range opts.TablespaceMap {
		if !known[oid] || oid == 0 {
			return nil, nil, failure.New(failure.Usage, "--tablespace-map %d=%s: backup %s has no tablespace with OID %d", oid, dir, m.ID, oid)
		}
		if !filepath.IsAbs(dir) {
			return nil, nil, failure.New(failure.Usage, "--tablespace-map %d=%s: the location must be an absolute path", oid, dir)
		}
	}
	var locs []*location
	links := map[string]string{}
	seen := map[string]uint32{}
	for _, ts := range m.Tablespaces {
		l := &location{oid: ts.OID, ts: ts, dir: target}
		if ts.OID != 0 {
			l.dir = ts.Location
			if d, ok := opts.TablespaceMap[ts.OID]; ok {
				l.dir = filepath.Clean(d)
			}
			links[manifest.TablespacePath(ts.OID)] = l.dir
		}
		if other, dup := seen[l.dir]; dup {
			return nil, nil, failure.New(failure.Usage, "tablespaces %d and %d would both be restored into %s", other, ts.OID, l.dir)
		}
		seen[l.dir] = ts.OID
		locs = append(locs, l)
	}
	if len(locs) == 0 || locs[0].oid != 0 {
		return nil, nil, failure.New(failure.Failed, "backup %s has no data directory archive", m.ID)
	}
	return locs, links, nil
}

// prepare makes sure a restore location is absent or empty (emptied with
// overwrite) and exists with mode 0700.
func prepare(l *location, overwrite bool) error {
	ents, err := os.ReadDir(l.dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(l.dir, 0o700); err != nil {
			return failure.Wrap(failure.Precondition, fmt.Errorf("create %s: %w", l.dir, err), "check the path and its permissions")
		}
		l.created = true
		return nil
	case err != nil:
		return failure.Wrap(failure.Precondition, fmt.Errorf("read %s: %w", l.dir, err), "check the path and its permissions")
	}
	if len(ents) > 0 {
		if !overwrite {
			what := "target directory"
			if l.oid != 0 {
				what = fmt.Sprintf("tablespace %d location", l.oid)
			}
			hint := "restore into an empty directory, or pass --overwrite to replace its contents"
			if l.oid != 0 {
				hint = "move the tablespace with --tablespace-map OID=DIR, or pass --overwrite"
			}
			return failure.Wrap(failure.Precondition, fmt.Errorf("%s %s is not empty", what, l.dir), hint)
		}
		if _, err := os.Stat(filepath.Join(l.dir, "postmaster.pid")); err == nil {
			return failure.Wrap(failure.Precondition,
				fmt.Errorf("%s holds postmaster.pid: a server may be running on it", l.dir),
				"stop that server first; --overwrite never replaces a running cluster")
		}
		for _, e := range ents {
			if err := os.RemoveAll(filepath.Join(l.dir, e.Name())); err != nil {
				return fmt.Errorf("empty %s for --overwrite: %w", l.dir, err)
			}
		}
	}
	if err := os.Chmod(l.dir, 0o700); err != nil {
		return fmt.Errorf("chmod %s: %w", l.dir, err)
	}
	return nil
}

// cleanup removes what a failed restore wrote.
func cleanup(l *location, logger *slog.Logger) {
	if l.created {
		if err := os.RemoveAll(l.dir); err != nil {
			logger.Warn("could not remove the partial restore", "dir", l.dir, "error", err)
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
		prefix = manifest.TablespacePath(ts.OID) + "/"
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
		rd := &reader{store: store, backup: m, index: index, progress: p, crc: manifest.NewCRC32C()}
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
// pointing at the restored locations, recovery settings, and the
// ownership of the restored directories.
func finishDataDir(base *location, locs []*location, m *manifest.Backup, index *fileIndex, opts Options) error {
	raw := index.raw
	moved := false
	for _, l := range locs[1:] {
		if l.dir != l.ts.Location {
			moved = true
		}
	}
	if moved {
		if _, err := base.sink.root.Stat("tablespace_map"); err == nil {
			data := tablespaceMap(locs[1:])
			if err := writeFile(base.sink, "tablespace_map", data); err != nil {
				return err
			}
			var err error
			if raw, err = replaceManifestEntry(index, "tablespace_map", data, time.Now()); err != nil {
				return fmt.Errorf("update backup_manifest for the moved tablespaces: %w", err)
			}
		}
	}
	if err := writeFile(base.sink, "backup_manifest", raw); err != nil {
		return err
	}
	if err := recoverySettings(base.sink, m, opts); err != nil {
		return err
	}
	if base.sink.chown {
		for _, l := range locs {
			if l.sink.owner != nil {
				if err := os.Chown(l.dir, l.sink.owner[0], l.sink.owner[1]); err != nil {
					return fmt.Errorf("chown %s: %w", l.dir, err)
				}
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
// mode 0600 and the directory's owner.
func writeFile(s *dirSink, name string, data []byte) error {
	_ = s.root.Remove(name)
	if err := s.root.WriteFile(name, data, 0o600); err != nil {
		return s.writeError("write", name, err)
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
		line := fmt.Sprintf("# added by pgcloudbackup restore of backup %s\nrestore_command = '%s'\n",
			m.ID, strings.ReplaceAll(opts.RestoreCommand, "'", "''"))
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
