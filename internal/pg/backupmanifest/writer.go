// Package backupmanifest writes and reads PostgreSQL's backup_manifest
// (byte-compatible with what the server's own base backup produces, so
// pg_verifybackup accepts it): the streaming writer, the reader and its
// lexer, CRC32C encoding, the rewriting of one entry for a restore, and a
// compact index of the file list. Whatever it reads comes from an untrusted
// bucket: its memory is bounded whatever the input.
package backupmanifest

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/pgcloudbackup/pgcloudbackup/internal/pg/wal"
)

// WALRange is the WAL a restore must replay on one timeline (a
// backup_manifest "WAL-Ranges" entry).
type WALRange struct {
	Timeline   uint32
	Start, End wal.LSN
}

// Options shape a backup_manifest.
type Options struct {
	// Version is the manifest format: 1 (PostgreSQL 13–16) or 2 (17+,
	// which adds System-Identifier). 0 means 1.
	Version int
	// SystemIdentifier of the cluster; required by (and only written in)
	// version 2.
	SystemIdentifier uint64
}

// VersionFor returns the manifest version the server of the given
// server_version_num writes itself.
func VersionFor(serverVersionNum int) int {
	if serverVersionNum >= 170000 {
		return 2
	}
	return 1
}

// ChecksumAlgorithmCRC32C is the only file checksum the writer produces:
// it is what the server uses by default and it is hardware accelerated.
const ChecksumAlgorithmCRC32C = "CRC32C"

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// NewCRC32C returns a CRC-32C (Castagnoli) hash, the checksum PostgreSQL
// names "CRC32C" in a backup manifest. hash/crc32 uses the CPU's CRC32
// instruction when there is one.
func NewCRC32C() hash.Hash32 { return crc32.New(castagnoli) }

// CRC32CChecksum returns the text PostgreSQL writes in "Checksum" for a
// CRC-32C value. The server memcpy()s the uint32 into a byte buffer and
// hex-encodes that buffer, so the digits follow the machine's byte order
// (little-endian on x86-64 and arm64). pg_verifybackup compares the same
// native bytes, so we use this machine's order, exactly as the server and
// pg_verifybackup running here do.
func CRC32CChecksum(crc uint32) string {
	var b [8]byte
	return string(appendCRC32CHex(b[:0], crc))
}

func appendCRC32CHex(dst []byte, crc uint32) []byte {
	var raw [4]byte
	binary.NativeEndian.PutUint32(raw[:], crc)
	return hex.AppendEncode(dst, raw[:])
}

// Writer streams a backup_manifest: each AddFile appends one line,
// so the file list is never held in memory. A SHA-256 of every byte written
// is kept as it goes for the final "Manifest-Checksum" line.
type Writer struct {
	mu       sync.Mutex
	bw       *bufio.Writer
	sum      hash.Hash
	first    bool // no file entry written yet
	finished bool
	err      error // first write error; sticky
}

// hashingWriter feeds what reaches the destination into the manifest's
// SHA-256. It sits under the bufio.Writer, so it hashes large chunks.
type hashingWriter struct {
	w io.Writer
	h hash.Hash
}

func (hw *hashingWriter) Write(p []byte) (int, error) {
	n, err := hw.w.Write(p)
	hw.h.Write(p[:n])
	return n, err
}

