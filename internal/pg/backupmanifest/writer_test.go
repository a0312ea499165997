package backupmanifest

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/pgcloudbackup/pgcloudbackup/internal/pg/wal"
)

var testRanges = []WALRange{{Timeline: 1, Start: 0x2000028, End: 0x2000138}}

// writeManifest writes a manifest of files (in order) and returns its bytes.
func writeManifest(t testing.TB, opts Options, files []File, crcs []uint32, ranges []WALRange) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, opts)
	if err != nil {
		t.Fatalf("NewWriter: %v", err)
	}
	for i, f := range files {
		mt, err := f.ModTime()
		if err != nil {
			t.Fatal(err)
		}
		if err := w.AddFile(f.Path, f.Size, mt, crcs[i]); err != nil {
			t.Fatalf("AddFile: %v", err)
		}
	}
	if err := w.Finish(ranges); err != nil {
		t.Fatalf("Finish: %v", err)
	}
	return buf.Bytes()
}

func TestEscapeJSONMatchesPostgresRules(t *testing.T) {
	// Expected bytes follow escape_json in src/backend/utils/adt/json.c.
	cases := []struct{ in, want string }{
		{`plain/path_1.2`, `"plain/path_1.2"`},
		{`a"b`, `"a\"b"`},
		{`a\b`, `"a\\b"`},
		{"\b\f\n\r\t", `"\b\f\n\r\t"`},
		{"\x00\x01\x1f", `"\u0000\u0001\u001f"`},
		{"x\x1by", `"x\u001by"`},
		{"\x7f", "\"\x7f\""},                     // DEL is not a control char for escape_json
		{"<>&'/", `"<>&'/"`},                     // encoding/json would escape <>&
		{"é☃\u2028\u2029", "\"é☃\u2028\u2029\""}, // non-ASCII kept as is
		{"", `""`},
	}
	for _, c := range cases {
		if got := string(appendEscapedJSON(nil, c.in)); got != c.want {
			t.Errorf("escape %q = %s, want %s", c.in, got, c.want)
		}
	}
}

func TestEscapeJSONDecodesBack(t *testing.T) {
	// An independent JSON decoder must read back exactly what we escaped,
	// for every byte value and for random strings.
	var all []byte
	for c := 1; c < 0x80; c++ {
		all = append(all, byte(c))
	}
	inputs := []string{string(all), "日本語/テーブル", "mixed \"q\" \\ \t end"}
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 500; i++ {
		var b strings.Builder
		for j := 0; j < r.IntN(30); j++ {
			b.WriteRune(rune(r.IntN(0x3000)))
		}
		inputs = append(inputs, b.String())
	}
	for _, in := range inputs {
		if !utf8.ValidString(in) {
			continue
		}
		esc := appendEscapedJSON(nil, in)
		var out string
		if err := json.Unmarshal(esc, &out); err != nil {
			t.Fatalf("decode %s: %v", esc, err)
		}
		if out != in {
			t.Fatalf("round trip %q -> %s -> %q", in, esc, out)
		}
	}
}

func TestEncodedPathForInvalidUTF8(t *testing.T) {
	paths := []string{
		"bad\xffname",
		"base/1/\xc3",           // truncated sequence
		"surrogate\xed\xa0\x80", // UTF-16 surrogate: invalid in UTF-8 (PostgreSQL agrees)
		"overlong\xc0\xaf",
	}
	var files []File
	var crcs []uint32
	for i, p := range paths {
		files = append(files, File{Path: p, Size: int64(i), LastModified: "2024-01-02 03:04:05 GMT"})
		crcs = append(crcs, uint32(i))
	}
	out := writeManifest(t, Options{}, files, crcs, testRanges)
	for _, p := range paths {
		want := `{ "Encoded-Path": "` + hex.EncodeToString([]byte(p)) + `", "Size": `
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("manifest lacks %s\n%s", want, out)
		}
	}
	if bytes.Contains(out, []byte(`"Path"`)) {
		t.Errorf("invalid UTF-8 written as Path:\n%s", out)
	}
	m, err := Read(bytes.NewReader(out))
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	for i, f := range m.Files {
		if f.Path != paths[i] {
			t.Errorf("file %d: path %q, want %q", i, f.Path, paths[i])
		}
	}
}

