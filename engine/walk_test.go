package engine

import (
	"context"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

// TestWalkStoresSymlinkedExcludedDirsEmpty walks a fake data directory:
// every excluded directory that is a symbolic link (dangling ones too, as
// an unmounted tmpfs would leave) becomes an empty directory with the
// cluster's directory mode; the stats_temp_directory setting's directory
// likewise; other symbolic links outside pg_tblspc are still skipped, and
// nothing behind any link is read.
func TestWalkStoresSymlinkedExcludedDirsEmpty(t *testing.T) {
	root := t.TempDir()
	elsewhere := t.TempDir()
	if err := os.WriteFile(filepath.Join(elsewhere, "secret"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	links := map[string]string{
		"pg_replslot":  elsewhere,
		"pg_stat_tmp":  filepath.Join(elsewhere, "not-mounted"), // dangling
		"pg_notify":    elsewhere,
		"pg_serial":    elsewhere,
		"pg_snapshots": elsewhere,
		"pg_subtrans":  elsewhere,
		"pg_dynshmem":  elsewhere,
		"stats_custom": elsewhere, // the stats_temp_directory setting
		"random_link":  elsewhere,
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	for _, group := range []bool{false, true} {
		w := &walker{root: root, skipContents: map[string]string{"stats_custom": "stats_temp_directory"},
			dirMode: dirCreateMode(group), logger: slog.New(slog.DiscardHandler)}
		got := map[string]*entry{}
		if err := w.walk(context.Background(), "", func(e *entry) error {
			got[e.name] = e
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		want := fs.FileMode(0o700)
		if group {
			want = 0o750
		}
		for name := range links {
			e, ok := got[name]
			if name == "random_link" {
				if ok {
					t.Errorf("symbolic link %s outside pg_tblspc stored: %+v", name, e)
				}
				continue
			}
			if !ok || e.kind != kindDir || e.mode != want {
				t.Errorf("group %v: %s stored as %+v, want an empty directory with mode %v", group, name, e, want)
			}
		}
		if len(got) != len(links)-1 {
			t.Errorf("walk found %d entries, want %d (nothing behind the links): %v", len(got), len(links)-1, got)
		}
	}
}