// NewWriter writes the manifest's header to w and returns the
// writer for its file entries. Nothing is complete until Finish.
func NewWriter(w io.Writer, opts Options) (*Writer, error) {
	version := opts.Version
	if version == 0 {
		version = 1
	}
	if version != 1 && version != 2 {
		return nil, fmt.Errorf("backup_manifest: unsupported version %d (want 1 or 2)", opts.Version)
	}
	if version == 2 && opts.SystemIdentifier == 0 {
		return nil, errors.New("backup_manifest: version 2 needs the cluster's system identifier")
	}
	sum := sha256.New()
	m := &Writer{
		bw:    bufio.NewWriterSize(&hashingWriter{w: w, h: sum}, 64<<10),
		sum:   sum,
		first: true,
	}
	// Same bytes as the server's InitializeBackupManifest.
	hdr := make([]byte, 0, 128)
	hdr = append(hdr, `{ "PostgreSQL-Backup-Manifest-Version": `...)
	hdr = strconv.AppendInt(hdr, int64(version), 10)
	hdr = append(hdr, ",\n"...)
	if version == 2 {
		hdr = append(hdr, `"System-Identifier": `...)
		hdr = strconv.AppendUint(hdr, opts.SystemIdentifier, 10)
		hdr = append(hdr, ",\n"...)
	}
	hdr = append(hdr, `"Files": [`...)
	if _, err := m.bw.Write(hdr); err != nil {
		return nil, fmt.Errorf("write backup_manifest header: %w", err)
	}
	return m, nil
}

// entryPool recycles the per-entry formatting buffers so that AddFile does
// not allocate in the steady state.
var entryPool = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

// AddFile appends the entry of one file: its path relative to the data
// directory (tablespace files as "pg_tblspc/<oid>/..."), its size, its
// modification time and the CRC-32C of its contents. Safe for concurrent use;
// entries appear in the order of the calls.
func (m *Writer) AddFile(path string, size int64, modTime time.Time, crc32c uint32) error {
	if path == "" {
		return errors.New("backup_manifest: empty file path")
	}
	if strings.IndexByte(path, 0) >= 0 {
		return fmt.Errorf("backup_manifest: file path %q contains a NUL byte", path)
	}
	if size < 0 {
		return fmt.Errorf("backup_manifest: file %q: negative size %d", path, size)
	}
	bp := entryPool.Get().(*[]byte)
	// Format outside the lock: workers only serialise on the copy.
	b := appendFileEntry((*bp)[:0], path, size, modTime, crc32c)

	m.mu.Lock()
	err := m.writeEntryLocked(b)
	m.mu.Unlock()

	*bp = b
	entryPool.Put(bp)
	if err != nil {
		return fmt.Errorf("add %q to backup_manifest: %w", path, err)
	}
	return nil
}

func (m *Writer) writeEntryLocked(entry []byte) error {
	if m.finished {
		return errors.New("manifest already finished")
	}
	if m.err != nil {
		return m.err
	}
	// The server ends the previous line only when the next one comes, so
	// the last entry has no trailing comma.
	sep := ",\n"
	if m.first {
		sep = "\n"
		m.first = false
	}
	if _, err := m.bw.WriteString(sep); err != nil {
		m.err = err
		return err
	}
	if _, err := m.bw.Write(entry); err != nil {
		m.err = err
		return err
	}
	return nil
}

// appendFileEntry formats one "Files" element as the server's
// AddFileToBackupManifest does (without the separator before it).
func appendFileEntry(b []byte, path string, size int64, modTime time.Time, crc uint32) []byte {
	// The manifest is UTF-8: other paths are written as hex bytes.
	if utf8.ValidString(path) {
		b = append(b, `{ "Path": `...)
		b = appendEscapedJSON(b, path)
		b = append(b, ", "...)
	} else {
		b = append(b, `{ "Encoded-Path": "`...)
		b = appendHexString(b, path)
		b = append(b, `", `...)
	}
	b = append(b, `"Size": `...)
	b = strconv.AppendInt(b, size, 10)
	b = append(b, `, "Last-Modified": "`...)
	b = appendLastModified(b, modTime)
	b = append(b, `", "Checksum-Algorithm": "CRC32C", "Checksum": "`...)
	b = appendCRC32CHex(b, crc)
	b = append(b, `" }`...)
	return b
}

// lastModifiedLayout is the server's strftime "%Y-%m-%d %H:%M:%S %Z" in GMT.
const lastModifiedLayout = "2006-01-02 15:04:05 GMT"

func appendLastModified(b []byte, t time.Time) []byte {
	return t.UTC().AppendFormat(b, lastModifiedLayout)
}

// FormatLastModified returns a modification time as a backup_manifest's
// "Last-Modified" text (whole seconds, GMT).
func FormatLastModified(t time.Time) string {
	return string(appendLastModified(nil, t))
}

