package backupmanifest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"unicode/utf16"
	"unicode/utf8"
)

// A small JSON lexer for backup_manifest. encoding/json's token API cost
// 12-24µs per file entry here (a reflective Decode per token), i.e. tens of
// seconds for a million-file cluster; this one is ~2µs with ~4 allocations.

type tokKind uint8

const (
	tEOF tokKind = iota
	tLBrace
	tRBrace
	tLBrack
	tRBrack
	tColon
	tComma
	tString
	tNumber
	tLiteral // true, false, null
)

func (k tokKind) String() string {
	switch k {
	case tEOF:
		return "end of input"
	case tLBrace:
		return `"{"`
	case tRBrace:
		return `"}"`
	case tLBrack:
		return `"["`
	case tRBrack:
		return `"]"`
	case tColon:
		return `":"`
	case tComma:
		return `","`
	case tString:
		return "a string"
	case tNumber:
		return "a number"
	default:
		return "a literal"
	}
}

// maxToken bounds one string, number or literal: the longest real one is
// an Encoded-Path of MAXPGPATH bytes in hex, so this keeps a hostile
// manifest from growing the lexer's buffer to its own size.
const maxToken = 64 << 10

// maxWALRanges bounds the WAL-Ranges list (one range per timeline the
// backup crossed: real manifests have one or two).
const maxWALRanges = 1 << 16

type lexer struct {
	r    *bufio.Reader
	val  []byte // text of the last string (unescaped), number or literal; reused
	line int    // 1-based, for error messages
}

func newLexer(r io.Reader) *lexer {
	return &lexer{r: bufio.NewReaderSize(r, 64<<10), line: 1}
}

// errTruncated marks input that ends inside a JSON value.
var errTruncated = errors.New("manifest ended unexpectedly (truncated?)")

func (l *lexer) errorf(format string, args ...any) error {
	return fmt.Errorf("line %d: %s", l.line, fmt.Sprintf(format, args...))
}

func (l *lexer) next() (tokKind, error) {
	for {
		c, err := l.r.ReadByte()
		if err != nil {
			if err == io.EOF {
				return tEOF, nil
			}
			return 0, err
		}
		switch c {
		case ' ', '\t', '\r':
			continue
		case '\n':
			l.line++
			continue
		case '{':
			return tLBrace, nil
		case '}':
			return tRBrace, nil
		case '[':
			return tLBrack, nil
		case ']':
			return tRBrack, nil
		case ':':
			return tColon, nil
		case ',':
			return tComma, nil
		case '"':
			return tString, l.str()
		case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
			return tNumber, l.num(c)
		case 't', 'f', 'n':
			return tLiteral, l.literal(c)
		default:
			return 0, l.errorf("unexpected character %q", c)
		}
	}
}

func (l *lexer) readByte() (byte, error) {
	c, err := l.r.ReadByte()
	if err == io.EOF {
		return 0, errTruncated
	}
	return c, err
}

func (l *lexer) str() error {
	l.val = l.val[:0]
	for {
		if l.r.Buffered() == 0 {
			if _, err := l.r.Peek(1); err != nil {
				if err == io.EOF {
					return errTruncated
				}
				return err
			}
		}
		// Copy the plain run in one go; stop at a quote, an escape or a
		// control character.
		buf, _ := l.r.Peek(l.r.Buffered())
		i := 0
		for i < len(buf) {
			if c := buf[i]; c == '"' || c == '\\' || c < 0x20 {
				break
			}
			i++
		}
		l.val = append(l.val, buf[:i]...)
		_, _ = l.r.Discard(i)
		if len(l.val) > maxToken {
			return l.errorf("a string longer than %d bytes", maxToken)
		}
		if i == len(buf) {
			continue
		}
		c, _ := l.r.ReadByte()
		switch {
		case c == '"':
			return nil
		case c == '\\':
			if err := l.escape(); err != nil {
				return err
			}
		default:
			return l.errorf("control character %#02x in a string", c)
		}
	}
}

func (l *lexer) escape() error {
	c, err := l.readByte()
	if err != nil {
		return err
	}
	switch c {
	case '"', '\\', '/':
		l.val = append(l.val, c)
	case 'b':
		l.val = append(l.val, '\b')
	case 'f':
		l.val = append(l.val, '\f')
	case 'n':
		l.val = append(l.val, '\n')
	case 'r':
		l.val = append(l.val, '\r')
	case 't':
		l.val = append(l.val, '\t')
	case 'u':
		r, err := l.hex4()
		if err != nil {
			return err
		}
		switch {
		case r == 0:
			return l.errorf(`\u0000 is not allowed`)
		case utf16.IsSurrogate(r):
			if r >= 0xDC00 {
				return l.errorf("Unicode low surrogate must follow a high surrogate")
			}
			c1, err1 := l.readByte()
			c2, err2 := l.readByte()
			if err1 != nil || err2 != nil || c1 != '\\' || c2 != 'u' {
				return l.errorf("Unicode high surrogate must not follow a high surrogate or stand alone")
			}
			r2, err := l.hex4()
			if err != nil {
				return err
			}
			r = utf16.DecodeRune(r, r2)
			if r == utf8.RuneError {
				return l.errorf("invalid Unicode surrogate pair")
			}
		}
		l.val = utf8.AppendRune(l.val, r)
	default:
		return l.errorf("invalid escape \\%c", c)
	}
	return nil
}

func (l *lexer) hex4() (rune, error) {
	var r rune
	for i := 0; i < 4; i++ {
		c, err := l.readByte()
		if err != nil {
			return 0, err
		}
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, l.errorf(`invalid \u escape`)
		}
		r = r<<4 | rune(d)
	}
	return r, nil
}

// scan collects first and the bytes after it that in accepts into l.val,
// leaving the first other byte unread.
func (l *lexer) scan(first byte, in func(byte) bool) error {
	l.val = append(l.val[:0], first)
	for {
		c, err := l.r.ReadByte()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if !in(c) {
			return l.r.UnreadByte()
		}
		if len(l.val) == maxToken {
			return l.errorf("a token longer than %d bytes", maxToken)
		}
		l.val = append(l.val, c)
	}
}

func (l *lexer) num(first byte) error {
	if err := l.scan(first, func(c byte) bool {
		return (c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-'
	}); err != nil {
		return err
	}
	if !validJSONNumber(l.val) {
		return l.errorf("invalid number %q", l.val)
	}
	return nil
}

// validJSONNumber checks RFC 8259's number grammar:
// -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?
func validJSONNumber(b []byte) bool {
	i := 0
	digits := func() int {
		s := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		return i - s
	}
	if i < len(b) && b[i] == '-' {
		i++
	}
	if i < len(b) && b[i] == '0' {
		i++
	} else if digits() == 0 {
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(b)
}

func (l *lexer) literal(first byte) error {
	if err := l.scan(first, func(c byte) bool { return c >= 'a' && c <= 'z' }); err != nil {
		return err
	}
	switch string(l.val) {
	case "true", "false", "null":
		return nil
	}
	return l.errorf("invalid token %q", l.val)
}
