package backupmanifest

import (
	"bytes"
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/pgcloudbackup/pgcloudbackup/internal/pg/wal"
)

// MaxSize bounds the backup_manifest a restore reads from the bucket
// (about 200 bytes a file: 1 GiB is some five million files). It is
// streamed, never held.
const MaxSize = 1 << 30

// Manifest is a parsed backup_manifest.
type Manifest struct {
	Version          int
	SystemIdentifier uint64 // version 2 only
	Files            []File
	WALRanges        []WALRange
	// ManifestChecksum is the verified SHA-256 (hex) of the manifest.
	ManifestChecksum string
}

// File is one "Files" entry.
type File struct {
	Path              string // decoded from Encoded-Path when the manifest has that
	Size              int64
	LastModified      string // as written, e.g. "2024-05-01 12:00:00 GMT"
	ChecksumAlgorithm string // "" when the file has no checksum
	Checksum          string // hex
}

// ModTime parses LastModified.
func (f File) ModTime() (time.Time, error) { return ParseLastModified(f.LastModified) }

// Read parses a backup_manifest, checks its structure as
// PostgreSQL's parser does (plus: no duplicate paths or fields, known
// checksum algorithms, valid UTF-8) and verifies its Manifest-Checksum.
// It holds every entry: restores use Scan and an Index.
func Read(r io.Reader) (*Manifest, error) {
	var files []File
	seen := map[string]struct{}{}
	m, err := Scan(r, func(f File) error {
		if _, dup := seen[f.Path]; dup {
			return fmt.Errorf("duplicate path name in backup manifest: %q", f.Path)
		}
		seen[f.Path] = struct{}{}
		files = append(files, f)
		return nil
	})
	if err != nil {
		return nil, err
	}
	m.Files = files
	return m, nil
}

// Scan parses a backup_manifest like Read but hands each
// file entry to fn instead of keeping the list (its Files stays nil). Its
// memory is bounded whatever the input (tokens of at most maxToken bytes, at
// most maxWALRanges ranges, no line buffered). It does not look for
// duplicate paths: that needs every path, which the caller keeps (an
// IndexBuilder refuses them). The entries reach fn before the manifest
// checksum can be verified: act on them only once Scan has
// returned without error.
func Scan(r io.Reader, fn func(File) error) (*Manifest, error) {
	lh := &lineHasher{r: r, h: sha256.New()}
	p := &pgParser{lx: newLexer(lh), fn: fn}
	m, err := p.parse()
	if err != nil {
		if lh.err != nil {
			return nil, fmt.Errorf("read backup_manifest: %w", lh.err)
		}
		return nil, fmt.Errorf("parse backup_manifest: %w", err)
	}
	actual, err := lh.sum()
	if err != nil {
		return nil, fmt.Errorf("parse backup_manifest: %w", err)
	}
	if len(m.ManifestChecksum) != sha256.Size*2 {
		return nil, fmt.Errorf("parse backup_manifest: invalid manifest checksum %q", m.ManifestChecksum)
	}
	// The server writes lower case; PostgreSQL's reader accepts either.
	if !strings.EqualFold(actual, m.ManifestChecksum) {
		return nil, errors.New("backup_manifest checksum mismatch: the manifest is damaged or was modified")
	}
	m.ManifestChecksum = actual
	return m, nil
}

// lineHasher passes the manifest through to the JSON decoder while hashing
// it: the checksum covers every byte up to and including the next-to-last
// newline (the last line holds the checksum itself). Every byte is hashed
// as it passes and the hash's state is saved at each newline, so that at
// the end the state at the next-to-last one gives the checksum; nothing is
// buffered however long a line is.
type lineHasher struct {
	r        io.Reader
	h        hash.Hash
	atLast   []byte // the hash's state at the last newline
	atPrev   []byte // ... and at the one before
	newlines int64
	lastByte byte
	utf8     utf8Stream
	err      error // a reader error or invalid input, reported instead of the JSON error
}

func (l *lineHasher) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	if n > 0 {
		if cerr := l.consume(p[:n]); cerr != nil {
			l.err = cerr
			return 0, cerr
		}
	}
	if err != nil && err != io.EOF {
		l.err = err
	}
	return n, err
}

func (l *lineHasher) consume(b []byte) error {
	if !l.utf8.valid(b) {
		return errors.New("backup_manifest is not valid UTF-8")
	}
	l.lastByte = b[len(b)-1]
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			l.h.Write(b)
			return nil
		}
		l.h.Write(b[:i+1])
		b = b[i+1:]
		l.newlines++
		// Two buffers in turn: no allocation per line.
		st, err := l.h.(encoding.BinaryAppender).AppendBinary(l.atPrev[:0])
		if err != nil {
			return err
		}
		l.atPrev, l.atLast = l.atLast, st
	}
	return nil
}