// ParseLastModified reads a "Last-Modified" text back into a time (UTC).
func ParseLastModified(s string) (time.Time, error) {
	t, err := time.ParseInLocation(lastModifiedLayout, s, time.UTC)
	if err != nil {
		return time.Time{}, fmt.Errorf("invalid Last-Modified %q: %w", s, err)
	}
	return t, nil
}

const lowerHex = "0123456789abcdef"

func appendHexString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		b = append(b, lowerHex[s[i]>>4], lowerHex[s[i]&0x0f])
	}
	return b
}

// appendEscapedJSON quotes s as PostgreSQL's escape_json does: the two-char
// escapes for \b \f \n \r \t " and \, \u00XX (lower-case hex) for the other
// control characters, every other byte as is. Unlike encoding/json it leaves
// <, >, & and U+2028/U+2029 alone; the manifest checksum depends on it.
func appendEscapedJSON(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '\b':
			b = append(b, `\b`...)
		case '\f':
			b = append(b, `\f`...)
		case '\n':
			b = append(b, `\n`...)
		case '\r':
			b = append(b, `\r`...)
		case '\t':
			b = append(b, `\t`...)
		case '"':
			b = append(b, `\"`...)
		case '\\':
			b = append(b, `\\`...)
		default:
			b = append(b, '\\', 'u', '0', '0', lowerHex[c>>4], lowerHex[c&0x0f])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// Finish writes the WAL ranges (newest timeline first, as the server lists
// them) and the Manifest-Checksum line, and flushes. It does not close the
// underlying writer. No AddFile may follow.
func (m *Writer) Finish(ranges []WALRange) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.finished {
		return errors.New("finish backup_manifest: already finished")
	}
	m.finished = true
	if m.err != nil {
		return fmt.Errorf("finish backup_manifest: %w", m.err)
	}
	if len(ranges) == 0 {
		return errors.New("finish backup_manifest: no WAL range (a backup always needs at least one)")
	}
	b := make([]byte, 0, 64+100*len(ranges))
	b = append(b, "\n],\n"...)
	b = append(b, "\"WAL-Ranges\": [\n"...)
	for i, r := range ranges {
		if r.Timeline == 0 {
			return errors.New("finish backup_manifest: WAL range with timeline 0")
		}
		if r.End < r.Start {
			return fmt.Errorf("finish backup_manifest: WAL range on timeline %d ends (%s) before it starts (%s)", r.Timeline, r.End, r.Start)
		}
		if i > 0 {
			b = append(b, ",\n"...)
		}
		b = append(b, `{ "Timeline": `...)
		b = strconv.AppendUint(b, uint64(r.Timeline), 10)
		b = append(b, `, "Start-LSN": "`...)
		b = append(b, r.Start.String()...)
		b = append(b, `", "End-LSN": "`...)
		b = append(b, r.End.String()...)
		b = append(b, `" }`...)
	}
	b = append(b, "\n],\n"...)
	// Everything so far must have gone through the hash before we read it.
	if err := m.writeFlush(b); err != nil {
		return err
	}
	b = b[:0]
	b = append(b, `"Manifest-Checksum": "`...)
	b = hex.AppendEncode(b, m.sum.Sum(nil))
	b = append(b, "\"}\n"...)
	return m.writeFlush(b)
}

// writeFlush writes b and flushes it through the hash to the destination;
// a failure sticks.
func (m *Writer) writeFlush(b []byte) error {
	if _, err := m.bw.Write(b); err != nil {
		m.err = err
		return fmt.Errorf("finish backup_manifest: %w", err)
	}
	if err := m.bw.Flush(); err != nil {
		m.err = err
		return fmt.Errorf("finish backup_manifest: %w", err)
	}
	return nil
}

// TablespacePath is where backup_manifest lists a tablespace's files, and
// where its link lives in the data directory: "pg_tblspc/<oid>".
func TablespacePath(oid uint32) string {
	return "pg_tblspc/" + strconv.FormatUint(uint64(oid), 10)
}
