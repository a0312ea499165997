package backupmanifest

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
	"time"
	"unicode/utf8"
)

func buildIndex(t *testing.T, maxFiles int64, paths []string, size func(int) int64) (*Index, error) {
	t.Helper()
	b := NewIndexBuilder(maxFiles, int64(len(paths)))
	for i, p := range paths {
		if err := b.Add(p, size(i), uint32(i)*2654435761); err != nil {
			b.Abort()
			return nil, err
		}
	}
	return b.Finish()
}

func TestIndexFindsEveryPath(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var paths []string
	seen := map[string]bool{}
	for len(paths) < 20000 {
		p := fmt.Sprintf("base/%d/%d", r.IntN(50), r.IntN(1<<30))
		if r.IntN(10) == 0 {
			p = string([]byte{byte(r.IntN(256)), byte(r.IntN(256))}) + p // any bytes
		}
		if !seen[p] {
			seen[p] = true
			paths = append(paths, p)
		}
	}
	size := func(i int) int64 { return int64(i) * 1_000_003 } // past 4 GiB too
	x, err := buildIndex(t, int64(len(paths)), paths, size)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	if x.Len() != len(paths) {
		t.Fatalf("Len %d, want %d", x.Len(), len(paths))
	}
	for i, p := range paths {
		j, ok := x.Find(p)
		if !ok || x.Path(j) != p || x.Size(j) != size(i) || x.CRC32C(j) != uint32(i)*2654435761 {
			t.Fatalf("%q: found %v at %d: %q, %d, %x", p, ok, j, x.Path(j), x.Size(j), x.CRC32C(j))
		}
	}
	for _, p := range []string{"", "base", "base/1/", paths[0] + "x", paths[0][:len(paths[0])-1], "zzz"} {
		if j, ok := x.Find(p); ok && x.Path(j) != p {
			t.Errorf("Find(%q) found %q", p, x.Path(j))
		} else if ok && !seen[p] {
			t.Errorf("Find(%q) found a path never added", p)
		}
	}
	// 16 bytes a file plus the path, not hundreds.
	var pathBytes int
	for _, p := range paths {
		pathBytes += len(p)
	}
	if perFile := (x.Bytes() - int64(pathBytes)) / int64(len(paths)); perFile > 40 {
		t.Errorf("%d bytes a file besides its path", perFile)
	}
}

func TestIndexRefusesHostileEntries(t *testing.T) {
	one := func(int) int64 { return 1 }
	if _, err := buildIndex(t, 10, []string{"a", "b", "c", "b", "d"}, one); err == nil || !strings.Contains(err.Error(), `duplicate path name in backup manifest: "b"`) {
		t.Errorf("duplicate: %v", err)
	}
	if _, err := buildIndex(t, 3, []string{"a", "b", "c", "d"}, one); err == nil || !strings.Contains(err.Error(), "more than the 3 files") {
		t.Errorf("more files than declared: %v", err)
	}
	if _, err := buildIndex(t, 10, []string{strings.Repeat("x", MaxPathLen+1)}, one); err == nil || !strings.Contains(err.Error(), "MAXPGPATH") {
		t.Errorf("long path: %v", err)
	}
	if _, err := buildIndex(t, 10, []string{"a"}, func(int) int64 { return 1 << 48 }); err == nil {
		t.Error("a size of 2^48 accepted")
	}
	if _, err := buildIndex(t, 10, []string{"a"}, func(int) int64 { return -1 }); err == nil {
		t.Error("a negative size accepted")
	}
	x, err := buildIndex(t, 0, nil, one)
	if err != nil || x.Len() != 0 {
		t.Fatalf("empty: %v", err)
	}
	if _, ok := x.Find("a"); ok {
		t.Error("found a path in an empty index")
	}
	x.Close()
}

// endless writes a manifest head, then body again and again up to n bytes
// in all: a hostile object that would take gigabytes to hold.
type endless struct {
	head, body []byte
	n, off     int64
}

func (e *endless) Read(p []byte) (int, error) {
	if e.off >= e.n {
		return 0, io.EOF
	}
	i := 0
	for i < len(p) && e.off < e.n {
		var b byte
		if e.off < int64(len(e.head)) {
			b = e.head[e.off]
		} else {
			b = e.body[(e.off-int64(len(e.head)))%int64(len(e.body))]
		}
		p[i] = b
		i++
		e.off++
	}
	return i, nil
}

// allocated runs f and returns the bytes the Go heap allocated meanwhile.
func allocated(f func()) uint64 {
	var a, b runtime.MemStats
	runtime.ReadMemStats(&a)
	f()
	runtime.ReadMemStats(&b)
	return b.TotalAlloc - a.TotalAlloc
}

