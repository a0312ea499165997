package engine

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/pgcloudbackup/pgcloudbackup/manifest"
	"github.com/pgcloudbackup/pgcloudbackup/storage"
	"github.com/pgcloudbackup/pgcloudbackup/uploader"
)

// archive is one tar archive of the backup: the main data directory
// (storage.BaseArchive) or one tablespace (named by its OID). It is stored
// as one or more volumes, each a complete tar stream named by
// storage.VolumeName: "base.00001.tar.zst", "16384.00002.tar.zst", ...
type archive struct {
	name     string // storage.BaseArchive or the tablespace OID
	oid      uint32 // 0 for base
	spcName  string
	location string // absolute directory on the source host
	// manifestPrefix is prepended to member names for backup_manifest paths
	// (tablespace files are listed as pg_tblspc/<oid>/...).
	manifestPrefix string
	// walkStart is where the walk begins below location: "" for the data
	// directory, the PG_<major>_<catversion> directory for a tablespace.
	walkStart string
	estimate  int64

	mu         sync.Mutex
	lastVolume int // the number of the volume opened last
	volumes    []volume
	size       int64 // bytes of file data stored
	files      int64
}

// volume is one committed volume of an archive.
type volume struct {
	number int
	result uploader.Result
}

// newVolumeNumber numbers the next volume of the archive: writers running
// concurrently each take their own.
func (a *archive) newVolumeNumber() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.lastVolume++
	return a.lastVolume
}

func (a *archive) addVolume(number int, r uploader.Result) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.volumes = append(a.volumes, volume{number: number, result: r})
}

func (a *archive) addFile(size int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.size += size
	a.files++
}

// dataSize is the bytes of file data stored so far.
func (a *archive) dataSize() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.size
}

// manifestEntry describes the archive for manifest.json, its volumes in
// order; object keys are relative to the backup's directory.
func (a *archive) manifestEntry(backupDir string) manifest.Tablespace {
	a.mu.Lock()
	defer a.mu.Unlock()
	vols := append([]volume(nil), a.volumes...)
	sort.Slice(vols, func(i, j int) bool { return vols[i].number < vols[j].number })
	ts := manifest.Tablespace{OID: a.oid, Name: a.spcName, Location: a.location, Size: a.size, Files: a.files}
	for _, v := range vols {
		ts.Objects = append(ts.Objects, manifestObject(v.result, backupDir))
	}
	return ts
}

// manifestObject describes an uploaded object for manifest.json, its key
// relative to the backup's directory.
func manifestObject(r uploader.Result, backupDir string) manifest.Object {
	return manifest.Object{
		Key:     strings.TrimPrefix(r.Key, backupDir),
		Size:    r.Size,
		RawSize: r.RawSize,
		SHA256:  r.SHA256,
	}
}

// volumeOpener starts the uploads of a backup's volumes: all in one backup
// directory, with the uploader's codec, one content type and one rate limit.
type volumeOpener struct {
	up          *uploader.Uploader
	uploadCtx   context.Context // Options.UploadContext
	store       *storage.Store
	id          string
	contentType string
	limiter     *rate.Limiter // nil: unthrottled
}

// open starts the upload of volume number of a; what is written to the
// returned writer is throttled and goes into the object.
func (o *volumeOpener) open(ctx context.Context, a *archive, number int, hint int64) (*uploader.Object, io.Writer, error) {
	name, err := storage.VolumeName(a.name, number, o.up.Codec())
	if err != nil {
		return nil, nil, err
	}
	key := o.store.BackupKey(o.id, name)
	obj, err := o.up.Open(o.uploadCtx, key, uploader.ObjectOptions{SizeHint: hint, ContentType: o.contentType})
	if err != nil {
		return nil, nil, fmt.Errorf("open %s: %w", key, err)
	}
	if o.limiter == nil {
		return obj, obj, nil
	}
	return obj, &throttledWriter{ctx: ctx, lim: o.limiter, w: obj}, nil
}

// volumeWriter writes tar members into one volume and rolls over into a
// next volume when the object would outgrow what the backend allows.
type volumeWriter struct {
	opener *volumeOpener
	arc    *archive
	hint   int64 // expected raw bytes of one volume (sizes the multipart parts)
	limit  int64 // raw bytes after which a new volume starts

	obj    *uploader.Object
	tw     *tar.Writer
	number int
}

func newVolumeWriter(opener *volumeOpener, arc *archive, hint int64) *volumeWriter {
	return &volumeWriter{opener: opener, arc: arc, hint: hint, limit: opener.up.MaxRawBytes(hint)}
}

// ensure makes sure a volume is open with room for a member of the given
// size (tar header and padding included), rolling over when needed.
func (v *volumeWriter) ensure(ctx context.Context, size int64) error {
	need := size + 2*tarBlock
	if v.obj != nil && v.obj.Written() > 0 && v.obj.Written()+need > v.limit {
		if err := v.close(); err != nil {
			return err
		}
	}
	if v.obj != nil {
		return nil
	}
	v.number = v.arc.newVolumeNumber()
	obj, out, err := v.opener.open(ctx, v.arc, v.number, v.hint)
	if err != nil {
		return err
	}
	v.obj = obj
	v.tw = tar.NewWriter(out)
	return nil
}

const tarBlock = 512

// header writes a member header.
func (v *volumeWriter) header(ctx context.Context, h *tar.Header) error {
	if err := v.ensure(ctx, h.Size); err != nil {
		return err
	}
	if err := v.tw.WriteHeader(h); err != nil {
		return fmt.Errorf("write tar header for %s: %w", h.Name, err)
	}
	return nil
}

// Write writes member data (after header).
func (v *volumeWriter) Write(b []byte) (int, error) { return v.tw.Write(b) }

// close ends the tar stream and completes the volume.
func (v *volumeWriter) close() error {
	if v.obj == nil {
		return nil
	}
	obj := v.obj
	v.obj = nil
	if err := v.tw.Close(); err != nil {
		obj.Abort(err)
		return fmt.Errorf("finish tar stream of %s volume %d: %w", v.arc.name, v.number, err)
	}
	res, err := obj.Close()
	if err != nil {
		return fmt.Errorf("complete %s volume %d: %w", v.arc.name, v.number, err)
	}
	v.arc.addVolume(v.number, res)
	return nil
}

// abort abandons the open volume: nothing of it is committed.
func (v *volumeWriter) abort(cause error) {
	if v.obj != nil {
		v.obj.Abort(cause)
		v.obj = nil
	}
}

// tarHeader fills a reusable header for an entry.
func tarHeader(h *tar.Header, e *entry) {
	*h = tar.Header{
		Name:    e.name,
		Mode:    int64(e.mode),
		Uid:     e.uid,
		Gid:     e.gid,
		ModTime: e.mtime.Truncate(time.Second),
		Format:  tar.FormatUnknown,
	}
	switch e.kind {
	case kindDir:
		h.Typeflag = tar.TypeDir
		h.Name = e.name + "/"
	case kindSymlink:
		h.Typeflag = tar.TypeSymlink
		h.Linkname = e.link
	default:
		h.Typeflag = tar.TypeReg
		h.Size = e.size
	}
}
