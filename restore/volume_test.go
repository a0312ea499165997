package restore

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgcloudbackup/pgcloudbackup/storage"
)

// TestHostileVolumeNamesAreRefused: manifest.json names the archive objects,
// and the bucket is untrusted. A name storage.VolumeName cannot have written,
// or a volume listed under another tablespace than its own, is refused
// before the target is created; verify refuses it too.
func TestHostileVolumeNamesAreRefused(t *testing.T) {
	ctx := context.Background()
	store, err := storage.Open(ctx, "mem://", storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range []struct{ key, want string }{
		{"base.00001.tar.bz2", "unsupported compression"},
		{"base.1.tar", "not an archive volume"},
		{"base.000001.tar", "not an archive volume"},
		{"x/base.00001.tar", "not an archive volume"},
		{"reservation.json", "not an archive volume"},
		{"16385.00001.tar", "listed under tablespace 0"},
	} {
		t.Run(c.key, func(t *testing.T) {
			m := craftBackup(t, store, fmt.Sprintf("2026020%dT000000Z", i),
				[]tar.Header{{Name: "PG_VERSION", Typeflag: tar.TypeReg, Mode: 0o600}})
			obj := &m.Tablespaces[0].Objects[0]
			data, err := store.ReadAll(ctx, store.BackupKey(m.ID, obj.Key), 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			// The object is there under its hostile name: only the name is
			// wrong.
			if err := store.WriteAll(ctx, store.BackupKey(m.ID, c.key), data, storage.WriteOptions{}); err != nil {
				t.Fatal(err)
			}
			obj.Key = c.key
			target := filepath.Join(t.TempDir(), "data")
			_, err = Restore(ctx, store, m, Options{Target: target, TablespaceMap: map[uint32]string{16385: target + "-ts"}})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("restore: %v, want an error about %q", err, c.want)
			}
			for _, d := range []string{target, target + "-ts"} {
				if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("refused restore left %s", d)
				}
			}
			if _, err := Verify(ctx, store, m, VerifyOptions{}); err == nil {
				t.Errorf("verify accepted volume %q", c.key)
			}
		})
	}
}
