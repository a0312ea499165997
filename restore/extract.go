package restore

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"path"
	"strings"

	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
	"github.com/pgcloudbackup/pgcloudbackup/internal/hashio"
	"github.com/pgcloudbackup/pgcloudbackup/internal/progress"
	"github.com/pgcloudbackup/pgcloudbackup/manifest"
	"github.com/pgcloudbackup/pgcloudbackup/storage"
)

// sink receives the members of an archive: the restore writes them into a
// directory, verify only checks them.
type sink interface {
	dir(name string, h *tar.Header) error
	// file consumes exactly the member's data from r.
	file(name string, h *tar.Header, r io.Reader) error
	symlink(name string, h *tar.Header) error
}

// part is one archive object to read, and where its members go.
type part struct {
	oid    uint32 // 0: the data directory
	prefix string // backup_manifest path prefix ("" or "pg_tblspc/<oid>/")
	obj    manifest.Object
	sink   sink
	key    string // the object's full key (set by read)
}

// reader reads archive objects. One per worker: its buffers are reused.
type reader struct {
	store    *storage.Store
	backup   *manifest.Backup
	index    *fileIndex
	progress *progress.Counter
	crc      hash.Hash32
}

// read streams one object: download (read ahead), SHA-256 and size against
// manifest.json, decompress, and every member to the sink and against
// backup_manifest. Errors name the object.
func (rd *reader) read(ctx context.Context, p part) error {
	key := rd.store.BackupKey(rd.backup.ID, p.obj.Key)
	p.key = key
	br, err := rd.store.NewReader(ctx, key)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return failure.New(failure.Failed, "backup %s is damaged: object %s is missing", rd.backup.ID, key)
		}
		return rd.store.Classify(err, "read "+key)
	}
	defer br.Close()
	ra := newReadahead(br)
	defer ra.Close()
	raw := &hashio.Reader{R: ra, H: sha256.New()}
	vol, err := volumeOf(p.obj.Key, p.oid)
	if err != nil {
		return damaged(key, err)
	}
	dr, err := vol.Codec.NewReader(raw)
	if err != nil {
		return damaged(key, err)
	}
	defer dr.Close()
	if err := rd.members(ctx, p, tar.NewReader(dr)); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var fe *failure.Error
		if errors.As(err, &fe) {
			return err
		}
		return damaged(key, err)
	}
	// Read to the end so the hash covers every stored byte (tar padding,
	// compression frame trailer).
	if _, err := io.Copy(io.Discard, dr); err != nil {
		return damaged(key, err)
	}
	if _, err := io.Copy(io.Discard, raw); err != nil {
		return damaged(key, err)
	}
	if raw.N != p.obj.Size {
		return damaged(key, fmt.Errorf("%d bytes stored, manifest.json says %d", raw.N, p.obj.Size))
	}
	if got := hex.EncodeToString(raw.H.Sum(nil)); got != p.obj.SHA256 {
		return damaged(key, fmt.Errorf("SHA-256 %s, manifest.json says %s", got, p.obj.SHA256))
	}
	return nil
}

// volumeOf parses an object name from manifest.json: it must be a volume of
// tablespace oid's archive (0: the data directory's).
func volumeOf(name string, oid uint32) (storage.Volume, error) {
	vol, err := storage.ParseVolumeName(name)
	if err == nil && vol.OID() != oid {
		err = fmt.Errorf("a volume of archive %s listed under tablespace %d", vol.Archive, oid)
	}
	return vol, err
}

func damaged(key string, err error) error {
	return failure.Wrap(failure.Failed, fmt.Errorf("object %s is damaged: %s", key, failure.OneLine(err)), "")
}

// members hands every tar member to the sink.
func (rd *reader) members(ctx context.Context, p part, tr *tar.Reader) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name, err := memberName(h.Name)
		if err != nil {
			return failure.Wrap(failure.Failed, fmt.Errorf("object %s: %w", p.key, err), "the archive was tampered with: refusing to restore it")
		}
		if err := checkMember(rd.backup, p, name, h, rd.index); err != nil {
			return err
		}
		switch h.Typeflag {
		case tar.TypeDir:
			err = p.sink.dir(name, h)
		case tar.TypeReg: // the reader reports old-style TypeRegA as TypeReg
			err = rd.file(p, name, h, tr)
		case tar.TypeSymlink:
			err = p.sink.symlink(name, h)
		default:
			err = failure.Wrap(failure.Failed, fmt.Errorf("object %s: member %q has type %q, which a base backup never contains",
				p.key, h.Name, string(h.Typeflag)), "the archive was tampered with: refusing to restore it")
		}
		if err != nil {
			return err
		}
	}
}

func (rd *reader) file(p part, name string, h *tar.Header, tr io.Reader) error {
	rd.crc.Reset()
	var src io.Reader = tr
	var spcmap *bytes.Buffer
	if p.oid == 0 && name == "tablespace_map" {
		// Kept to be checked: PostgreSQL makes pg_tblspc links from it.
		spcmap = &bytes.Buffer{}
		src = io.TeeReader(tr, spcmap)
	}
	cr := &hashio.Reader{R: src, H: rd.crc}
	if err := p.sink.file(name, h, cr); err != nil {
		return err
	}
	if spcmap != nil {
		if err := checkTablespaceMap(rd.backup, p.key, spcmap.Bytes()); err != nil {
			return err
		}
	}
	if cr.N != h.Size {
		return fmt.Errorf("member %s: %d of %d bytes", name, cr.N, h.Size)
	}
	rd.progress.Add(cr.N)
	if err := rd.index.check(p.prefix+name, cr.N, rd.crc.Sum32()); err != nil {
		return failure.Wrap(failure.Failed, fmt.Errorf("object %s: %w", p.key, err), "")
	}
	return nil
}

// memberName validates an archive member name: relative, clean, inside the
// archive root. Hostile names ("../x", "/etc/x", "a/../../x") are refused
// here; symbolic-link tricks are refused by the sink (os.Root).
func memberName(name string) (string, error) {
	n := strings.TrimSuffix(name, "/")
	switch {
	case n == "" || n == ".":
		return "", fmt.Errorf("member with an empty name")
	case strings.HasPrefix(n, "/"):
		return "", fmt.Errorf("member %q has an absolute path", name)
	case strings.ContainsRune(n, 0):
		return "", fmt.Errorf("member %q has a NUL byte in its name", name)
	}
	clean := path.Clean(n)
	if clean != n || clean == ".." || strings.HasPrefix(clean, "../") {
		return "", fmt.Errorf("member %q is not a clean relative path inside the archive", name)
	}
	for _, el := range strings.Split(clean, "/") {
		if el == ".." || el == "." {
			return "", fmt.Errorf("member %q escapes the archive root", name)
		}
	}
	return clean, nil
}