// sum applies PostgreSQL's rules to the end of the manifest once it has
// all been read (at least two lines, the last one newline-terminated) and
// returns the hex SHA-256 of all lines but the last.
func (l *lineHasher) sum() (string, error) {
	if l.newlines < 2 {
		return "", errors.New("expected at least 2 lines")
	}
	if l.lastByte != '\n' {
		return "", errors.New("last line not newline-terminated")
	}
	if !l.utf8.end() {
		return "", errors.New("backup_manifest is not valid UTF-8")
	}
	h := sha256.New()
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(l.atPrev); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// utf8Stream checks that a stream is valid UTF-8 chunk by chunk, carrying a
// character cut at a chunk's end over to the next.
type utf8Stream struct {
	carry [utf8.UTFMax]byte
	n     int
}

func (u *utf8Stream) valid(b []byte) bool {
	if u.n > 0 {
		// Complete the carried character with the first bytes of b.
		var buf [2 * utf8.UTFMax]byte
		k := copy(buf[:], u.carry[:u.n])
		k += copy(buf[k:], b[:min(len(b), utf8.UTFMax)])
		if !utf8.FullRune(buf[:k]) {
			if k == len(buf) || len(b) >= utf8.UTFMax {
				return false
			}
			u.n = copy(u.carry[:], buf[:k])
			return true
		}
		r, size := utf8.DecodeRune(buf[:k])
		if r == utf8.RuneError && size <= 1 {
			return false
		}
		b = b[size-u.n:]
		u.n = 0
	}
	// Hold back a character cut at the end of b.
	cut := len(b)
	for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax; i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) {
				cut = i
			}
			break
		}
	}
	if !utf8.Valid(b[:cut]) {
		return false
	}
	u.n = copy(u.carry[:], b[cut:])
	return true
}

// end reports whether the stream did not stop inside a character.
func (u *utf8Stream) end() bool { return u.n == 0 }

// pgParser reads the manifest in the order PostgreSQL's parser
// (src/common/parse_manifest.c) expects it.
type pgParser struct {
	lx *lexer
	fn func(File) error
}

// expect reads a token of kind k; where (e.g. "after Size") only goes into
// the error, built lazily so that the happy path does not allocate.
func (p *pgParser) expect(k tokKind, where ...string) error {
	got, err := p.lx.next()
	if err != nil {
		return err
	}
	if got != k {
		if got == tEOF {
			return errTruncated
		}
		return p.lx.errorf("expected %s %s, found %s", k, strings.Join(where, ""), got)
	}
	return nil
}

// object reads the members of an object whose "{" has been read, calling
// member with each key (valid until the next token) to read its value.
func (p *pgParser) object(what string, member func(key []byte) error) error {
	for first := true; ; first = false {
		k, err := p.lx.next()
		if err != nil {
			return err
		}
		if first && k == tRBrace {
			return nil
		}
		if k != tString {
			return p.unexpected(k, "a field name in ", what)
		}
		if err := member(p.lx.val); err != nil {
			return err
		}
		if k, err = p.lx.next(); err != nil {
			return err
		}
		switch k {
		case tComma:
		case tRBrace:
			return nil
		default:
			return p.unexpected(k, `"," or "}" in `, what)
		}
	}
}

// array reads an array of objects, calling elem after each "{".
func (p *pgParser) array(what string, elem func() error) error {
	if err := p.expect(tLBrack, "to start ", what); err != nil {
		return err
	}
	for first := true; ; first = false {
		k, err := p.lx.next()
		if err != nil {
			return err
		}
		if first && k == tRBrack {
			return nil
		}
		if k != tLBrace {
			return p.unexpected(k, "an object in ", what)
		}
		if err := elem(); err != nil {
			return err
		}
		if k, err = p.lx.next(); err != nil {
			return err
		}
		switch k {
		case tComma:
		case tRBrack:
			return nil
		default:
			return p.unexpected(k, `"," or "]" in `, what)
		}
	}
}

func (p *pgParser) unexpected(k tokKind, want ...string) error {
	if k == tEOF {
		return errTruncated
	}
	return p.lx.errorf("expected %s, found %s", strings.Join(want, ""), k)
}

// value reads the ":" and a scalar of kind k, returning its text.
func (p *pgParser) value(k tokKind, what string) (string, error) {
	b, err := p.valueBytes(k, what)
	return string(b), err
}

