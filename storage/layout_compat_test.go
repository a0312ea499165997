package storage

import (
	"fmt"
	"testing"

	"github.com/pgcloudbackup/pgcloudbackup/codec"
)

// TestParseVolumeNameReadsEarlierReleases: every volume name an earlier
// release wrote reads back with the codec its suffix names. Releases up to
// the layout owner formatted them in engine/archive.go as
// fmt.Sprintf("%s.%05d.tar%s", archive, number, codec.Ext()), the archive
// being "base" or the tablespace's pg_tblspc entry (any decimal that
// strconv.ParseUint accepted: leading zeros too), and restored them with
// codec.ForKey on the name. (Numbers past 99999, six digits, needed more
// than 99999 volumes of one archive: petabytes at the default limits.)
// TestRestoresOlderRelease (e2e) restores such a backup end to end.
func TestParseVolumeNameReadsEarlierReleases(t *testing.T) {
	exts := map[string]codec.Codec{"": codec.None, ".zst": codec.Zstd, ".lz4": codec.LZ4, ".gz": codec.Gzip}
	for _, archive := range []string{"base", "1", "1663", "16384", "16385", "99999", "016384", "4294967295"} {
		for _, number := range []int{1, 2, 9, 10, 99, 100, 1000, 10000, 99999} {
			for ext, want := range exts {
				name := fmt.Sprintf("%s.%05d.tar%s", archive, number, ext) // as earlier releases wrote it
				v, err := ParseVolumeName(name)
				if err != nil {
					t.Fatalf("a volume an earlier release wrote is refused: %v", err)
				}
				if v.Archive != archive || v.Number != number || v.Codec != want {
					t.Fatalf("ParseVolumeName(%q) = %s %d %s, want %s %d %s", name, v.Archive, v.Number, v.Codec.Name(), archive, number, want.Name())
				}
				if again, err := VolumeName(v.Archive, v.Number, v.Codec); err != nil || again != name {
					t.Fatalf("VolumeName of %q's parts = %q, %v: the name changed", name, again, err)
				}
			}
		}
	}
}
