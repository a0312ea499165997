package walarchive

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gocloud.dev/blob/fileblob"
	"gocloud.dev/blob/memblob"

	"github.com/pgcloudbackup/pgcloudbackup/internal/pg/wal"
	"github.com/pgcloudbackup/pgcloudbackup/storage"
)

const segSize = 1 << 20

// segment returns a plausible WAL segment: a long page header naming seg,
// then random bytes (incompressible, like a busy segment).
func segment(t *testing.T, name string) []byte {
	t.Helper()
	_, seg, ok := wal.ParseFileName(name, segSize)
	if !ok {
		t.Fatalf("bad name %s", name)
	}
	b := make([]byte, segSize)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	le.PutUint16(b[0:], 0xD110)
	le.PutUint16(b[2:], 0x0002)
	le.PutUint32(b[4:], storage.WALTimeline(name))
	le.PutUint64(b[8:], uint64(seg)*segSize)
	le.PutUint64(b[24:], 7300000000000000001)
	le.PutUint32(b[32:], segSize)
	le.PutUint32(b[36:], 8192)
	return b
}

func writeTemp(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// stores runs f against an in-memory bucket and a directory bucket (which
// keeps no object metadata: the trailer alone must do).
func stores(t *testing.T, f func(t *testing.T, s *storage.Store)) {
	t.Run("mem", func(t *testing.T) { f(t, storage.NewStore(memblob.OpenBucket(nil), "mem")) })
	t.Run("file", func(t *testing.T) {
		b, err := fileblob.OpenBucket(t.TempDir(), &fileblob.Options{NoTempDir: true, Metadata: fileblob.MetadataDontWrite})
		if err != nil {
			t.Fatal(err)
		}
		f(t, storage.NewStore(b, "file"))
	})
}

func TestPushFetchRoundTrip(t *testing.T) {
	stores(t, func(t *testing.T, s *storage.Store) {
		ctx := context.Background()
		dir := t.TempDir()
		name := "000000010000000000000003"
		data := segment(t, name)
		res, err := Push(ctx, s, writeTemp(t, dir, name, data))
		if err != nil {
			t.Fatal(err)
		}
		if res.AlreadyArchived || res.Key != "wal/00000001/"+name+".zst" || res.Stored == 0 {
			t.Fatalf("first push: %+v", res)
		}
		// The retry a crashed server makes: same content, success, no write.
		res, err = Push(ctx, s, filepath.Join(dir, name))
		if err != nil || !res.AlreadyArchived {
			t.Fatalf("second push of the same file: %+v, %v", res, err)
		}
		// Different content under the same name: refused, archive unchanged.
		other := segment(t, name)
		odir := t.TempDir()
		if _, err := Push(ctx, s, writeTemp(t, odir, name, other)); err == nil || !strings.Contains(err.Error(), "refusing to overwrite") {
			t.Fatalf("push of different content: %v", err)
		}
		dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
		if err := Fetch(ctx, s, name, dest, FetchOptions{}); err != nil {
			t.Fatal(err)
		}
		got, _ := os.ReadFile(dest)
		if !bytes.Equal(got, data) {
			t.Fatal("fetched segment differs from the first one pushed")
		}
		// History, backup and partial files.
		for _, n := range []string{"00000002.history", "000000010000000000000003.00000028.backup"} {
			content := []byte("1\t0/3000000\tno recovery target specified\n")
			if _, err := Push(ctx, s, writeTemp(t, dir, n, content)); err != nil {
				t.Fatalf("push %s: %v", n, err)
			}
			d := filepath.Join(t.TempDir(), "x")
			if err := Fetch(ctx, s, n, d, FetchOptions{}); err != nil {
				t.Fatalf("fetch %s: %v", n, err)
			}
			if got, _ := os.ReadFile(d); !bytes.Equal(got, content) {
				t.Fatalf("%s round trip differs", n)
			}
		}
		partial := "000000010000000000000004.partial"
		pdata := segment(t, partial[:24])
		if _, err := Push(ctx, s, writeTemp(t, dir, partial, pdata)); err != nil {
			t.Fatal(err)
		}
		// Absent: ErrNotArchived, and nothing is left at the destination.
		absent := filepath.Join(t.TempDir(), "RECOVERYXLOG")
		if err := Fetch(ctx, s, "000000010000000000000009", absent, FetchOptions{Attempts: 1}); !errors.Is(err, ErrNotArchived) {
			t.Fatalf("fetch of an absent segment: %v", err)
		}
		if ents, _ := os.ReadDir(filepath.Dir(absent)); len(ents) != 0 {
			t.Fatalf("absent fetch left %v", ents)
		}
	})
}

func TestPushRefusesBadInput(t *testing.T) {
	s := storage.NewStore(memblob.OpenBucket(nil), "mem")
	ctx := context.Background()
	dir := t.TempDir()
	for _, name := range []string{"..", "0000000100000000000000O3", "000000010000000000000003.tmp", "00000001000000000000000a", "archive_status", "00000002.history/x"} {
		if _, err := Push(ctx, s, filepath.Join(dir, name)); err == nil || !strings.Contains(err.Error(), "not a WAL file name") {
			t.Errorf("push %q: %v", name, err)
		}
	}
	// A segment must have a segment's size.
	if _, err := Push(ctx, s, writeTemp(t, dir, "000000010000000000000003", []byte("short"))); err == nil || !strings.Contains(err.Error(), "segment size") {
		t.Errorf("push of a short segment: %v", err)
	}
	if err := os.Mkdir(filepath.Join(dir, "000000010000000000000005"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := Push(ctx, s, filepath.Join(dir, "000000010000000000000005")); err == nil {
		t.Error("push of a directory succeeded")
	}
	if err := Fetch(ctx, s, "../../etc/passwd", filepath.Join(dir, "x"), FetchOptions{}); err == nil || !strings.Contains(err.Error(), "not a WAL file name") {
		t.Errorf("fetch of a path-like name: %v", err)
	}
}

// TestFetchRefusesDamage: the bucket is untrusted. A flipped byte, a
// segment stored under another segment's name, and an object without our
// trailer are all errors (never ErrNotArchived) and leave no file behind.
func TestFetchRefusesDamage(t *testing.T) {
	ctx := context.Background()
	s := storage.NewStore(memblob.OpenBucket(nil), "mem")
	dir := t.TempDir()
	a, b := "000000010000000000000003", "000000010000000000000004"
	for _, n := range []string{a, b} {
		if _, err := Push(ctx, s, writeTemp(t, dir, n, segment(t, n))); err != nil {
			t.Fatal(err)
		}
	}
	read := func(name string) []byte {
		data, err := s.ReadAll(ctx, s.WALKey(name), 1<<30)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	put := func(name string, data []byte) {
		if err := s.WriteAll(ctx, s.WALKey(name), data, storage.WriteOptions{ContentType: "application/zstd"}); err != nil {
			t.Fatal(err)
		}
	}
	fetchFails := func(what, name, want string) {
		t.Helper()
		out := t.TempDir()
		err := Fetch(ctx, s, name, filepath.Join(out, "RECOVERYXLOG"), FetchOptions{Attempts: 2, Backoff: 1})
		if err == nil || errors.Is(err, ErrNotArchived) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error mentioning %q", what, err, want)
		}
		if ents, _ := os.ReadDir(out); len(ents) != 0 {
			t.Errorf("%s: left %v behind", what, ents)
		}
	}
	// Segment b's object stored under a's name (trailer intact).
	orig := read(a)
	put(a, read(b))
	fetchFails("misplaced segment", a, "not segment")
	// A flipped byte in the trailer's digest.
	bad := bytes.Clone(orig)
	bad[len(bad)-20] ^= 1
	put(a, bad)
	fetchFails("damaged trailer", a, "damaged")
	// No trailer: a plain zstd stream.
	put(a, orig[:len(orig)-trailerSize])
	fetchFails("no trailer", a, "no pgcloudbackup checksum trailer")
	// Truncated object.
	put(a, orig[:len(orig)/2])
	fetchFails("truncated", a, "read")
	// Garbage.
	put(a, []byte("not zstd at all"))
	fetchFails("garbage", a, "")
}

func TestTailKeeper(t *testing.T) {
	data := make([]byte, 1000)
	for i := range data {
		data[i] = byte(i)
	}
	for _, chunk := range []int{1, 7, trailerSize - 1, trailerSize, trailerSize + 3, 999} {
		k := &tailKeeper{}
		r := bytes.NewReader(data)
		buf := make([]byte, chunk)
		for {
			n, err := r.Read(buf)
			k.Write(buf[:n])
			if err == io.EOF {
				break
			}
		}
		if !bytes.Equal(k.tail(), data[len(data)-trailerSize:]) {
			t.Errorf("chunk %d: tail %v", chunk, k.tail())
		}
	}
}

func TestHistory(t *testing.T) {
	h, err := ParseHistory([]byte("1\t0/3012120\tbefore 2026-11-29 20:24:47.495185+00\n\n2\t0/5000000\tno recovery target specified\n"), 3)
	if err != nil || len(h) != 2 || h[0].TLI != 1 || h[0].SwitchPoint != 0x3012120 || h[1].TLI != 2 {
		t.Fatalf("ParseHistory: %+v %v", h, err)
	}
	for _, c := range []struct {
		from uint32
		stop wal.LSN
		to   uint32
		want bool
	}{
		{1, 0x3000000, 3, true},
		{1, 0x3012120, 3, true},
		{1, 0x4000060, 3, false}, // ended on 1 after 2 forked off
		{2, 0x4ffffff, 3, true},
		{2, 0x5000001, 3, false},
		{3, 0x9000000, 3, true},
		{4, 0x1000000, 3, false}, // a later timeline is never an ancestor
	} {
		if got := Reachable(c.from, c.stop, c.to, h); got != c.want {
			t.Errorf("Reachable(%d, %s, %d) = %v", c.from, c.stop, c.to, got)
		}
	}
	for _, bad := range []string{"x\t0/1\n", "1\tnot-an-lsn\n", "2\t0/1\n1\t0/2\n", "3\t0/1\n", "1\n"} {
		if _, err := ParseHistory([]byte(bad), 3); err == nil {
			t.Errorf("ParseHistory(%q) accepted", bad)
		}
	}
}

// TestFetchFromEmptyArchive: a bucket or prefix with no WAL at all is a
// misconfiguration that must stop recovery, not "the end of the archive".
func TestFetchFromEmptyArchive(t *testing.T) {
	s := storage.NewStore(memblob.OpenBucket(nil), "mem")
	err := Fetch(context.Background(), s, "000000010000000000000003", filepath.Join(t.TempDir(), "x"), FetchOptions{Attempts: 1})
	if err == nil || errors.Is(err, ErrNotArchived) || !strings.Contains(err.Error(), "no WAL archive") {
		t.Fatalf("fetch from an empty archive: %v", err)
	}
}

// TestPrune: WAL before the segment holding keepFrom goes, on every
// timeline; that segment and later ones, history files and keys that are
// not WAL objects stay; a dry run deletes nothing and reports the same.
func TestPrune(t *testing.T) {
	ctx := context.Background()
	s := storage.NewStore(memblob.OpenBucket(nil), "mem")
	dir := t.TempDir()
	var names []string
	for seg := 1; seg <= 6; seg++ {
		names = append(names, wal.FileName(1, wal.SegNo(seg), segSize))
	}
	names = append(names, wal.FileName(2, 3, segSize), wal.FileName(2, 5, segSize))
	for _, n := range names {
		if _, err := Push(ctx, s, writeTemp(t, dir, n, segment(t, n))); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{"00000002.history", "000000010000000000000002.00000028.backup", "000000010000000000000004.00000028.backup"} {
		if _, err := Push(ctx, s, writeTemp(t, dir, n, []byte("x\n"))); err != nil {
			t.Fatal(err)
		}
	}
	stray := "wal/00000001/000000010000000000000001.zst.tmp"
	if err := s.WriteAll(ctx, stray, []byte("?"), storage.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	keepFrom := wal.LSN(4*segSize + 0x28) // a backup starting in segment 4
	keys := func() string {
		var out []string
		it := s.List("")
		for {
			o, err := it.Next(ctx)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, strings.TrimSuffix(strings.TrimPrefix(o.Key, "wal/"), ".zst"))
		}
		return strings.Join(out, " ")
	}
	before := keys()
	dry, err := Prune(ctx, s, keepFrom, true)
	if err != nil {
		t.Fatal(err)
	}
	if keys() != before {
		t.Fatal("a dry run deleted something")
	}
	res, err := Prune(ctx, s, keepFrom, false)
	if err != nil {
		t.Fatal(err)
	}
	if *dry != *res || res.Files != 5 || res.KeepFrom != "0000000000000004" {
		t.Errorf("dry run %+v, run %+v", dry, res)
	}
	want := "00000001/000000010000000000000001.zst.tmp 00000001/000000010000000000000004.00000028.backup 00000001/000000010000000000000004 " +
		"00000001/000000010000000000000005 00000001/000000010000000000000006 00000002/00000002.history 00000002/000000020000000000000005"
	if got := keys(); got != want {
		t.Errorf("left:\n%s\nwant:\n%s", got, want)
	}
}

func TestCheckWindow(t *testing.T) {
	ctx := context.Background()
	s := storage.NewStore(memblob.OpenBucket(nil), "mem")
	if w, err := CheckWindow(ctx, s, 1, 2*segSize, 3*segSize); err != nil || !w.NoArchive {
		t.Fatalf("empty archive: %+v %v", w, err)
	}
	dir := t.TempDir()
	for _, seg := range []wal.SegNo{1, 2, 3, 4, 6, 7} {
		n := wal.FileName(1, seg, segSize)
		if _, err := Push(ctx, s, writeTemp(t, dir, n, segment(t, n))); err != nil {
			t.Fatal(err)
		}
	}
	n := wal.FileName(2, 9, segSize)
	if _, err := Push(ctx, s, writeTemp(t, dir, n, segment(t, n))); err != nil {
		t.Fatal(err)
	}
	w, err := CheckWindow(ctx, s, 1, 2*segSize+0x28, 3*segSize+0x100)
	if err != nil {
		t.Fatal(err)
	}
	if w.From != "000000010000000000000002" || w.Last != "000000010000000000000004" || w.Segments != 3 ||
		w.End != 5*segSize || !w.ReachesStop || w.Gap != "000000010000000000000005" {
		t.Errorf("window %+v", w)
	}
	// A backup whose stop lies past the gap never becomes consistent.
	if w, _ := CheckWindow(ctx, s, 1, 4*segSize, 6*segSize+1); w.ReachesStop || w.Gap == "" {
		t.Errorf("stop past the gap: %+v", w)
	}
	// Start segment missing.
	if w, _ := CheckWindow(ctx, s, 1, 5*segSize, 6*segSize); w.Segments != 0 || w.Gap != "000000010000000000000005" || w.ReachesStop {
		t.Errorf("missing start: %+v", w)
	}
	// No gap: the run ends at the newest segment.
	if w, _ := CheckWindow(ctx, s, 1, 6*segSize, 6*segSize+8); w.Gap != "" || w.Last != "000000010000000000000007" || !w.ReachesStop {
		t.Errorf("tail: %+v", w)
	}
}

func TestPushAhead(t *testing.T) {
	ctx := context.Background()
	s := storage.NewStore(memblob.OpenBucket(nil), "mem")
	pgwal := filepath.Join(t.TempDir(), "pg_wal")
	status := filepath.Join(pgwal, "archive_status")
	if err := os.MkdirAll(status, 0o700); err != nil {
		t.Fatal(err)
	}
	for seg := 3; seg <= 8; seg++ {
		n := wal.FileName(1, wal.SegNo(seg), segSize)
		writeTemp(t, pgwal, n, segment(t, n))
		mark := ".ready"
		if seg == 7 {
			mark = ".done"
		}
		writeTemp(t, status, n+mark, nil)
	}
	writeTemp(t, status, "00000002.history.ready", nil)
	writeTemp(t, status, "../escape.ready", nil)
	first := filepath.Join(pgwal, wal.FileName(1, 3, segSize))
	ahead := ReadyAhead(first, 2)
	if len(ahead) != 2 || filepath.Base(ahead[0]) != "000000010000000000000004" || filepath.Base(ahead[1]) != "000000010000000000000005" {
		t.Fatalf("ReadyAhead: %v", ahead)
	}
	if all := ReadyAhead(first, 10); len(all) != 4 || filepath.Base(all[3]) != "000000010000000000000008" {
		t.Fatalf("ReadyAhead(10): %v (the .done segment and the history file are not segments ahead)", all)
	}
	if _, err := PushWithAhead(ctx, s, first, ahead, nil); err != nil {
		t.Fatal(err)
	}
	for seg := 3; seg <= 5; seg++ {
		if ok, _ := s.Exists(ctx, s.WALKey(wal.FileName(1, wal.SegNo(seg), segSize))); !ok {
			t.Errorf("segment %d not archived", seg)
		}
	}
	if ok, _ := s.Exists(ctx, s.WALKey(wal.FileName(1, 6, segSize))); ok {
		t.Error("pushed further ahead than asked")
	}
	// The server's own call for a segment pushed ahead: one lookup.
	r, err := Push(ctx, s, ahead[0])
	if err != nil || !r.AlreadyArchived {
		t.Fatalf("push of a segment pushed ahead: %+v %v", r, err)
	}
	// A failing push ahead (the file vanished) does not fail the call.
	os.Remove(filepath.Join(pgwal, wal.FileName(1, 8, segSize)))
	if _, err := PushWithAhead(ctx, s, filepath.Join(pgwal, wal.FileName(1, 6, segSize)), ReadyAhead(filepath.Join(pgwal, wal.FileName(1, 6, segSize)), 4), nil); err != nil {
		t.Fatalf("a vanished ahead file failed the call: %v", err)
	}
}

func TestPrefetch(t *testing.T) {
	ctx := context.Background()
	s := storage.NewStore(memblob.OpenBucket(nil), "mem")
	dir := t.TempDir()
	data := map[string][]byte{}
	for seg := 3; seg <= 6; seg++ {
		n := wal.FileName(1, wal.SegNo(seg), segSize)
		data[n] = segment(t, n)
		if _, err := Push(ctx, s, writeTemp(t, dir, n, data[n])); err != nil {
			t.Fatal(err)
		}
	}
	pgwal := t.TempDir()
	dest := filepath.Join(pgwal, "RECOVERYXLOG")
	spool := SpoolDir(dest)
	names := NextSegments("000000010000000000000003", segSize, 5)
	if len(names) != 5 || names[0] != "000000010000000000000004" || names[4] != "000000010000000000000008" {
		t.Fatalf("NextSegments: %v", names)
	}
	n, err := Prefetch(ctx, s, spool, names, 3)
	if err != nil || n != 3 {
		t.Fatalf("Prefetch: %d %v (want 3: segments 4-6, then the archive ends)", n, err)
	}
	// Served from the spool: the archive is not asked (remove the object
	// to prove it), and the file is the right one.
	seg5 := "000000010000000000000005"
	if err := s.Delete(ctx, s.WALKey(seg5)); err != nil {
		t.Fatal(err)
	}
	if err := Fetch(ctx, s, seg5, dest, FetchOptions{Spool: spool}); err != nil {
		t.Fatalf("fetch from the spool: %v", err)
	}
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, data[seg5]) {
		t.Fatal("the spool served other content")
	}
	// Segment 4 (behind the server now) was cleared, 6 waits.
	if _, err := os.Stat(filepath.Join(spool, "000000010000000000000004")); !os.IsNotExist(err) {
		t.Error("an older spooled segment was kept")
	}
	if _, err := os.Stat(filepath.Join(spool, "000000010000000000000006")); err != nil {
		t.Errorf("segment 6 is not spooled: %v", err)
	}
	// End of the archive: the spool is emptied.
	if err := Fetch(ctx, s, "000000010000000000000009", dest, FetchOptions{Spool: spool, Attempts: 1}); !errors.Is(err, ErrNotArchived) {
		t.Fatalf("absent: %v", err)
	}
	if ents, _ := os.ReadDir(spool); len(ents) != 2 {
		t.Errorf("spool after the end of the archive: %v, want only .end and .lock", ents)
	}
	// A prefetcher starting after the end does nothing until resumed.
	if n, err := Prefetch(ctx, s, spool, []string{"000000010000000000000006"}, 1); n != 0 || err != nil {
		t.Errorf("prefetch after the end: %d %v", n, err)
	}
	ResumeSpool(spool)
	if n, err := Prefetch(ctx, s, spool, []string{"000000010000000000000006"}, 1); n != 1 || err != nil {
		t.Errorf("prefetch after resume: %d %v", n, err)
	}
}
