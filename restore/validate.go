package restore

import (
	"archive/tar"
	"bytes"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
	"github.com/pgcloudbackup/pgcloudbackup/manifest"
)

// The checks in this file look at the backup alone (manifest.json,
// backup_manifest, archive members): verify and restore both run them, so
// whatever restore refuses because of the bucket, verify reports.

const tamperedHint = "the backup was damaged or tampered with: refusing to restore it"

// maxWALMember bounds a file under pg_wal/ (not listed in backup_manifest):
// the largest WAL segment size PostgreSQL allows.
const maxWALMember = 1 << 30

// maxTablespaceMap bounds the tablespace_map member we read back.
const maxTablespaceMap = 1 << 20

// CheckBackup checks what manifest.json says about where things go:
// the data directory archive first, every tablespace location absolute,
// clean and not nested in another. A failure is a Failed error: the
// backup, not the user, is at fault.
func CheckBackup(m *manifest.Backup) error {
	if len(m.Tablespaces) == 0 || m.Tablespaces[0].OID != 0 {
		return damagedBackup(m, fmt.Errorf("no data directory archive (tablespace 0) listed first"))
	}
	for i, ts := range m.Tablespaces {
		if i > 0 && ts.OID == 0 {
			return damagedBackup(m, fmt.Errorf("the data directory archive is listed twice"))
		}
		if ts.OID == 0 {
			continue
		}
		if err := checkLocation(ts.Location); err != nil {
			return damagedBackup(m, fmt.Errorf("tablespace %d location %q: %w", ts.OID, ts.Location, err))
		}
		for _, other := range m.Tablespaces[1:i] {
			if within(ts.Location, other.Location) || within(other.Location, ts.Location) {
				return damagedBackup(m, fmt.Errorf("tablespace locations %s (%d) and %s (%d) are nested", other.Location, other.OID, ts.Location, ts.OID))
			}
		}
	}
	return nil
}

func damagedBackup(m *manifest.Backup, err error) error {
	return failure.Wrap(failure.Failed, fmt.Errorf("backup %s: manifest.json: %w", m.ID, err), tamperedHint)
}

// checkLocation is the rule for any directory a tablespace is restored to,
// from the backup or from --tablespace-map.
func checkLocation(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("empty path")
	case strings.ContainsRune(p, 0):
		return fmt.Errorf("NUL byte in the path")
	case len(p) > manifest.MaxPathLen:
		return fmt.Errorf("path longer than %d bytes", manifest.MaxPathLen)
	case !filepath.IsAbs(p):
		return fmt.Errorf("not an absolute path")
	case filepath.Clean(p) != p:
		return fmt.Errorf("not a clean path (no trailing '/', '.', '..' or '//'); did you mean %s?", filepath.Clean(p))
	case p == "/":
		return fmt.Errorf("the root directory")
	}
	return nil
}

// within reports whether path p is dir or below it (both clean, absolute).
func within(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}

// versionDirRE is a tablespace's only top-level directory,
// PG_<major>_<catversion>.
var versionDirRE = regexp.MustCompile(`^PG_([0-9]+)_[0-9]{9}$`)

// reservedNames are data directory files the restore writes itself; a
// member of that name must be a regular file (backup_manifest must not be
// there at all: a base backup never contains it).
var reservedNames = map[string]bool{
	"tablespace_map": true, "backup_label": true, "postgresql.auto.conf": true,
	"recovery.signal": true, "standby.signal": true,
}

