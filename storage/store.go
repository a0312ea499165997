// Package storage opens the bucket a backup lives in (from a URL: s3, gs,
// azblob, file, mem), knows the object layout inside it, lists and deletes
// backups, and turns driver errors into one-line, classified failures. The
// object layout is formatted and parsed in layout.go and layout_wal.go.
package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"

	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
)

// Store is an open bucket and our place in it.
type Store struct {
	Scheme  string // s3 gs azblob file mem
	Prefix  string // "" or ends in "/"
	Display string // the URL, safe to print: no credentials, no secret parameter values
	Limits  Limits
	// Refresh is how often a running backup rewrites its reservation
	// marker (0: DefaultRefresh).
	Refresh time.Duration

	bucket     *blob.Bucket // the driver: reached only through Store's methods
	be         backend      // what differs between backends (backend.go)
	bucketName string       // bucket, container or directory
	endpoint   string       // service URL for "cannot reach" messages ("" if none)
	fileDir    string       // file only
	dirMode    os.FileMode  // file only: mode of directories we create
	log        *slog.Logger

	// reservation is the backup ID this store's run holds (Reserve):
	// every upload reports the key it writes under it.
	reservation atomic.Pointer[Reservation]
}

// SetPartPool makes every later S3 upload take its part buffers from p
// (nil: each upload allocates its own through the transfer manager). Call
// it before the first upload. Other backends have no part buffers of ours.
func (s *Store) SetPartPool(p *PartPool) {
	if sb, ok := s.be.(*s3Backend); ok {
		sb.parts = p
	}
}

// NewStore wraps a bucket that is already open (a driver bucket, or a
// fault-injecting decorator over one: tests) into a Store with no prefix,
// the Limits of scheme and its backend (s3 gs azblob file mem). An S3
// bucket's client and name are taken from the driver; its uploads use the
// client's defaults rather than the tuning only Open applies. Production
// code opens buckets with Open.
func NewStore(b *blob.Bucket, scheme string) *Store {
	s := &Store{bucket: b, Scheme: scheme, Display: scheme + "://", Limits: LimitsFor(scheme)}
	if scheme == "s3" {
		s.be = newS3BackendFor(b)
	} else {
		s.be = newBackend(b, scheme, s.logger())
	}
	return s
}

// newBackend chooses the backend of scheme over b (s3: see Open and
// NewStore).
func newBackend(b *blob.Bucket, scheme string, log *slog.Logger) backend {
	switch scheme {
	case "azblob":
		return newAzureBackend(b, log)
	case "file":
		return &streamBackend{b: b, c: Caps{TempFiles: true}}
	}
	return &streamBackend{b: b, c: Caps{ContentType: true, MaxObjectSize: gsMaxObjectSize(scheme), PartBuffers: streamPartBuffers(scheme)}}
}

// gsMaxObjectSize is GCS's object size limit (5 TiB); 0 for mem.
func gsMaxObjectSize(scheme string) int64 {
	if scheme == "gs" {
		return 5 << 40
	}
	return 0
}

// logger is the Options.Logger given to Open (a Store built by hand logs
// nowhere).
func (s *Store) logger() *slog.Logger {
	if s.log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.log
}

// Close releases the bucket.
func (s *Store) Close() error { return s.bucket.Close() }

// CheckAccess checks that the bucket exists and that we may list it (under
// our prefix). It returns a classified error otherwise.
func (s *Store) CheckAccess(ctx context.Context) error {
	if err := s.checkFileDirs(); err != nil {
		return err
	}
	if _, _, err := s.bucket.ListPage(ctx, blob.FirstPageToken, 1, &blob.ListOptions{Prefix: s.Prefix}); err != nil {
		return s.Classify(err, "access "+s.Display)
	}
	return nil
}

