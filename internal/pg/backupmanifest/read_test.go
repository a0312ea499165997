package backupmanifest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

func sampleManifest(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, Options{})
	if err != nil {
		t.Fatal(err)
	}
	mt := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	for i, p := range []string{"PG_VERSION", "global/pg_control", "base/1/1259", "base/5/16384"} {
		if err := w.AddFile(p, int64(1000*i+3), mt, uint32(0x11111111*i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Finish(testRanges); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestReadRejectsTamperedManifest(t *testing.T) {
	good := sampleManifest(t)
	if _, err := Read(bytes.NewReader(good)); err != nil {
		t.Fatalf("good manifest rejected: %v", err)
	}
	// Change one digit of a size: still well-formed JSON, only the
	// checksum can tell.
	i := bytes.Index(good, []byte(`"Size": 2003`))
	if i < 0 {
		t.Fatalf("sample lacks the size:\n%s", good)
	}
	bad := bytes.Clone(good)
	bad[i+len(`"Size": 2`)] = '1'
	_, err := Read(bytes.NewReader(bad))
	if err == nil || !strings.Contains(err.Error(), "checksum mismatch") {
		t.Errorf("tampered size: err = %v, want checksum mismatch", err)
	}
	// Every single-byte change anywhere is caught (by the checksum or by
	// the parser).
	for i := range good {
		bad := bytes.Clone(good)
		bad[i] ^= 0x01
		if _, err := Read(bytes.NewReader(bad)); err == nil {
			t.Fatalf("byte %d changed (%q -> %q) and still accepted", i, good[i], bad[i])
		}
	}
}

func TestReadRejectsTruncatedManifest(t *testing.T) {
	good := sampleManifest(t)
	for n := 0; n < len(good); n++ {
		_, err := Read(bytes.NewReader(good[:n]))
		if err == nil {
			t.Fatalf("manifest truncated to %d of %d bytes accepted", n, len(good))
		}
	}
	// Reading in tiny pieces does not change the verdict on a good one.
	if _, err := Read(iotest.OneByteReader(bytes.NewReader(good))); err != nil {
		t.Fatalf("one-byte reads: %v", err)
	}
	_, err := Read(bytes.NewReader(good[:len(good)/2]))
	if err == nil || !strings.Contains(err.Error(), "ended unexpectedly") {
		t.Errorf("half a manifest: err = %v, want a clear truncation message", err)
	}
}

// sealed appends a correct Manifest-Checksum line to body, so that a test
// reaches the structural checks.
func sealed(body string) []byte {
	sum := sha256.Sum256([]byte(body))
	return []byte(body + `"Manifest-Checksum": "` + hex.EncodeToString(sum[:]) + "\"}\n")
}

func TestReadStructure(t *testing.T) {
	const head = "{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": [\n"
	const file = `{ "Path": "a", "Size": 1, "Last-Modified": "2024-05-01 12:00:00 GMT", "Checksum-Algorithm": "CRC32C", "Checksum": "00000000" }`
	const walr = "],\n\"WAL-Ranges\": [\n{ \"Timeline\": 1, \"Start-LSN\": \"0/1\", \"End-LSN\": \"0/2\" }\n],\n"
	if _, err := Read(bytes.NewReader(sealed(head + file + "\n" + walr))); err != nil {
		t.Fatalf("baseline rejected: %v", err)
	}
	// A manifest without checksums (pg_basebackup --manifest-checksums=NONE)
	// is valid too.
	if _, err := Read(bytes.NewReader(sealed(head + `{ "Path": "a", "Size": 1, "Last-Modified": "2024-05-01 12:00:00 GMT" }` + "\n" + walr))); err != nil {
		t.Fatalf("no-checksum manifest rejected: %v", err)
	}
	cases := map[string][]byte{
		"version 3":              sealed(strings.Replace(head, ": 1,", ": 3,", 1) + file + "\n" + walr),
		"version not first":      sealed("{ \"Files\": [\n" + file + "\n" + walr),
		"v1 system identifier":   sealed("{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"System-Identifier\": 5,\n\"Files\": [\n" + file + "\n" + walr),
		"v2 without sysid":       sealed(strings.Replace(head, ": 1,", ": 2,", 1) + file + "\n" + walr),
		"unknown top field":      sealed(head + file + "\n" + walr + "\"Extra\": 1,\n"),
		"unknown file field":     sealed(head + strings.Replace(file, `"Size"`, `"Sighs"`, 1) + "\n" + walr),
		"missing size":           sealed(head + `{ "Path": "a", "Last-Modified": "x" }` + "\n" + walr),
		"missing path":           sealed(head + `{ "Size": 1 }` + "\n" + walr),
		"path and encoded path":  sealed(head + `{ "Path": "a", "Encoded-Path": "61", "Size": 1 }` + "\n" + walr),
		"bad encoded path":       sealed(head + `{ "Encoded-Path": "6", "Size": 1 }` + "\n" + walr),
		"size not a number":      sealed(head + `{ "Path": "a", "Size": "x" }` + "\n" + walr),
		"negative size":          sealed(head + `{ "Path": "a", "Size": -1 }` + "\n" + walr),
		"checksum no algorithm":  sealed(head + `{ "Path": "a", "Size": 1, "Checksum": "00" }` + "\n" + walr),
		"unknown algorithm":      sealed(head + `{ "Path": "a", "Size": 1, "Checksum-Algorithm": "MD5", "Checksum": "00" }` + "\n" + walr),
		"short crc":              sealed(head + `{ "Path": "a", "Size": 1, "Checksum-Algorithm": "CRC32C", "Checksum": "0000" }` + "\n" + walr),
		"duplicate path":         sealed(head + file + ",\n" + file + "\n" + walr),
		"duplicate field":        sealed(head + `{ "Path": "a", "Size": 1, "Size": 2 }` + "\n" + walr),
		"no WAL ranges":          sealed(head + file + "\n],\n"),
		"bad LSN":                sealed(head + file + "\n" + strings.Replace(walr, "0/2", "zz", 1)),
		"missing end LSN":        sealed(head + file + "\n" + strings.Replace(walr, `, "End-LSN": "0/2"`, "", 1)),
		"nested object":          sealed(head + `{ "Path": {"x": 1}, "Size": 1 }` + "\n" + walr),
		"not newline-terminated": bytes.TrimSuffix(sealed(head+file+"\n"+walr), []byte("\n")),
		"data after end":         append(sealed(head+file+"\n"+walr), "{}\n"...),
		"invalid UTF-8":          sealed(head + strings.Replace(file, `"a"`, "\"a\xff\"", 1) + "\n" + walr),
		"not JSON":               []byte("hello\nworld\n"),
		"empty":                  nil,
	}
	for name, in := range cases {
		if m, err := Read(bytes.NewReader(in)); err == nil {
			t.Errorf("%s: accepted (%+v)", name, m)
		} else if strings.Contains(err.Error(), "checksum mismatch") {
			t.Errorf("%s: rejected for its checksum, not its structure: %v", name, err)
		}
	}
}

func TestScanStopsOnCallbackError(t *testing.T) {
	good := sampleManifest(t)
	n := 0
	_, err := Scan(bytes.NewReader(good), func(f File) error {
		n++
		if f.Path == "global/pg_control" {
			return errStop
		}
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "stop here") || n != 2 {
		t.Errorf("err %v after %d files", err, n)
	}
}

type stopErr struct{}

func (stopErr) Error() string { return "stop here" }

var errStop = stopErr{}

// manifestWithPathJSON seals a one-file manifest whose Path value is the
// given JSON string literal.
func manifestWithPathJSON(lit string) []byte {
	return sealed("{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": [\n" +
		`{ "Path": ` + lit + `, "Size": 1 }` + "\n],\n\"WAL-Ranges\": [\n" +
		"{ \"Timeline\": 1, \"Start-LSN\": \"0/1\", \"End-LSN\": \"0/2\" }\n],\n")
}

func TestReadDecodesJSONStringsLikeEncodingJSON(t *testing.T) {
	// encoding/json escapes differently from PostgreSQL (\u003c, \u2028,
	// \ufffd...): any valid JSON spelling must decode to the same path.
	r := rand.New(rand.NewPCG(3, 4))
	inputs := []string{"a/b", "<&>\u2028\u2029", "emoji 😀 𝄞", "ctl \x01\x1f\x7f", `q"b\s/`}
	for i := 0; i < 300; i++ {
		var b strings.Builder
		for j := 0; j < 1+r.IntN(20); j++ {
			switch r.IntN(4) {
			case 0:
				b.WriteRune(rune(1 + r.IntN(0x7f)))
			case 1:
				b.WriteRune(rune(0x80 + r.IntN(0xD000)))
			case 2:
				b.WriteRune(rune(0x10000 + r.IntN(0x10000)))
			default:
				b.WriteString("/")
			}
		}
		inputs = append(inputs, b.String())
	}
	for _, in := range inputs {
		lit, err := json.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		m, err := Read(bytes.NewReader(manifestWithPathJSON(string(lit))))
		if err != nil {
			t.Fatalf("path %s: %v", lit, err)
		}
		if m.Files[0].Path != in {
			t.Fatalf("path %s decoded as %q, want %q", lit, m.Files[0].Path, in)
		}
	}
	// Escapes encoding/json never writes but JSON allows.
	for lit, want := range map[string]string{
		`"a\/b"`:         "a/b",
		`"\uD83D\uDE00"`: "😀",
		`"\u00E9\u00e9"`: "éé",
	} {
		m, err := Read(bytes.NewReader(manifestWithPathJSON(lit)))
		if err != nil || m.Files[0].Path != want {
			t.Errorf("path %s: got %+v, %v; want %q", lit, m, err, want)
		}
	}
}

func TestReadRejectsBadJSON(t *testing.T) {
	for _, lit := range []string{
		`"lone \uD83D high"`, `"lone \uDE00 low"`, `"\u0000"`, `"bad \x escape"`, `"\u12"`,
		"\"raw\ttab\"", `"unterminated`, `'single'`, `01`, `nul`, `"a" "b"`,
	} {
		if _, err := Read(bytes.NewReader(manifestWithPathJSON(lit))); err == nil {
			t.Errorf("path %s accepted", lit)
		}
	}
	for _, n := range []string{"1", "0", "123"} {
		if !validJSONNumber([]byte(n)) {
			t.Errorf("%s rejected", n)
		}
	}
	for _, n := range []string{"01", "-", "1.", ".5", "1e", "1e+", "--1", "1-"} {
		if validJSONNumber([]byte(n)) {
			t.Errorf("%s accepted", n)
		}
	}
}
