package engine

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgcloudbackup/pgcloudbackup/codec"
	"github.com/pgcloudbackup/pgcloudbackup/internal/pg/wal"
	"github.com/pgcloudbackup/pgcloudbackup/storage"
)

const (
	testSegSize = 1 << 20 // the smallest wal_segment_size: fast tests
	testSysID   = 7301234567890123457
)

// fakeSegment is a WAL segment whose page headers say it is segment seg of
// timeline tli (the record contents do not matter to the checks).
func fakeSegment(tli uint32, seg wal.SegNo) []byte {
	data := make([]byte, testSegSize)
	le := binary.LittleEndian
	for off := 0; off < testSegSize; off += 8192 {
		h := data[off:]
		le.PutUint16(h[0:], 0xD110)
		le.PutUint32(h[4:], tli)
		le.PutUint64(h[8:], uint64(seg)*testSegSize+uint64(off))
		h[100] = 0x42 // some "record" bytes
		if off == 0 {
			le.PutUint16(h[2:], 0x0002)
			le.PutUint64(h[24:], testSysID)
			le.PutUint32(h[32:], testSegSize)
			le.PutUint32(h[36:], 8192)
		}
	}
	return data
}

// walCopy runs addWAL over a fake pg_wal into a memory bucket and returns
// its error and, when it succeeded, the tar members stored, in order.
func walCopy(t *testing.T, walDir string, files []wal.SegmentFile) (*storage.Store, []string, error) {
	t.Helper()
	store := memStore(t)
	z := codec.Zstd
	const id = "20261129T000000Z"
	volumes := &volumeOpener{up: newUploader(store), uploadCtx: context.Background(), store: store, id: id,
		contentType: archiveContentType(z)}
	plan := &walPlan{walDir: walDir, files: files, timelines: []uint32{1}, segSize: testSegSize, pageSize: 8192, sysID: testSysID}
	vw := newVolumeWriter(volumes, &archive{name: "base"}, 4*testSegSize)
	injected := func(name string, mode fs.FileMode) *entry {
		return &entry{kind: kindFile, name: name, mode: mode, mtime: time.Now()}
	}
	// WAL is not listed in backup_manifest: the report has none.
	w := newWorker(&copyReport{logger: testLogger(t)}, testLogger(t), nil)
	if err := w.addWAL(context.Background(), vw, plan, injected); err != nil {
		vw.abort(err)
		return store, nil, err
	}
	if err := vw.close(); err != nil {
		t.Fatal(err)
	}
	key := store.BackupKey(id, "base.00001.tar"+z.Ext())
	data, err := store.ReadAll(context.Background(), key, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := z.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	var names []string
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
	return store, names, nil
}

// TestWALCopyChecksWhatItStores: the segments are checked page by page as
// they are stored; a segment recycled (its pages those of an older
// segment), overwritten mid-file, missing or cut short fails the copy, and
// no object (so no ".done" marker) is left of it.
func TestWALCopyChecksWhatItStores(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	seg5, seg6 := wal.FileName(1, 5, testSegSize), wal.FileName(1, 6, testSegSize)
	write(seg5, fakeSegment(1, 5))
	write(seg6, fakeSegment(1, 6))
	write("00000002.history", []byte("1\t0/700000\tno recovery target specified\n"))
	files := []wal.SegmentFile{{TLI: 1, Seg: 5, Limit: testSegSize}, {TLI: 1, Seg: 6, Limit: 300000}}

	_, names, err := walCopy(t, dir, files)
	if err != nil {
		t.Fatalf("valid WAL refused: %v", err)
	}
	want := []string{"pg_wal/" + seg5, "pg_wal/archive_status/" + seg5 + ".done", "pg_wal/" + seg6, "pg_wal/archive_status/" + seg6 + ".done",
		"pg_wal/00000002.history", "pg_wal/archive_status/00000002.history.done"}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Fatalf("stored %v\nwant %v", names, want)
	}

	bad := []struct {
		name    string
		seg6    []byte
		wantErr string
	}{
		{"recycled: an old segment renamed for reuse", fakeSegment(1, 2), "recycled"},
		{"overwritten from the middle", append(fakeSegment(1, 6)[:200000:200000], fakeSegment(1, 9)[200000:]...), "recycled"},
		{"another cluster's", func() []byte { d := fakeSegment(1, 6); binary.LittleEndian.PutUint64(d[24:], testSysID+1); return d }(), "another cluster"},
		{"cut short", fakeSegment(1, 6)[:testSegSize/2], "has size"},
		{"missing", nil, "not in pg_wal"},
	}
	for _, b := range bad {
		os.Remove(filepath.Join(dir, seg6))
		if b.seg6 != nil {
			write(seg6, b.seg6)
		}
		store, _, err := walCopy(t, dir, files)
		if err == nil || !strings.Contains(err.Error(), b.wantErr) {
			t.Errorf("%s: error %v, want %q", b.name, err, b.wantErr)
		}
		assertEmptyStore(t, store)
	}
	// Bytes past the WAL the backup needs are not its concern.
	os.Remove(filepath.Join(dir, seg6))
	write(seg6, append(fakeSegment(1, 6)[:300000:300000], fakeSegment(1, 2)[300000:]...))
	if _, _, err := walCopy(t, dir, files); err != nil {
		t.Errorf("leftovers past the backup's WAL refused: %v", err)
	}
}
