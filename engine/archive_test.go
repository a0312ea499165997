package engine

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgcloudbackup/pgcloudbackup/internal/testenv"
)

// TestTarHeaders: the headers we write read back with Go's reader and with
// GNU tar: long names, directories, tablespace symlinks, modes, owners and
// times.
func TestTarHeaders(t *testing.T) {
	mtime := time.Date(2026, 11, 24, 18, 30, 26, 123456789, time.UTC)
	long := "base/16384/" + strings.Repeat("d", 120) + "/" + strings.Repeat("f", 90) // > 100 and > 155+100 split
	entries := []*entry{
		{kind: kindDir, name: "base", mode: 0o700, mtime: mtime, uid: 101, gid: 104},
		{kind: kindFile, name: "base/1/1259", mode: 0o600, mtime: mtime, size: 5, uid: 101, gid: 104},
		{kind: kindFile, name: long, mode: 0o640, mtime: mtime, size: 3, uid: 101, gid: 104},
		{kind: kindSymlink, name: "pg_tblspc/16385", link: "/srv/tablespaces/" + strings.Repeat("x", 120), mode: 0o777, mtime: mtime},
		{kind: kindFile, name: "empty", mode: 0o600, mtime: mtime},
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	var h tar.Header
	for _, e := range entries {
		tarHeader(&h, e)
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("%s: %v", e.name, err)
		}
		if e.kind == kindFile {
			tw.Write(bytes.Repeat([]byte("x"), int(e.size)))
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}

	tr := tar.NewReader(bytes.NewReader(buf.Bytes()))
	for _, e := range entries {
		got, err := tr.Next()
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimSuffix(got.Name, "/")
		if name != e.name {
			t.Errorf("name %q, want %q", got.Name, e.name)
		}
		if fs := got.FileInfo().Mode().Perm(); fs != e.mode {
			t.Errorf("%s: mode %v, want %v", e.name, fs, e.mode)
		}
		if got.Uid != e.uid || got.Gid != e.gid {
			t.Errorf("%s: owner %d:%d, want %d:%d", e.name, got.Uid, got.Gid, e.uid, e.gid)
		}
		if !got.ModTime.Equal(mtime.Truncate(time.Second)) {
			t.Errorf("%s: mtime %v, want %v", e.name, got.ModTime, mtime.Truncate(time.Second))
		}
		switch e.kind {
		case kindDir:
			if got.Typeflag != tar.TypeDir || !strings.HasSuffix(got.Name, "/") {
				t.Errorf("%s: type %c name %q, want a directory", e.name, got.Typeflag, got.Name)
			}
		case kindSymlink:
			if got.Typeflag != tar.TypeSymlink || got.Linkname != e.link {
				t.Errorf("%s: type %c link %q", e.name, got.Typeflag, got.Linkname)
			}
		default:
			if got.Typeflag != tar.TypeReg || got.Size != e.size {
				t.Errorf("%s: type %c size %d", e.name, got.Typeflag, got.Size)
			}
			data, _ := io.ReadAll(tr)
			if int64(len(data)) != e.size {
				t.Errorf("%s: %d bytes", e.name, len(data))
			}
		}
	}
	if _, err := tr.Next(); err != io.EOF {
		t.Errorf("trailing members: %v", err)
	}

	// GNU tar, as a user would extract it.
	if _, err := exec.LookPath("tar"); err != nil {
		testenv.Unavailable(t, "GNU tar is needed to check our archives with it: %v", err)
	}
	dir := t.TempDir()
	cmd := exec.Command("tar", "-xf", "-", "-C", dir)
	cmd.Stdin = bytes.NewReader(buf.Bytes())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("GNU tar: %v\n%s", err, out)
	}
	if st, err := os.Stat(filepath.Join(dir, long)); err != nil || st.Size() != 3 || st.Mode().Perm() != 0o640 {
		t.Errorf("long name extracted as %v %v", st, err)
	}
	if link, err := os.Readlink(filepath.Join(dir, "pg_tblspc", "16385")); err != nil || link != entries[3].link {
		t.Errorf("symlink extracted as %q %v", link, err)
	}
}
