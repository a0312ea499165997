// Package progresstest is a fake terminal for tests of what the progress
// bar and the log write to a terminal.
package progresstest

import (
	"strings"
	"sync"
	"testing"
	"time"
)

// Screen keeps what a terminal would show for what the bar and the log
// write: carriage return, newline, erase to end of line (ESC [ K) and
// text. It is an io.Writer, safe for concurrent use; an escape sequence cut
// between two writes (reads from a pseudo-terminal) is joined.
type Screen struct {
	mu       sync.Mutex
	rows     [][]rune
	row, col int
	esc      []rune // an escape sequence cut between two writes
}

func (s *Screen) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := append(s.esc, []rune(string(p))...)
	s.esc = nil
	for i := 0; i < len(r); i++ {
		for len(s.rows) <= s.row {
			s.rows = append(s.rows, nil)
		}
		switch c := r[i]; {
		case c == '\r':
			s.col = 0
		case c == '\n':
			s.row++
			s.col = 0
		case c == 0x1b && i+2 >= len(r):
			s.esc = append([]rune{}, r[i:]...)
			return len(p), nil
		case c == 0x1b && r[i+1] == '[' && r[i+2] == 'K':
			if s.col < len(s.rows[s.row]) {
				s.rows[s.row] = s.rows[s.row][:s.col]
			}
			i += 2
		default:
			line := s.rows[s.row]
			for len(line) <= s.col {
				line = append(line, ' ')
			}
			line[s.col] = c
			s.rows[s.row] = line
			s.col++
		}
	}
	return len(p), nil
}

// Lines is what the screen shows, one string a row, trailing blanks cut.
func (s *Screen) Lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, r := range s.rows {
		out = append(out, strings.TrimRight(string(r), " "))
	}
	return out
}

// WaitFor waits (at most 10 seconds) until some line on screen contains
// text, for a screen that another goroutine writes to.
func (s *Screen) WaitFor(t testing.TB, text string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(strings.Join(s.Lines(), "\n"), text) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %q on screen:\n%s", text, strings.Join(s.Lines(), "\n"))
		}
		time.Sleep(10 * time.Millisecond) // polling interval, not synchronisation
	}
}