// valueBytes is value without the copy: the bytes are valid until the next
// token.
func (p *pgParser) valueBytes(k tokKind, what string) ([]byte, error) {
	if err := p.expect(tColon, "after ", what); err != nil {
		return nil, err
	}
	got, err := p.lx.next()
	if err != nil {
		return nil, err
	}
	if got != k {
		return nil, p.unexpected(got, k.String(), " for ", what)
	}
	return p.lx.val, nil
}

func (p *pgParser) parse() (*Manifest, error) {
	m := &Manifest{}
	if err := p.expect(tLBrace, "at the start of the manifest"); err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	done := false // Manifest-Checksum read: PostgreSQL accepts nothing more
	err := p.object("the manifest", func(key []byte) error {
		if done {
			return p.lx.errorf("field %q after Manifest-Checksum", key)
		}
		if len(seen) == 0 && string(key) != "PostgreSQL-Backup-Manifest-Version" {
			return p.lx.errorf("expected version indicator")
		}
		k := string(key)
		if seen[k] {
			return p.lx.errorf("duplicate top-level field %q", k)
		}
		seen[k] = true
		switch k {
		case "PostgreSQL-Backup-Manifest-Version":
			v, err := p.value(tNumber, "the manifest version")
			if err != nil {
				return err
			}
			switch v {
			case "1":
				m.Version = 1
			case "2":
				m.Version = 2
			default:
				return p.lx.errorf("unexpected manifest version %s", v)
			}
		case "System-Identifier":
			if m.Version == 1 {
				return p.lx.errorf("System-Identifier in a version 1 manifest")
			}
			s, err := p.value(tNumber, "the system identifier")
			if err != nil {
				return err
			}
			if m.SystemIdentifier, err = strconv.ParseUint(s, 10, 64); err != nil {
				return p.lx.errorf("manifest system identifier not an integer")
			}
		case "Files":
			if err := p.expect(tColon, "after Files"); err != nil {
				return err
			}
			return p.array("Files", p.file)
		case "WAL-Ranges":
			if err := p.expect(tColon, "after WAL-Ranges"); err != nil {
				return err
			}
			return p.array("WAL-Ranges", func() error {
				r, err := p.walRange()
				if err != nil {
					return err
				}
				if len(m.WALRanges) == maxWALRanges {
					return p.lx.errorf("more than %d WAL ranges", maxWALRanges)
				}
				m.WALRanges = append(m.WALRanges, r)
				return nil
			})
		case "Manifest-Checksum":
			s, err := p.value(tString, "the manifest checksum")
			if err != nil {
				return err
			}
			m.ManifestChecksum = s
			done = true
		default:
			return p.lx.errorf("unrecognized top-level field %q", k)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	switch {
	case !seen["PostgreSQL-Backup-Manifest-Version"]:
		return nil, errors.New("expected version indicator")
	case !done:
		return nil, errors.New("manifest has no checksum (or the checksum is not its last field)")
	case m.Version == 2 && !seen["System-Identifier"]:
		return nil, errors.New("version 2 manifest without System-Identifier")
	case !seen["Files"]:
		return nil, errors.New("manifest has no Files list")
	case !seen["WAL-Ranges"]:
		return nil, errors.New("manifest has no WAL-Ranges list")
	}
	k, err := p.lx.next()
	if err != nil {
		return nil, err
	}
	if k != tEOF {
		return nil, p.lx.errorf("data after the end of the manifest")
	}
	return m, nil
}

// file reads one file object after its "{".
func (p *pgParser) file() error {
	var (
		f                               File
		path, encoded                   string
		size                            int64
		havePath, haveEncoded, haveSize bool
		haveLM, haveAlg, haveSum        bool
	)
	err := p.object("a file entry", func(key []byte) error {
		var (
			dup bool
			err error
		)
		switch string(key) {
		case "Path":
			dup, havePath = havePath, true
			path, err = p.value(tString, "Path")
		case "Encoded-Path":
			dup, haveEncoded = haveEncoded, true
			encoded, err = p.value(tString, "Encoded-Path")
		case "Size":
			dup, haveSize = haveSize, true
			var b []byte
			if b, err = p.valueBytes(tNumber, "Size"); err == nil {
				size, err = parseSize(b)
				if err != nil {
					err = p.lx.errorf("file size %s is not an integer", b)
				}
			}
		case "Last-Modified":
			dup, haveLM = haveLM, true
			f.LastModified, err = p.value(tString, "Last-Modified")
		case "Checksum-Algorithm":
			dup, haveAlg = haveAlg, true
			var b []byte
			if b, err = p.valueBytes(tString, "Checksum-Algorithm"); err == nil {
				if string(b) == ChecksumAlgorithmCRC32C {
					f.ChecksumAlgorithm = ChecksumAlgorithmCRC32C // no copy per entry
				} else {
					f.ChecksumAlgorithm = string(b)
				}
			}
		case "Checksum":
			dup, haveSum = haveSum, true
			f.Checksum, err = p.value(tString, "Checksum")
		default:
			return p.lx.errorf("unexpected file field %q", key)
		}
		if err != nil {
			return err
		}
		if dup {
			return p.lx.errorf("duplicate file field")
		}
		return nil
	})
	if err != nil {
		return err
	}

	switch {
	case !havePath && !haveEncoded:
		return p.lx.errorf("missing path name")
	case havePath && haveEncoded:
		return p.lx.errorf("both path name and encoded path name")
	case !haveSize:
		return p.lx.errorf("missing size")
	case !haveAlg && haveSum:
		return p.lx.errorf("checksum without algorithm")
	}
	if havePath {
		f.Path = path
	} else {
		raw, err := hex.DecodeString(encoded)
		if err != nil {
			return p.lx.errorf("could not decode file name %q", encoded)
		}
		f.Path = string(raw)
	}
	if f.Path == "" || strings.IndexByte(f.Path, 0) >= 0 {
		return p.lx.errorf("invalid file name %q", f.Path)
	}
	f.Size = size
	if haveAlg {
		want, ok := checksumHexLen(f.ChecksumAlgorithm)
		if !ok {
			return p.lx.errorf("file %q: unrecognized checksum algorithm %q", f.Path, f.ChecksumAlgorithm)
		}
		if _, err := hex.DecodeString(f.Checksum); err != nil || (want > 0 && len(f.Checksum) != want) {
			return p.lx.errorf("invalid checksum for file %q: %q", f.Path, f.Checksum)
		}
	}
	if p.fn != nil {
		return p.fn(f)
	}
	return nil
}

// parseSize reads a file size: decimal digits (as strtoul, but no sign)
// that fit an int64.
func parseSize(b []byte) (int64, error) {
	if len(b) == 0 || len(b) > 19 {
		return 0, errors.New("bad size")
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, errors.New("bad size")
		}
		n = n*10 + uint64(c-'0')
	}
	if n > math.MaxInt64 {
		return 0, errors.New("bad size")
	}
	return int64(n), nil
}

// checksumHexLen is the hex length of each algorithm PostgreSQL knows
// (names compared without regard to case, as pg_checksum_parse_type does).
func checksumHexLen(alg string) (int, bool) {
	switch strings.ToUpper(alg) {
	case "NONE":
		return 0, true
	case "CRC32C":
		return 8, true
	case "SHA224":
		return 56, true
	case "SHA256":
		return 64, true
	case "SHA384":
		return 96, true
	case "SHA512":
		return 128, true
	}
	return 0, false
}

// walRange reads one WAL range object after its "{".
func (p *pgParser) walRange() (WALRange, error) {
	var (
		r                                WALRange
		tli, start, end                  string
		haveTLI, haveStart, haveEnd, dup bool
	)
	err := p.object("a WAL range", func(key []byte) error {
		var err error
		switch string(key) {
		case "Timeline":
			dup, haveTLI = haveTLI, true
			tli, err = p.value(tNumber, "Timeline")
		case "Start-LSN":
			dup, haveStart = haveStart, true
			start, err = p.value(tString, "Start-LSN")
		case "End-LSN":
			dup, haveEnd = haveEnd, true
			end, err = p.value(tString, "End-LSN")
		default:
			return p.lx.errorf("unexpected WAL range field %q", key)
		}
		if err == nil && dup {
			err = p.lx.errorf("duplicate WAL range field")
		}
		return err
	})
	if err != nil {
		return r, err
	}
	switch {
	case !haveTLI:
		return r, p.lx.errorf("missing timeline")
	case !haveStart:
		return r, p.lx.errorf("missing start LSN")
	case !haveEnd:
		return r, p.lx.errorf("missing end LSN")
	}
	t, err := strconv.ParseUint(tli, 10, 32)
	if err != nil {
		return r, p.lx.errorf("timeline is not an integer")
	}
	r.Timeline = uint32(t)
	if r.Start, err = wal.ParseLSN(start); err != nil {
		return r, p.lx.errorf("could not parse start LSN: %v", err)
	}
	if r.End, err = wal.ParseLSN(end); err != nil {
		return r, p.lx.errorf("could not parse end LSN: %v", err)
	}
	return r, nil
}
