package storage

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/pgcloudbackup/pgcloudbackup/codec"
)

// Backup layout. Every object of a backup lives in its directory (Prefix
// is the URL's path after the bucket):
//
//	<Prefix>backups/<id>/<archive>.<nnnnn>.tar<ext>   volumes: base.00001.tar.zst, 16384.00002.tar.zst
//	<Prefix>backups/<id>/backup_manifest             PostgreSQL's format
//	<Prefix>backups/<id>/manifest.json               ours, written LAST: present = complete
//	<Prefix>backups/<id>/reservation.json            the run's marker (reserve.go)
//
// An archive is the tar archive of the data directory ("base") or of one
// tablespace (named by its OID). It is stored as one or more volumes, each
// a complete tar stream compressed with the backup's codec (named by the
// suffix), numbered from 00001 within the archive. VolumeName formats a
// volume's name and ParseVolumeName is the only way back.

const (
	// ManifestName is our manifest; its presence marks a complete backup.
	ManifestName = "manifest.json"
	// PGManifestName is PostgreSQL's backup manifest.
	PGManifestName = "backup_manifest"
	// backupsDir holds one directory per backup under the prefix.
	backupsDir = "backups/"
	// idLayout formats backup IDs: UTC, fixed width, so that string
	// order is time order.
	idLayout = "20060102T150405Z"
)

// Key returns the object key of rel (a path relative to the prefix).
func (s *Store) Key(rel string) string { return s.Prefix + rel }

// BackupKey returns the key of object name in backup id.
func (s *Store) BackupKey(id, name string) string {
	return s.Prefix + backupsDir + id + "/" + name
}

// NewBackupID returns the ID of a backup started at t: UTC
// "20261124T183026Z". IDs sort by time.
func NewBackupID(t time.Time) string { return t.UTC().Format(idLayout) }

const (
	// BaseArchive names the data directory's archive.
	BaseArchive = "base"
	// MaxVolumes is the highest volume number of one archive: the number
	// has five digits.
	MaxVolumes = 99999
	// volumeDigits is the width of the volume number.
	volumeDigits = 5
	tarSuffix    = ".tar"
)

// Volume names one archive object of a backup.
type Volume struct {
	Archive string      // BaseArchive or a tablespace OID in decimal
	Number  int         // 1 .. MaxVolumes
	Codec   codec.Codec // the compression its name ends in
}

// OID is the tablespace the volume belongs to, 0 for the data directory.
func (v Volume) OID() uint32 {
	n, _ := strconv.ParseUint(v.Archive, 10, 32) // checked by checkArchive
	return uint32(n)
}

// VolumeName returns the name of volume number of archive, relative to the
// backup's directory: "<archive>.<nnnnn>.tar<ext>". It refuses what
// ParseVolumeName would refuse, so every name written can be read back.
func VolumeName(archive string, number int, c codec.Codec) (string, error) {
	if err := checkArchive(archive); err != nil {
		return "", err
	}
	if number < 1 || number > MaxVolumes {
		return "", fmt.Errorf("archive %s: volume number %d outside 1..%d", archive, number, MaxVolumes)
	}
	if c == nil {
		return "", errors.New("volume name: no codec")
	}
	return fmt.Sprintf("%s.%0*d%s%s", archive, volumeDigits, number, tarSuffix, c.Ext()), nil
}

// ParseVolumeName reads a volume name (relative to the backup's directory)
// back. The bucket is untrusted: anything VolumeName cannot have written is
// refused (other digit counts, a path, an unknown compression suffix).
func ParseVolumeName(name string) (Volume, error) {
	bad := func(why string) (Volume, error) {
		return Volume{}, fmt.Errorf("object %q is not an archive volume: %s", name, why)
	}
	archive, rest, ok := strings.Cut(name, ".")
	if !ok {
		return bad("want <archive>.<nnnnn>.tar[.<compression>]")
	}
	if err := checkArchive(archive); err != nil {
		return bad(err.Error())
	}
	if len(rest) < volumeDigits || !allDigits(rest[:volumeDigits]) {
		return bad(fmt.Sprintf("want a %d-digit volume number after %q", volumeDigits, archive+"."))
	}
	number, _ := strconv.Atoi(rest[:volumeDigits])
	if number < 1 {
		return bad("volume numbers start at 1")
	}
	ext, ok := strings.CutPrefix(rest[volumeDigits:], tarSuffix)
	if !ok {
		return bad(fmt.Sprintf("want %q after the volume number", tarSuffix))
	}
	c, err := codec.ForExt(ext)
	if err != nil {
		return bad(err.Error())
	}
	return Volume{Archive: archive, Number: number, Codec: c}, nil
}

// checkArchive accepts the archive names the engine gives: BaseArchive, or
// a tablespace's directory name in pg_tblspc, a non-zero OID.
func checkArchive(a string) error {
	if a == BaseArchive {
		return nil
	}
	if !allDigits(a) {
		return fmt.Errorf("archive name %q is neither %q nor a tablespace OID", a, BaseArchive)
	}
	if n, err := strconv.ParseUint(a, 10, 32); err != nil || n == 0 {
		return fmt.Errorf("archive name %q is not a tablespace OID", a)
	}
	return nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
