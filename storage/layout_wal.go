package storage

import (
	"fmt"
	"strconv"
	"strings"
)

// WAL archive layout. Archived WAL lives beside the backups, never under
// backups/, so that listing or deleting backups never lists the archive:
//
//	<Prefix>wal/<timeline>/<file name>.zst
//
// <timeline> is the first 8 hex digits of the file name (the timeline of a
// segment, .partial or .backup file; the number of a .history file), so the
// files of one timeline can be listed (retention, continuity checks)
// without listing the others. Every file is stored zstd-compressed.

const (
	walDir = "wal/"
	// WALExt is the suffix of every archived WAL object (zstd).
	WALExt = ".zst"
)

// WAL file kinds, as PostgreSQL names them (xlog_internal.h).
const (
	WALSegment = "segment" // 000000010000000000000003
	WALPartial = "partial" // 000000010000000000000003.partial
	WALBackup  = "backup"  // 000000010000000000000003.00000028.backup
	WALHistory = "history" // 00000002.history
)

// WALKind returns the kind of a WAL archive file name, or "" when name is
// not one PostgreSQL writes. Only these shapes are accepted (upper-case hex,
// exact lengths), so a name can never reach outside its timeline directory.
func WALKind(name string) string {
	switch {
	case len(name) == 24 && isUpperHex(name):
		return WALSegment
	case len(name) == 24+len(".partial") && strings.HasSuffix(name, ".partial") && isUpperHex(name[:24]):
		return WALPartial
	case len(name) == 24+1+8+len(".backup") && strings.HasSuffix(name, ".backup") && name[24] == '.' &&
		isUpperHex(name[:24]) && isUpperHex(name[25:33]):
		return WALBackup
	case len(name) == 8+len(".history") && strings.HasSuffix(name, ".history") && isUpperHex(name[:8]):
		return WALHistory
	}
	return ""
}

func isUpperHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return s != ""
}

// WALTimeline returns the timeline a valid WAL file name belongs to.
func WALTimeline(name string) uint32 {
	if len(name) < 8 {
		return 0
	}
	n, _ := strconv.ParseUint(name[:8], 16, 32)
	return uint32(n)
}

// WALKey returns the object key of WAL file name (which must satisfy
// WALKind).
func (s *Store) WALKey(name string) string {
	return s.Prefix + walDir + name[:8] + "/" + name + WALExt
}

// WALPrefix is the key prefix of the whole WAL archive.
func (s *Store) WALPrefix() string { return s.Prefix + walDir }

// WALTimelinePrefix is the key prefix of timeline tli's files.
func (s *Store) WALTimelinePrefix(tli uint32) string {
	return s.Prefix + walDir + fmt.Sprintf("%08X/", tli)
}

// WALName returns the WAL file name an archive key holds, and false for a
// key that is not a well-formed WAL object in its right place (a stray or
// temporary object; the bucket is untrusted).
func (s *Store) WALName(key string) (string, bool) {
	rest, ok := strings.CutPrefix(key, s.Prefix+walDir)
	if !ok {
		return "", false
	}
	dir, file, ok := strings.Cut(rest, "/")
	if !ok {
		return "", false
	}
	name, ok := strings.CutSuffix(file, WALExt)
	if !ok || WALKind(name) == "" || name[:8] != dir {
		return "", false
	}
	return name, true
}