func TestLastModifiedIsGMT(t *testing.T) {
	zone := time.FixedZone("UTC-7", -7*3600)
	mt := time.Date(2024, 2, 29, 23, 30, 15, 900_000_000, zone)
	// Independent: whole seconds since the epoch, broken down in UTC.
	u := time.Unix(mt.Unix(), 0).UTC()
	want := fmt.Sprintf("%04d-%02d-%02d %02d:%02d:%02d GMT", u.Year(), u.Month(), u.Day(), u.Hour(), u.Minute(), u.Second())
	if want != "2024-03-01 06:30:15 GMT" {
		t.Fatalf("test arithmetic: %s", want)
	}
	if got := FormatLastModified(mt); got != want {
		t.Errorf("FormatLastModified = %q, want %q", got, want)
	}
	var buf bytes.Buffer
	w, _ := NewWriter(&buf, Options{})
	if err := w.AddFile("PG_VERSION", 3, mt, 0); err != nil {
		t.Fatal(err)
	}
	if err := w.Finish(testRanges); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `"Last-Modified": "`+want+`"`) {
		t.Errorf("manifest lacks Last-Modified %q:\n%s", want, buf.String())
	}
	back, err := ParseLastModified(want)
	if err != nil || !back.Equal(u) {
		t.Errorf("ParseLastModified(%q) = %v, %v; want %v", want, back, err, u)
	}
}

