package walarchive

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
	"github.com/pgcloudbackup/pgcloudbackup/storage"
)

// ReadyAhead returns up to n WAL segments after the one at path that the
// server has marked ready for archiving (pg_wal/archive_status/<name>.ready),
// oldest first, as paths beside path. The server archives one file per
// archive_command call; pushing these now lets its later calls return after
// one lookup. A file is .ready only once complete, and stays until archived.
func ReadyAhead(path string, n int) []string {
	if n <= 0 {
		return nil
	}
	name := filepath.Base(path)
	if storage.WALKind(name) != storage.WALSegment {
		return nil
	}
	dir := filepath.Dir(path)
	ents, err := os.ReadDir(filepath.Join(dir, "archive_status"))
	if err != nil {
		return nil
	}
	var names []string
	for _, e := range ents {
		seg, ok := strings.CutSuffix(e.Name(), ".ready")
		if ok && storage.WALKind(seg) == storage.WALSegment && seg > name {
			names = append(names, seg)
		}
	}
	sort.Strings(names)
	if len(names) > n {
		names = names[:n]
	}
	paths := make([]string, len(names))
	for i, s := range names {
		paths[i] = filepath.Join(dir, s)
	}
	return paths
}

// PushWithAhead pushes the file at path and, at the same time, the ahead
// files (see ReadyAhead). Only path's outcome is returned: a failed push
// ahead is logged and left to the server's own call for that file.
func PushWithAhead(ctx context.Context, store *storage.Store, path string, ahead []string, log *slog.Logger) (*PushResult, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var wg sync.WaitGroup
	for _, p := range ahead {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Pushed ahead by an earlier call: the server's own call
			// for it compares the content; here a lookup is enough.
			if ok, err := store.Exists(ctx, store.WALKey(filepath.Base(p))); err == nil && ok {
				return
			}
			r, err := Push(ctx, store, p)
			switch {
			case err != nil:
				log.Debug("push ahead failed; the server's own call will retry", "file", filepath.Base(p), "error", failure.OneLine(err))
			case !r.AlreadyArchived:
				log.Debug("pushed ahead", "file", r.Name)
			}
		}()
	}
	res, err := Push(ctx, store, path)
	wg.Wait()
	return res, err
}
