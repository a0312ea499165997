package backupmanifest

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/pgcloudbackup/pgcloudbackup/internal/pgtest"
	"github.com/pgcloudbackup/pgcloudbackup/internal/testenv"
)

func pgBin(t *testing.T, prog string) string {
	t.Helper()
	dir, err := pgtest.BinDir()
	if err != nil {
		testenv.Unavailable(t, "%v", err)
	}
	p := filepath.Join(dir, prog)
	if _, err := os.Stat(p); err != nil {
		testenv.Unavailable(t, "%s not found: %v", prog, err)
	}
	return p
}

// fileCRC computes the CRC-32C of a file with our hash.
func fileCRC(t *testing.T, path string) uint32 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := NewCRC32C()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return h.Sum32()
}

// Names that exercise escaping and Encoded-Path on disk.
var (
	quotedName  = "dir with space/it's a \"quoted\" name\\with\tcontrol\x01 é ☃ \u2028 <&>"
	invalidName = "not-utf8-\xff\xfe"
)

func TestPGVerifyBackupAcceptsOurManifest(t *testing.T) {
	verify := pgBin(t, "pg_verifybackup")
	dir := t.TempDir()
	files := map[string]string{
		"PG_VERSION":           "15\n",
		"global/pg_control":    strings.Repeat("\x01", 8192),
		"base/1/1259":          strings.Repeat("page", 4096),
		"base/1/nested/deep/f": "deep",
		"base/5/empty":         "",
		quotedName:             "quoted contents",
		invalidName:            "encoded path contents",
		"pg_tblspc/16385/PG_15_202209061/5/16386": "tablespace file",
	}
	var paths []string
	for p, content := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}

	// Write the manifest the way the engine will: workers add files
	// concurrently while the CRC and stat come from the files themselves.
	var buf bytes.Buffer
	w, err := NewWriter(&buf, Options{Version: 1})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(paths))
	for _, p := range paths {
		wg.Add(1)
		go func(p string) {
			defer wg.Done()
			full := filepath.Join(dir, p)
			st, err := os.Stat(full)
			if err != nil {
				errs <- err
				return
			}
			errs <- w.AddFile(p, st.Size(), st.ModTime(), fileCRC(t, full))
		}(p)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Finish(testRanges); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(buf.Bytes(), []byte(`"Encoded-Path": "`)) || !bytes.Contains(buf.Bytes(), []byte(`\u0001`)) {
		t.Fatalf("manifest does not exercise Encoded-Path and escapes:\n%s", buf.Bytes())
	}
	if err := os.WriteFile(filepath.Join(dir, "backup_manifest"), buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}

	out, err := exec.Command(verify, "--no-parse-wal", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("pg_verifybackup rejected our manifest: %v\n%s\n--- manifest ---\n%s", err, out, buf.Bytes())
	}
	if !strings.Contains(string(out), "backup successfully verified") {
		t.Fatalf("pg_verifybackup output: %s", out)
	}

	// Same size, different bytes: only the CRC can tell, and
	// pg_verifybackup must name the file.
	victim := filepath.Join(dir, quotedName)
	if err := os.WriteFile(victim, []byte("QUOTED contents"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(verify, "--no-parse-wal", dir).CombinedOutput()
	if err == nil {
		t.Fatalf("pg_verifybackup accepted a corrupted file:\n%s", out)
	}
	if want := fmt.Sprintf("checksum mismatch for file \"%s\"", quotedName); !strings.Contains(string(out), want) {
		t.Errorf("pg_verifybackup output does not contain %q:\n%s", want, out)
	}
	if strings.Count(string(out), "checksum mismatch") != 1 {
		t.Errorf("expected exactly one mismatch:\n%s", out)
	}

	// And the manifest checksum is what pg_verifybackup checks too.
	if err := os.WriteFile(victim, []byte("quoted contents"), 0o644); err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Replace(buf.Bytes(), []byte(`"Size": 4,`), []byte(`"Size": 5,`), 1)
	if bytes.Equal(tampered, buf.Bytes()) {
		t.Fatal("could not tamper")
	}
	if err := os.WriteFile(filepath.Join(dir, "backup_manifest"), tampered, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(verify, "--no-parse-wal", dir).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "manifest checksum mismatch") {
		t.Errorf("pg_verifybackup on a tampered manifest: %v\n%s", err, out)
	}
}

func TestReproduceServerManifest(t *testing.T) {
	c := pgtest.New(t, pgtest.Options{})
	// Unusual names in the data directory: the server's base backup sends
	// them too, so its manifest shows how PostgreSQL escapes and encodes.
	for _, name := range []string{"weird \"name\"\twith\\ctl\x01\x1f é ☃ \u2028 <&>\x7f", "bad-utf8-\xff\xc3"} {
		p := filepath.Join(c.DataDir, name)
		if err := os.WriteFile(p, []byte("extra file "+name), 0o600); err != nil {
			t.Fatal(err)
		}
		pgtest.ChownToServerUser(t, p)
	}
	c.Exec("postgres", "CREATE TABLE t AS SELECT g, repeat('x', 100) AS s FROM generate_series(1, 5000) g")

	dest := filepath.Join(t.TempDir(), "bb")
	out, err := c.Client("pg_basebackup", "-D", dest, "-Fp", "--manifest-checksums=CRC32C",
		"-c", "fast", "-X", "none", "--no-sync").CombinedOutput()
	if err != nil {
		t.Fatalf("pg_basebackup: %v\n%s", err, out)
	}
	server, err := os.ReadFile(filepath.Join(dest, "backup_manifest"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"Encoded-Path": "`, `\t`, `\\`, `\"`, `\u0001`, `\u001f`} {
		if !bytes.Contains(server, []byte(want)) {
			t.Fatalf("server manifest lacks %s; the test would not cover it", want)
		}
	}

	m, err := Read(bytes.NewReader(server))
	if err != nil {
		t.Fatalf("Read on the server's manifest: %v", err)
	}
	if m.Version != VersionFor(c.Version()*10000) {
		t.Errorf("server wrote version %d", m.Version)
	}
	if len(m.Files) < 100 || len(m.WALRanges) == 0 {
		t.Fatalf("suspiciously small manifest: %d files, %d WAL ranges", len(m.Files), len(m.WALRanges))
	}

	// Our CRC-32C and its text match the server's for every file, and
	// re-writing the same entries gives the server's bytes exactly.
	var buf bytes.Buffer
	w, err := NewWriter(&buf, Options{Version: m.Version, SystemIdentifier: m.SystemIdentifier})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range m.Files {
		full := filepath.Join(dest, f.Path)
		st, err := os.Stat(full)
		if err != nil {
			t.Fatalf("%q in the manifest: %v", f.Path, err)
		}
		if st.Size() != f.Size {
			t.Errorf("%q: size %d on disk, %d in manifest", f.Path, st.Size(), f.Size)
		}
		crc := fileCRC(t, full)
		if f.ChecksumAlgorithm != "CRC32C" || CRC32CChecksum(crc) != f.Checksum {
			t.Errorf("%q: server checksum %s %s, ours %s", f.Path, f.ChecksumAlgorithm, f.Checksum, CRC32CChecksum(crc))
		}
		mt, err := f.ModTime()
		if err != nil {
			t.Fatal(err)
		}
		if err := w.AddFile(f.Path, f.Size, mt, crc); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Finish(m.WALRanges); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), server) {
		ours := strings.Split(buf.String(), "\n")
		theirs := strings.Split(string(server), "\n")
		for i := 0; i < len(ours) && i < len(theirs); i++ {
			if ours[i] != theirs[i] {
				t.Fatalf("line %d differs:\nours:   %q\nserver: %q", i+1, ours[i], theirs[i])
			}
		}
		t.Fatalf("manifests differ in length: ours %d lines, server %d", len(ours), len(theirs))
	}

	// pg_verifybackup agrees with the server's manifest on this directory
	// (the escaped and encoded names included).
	verify := filepath.Join(c.BinDir, "pg_verifybackup")
	if out, err := exec.Command(verify, "--no-parse-wal", dest).CombinedOutput(); err != nil {
		t.Fatalf("pg_verifybackup on the server's own backup: %v\n%s", err, out)
	}
}