func TestLayoutAndManifestChecksum(t *testing.T) {
	mt := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	var buf bytes.Buffer
	w, err := NewWriter(&buf, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.AddFile("PG_VERSION", 3, mt, 0x01020304); err != nil {
		t.Fatal(err)
	}
	if err := w.AddFile(`dir/with "quote"`, 0, mt, 0); err != nil {
		t.Fatal(err)
	}
	ranges := []WALRange{{Timeline: 2, Start: 0x100000000, End: 0x1000000AB}, {Timeline: 1, Start: 0xA0, End: 0x100000000}}
	if err := w.Finish(ranges); err != nil {
		t.Fatal(err)
	}
	out := buf.Bytes()

	// The checksum line: SHA-256 of every byte before it, recomputed here.
	body, last, ok := cutLastLine(out)
	if !ok {
		t.Fatalf("no final line:\n%s", out)
	}
	sum := sha256.Sum256(body)
	wantLast := `"Manifest-Checksum": "` + hex.EncodeToString(sum[:]) + "\"}\n"
	if string(last) != wantLast {
		t.Errorf("last line %q, want %q", last, wantLast)
	}

	crc := make([]byte, 4)
	binary.NativeEndian.PutUint32(crc, 0x01020304)
	wantBody := "{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n" +
		"\"Files\": [\n" +
		`{ "Path": "PG_VERSION", "Size": 3, "Last-Modified": "2024-05-01 12:00:00 GMT", "Checksum-Algorithm": "CRC32C", "Checksum": "` + hex.EncodeToString(crc) + `" },` + "\n" +
		`{ "Path": "dir/with \"quote\"", "Size": 0, "Last-Modified": "2024-05-01 12:00:00 GMT", "Checksum-Algorithm": "CRC32C", "Checksum": "00000000" }` + "\n" +
		"],\n" +
		"\"WAL-Ranges\": [\n" +
		`{ "Timeline": 2, "Start-LSN": "1/0", "End-LSN": "1/AB" },` + "\n" +
		`{ "Timeline": 1, "Start-LSN": "0/A0", "End-LSN": "1/0" }` + "\n" +
		"],\n"
	if string(body) != wantBody {
		t.Errorf("body:\n%s\nwant:\n%s", body, wantBody)
	}
	// The whole thing is JSON.
	var anyJSON map[string]any
	if err := json.Unmarshal(out, &anyJSON); err != nil {
		t.Errorf("not JSON: %v", err)
	}
}

func cutLastLine(b []byte) (body, last []byte, ok bool) {
	if len(b) == 0 || b[len(b)-1] != '\n' {
		return nil, nil, false
	}
	i := bytes.LastIndexByte(b[:len(b)-1], '\n')
	if i < 0 {
		return nil, nil, false
	}
	return b[:i+1], b[i+1:], true
}

func TestEmptyFileListAndVersion2Header(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewWriter(&buf, Options{Version: 2, SystemIdentifier: 7301234567890123456})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Finish(testRanges); err != nil {
		t.Fatal(err)
	}
	// InitializeBackupManifest (PostgreSQL 17): version, then System-Identifier.
	wantHead := "{ \"PostgreSQL-Backup-Manifest-Version\": 2,\n\"System-Identifier\": 7301234567890123456,\n\"Files\": [\n],\n\"WAL-Ranges\": [\n"
	if !strings.HasPrefix(buf.String(), wantHead) {
		t.Errorf("got:\n%s\nwant prefix:\n%s", buf.String(), wantHead)
	}
	m, err := Read(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	if m.Version != 2 || m.SystemIdentifier != 7301234567890123456 || len(m.Files) != 0 {
		t.Errorf("read back %+v", m)
	}
}

func TestRoundTrip(t *testing.T) {
	for _, opts := range []Options{{}, {Version: 1}, {Version: 2, SystemIdentifier: 1<<64 - 1}} {
		files := []File{
			{Path: "PG_VERSION", Size: 3, LastModified: "2024-01-02 03:04:05 GMT"},
			{Path: "global/pg_control", Size: 8192, LastModified: "1999-12-31 23:59:59 GMT"},
			{Path: "pg_tblspc/16385/PG_15_202209061/5/16386", Size: 1 << 40, LastModified: "2038-01-19 03:14:08 GMT"},
			{Path: "weird \"name\"\twith\\ é\x01", Size: 0, LastModified: "1970-01-01 00:00:00 GMT"},
			{Path: "bad\xfe", Size: 7, LastModified: "2024-01-02 03:04:05 GMT"},
		}
		crcs := []uint32{0, 1, 0xFFFFFFFF, 0x12345678, 0xDEADBEEF}
		for i := range files {
			files[i].ChecksumAlgorithm = "CRC32C"
			files[i].Checksum = CRC32CChecksum(crcs[i])
		}
		ranges := []WALRange{{Timeline: 3, Start: 0x500000000, End: 0x5000000FF}, {Timeline: 2, Start: 0x4FFFFFF00, End: 0x500000000}}
		out := writeManifest(t, opts, files, crcs, ranges)
		m, err := Read(bytes.NewReader(out))
		if err != nil {
			t.Fatalf("Read: %v\n%s", err, out)
		}
		wantVersion := opts.Version
		if wantVersion == 0 {
			wantVersion = 1
		}
		if m.Version != wantVersion || m.SystemIdentifier != opts.SystemIdentifier {
			t.Errorf("version %d sysid %d, want %d %d", m.Version, m.SystemIdentifier, wantVersion, opts.SystemIdentifier)
		}
		if !reflect.DeepEqual(m.Files, files) {
			t.Errorf("files:\n%+v\nwant\n%+v", m.Files, files)
		}
		if !reflect.DeepEqual(m.WALRanges, ranges) {
			t.Errorf("ranges %+v, want %+v", m.WALRanges, ranges)
		}
		body, _, _ := cutLastLine(out)
		sum := sha256.Sum256(body)
		if m.ManifestChecksum != hex.EncodeToString(sum[:]) {
			t.Errorf("ManifestChecksum %s", m.ManifestChecksum)
		}
	}
}

func TestConcurrentAddFile(t *testing.T) {
	const workers, perWorker = 8, 400
	var buf bytes.Buffer
	w, err := NewWriter(&buf, Options{})
	if err != nil {
		t.Fatal(err)
	}
	mt := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for g := 0; g < workers; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < perWorker; i++ {
				p := fmt.Sprintf("base/%d/%d", g, i)
				if err := w.AddFile(p, int64(g*perWorker+i), mt, uint32(g<<16|i)); err != nil {
					errs <- err
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := w.Finish(testRanges); err != nil {
		t.Fatal(err)
	}
	m, err := Read(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	if len(m.Files) != workers*perWorker {
		t.Fatalf("%d files, want %d", len(m.Files), workers*perWorker)
	}
	seen := map[string]bool{}
	for _, f := range m.Files {
		var g, i int
		if _, err := fmt.Sscanf(f.Path, "base/%d/%d", &g, &i); err != nil {
			t.Fatalf("path %q: %v", f.Path, err)
		}
		if seen[f.Path] {
			t.Fatalf("duplicate %q", f.Path)
		}
		seen[f.Path] = true
		if f.Size != int64(g*perWorker+i) || f.Checksum != CRC32CChecksum(uint32(g<<16|i)) {
			t.Errorf("%s: size %d checksum %s: entry mixed up", f.Path, f.Size, f.Checksum)
		}
	}
	// One entry per line, nothing interleaved.
	lines := strings.Split(buf.String(), "\n")
	if n := len(lines); n != workers*perWorker+8 {
		t.Errorf("%d lines", n)
	}
}

func TestWriterMisuse(t *testing.T) {
	if _, err := NewWriter(&bytes.Buffer{}, Options{Version: 3}); err == nil {
		t.Error("version 3 accepted")
	}
	if _, err := NewWriter(&bytes.Buffer{}, Options{Version: 2}); err == nil {
		t.Error("version 2 without system identifier accepted")
	}
	w, _ := NewWriter(&bytes.Buffer{}, Options{})
	mt := time.Now()
	if err := w.AddFile("", 1, mt, 0); err == nil {
		t.Error("empty path accepted")
	}
	if err := w.AddFile("a\x00b", 1, mt, 0); err == nil {
		t.Error("NUL in path accepted")
	}
	if err := w.AddFile("a", -1, mt, 0); err == nil {
		t.Error("negative size accepted")
	}
	if err := w.Finish(nil); err == nil {
		t.Error("Finish without WAL ranges accepted")
	}
	w, _ = NewWriter(&bytes.Buffer{}, Options{})
	if err := w.Finish([]WALRange{{Timeline: 1, Start: 10, End: 5}}); err == nil {
		t.Error("WAL range ending before its start accepted")
	}
	w, _ = NewWriter(&bytes.Buffer{}, Options{})
	if err := w.Finish(testRanges); err != nil {
		t.Fatal(err)
	}
	if err := w.AddFile("late", 1, mt, 0); err == nil {
		t.Error("AddFile after Finish accepted")
	}
	if err := w.Finish(testRanges); err == nil {
		t.Error("second Finish accepted")
	}
}

type failingWriter struct{ n int }

func (f *failingWriter) Write(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, fmt.Errorf("disk full")
	}
	f.n--
	return len(p), nil
}

func TestWriterReportsWriteErrors(t *testing.T) {
	w, err := NewWriter(&failingWriter{n: 0}, Options{})
	if err != nil {
		t.Fatal(err) // header is still buffered
	}
	mt := time.Now()
	for i := 0; i < 2000; i++ { // more than the buffer holds
		if err = w.AddFile(fmt.Sprintf("base/1/%d", i), 8192, mt, 0); err != nil {
			break
		}
	}
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("AddFile error %v, want disk full", err)
	}
	if err := w.Finish(testRanges); err == nil {
		t.Fatal("Finish succeeded after a write error")
	}
}

func TestCRC32C(t *testing.T) {
	// The CRC-32C check value from the CRC catalogue (iSCSI, RFC 3720).
	h := NewCRC32C()
	h.Write([]byte("123456789"))
	if got := h.Sum32(); got != 0xE3069283 {
		t.Fatalf("CRC-32C(123456789) = %08x, want e3069283", got)
	}
	b := make([]byte, 4)
	binary.NativeEndian.PutUint32(b, 0xE3069283)
	if got := CRC32CChecksum(0xE3069283); got != hex.EncodeToString(b) {
		t.Errorf("CRC32CChecksum = %s, want native-order bytes %x", got, b)
	}
}

func TestAddFileAllocations(t *testing.T) {
	w, _ := NewWriter(discard{}, Options{})
	mt := time.Now()
	allocs := testing.AllocsPerRun(1000, func() {
		_ = w.AddFile("base/16384/2619_fsm", 24576, mt, 0xCAFEBABE)
	})
	if allocs > 0.1 {
		t.Errorf("AddFile allocates %.2f times per call", allocs)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func TestVersionFor(t *testing.T) {
	for num, want := range map[int]int{130000: 1, 150018: 1, 160004: 1, 170000: 2, 180001: 2} {
		if got := VersionFor(num); got != want {
			t.Errorf("VersionFor(%d) = %d, want %d", num, got, want)
		}
	}
}

func BenchmarkAddFile(b *testing.B) {
	w, _ := NewWriter(discard{}, Options{})
	mt := time.Now()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_ = w.AddFile("base/16384/2619_fsm", 24576, mt, 0xCAFEBABE)
		}
	})
}

func BenchmarkRead(b *testing.B) {
	var buf bytes.Buffer
	w, _ := NewWriter(&buf, Options{})
	mt := time.Now()
	const n = 100_000
	for i := 0; i < n; i++ {
		_ = w.AddFile(fmt.Sprintf("base/16384/%d", i), 8192, mt, uint32(i))
	}
	_ = w.Finish([]WALRange{{Timeline: 1, Start: wal.LSN(1), End: wal.LSN(2)}})
	b.SetBytes(int64(buf.Len()))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := Scan(bytes.NewReader(buf.Bytes()), func(File) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
}
