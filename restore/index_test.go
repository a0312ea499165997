package restore

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
	"github.com/pgcloudbackup/pgcloudbackup/internal/pg/backupmanifest"
	"github.com/pgcloudbackup/pgcloudbackup/storage"
)

// TestIndexBoundedByDeclaredFiles: backup_manifest may not list more files
// than manifest.json counts (the memory budget is computed from that
// count), and nothing is written when it does.
func TestIndexBoundedByDeclaredFiles(t *testing.T) {
	store, err := storage.Open(context.Background(), "mem://", storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	m := benign(t, store, "20260401T000000Z")
	m.Tablespaces[0].Files = 0
	target := filepath.Join(t.TempDir(), "data")
	_, err = Restore(context.Background(), store, m, Options{Target: target,
		TablespaceMap: map[uint32]string{16385: filepath.Join(t.TempDir(), "ts")}})
	if failure.KindOf(err) != failure.Failed || !strings.Contains(err.Error(), "more than the 0 files manifest.json declares") {
		t.Fatalf("restore: %v", err)
	}
	if _, err := os.Stat(target); !os.IsNotExist(err) {
		t.Errorf("the refused restore created the target: %v", err)
	}
}

// TestPGManifestCopyPinned: the copy of backup_manifest written into the
// target at the end must be the object the index was built from; one
// replaced in between is refused, and no copy is left.
func TestPGManifestCopyPinned(t *testing.T) {
	ctx := context.Background()
	store, err := storage.Open(ctx, "mem://", storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	m := benign(t, store, "20260402T000000Z")
	x, err := loadIndex(ctx, store, m)
	if err != nil {
		t.Fatal(err)
	}
	defer x.close()
	if _, ok := x.find("PG_VERSION"); !ok || x.idx.Len() != 1 {
		t.Fatalf("index: %d files", x.idx.Len())
	}
	dir := t.TempDir()
	s, err := newDirSink(dir, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	if err := writePGManifest(ctx, store, m, x, s, nil); err != nil {
		t.Fatalf("copy: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "backup_manifest")); err != nil {
		t.Fatal(err)
	}
	// Same size, other bytes, and manifest.json's SHA-256 left out so that
	// only the pin can tell.
	key := store.BackupKey(m.ID, m.BackupManifest.Key)
	data, err := store.ReadAll(ctx, key, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)-3] ^= 1
	if err := store.WriteAll(ctx, key, data, storage.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	m.BackupManifest.SHA256 = ""
	if err := writePGManifest(ctx, store, m, x, s, nil); err == nil || !strings.Contains(err.Error(), "changed while") {
		t.Fatalf("copy of a replaced backup_manifest: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "backup_manifest")); !os.IsNotExist(err) {
		t.Errorf("a refused copy was left in the target: %v", err)
	}
}

// TestPGManifestSecondReadRefused: the second read of backup_manifest (the
// copy into the target, plain or with an entry rewritten for moved
// tablespaces) refuses an object that is shorter, longer or other bytes of
// the same size than the one indexed, also when manifest.json (an older
// release's) gives no SHA-256 for it, and leaves no copy behind.
func TestPGManifestSecondReadRefused(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		change func([]byte) []byte
	}{
		{"truncated", func(b []byte) []byte { return b[:len(b)-1] }},
		{"longer", func(b []byte) []byte { return append(b, '\n') }},
		{"other bytes", func(b []byte) []byte { b[10] ^= 1; return b }},
		{"empty", func(b []byte) []byte { return nil }},
	} {
		for _, replace := range []*backupmanifest.ReplacedFile{nil, {Path: "PG_VERSION", Size: 3, ModTime: time.Unix(0, 0), CRC32C: 1}} {
			for _, noSum := range []bool{false, true} {
				store, err := storage.Open(ctx, "mem://", storage.Options{})
				if err != nil {
					t.Fatal(err)
				}
				m := benign(t, store, "20260402T000000Z")
				if noSum {
					m.BackupManifest.SHA256 = ""
				}
				x, err := loadIndex(ctx, store, m)
				if err != nil {
					t.Fatal(err)
				}
				dir := t.TempDir()
				s, err := newDirSink(dir, nil, false)
				if err != nil {
					t.Fatal(err)
				}
				if err := writePGManifest(ctx, store, m, x, s, replace); err != nil {
					t.Fatalf("%s: copy before the change: %v", tc.name, err)
				}
				key := store.BackupKey(m.ID, m.BackupManifest.Key)
				data, err := store.ReadAll(ctx, key, 1<<30)
				if err != nil {
					t.Fatal(err)
				}
				if err := store.WriteAll(ctx, key, tc.change(data), storage.WriteOptions{}); err != nil {
					t.Fatal(err)
				}
				err = writePGManifest(ctx, store, m, x, s, replace)
				if err == nil || failure.KindOf(err) != failure.Failed {
					t.Errorf("%s (rewrite %v, no SHA-256 %v): %v, want a failure", tc.name, replace != nil, noSum, err)
				}
				if _, err := os.Stat(filepath.Join(dir, "backup_manifest")); !os.IsNotExist(err) {
					t.Errorf("%s (rewrite %v, no SHA-256 %v): a refused copy was left in the target: %v", tc.name, replace != nil, noSum, err)
				}
				s.close()
				x.close()
			}
		}
	}
}
