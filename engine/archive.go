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

	"github.com/pgcloudbackup/pgcloudbackup/manifest"
	"github.com/pgcloudbackup/pgcloudbackup/uploader"
)

// archive is one tar archive of the backup: the main data directory
// ("base") or one tablespace (named by its OID). It is stored as one or more
// part objects, each a complete tar stream: "base.00001.tar.zst", ...
type archive struct {
	name     string // "base" or the tablespace OID
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

	mu       sync.Mutex
	nextPart int
	objects  []partObject
	size     int64 // bytes of file data stored
	files    int64
}

type partObject struct {
	no     int
	result uploader.Result
}

func (a *archive) newPartNumber() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.nextPart++
	return a.nextPart
}

func (a *archive) addObject(no int, r uploader.Result) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.objects = append(a.objects, partObject{no: no, result: r})
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

// manifestEntry describes the archive for manifest.json; object keys are
// relative to the backup's directory.
func (a *archive) manifestEntry(backupDir string) manifest.Tablespace {
	a.mu.Lock()
	defer a.mu.Unlock()
	objs := append([]partObject(nil), a.objects...)
	sort.Slice(objs, func(i, j int) bool { return objs[i].no < objs[j].no })
	ts := manifest.Tablespace{OID: a.oid, Name: a.spcName, Location: a.location, Size: a.size, Files: a.files}
	for _, o := range objs {
		ts.Objects = append(ts.Objects, manifestObject(o.result, backupDir))
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

// partWriter writes tar members into one part object and rolls over into a
// next part when the object would outgrow what the backend allows.
type partWriter struct {
	run   *backupRun
	arc   *archive
	hint  int64 // expected raw bytes of one part (sizes the multipart parts)
	limit int64 // raw bytes after which a new part starts

	obj *uploader.Object
	tw  *tar.Writer
	no  int
}

func newPartWriter(run *backupRun, arc *archive, hint int64) *partWriter {
	return &partWriter{run: run, arc: arc, hint: hint, limit: run.up.MaxRawBytes(hint)}
}

// ensure makes sure an object is open with room for a member of the given
// size (tar header and padding included), rolling over when needed.
func (p *partWriter) ensure(ctx context.Context, size int64) error {
	need := size + 2*tarBlock
	if p.obj != nil && p.obj.Written() > 0 && p.obj.Written()+need > p.limit {
		if err := p.close(); err != nil {
			return err
		}
	}
	if p.obj != nil {
		return nil
	}
	p.no = p.arc.newPartNumber()
	key := p.run.objectKey(fmt.Sprintf("%s.%05d.tar%s", p.arc.name, p.no, p.run.ext))
	obj, err := p.run.up.Open(p.run.uploadCtx, key, uploader.ObjectOptions{SizeHint: p.hint, ContentType: p.run.contentType})
	if err != nil {
		return fmt.Errorf("open %s: %w", key, err)
	}
	p.obj = obj
	var out io.Writer = obj
	if p.run.limiter != nil {
		out = &throttledWriter{ctx: ctx, lim: p.run.limiter, w: obj}
	}
	p.tw = tar.NewWriter(out)
	return nil
}

const tarBlock = 512

// header writes a member header.
func (p *partWriter) header(ctx context.Context, h *tar.Header) error {
	if err := p.ensure(ctx, h.Size); err != nil {
		return err
	}
	if err := p.tw.WriteHeader(h); err != nil {
		return fmt.Errorf("write tar header for %s: %w", h.Name, err)
	}
	return nil
}

// Write writes member data (after header).
func (p *partWriter) Write(b []byte) (int, error) { return p.tw.Write(b) }

// close ends the tar stream and completes the part object.
func (p *partWriter) close() error {
	if p.obj == nil {
		return nil
	}
	obj := p.obj
	p.obj = nil
	if err := p.tw.Close(); err != nil {
		obj.Abort(err)
		return fmt.Errorf("finish tar stream of %s part %d: %w", p.arc.name, p.no, err)
	}
	res, err := obj.Close()
	if err != nil {
		return fmt.Errorf("complete %s part %d: %w", p.arc.name, p.no, err)
	}
	p.arc.addObject(p.no, res)
	return nil
}

// abort abandons the open part: nothing of it is committed.
func (p *partWriter) abort(cause error) {
	if p.obj != nil {
		p.obj.Abort(cause)
		p.obj = nil
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
