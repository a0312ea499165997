package engine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/pgcloudbackup/pgcloudbackup/internal/pg/backupmanifest"
	"github.com/pgcloudbackup/pgcloudbackup/internal/pg/control"
	"github.com/pgcloudbackup/pgcloudbackup/storage"
)

// backupPlan is what the backup copies.
type backupPlan struct {
	pgdata   string
	archives []*archive // tablespaces by OID, then the data directory
	walkers  map[*archive]*walker
}

// base is the data directory's archive.
func (p *backupPlan) base() *archive { return p.archives[len(p.archives)-1] }

// plan lists the archives (one per tablespace, then the data directory),
// sets up their walkers, and estimates their sizes for progress and volume
// sizing.
func (r *backupRun) plan(ctx context.Context, s *session, pgdata string, ctl control.Data) (*backupPlan, error) {
	info := s.info
	archives, skipContents, err := r.discoverTablespaces(ctx, s, pgdata, info, ctl)
	if err != nil {
		return nil, err
	}
	if r.opts.afterDiscovery != nil {
		r.opts.afterDiscovery()
	}
	if rel := statsTempRel(info.StatsTempDir, pgdata); rel != "" {
		skipContents[rel] = "stats_temp_directory"
	}
	base := &archive{name: storage.BaseArchive, spcName: "pg_default", location: pgdata}
	if r.groupAccess, err = groupAccess(pgdata); err != nil {
		return nil, err
	}
	dirMode := dirCreateMode(r.groupAccess)
	p := &backupPlan{pgdata: pgdata, walkers: map[*archive]*walker{}}
	for _, a := range archives {
		p.walkers[a] = &walker{root: a.location, inTablespace: true, dirMode: dirMode, versionNum: info.VersionNum, logger: r.logger}
	}
	p.walkers[base] = &walker{root: pgdata, skipContents: skipContents, dirMode: dirMode, versionNum: info.VersionNum, logger: r.logger}
	// Tablespaces first and the data directory last, as basebackup.c does,
	// so pg_control is copied after everything else.
	p.archives = append(archives, base)

	r.progress.SetPhase("estimate")
	var total int64
	for _, a := range p.archives {
		if a.estimate, err = estimate(ctx, p.walkers[a], a.walkStart); err != nil {
			return nil, err
		}
		total += a.estimate
	}
	r.progress.SetTotal(total + control.FileSize)
	return p, nil
}

// estimate sums the sizes of the files an archive will hold (a size-only
// walk), for progress and volume sizing.
func estimate(ctx context.Context, w *walker, start string) (int64, error) {
	quiet := *w
	quiet.logger = slog.New(slog.DiscardHandler)
	var total int64
	err := quiet.walk(ctx, start, func(e *entry) error {
		total += e.size
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("estimate size of %s: %w", w.root, err)
	}
	return total, nil
}

// statsTempRel returns stats_temp_directory relative to the data directory
// when it is inside it and not the default (which the name rules cover).
func statsTempRel(setting, pgdata string) string {
	if setting == "" || setting == "pg_stat_tmp" {
		return ""
	}
	p := setting
	if filepath.IsAbs(p) {
		rel, err := filepath.Rel(pgdata, p)
		if err != nil || rel == "." || strings.HasPrefix(rel, "..") {
			return ""
		}
		p = rel
	}
	return filepath.ToSlash(filepath.Clean(p))
}

// discoverTablespaces finds the tablespaces from pg_tblspc's links. A
// tablespace located inside the data directory is kept out of the data
// directory's archive (its directory is stored empty) so it is not backed up
// twice; in-place tablespaces (directories in pg_tblspc) stay in base.
func (r *backupRun) discoverTablespaces(ctx context.Context, s *session, pgdata string, info serverInfo, ctl control.Data) ([]*archive, map[string]string, error) {
	names := map[uint32]string{}
	rows, err := s.conn.Query(ctx, "SELECT oid::bigint, spcname FROM pg_tablespace")
	if err != nil {
		return nil, nil, fmt.Errorf("list tablespaces: %w", err)
	}
	for rows.Next() {
		var oid int64
		var name string
		if err := rows.Scan(&oid, &name); err != nil {
			return nil, nil, fmt.Errorf("list tablespaces: %w", err)
		}
		names[uint32(oid)] = name
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("list tablespaces: %w", err)
	}

	versionDir := fmt.Sprintf("PG_%d_%d", info.VersionNum/10000, ctl.CatalogVersion)
	tblspc := filepath.Join(pgdata, "pg_tblspc")
	dirents, err := os.ReadDir(tblspc)
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", tblspc, err)
	}
	realPGData, err := filepath.EvalSymlinks(pgdata)
	if err != nil {
		return nil, nil, fmt.Errorf("resolve %s: %w", pgdata, err)
	}
	skip := map[string]string{}
	var archives []*archive
	for _, de := range dirents {
		oid, err := strconv.ParseUint(de.Name(), 10, 32)
		if err != nil || de.Type()&fs.ModeSymlink == 0 {
			continue // not a tablespace link (in-place tablespaces are directories)
		}
		link := filepath.Join(tblspc, de.Name())
		target, err := os.Readlink(link)
		if errors.Is(err, fs.ErrNotExist) {
			r.logger.Info("tablespace dropped during the backup", "oid", de.Name())
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("read tablespace link %s: %w", link, err)
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(tblspc, target)
		}
		if _, err := os.Stat(filepath.Join(target, versionDir)); errors.Is(err, fs.ErrNotExist) {
			// Dropped between listing pg_tblspc and now: basebackup.c
			// archives it empty; WAL replay drops it on the restored
			// cluster.
			r.logger.Info("tablespace dropped during the backup: archived empty", "oid", de.Name(), "location", target)
		} else if err != nil {
			return nil, nil, fmt.Errorf("tablespace %s at %s: %w", de.Name(), target, err)
		}
		if real, err := filepath.EvalSymlinks(target); err == nil {
			if rel, err := filepath.Rel(realPGData, real); err == nil && rel != "." && !strings.HasPrefix(rel, "..") {
				skip[filepath.ToSlash(rel)] = "tablespace inside the data directory, archived on its own"
			}
		}
		archives = append(archives, &archive{
			name:           de.Name(),
			oid:            uint32(oid),
			spcName:        names[uint32(oid)],
			location:       target,
			manifestPrefix: backupmanifest.TablespacePath(uint32(oid)) + "/",
			walkStart:      versionDir,
		})
	}
	sort.Slice(archives, func(i, j int) bool { return archives[i].oid < archives[j].oid })
	return archives, skip, nil
}