// TestScanBoundedOnHostileInput: whatever the object holds (a 1 GiB path,
// a 256 MiB line, a million entries), the scan and the index hold little.
func TestScanBoundedOnHostileInput(t *testing.T) {
	if testing.Short() {
		t.Skip("reads a few hundred MB")
	}
	head := "{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": [\n"
	cases := []struct {
		name string
		in   io.Reader
		max  int64
		want string
	}{
		{"1 GiB path", &endless{head: []byte(head + `{ "Path": "`), body: []byte("a/"), n: 1 << 30}, 1 << 20, "longer than"},
		{"1 GiB of escapes", &endless{head: []byte(head + `{ "Path": "`), body: []byte(`\n`), n: 1 << 30}, 1 << 20, "longer than"},
		{"1 GiB number", &endless{head: []byte(head + `{ "Path": "a", "Size": 1`), body: []byte("0"), n: 1 << 30}, 1 << 20, "longer than"},
		// No newline for 256 MiB: nothing may buffer a line.
		{"one long line of entries", &endless{head: []byte(head), n: 256 << 20,
			body: []byte(`{ "Path": "x", "Size": 1, "Checksum-Algorithm": "CRC32C", "Checksum": "00000000" },`)}, 1 << 30, "truncated"},
		{"more files than declared", &endless{head: []byte(head), n: 256 << 20,
			body: []byte("{ \"Path\": \"x\", \"Size\": 1 },\n")}, 1000, "more than the 1000 files"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var err error
			n := allocated(func() {
				b := NewIndexBuilder(c.max, 0)
				_, err = Scan(c.in, func(f File) error { return b.Add(f.Path, f.Size, 0) })
				if err == nil {
					_, err = b.Finish()
				} else {
					b.Abort()
				}
			})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want one about %q", err, c.want)
			}
			// Garbage per entry is fine; what stays is bounded: the Go heap
			// never held a line, a token or the file list.
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > 64<<20 {
				t.Errorf("heap in use %d MiB after the scan", ms.HeapInuse>>20)
			}
			t.Logf("%s: %v; allocated %d MiB in all", c.name, err, n>>20)
		})
	}
}

func TestUTF8StreamAgreesWithValid(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	pieces := []string{"a", "é", "€", "😀", "\xff", "\xe2\x82", "\xed\xa0\x80", "\xc0\xaf", "\n"}
	for i := 0; i < 3000; i++ {
		var b []byte
		for j := 0; j < r.IntN(12); j++ {
			b = append(b, pieces[r.IntN(len(pieces))]...)
		}
		// Cut into chunks at random places, as reads do.
		var u utf8Stream
		ok := true
		for rest := b; len(rest) > 0 && ok; {
			n := 1 + r.IntN(len(rest))
			ok = u.valid(rest[:n])
			rest = rest[n:]
		}
		ok = ok && u.end()
		if ok != utf8.Valid(b) {
			t.Fatalf("%q: stream says %v, utf8.Valid %v", b, ok, utf8.Valid(b))
		}
	}
}

func TestScanMultibyteOneByteAtATime(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewWriter(&buf, Options{})
	if err != nil {
		t.Fatal(err)
	}
	mt := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	for _, p := range []string{"base/é", "base/😀€", "a\xffb"} {
		if err := w.AddFile(p, 1, mt, 7); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Finish(testRanges); err != nil {
		t.Fatal(err)
	}
	m, err := Read(iotest.OneByteReader(bytes.NewReader(buf.Bytes())))
	if err != nil || len(m.Files) != 3 || m.Files[1].Path != "base/😀€" || m.Files[2].Path != "a\xffb" {
		t.Fatalf("%v %+v", err, m)
	}
}

func TestReplaceFile(t *testing.T) {
	src := sampleManifest(t)
	mt := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	var out bytes.Buffer
	f := ReplacedFile{Path: "base/1/1259", Size: 42, ModTime: mt, CRC32C: 0xdeadbeef}
	if err := ReplaceFile(&out, bytes.NewReader(src), Options{Version: 1}, f); err != nil {
		t.Fatal(err)
	}
	before, err := Read(bytes.NewReader(src))
	if err != nil {
		t.Fatal(err)
	}
	after, err := Read(bytes.NewReader(out.Bytes()))
	if err != nil {
		t.Fatalf("rewritten manifest does not read back: %v", err)
	}
	if len(after.Files) != len(before.Files) {
		t.Fatalf("%d files, want %d", len(after.Files), len(before.Files))
	}
	for i, e := range after.Files {
		want := before.Files[i]
		if e.Path == f.Path {
			want.Size, want.LastModified, want.Checksum = 42, FormatLastModified(mt), CRC32CChecksum(0xdeadbeef)
		}
		if e != want {
			t.Errorf("entry %d: %+v, want %+v", i, e, want)
		}
	}
	// Unchanged content gives the same bytes.
	orig := before.Files[2]
	crc, _ := ParseCRC32CChecksum(orig.Checksum)
	mt0, _ := orig.ModTime()
	out.Reset()
	if err := ReplaceFile(&out, bytes.NewReader(src), Options{Version: 1}, ReplacedFile{orig.Path, orig.Size, mt0, crc}); err != nil || !bytes.Equal(out.Bytes(), src) {
		t.Errorf("identity rewrite changed the bytes: %v", err)
	}
	if err := ReplaceFile(io.Discard, bytes.NewReader(src), Options{Version: 1}, ReplacedFile{Path: "not/listed"}); err == nil {
		t.Error("a file the manifest does not list was replaced")
	}
	if err := ReplaceFile(io.Discard, bytes.NewReader(src[:len(src)-10]), Options{Version: 1}, f); err == nil {
		t.Error("a truncated manifest was rewritten")
	}
}

func TestParseCRC32CChecksum(t *testing.T) {
	for _, v := range []uint32{0, 1, 0xdeadbeef, 0xffffffff} {
		if got, err := ParseCRC32CChecksum(CRC32CChecksum(v)); err != nil || got != v {
			t.Errorf("%x: %x, %v", v, got, err)
		}
	}
	for _, bad := range []string{"", "0000000", "000000000", "zzzzzzzz", strings.ToUpper(CRC32CChecksum(0xdeadbeef))} {
		if _, err := ParseCRC32CChecksum(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
