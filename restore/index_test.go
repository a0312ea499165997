package restore

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
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