// checkFileDirs makes sure a file:// bucket's backup directories are
// readable: fileblob's listing silently skips directories it cannot read,
// which would turn "permission denied" into "no backups".
func (s *Store) checkFileDirs() error {
	if s.fileDir == "" {
		return nil
	}
	denied := func(dir string, err error) error {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return failure.Wrap(failure.Precondition, fmt.Errorf("cannot read bucket directory %s: %w", dir, err),
			"run as a user who may read it (file buckets are created with mode 0700 for their creator)")
	}
	base := filepath.Join(s.fileDir, filepath.FromSlash(s.Key(backupsDir)))
	ents, err := os.ReadDir(base)
	switch {
	case os.IsNotExist(err):
		f, err := os.Open(s.fileDir)
		if err != nil {
			return denied(s.fileDir, err)
		}
		return f.Close()
	case err != nil:
		return denied(base, err)
	}
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(base, e.Name())
		f, err := os.Open(dir)
		if err != nil {
			return denied(dir, err)
		}
		f.Close()
	}
	return nil
}

// BackupRef summarizes one backup directory.
type BackupRef struct {
	ID       string
	Complete bool      // manifest.json is present
	Objects  int       // objects in the directory, temporary files included
	Bytes    int64     // their total size
	Modified time.Time // the newest object's modification time
	// TempFiles counts the uploads in progress, or stranded by a crash,
	// of a file:// bucket (fileblob's "<name>.<hex>.tmp").
	TempFiles int
	// Reserved: the ID's marker (MarkerName) is present.
	Reserved bool
}

// ListBackups returns the backups under the prefix, newest first (by ID).
// It makes one flat listing of backups/, so it costs one request per 1000
// objects whatever the number of backups. A backup that crashed shows up
// as long as anything of it is left: its marker, an object or a temporary
// file.
func (s *Store) ListBackups(ctx context.Context) ([]BackupRef, error) {
	if err := s.checkFileDirs(); err != nil {
		return nil, err
	}
	base := s.Key(backupsDir)
	refs := map[string]*BackupRef{}
	it := s.bucket.List(&blob.ListOptions{Prefix: base})
	for {
		obj, err := it.Next(ctx)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, s.Classify(err, "list backups in "+s.Display)
		}
		id, name, ok := strings.Cut(strings.TrimPrefix(obj.Key, base), "/")
		if !ok || id == "" || name == "" {
			continue
		}
		r := refs[id]
		if r == nil {
			r = &BackupRef{ID: id}
			refs[id] = r
		}
		r.Objects++
		r.Bytes += obj.Size
		if obj.ModTime.After(r.Modified) {
			r.Modified = obj.ModTime
		}
		switch {
		case s.isTempFile(name):
			r.TempFiles++
		case name == ManifestName:
			r.Complete = true
		case name == MarkerName:
			r.Reserved = true
		}
	}
	out := make([]BackupRef, 0, len(refs))
	for _, r := range refs {
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool { return IDLess(out[j].ID, out[i].ID) })
	return out, nil
}

// IDLess orders backup IDs by time, then sequence ("…Z" < "…Z-2" <
// "…Z-10"); IDs this tool did not make sort before all others, by string.
func IDLess(a, b string) bool {
	ta, sa, oka := ParseBackupID(a)
	tb, sb, okb := ParseBackupID(b)
	switch {
	case oka && okb:
		if !ta.Equal(tb) {
			return ta.Before(tb)
		}
		return sa < sb
	case oka != okb:
		return okb
	}
	return a < b
}

// fileblobTemp matches the temporary files fileblob writes next to the
// final ones with no_tmp_dir ("<name>.<hex nanoseconds>.tmp").
var fileblobTemp = regexp.MustCompile(`\.[0-9a-f]+\.tmp$`)

// isTempFile reports whether name is an upload in progress (or stranded by a
// crash) rather than an object. Only a directory bucket has them.
func (s *Store) isTempFile(name string) bool {
	return s.be.caps().TempFiles && fileblobTemp.MatchString(name)
}

