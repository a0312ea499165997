package progress

import (
	"fmt"
	"strings"
	"sync"
	"testing"
)

// screen is a fake terminal: it keeps what a terminal would show for
// carriage returns, newlines and "erase to end of line" (ESC [ K), which is
// all the bar and the log write.
type screen struct {
	mu       sync.Mutex
	rows     [][]rune
	row, col int
}

func (s *screen) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := []rune(string(p))
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
		case c == 0x1b && i+2 < len(r) && r[i+1] == '[' && r[i+2] == 'K':
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

func (s *screen) lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, r := range s.rows {
		out = append(out, strings.TrimRight(string(r), " "))
	}
	return out
}

func TestTermClearsTheBarForALogLine(t *testing.T) {
	var s screen
	term := NewTerm(&s, func() int { return 40 })
	long := "[=====     ] 50% a long bar that does not fit in forty columns"
	term.Draw(long)
	bar := long[:39]
	if got := s.lines(); len(got) != 1 || got[0] != bar {
		t.Fatalf("screen after Draw: %q, want the bar cut to 39 columns", got)
	}
	fmt.Fprintf(term, "level=INFO msg=hello\n")
	term.Draw("[======    ] 60%")
	fmt.Fprintf(term, "level=WARN msg=partial record") // no newline
	term.Draw("[=======   ] 70%")
	term.Finish("[==========] 100% done, in full even if it is wider than the terminal")
	fmt.Fprintf(term, "level=INFO msg=after\n")
	want := []string{
		"level=INFO msg=hello",
		"level=WARN msg=partial record",
		"[==========] 100% done, in full even if it is wider than the terminal",
		"level=INFO msg=after",
	}
	if got := s.lines(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("screen:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestTermConcurrent: records written while the bar is redrawn from
// another goroutine each end up whole on a line of their own.
func TestTermConcurrent(t *testing.T) {
	var s screen
	term := NewTerm(&s, nil)
	const n = 200
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := 0; i < n; i++ {
			fmt.Fprintf(term, "record %d\n", i)
		}
	}()
	go func() {
		defer wg.Done()
		for i := 0; i < n; i++ {
			term.Draw(fmt.Sprintf("[bar %d]", i))
		}
	}()
	wg.Wait()
	term.Finish("[bar done]")
	got := s.lines()
	records := 0
	for i, l := range got {
		switch {
		case strings.HasPrefix(l, "record ") && !strings.Contains(l, "bar"):
			records++
		case l == "[bar done]" && i == len(got)-1:
		default:
			t.Errorf("line %d %q is neither a whole record nor the final bar", i, l)
		}
	}
	if records != n {
		t.Errorf("%d records on screen, want %d", records, n)
	}
}
