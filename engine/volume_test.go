package engine

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pgcloudbackup/pgcloudbackup/codec"
	"github.com/pgcloudbackup/pgcloudbackup/storage"
	"github.com/pgcloudbackup/pgcloudbackup/uploader"
)

// fakeOutput records what a worker reports through copyOutput.
type fakeOutput struct {
	mu    sync.Mutex
	files map[string]uint32 // path -> CRC-32C listed in backup_manifest
	bytes int64
}

func (f *fakeOutput) recordFile(path string, size int64, mtime time.Time, crc uint32) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.files[path] = crc
	return nil
}
func (f *fakeOutput) copied(n int64) { f.mu.Lock(); f.bytes += n; f.mu.Unlock() }
func (f *fakeOutput) checksumFailures(string, int64, []uint32) {
	panic("pages are not verified in this test")
}
func (f *fakeOutput) newPagesWithData(string, int64, []uint32) { panic("not verified") }
func (f *fakeOutput) partialPage(string, uint32, int64)        { panic("not verified") }

// TestWorkerWritesVolumes pins the copy seam: a worker reports every file
// through copyOutput (backup_manifest entry with its CRC-32C, progress) and
// its volumeWriter rolls over into numbered volumes, each a complete tar
// stream named by storage.VolumeName, listed in order in manifest.json.
func TestWorkerWritesVolumes(t *testing.T) {
	ctx := context.Background()
	store := memStore(t)
	const id = "20261129T000000Z"
	// One 1 KiB part per object: an object takes at most 930 raw bytes, so
	// every 600-byte file (1536 bytes of tar) opens a volume of its own.
	store.Limits.MaxParts = 1
	up := uploader.New(store, uploader.Options{Codec: codec.Zstd, PartSize: 1024})
	if err := up.Validate(); err != nil {
		t.Fatal(err)
	}
	volumes := &volumeOpener{up: up, uploadCtx: ctx, store: store, id: id, contentType: archiveContentType(up.Codec())}
	arc := &archive{name: "16384", oid: 16384, manifestPrefix: "pg_tblspc/16384/"}
	out := &fakeOutput{files: map[string]uint32{}}
	w := newWorker(out, testLogger(t), nil)
	vw := newVolumeWriter(volumes, arc, 600)

	dir := t.TempDir()
	want := map[string][]byte{}
	var total int64
	for i := range 3 {
		name := fmt.Sprintf("PG_17/5/%d", 1000+i)
		data := bytes.Repeat([]byte{byte('a' + i)}, 600)
		src := filepath.Join(dir, fmt.Sprint(i))
		if err := os.WriteFile(src, data, 0o600); err != nil {
			t.Fatal(err)
		}
		want[name] = data
		total += int64(len(data))
		e := &entry{kind: kindFile, name: name, src: src, mode: 0o600, size: int64(len(data)), mtime: time.Now()}
		if err := w.put(ctx, vw, e, true); err != nil {
			t.Fatal(err)
		}
	}
	if err := vw.close(); err != nil {
		t.Fatal(err)
	}

	if out.bytes != total {
		t.Errorf("progress: %d bytes reported, %d copied", out.bytes, total)
	}
	for name, data := range want {
		crc, ok := out.files["pg_tblspc/16384/"+name]
		if !ok {
			t.Errorf("%s not listed in backup_manifest (listed: %v)", name, out.files)
		} else if crc != crc32.Checksum(data, crc32.MakeTable(crc32.Castagnoli)) {
			t.Errorf("%s: CRC-32C %08x in backup_manifest is not the file's", name, crc)
		}
	}

	ts := arc.manifestEntry(store.BackupKey(id, ""))
	if len(ts.Objects) != 3 || ts.Files != 3 || ts.Size != total {
		t.Fatalf("manifest entry %+v: want 3 volumes of one file each, %d bytes", ts, total)
	}
	for i, o := range ts.Objects {
		name, err := storage.VolumeName("16384", i+1, codec.Zstd)
		if err != nil {
			t.Fatal(err)
		}
		if o.Key != name {
			t.Errorf("volume %d is %q, want %q", i+1, o.Key, name)
		}
		data, err := store.ReadAll(ctx, store.BackupKey(id, o.Key), 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		zr, err := codec.Zstd.NewReader(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(zr)
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("%s: %v", o.Key, err)
		}
		body, _ := io.ReadAll(tr)
		if !bytes.Equal(body, want[h.Name]) {
			t.Errorf("%s: member %s damaged", o.Key, h.Name)
		}
		if _, err := tr.Next(); err != io.EOF {
			t.Errorf("%s: want one member and a complete tar stream, got %v", o.Key, err)
		}
		zr.Close()
	}
}

// TestVolumeNumberBeyondTheLayout: a volume number the layout cannot name
// fails the backup instead of writing a key restore would refuse.
func TestVolumeNumberBeyondTheLayout(t *testing.T) {
	store := memStore(t)
	up := uploader.New(store, uploader.Options{Codec: codec.Zstd})
	volumes := &volumeOpener{up: up, uploadCtx: context.Background(), store: store, id: "20261129T000000Z"}
	arc := &archive{name: "base", lastVolume: storage.MaxVolumes}
	vw := newVolumeWriter(volumes, arc, 0)
	h := &tar.Header{Name: "x", Typeflag: tar.TypeReg, Mode: 0o600}
	if err := vw.header(context.Background(), h); err == nil {
		vw.abort(err)
		t.Fatal("volume 100000 was opened")
	}
}