// DeleteBackup deletes every object of backup id: manifest.json first, so
// that a deletion that stops half-way leaves an incomplete backup, never
// one that looks complete but lacks parts; then the other objects and the
// temporary files a crashed upload left (file://); then it aborts the
// multipart uploads still pending under it (S3: by the directory prefix,
// which AWS answers, and by the exact keys MinIO needs: those listed, and
// those the marker says the run started); the marker goes last, so a
// deletion that stops half-way stays visible and can be run again. A backup
// with no object and no pending upload is a Precondition error.
func (s *Store) DeleteBackup(ctx context.Context, id string) error {
	if err := checkID(id); err != nil {
		return err
	}
	dir := s.BackupKey(id, "")
	var keys []string
	hasManifest, hasMarker := false, false
	it := s.bucket.List(&blob.ListOptions{Prefix: dir})
	for {
		obj, err := it.Next(ctx)
		if err == io.EOF {
			break
		}
		if err != nil {
			return s.Classify(err, "list backup "+id)
		}
		switch obj.Key {
		case dir + ManifestName:
			hasManifest = true
		case dir + MarkerName:
			hasMarker = true
		default:
			keys = append(keys, obj.Key)
		}
	}
	// The keys a crashed run started: read before anything is deleted.
	pendingKeys := map[string]bool{}
	for _, k := range keys {
		pendingKeys[k] = true
	}
	if hasMarker && s.be.caps().RecordKeys {
		m, err := s.readMarker(ctx, id)
		if err != nil {
			s.logger().WarnContext(ctx, "cannot read the backup's marker; pending uploads are looked up by the listed keys and the prefix only", "backup", id, "error", err)
		}
		if m != nil {
			for _, k := range m.Keys {
				if strings.HasPrefix(k, dir) && checkID(strings.TrimPrefix(k, dir)) == nil {
					pendingKeys[k] = true
				}
			}
		}
	}
	if hasManifest {
		if err := s.deleteKey(ctx, dir+ManifestName); err != nil {
			return s.Classify(err, fmt.Sprintf("delete backup %s: delete %s", id, ManifestName))
		}
	}
	for _, k := range keys {
		if err := s.deleteKey(ctx, k); err != nil {
			return s.Classify(err, fmt.Sprintf("delete backup %s: delete %s", id, strings.TrimPrefix(k, dir)))
		}
	}
	aborted, err := s.AbortIncompleteUploads(ctx, dir)
	if err != nil {
		return err
	}
	if s.be.caps().RecordKeys {
		sorted := make([]string, 0, len(pendingKeys))
		for k := range pendingKeys {
			sorted = append(sorted, k)
		}
		sort.Strings(sorted)
		for _, k := range sorted {
			n, err := s.AbortIncompleteUploads(ctx, k)
			if err != nil {
				return err
			}
			aborted += n
		}
	}
	if hasMarker {
		if err := s.deleteKey(ctx, dir+MarkerName); err != nil {
			return s.Classify(err, fmt.Sprintf("delete backup %s: delete %s", id, MarkerName))
		}
	}
	if !hasManifest && !hasMarker && len(keys) == 0 && aborted == 0 {
		return failure.New(failure.Precondition, "no backup %s in %s", id, s.Display)
	}
	if aborted > 0 {
		s.logger().InfoContext(ctx, "aborted unfinished uploads", "backup", id, "uploads", aborted)
	}
	s.removeEmptyDir(id)
	return nil
}

// deleteKey deletes one object; one that is already gone is fine (another
// deletion ran at the same time).
func (s *Store) deleteKey(ctx context.Context, key string) error {
	err := s.bucket.Delete(ctx, key)
	if err != nil && gcerrors.Code(err) == gcerrors.NotFound {
		return nil
	}
	return err
}

// checkID refuses IDs that would reach outside one backup directory.
func checkID(id string) error {
	if id == "" || id == "." || id == ".." || strings.ContainsAny(id, "/\\") || strings.ContainsFunc(id, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return failure.New(failure.Usage, "invalid backup ID %q", id)
	}
	return nil
}
