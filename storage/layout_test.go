package storage

import (
	"strings"
	"testing"

	"github.com/pgcloudbackup/pgcloudbackup/codec"
)

var allCodecs = []codec.Codec{codec.None, codec.Zstd, codec.LZ4, codec.Gzip}

// TestVolumeNameFormat pins the names existing backups hold: they must keep
// reading back.
func TestVolumeNameFormat(t *testing.T) {
	for _, tc := range []struct {
		archive string
		number  int
		c       codec.Codec
		want    string
	}{
		{"base", 1, codec.Zstd, "base.00001.tar.zst"},
		{"base", 2, codec.None, "base.00002.tar"},
		{"16384", 12, codec.LZ4, "16384.00012.tar.lz4"},
		{"4294967295", MaxVolumes, codec.Gzip, "4294967295.99999.tar.gz"},
	} {
		got, err := VolumeName(tc.archive, tc.number, tc.c)
		if err != nil || got != tc.want {
			t.Errorf("VolumeName(%q, %d, %s) = %q, %v; want %q", tc.archive, tc.number, tc.c.Name(), got, err, tc.want)
		}
	}
}

// TestVolumeNameRoundTrip: every name VolumeName writes parses back to
// what it was made from.
func TestVolumeNameRoundTrip(t *testing.T) {
	for _, archive := range []string{"base", "1", "16384", "016384", "4294967295"} {
		for _, n := range []int{1, 2, 9, 10, 12345, MaxVolumes} {
			for _, c := range allCodecs {
				name, err := VolumeName(archive, n, c)
				if err != nil {
					t.Fatalf("VolumeName(%q, %d, %s): %v", archive, n, c.Name(), err)
				}
				v, err := ParseVolumeName(name)
				if err != nil {
					t.Fatalf("ParseVolumeName(%q): %v", name, err)
				}
				if v.Archive != archive || v.Number != n || v.Codec != c {
					t.Fatalf("ParseVolumeName(%q) = %+v, want %s %d %s", name, v, archive, n, c.Name())
				}
			}
		}
	}
	if v, _ := ParseVolumeName("16384.00001.tar"); v.OID() != 16384 {
		t.Errorf("OID of 16384's volume = %d", v.OID())
	}
	if v, _ := ParseVolumeName("base.00001.tar"); v.OID() != 0 {
		t.Errorf("OID of base's volume = %d", v.OID())
	}
}

// TestVolumeNameRefusesWhatItCannotRead: VolumeName fails rather than write a
// name ParseVolumeName would refuse.
func TestVolumeNameRefusesWhatItCannotRead(t *testing.T) {
	for _, tc := range []struct {
		archive string
		number  int
		c       codec.Codec
	}{
		{"base", 0, codec.Zstd},
		{"base", MaxVolumes + 1, codec.Zstd}, // six digits
		{"base", -1, codec.Zstd},
		{"0", 1, codec.Zstd}, // OID 0 is the data directory's
		{"4294967296", 1, codec.Zstd},
		{"", 1, codec.Zstd},
		{"..", 1, codec.Zstd},
		{"pg_default", 1, codec.Zstd},
		{"base/x", 1, codec.Zstd},
		{"base", 1, nil},
	} {
		if name, err := VolumeName(tc.archive, tc.number, tc.c); err == nil {
			t.Errorf("VolumeName(%q, %d) = %q, want an error", tc.archive, tc.number, name)
		}
	}
}

// TestParseVolumeNameHostile: the bucket is untrusted; a manifest.json
// naming anything but a volume we could have written is refused.
func TestParseVolumeNameHostile(t *testing.T) {
	for _, name := range []string{
		"",
		"base",
		"base.tar.zst",          // no number
		"base.0001.tar.zst",     // four digits
		"base.000001.tar.zst",   // six digits
		"base.00000.tar.zst",    // numbers start at 1
		"base.0000a.tar",        // not a number
		"base.+0001.tar",        // a sign
		"base.00001.tar.bz2",    // a compression we never write
		"base.00001.tar.ZST",    // case matters
		"base.00001.tar.zst.x",  // trailing junk
		"base.00001.tar.zst/",   // a directory
		"base.00001.tgz",        // not .tar
		"base.00001",            // no suffix
		"base.00001.tar.",       // empty suffix after the dot
		"../base.00001.tar.zst", // a path
		"..",
		"x/base.00001.tar",
		"/base.00001.tar",
		"base/../16384.00001.tar",
		"16384.00001.tar\x00",
		"0.00001.tar.zst",          // OID 0
		"4294967296.00001.tar.zst", // beyond uint32
		"-1.00001.tar",
		"pg_default.00001.tar",
		"Base.00001.tar",
		"manifest.json",
		"backup_manifest",
		"reservation.json",
		" base.00001.tar",
	} {
		if v, err := ParseVolumeName(name); err == nil {
			t.Errorf("ParseVolumeName(%q) = %+v, want an error", name, v)
		} else if !strings.Contains(err.Error(), "not an archive volume") {
			t.Errorf("ParseVolumeName(%q): error %q does not say what is wrong", name, err)
		}
	}
}

// TestBackupKeyLayout pins where a backup's objects live under the prefix.
func TestBackupKeyLayout(t *testing.T) {
	s := &Store{Prefix: "team/db1/"}
	name, err := VolumeName(BaseArchive, 1, codec.Zstd)
	if err != nil {
		t.Fatal(err)
	}
	for got, want := range map[string]string{
		s.BackupKey("20261124T183026Z", name):           "team/db1/backups/20261124T183026Z/base.00001.tar.zst",
		s.BackupKey("20261124T183026Z", ManifestName):   "team/db1/backups/20261124T183026Z/manifest.json",
		s.BackupKey("20261124T183026Z", PGManifestName): "team/db1/backups/20261124T183026Z/backup_manifest",
		s.BackupKey("20261124T183026Z", ""):             "team/db1/backups/20261124T183026Z/",
		s.Key("x"):                                      "team/db1/x",
	} {
		if got != want {
			t.Errorf("key %q, want %q", got, want)
		}
	}
}