// checkMember applies the structure rules to one archive member before
// anything of it is written: where it may be, what type, how big. major is
// the backup's PostgreSQL major version.
func checkMember(m *manifest.Backup, p part, name string, h *tar.Header, index *fileIndex) error {
	major := m.PGVersionNum / 10000
	tampered := func(format string, args ...any) error {
		return failure.Wrap(failure.Failed, fmt.Errorf("object %s: "+format, append([]any{p.key}, args...)...), tamperedHint)
	}
	for k := range h.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return tampered("member %q is a sparse file, which a base backup never contains", h.Name)
		}
	}
	if p.oid != 0 {
		// A tablespace archive holds its PG_<major>_<catversion> tree and
		// nothing else: nothing lands beside it in the location.
		top, _, _ := strings.Cut(name, "/")
		sm := versionDirRE.FindStringSubmatch(top)
		if sm == nil || (major > 0 && sm[1] != strconv.Itoa(major)) {
			return tampered("member %q is outside the tablespace's PG_%d_<catversion> directory", h.Name, major)
		}
		if name == top && h.Typeflag != tar.TypeDir {
			return tampered("member %q must be a directory", h.Name)
		}
	} else {
		if name == "backup_manifest" {
			return tampered("member %q: a base backup never contains backup_manifest (the restore writes it)", h.Name)
		}
		if reservedNames[name] && h.Typeflag != tar.TypeReg {
			return tampered("member %q must be a regular file", h.Name)
		}
		if name == "tablespace_map" && h.Size > maxTablespaceMap {
			return tampered("member %q declares %d bytes", h.Name, h.Size)
		}
		if dir, oidStr, ok := strings.Cut(name, "/"); ok && dir == "pg_tblspc" && h.Typeflag != tar.TypeSymlink {
			for _, ts := range m.Tablespaces {
				if ts.OID != 0 && strconv.FormatUint(uint64(ts.OID), 10) == oidStr {
					return tampered("member %q is not a symbolic link, but the backup has tablespace %d", h.Name, ts.OID)
				}
			}
		}
	}
	// Nothing may be created below (or as) a file backup_manifest lists:
	// the restore would fail there; verify must say so too.
	for dir := parentOf(name); dir != ""; dir = parentOf(dir) {
		if index.isFile(p.prefix + dir) {
			return tampered("member %q is below %s, which backup_manifest lists as a file", h.Name, dir)
		}
	}
	if h.Typeflag != tar.TypeReg && index.isFile(p.prefix+name) {
		return tampered("member %q is not a regular file, but backup_manifest lists it as one", h.Name)
	}
	if h.Typeflag == tar.TypeReg {
		if err := index.expect(p.prefix+name, h.Size); err != nil {
			return tampered("%v", err)
		}
	}
	return nil
}

func parentOf(name string) string {
	i := strings.LastIndexByte(name, '/')
	if i < 0 {
		return ""
	}
	return name[:i]
}

// checkTablespaceMap checks the tablespace_map member: every line names a
// tablespace of the backup at an acceptable location. PostgreSQL creates
// pg_tblspc links from this file when it starts, so a hostile one would
// point the server anywhere.
func checkTablespaceMap(m *manifest.Backup, key string, data []byte) error {
	known := map[uint32]bool{}
	for _, ts := range m.Tablespaces {
		if ts.OID != 0 {
			known[ts.OID] = true
		}
	}
	bad := func(format string, args ...any) error {
		return failure.Wrap(failure.Failed, fmt.Errorf("object %s: tablespace_map: "+format, append([]any{key}, args...)...), tamperedHint)
	}
	for _, line := range splitMapLines(data) {
		oidStr, loc, ok := strings.Cut(line, " ")
		oid, err := strconv.ParseUint(oidStr, 10, 32)
		if !ok || err != nil {
			return bad("line %q is not \"OID LOCATION\"", line)
		}
		if !known[uint32(oid)] {
			return bad("tablespace %d is not in the backup", oid)
		}
		if err := checkLocation(loc); err != nil {
			return bad("tablespace %d location %q: %v", oid, loc, err)
		}
	}
	return nil
}

// splitMapLines splits tablespace_map into lines, undoing PostgreSQL's
// backslash escaping of backslashes and line breaks in locations.
func splitMapLines(data []byte) []string {
	var lines []string
	var cur bytes.Buffer
	for i := 0; i < len(data); i++ {
		c := data[i]
		switch {
		case c == '\\' && i+1 < len(data):
			i++
			cur.WriteByte(data[i])
		case c == '\n' || c == '\r':
			if cur.Len() > 0 {
				lines = append(lines, cur.String())
			}
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	if cur.Len() > 0 {
		lines = append(lines, cur.String())
	}
	return lines
}
