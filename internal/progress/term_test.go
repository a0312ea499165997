package progress

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/pgcloudbackup/pgcloudbackup/internal/progress/progresstest"
)

func TestTermClearsTheBarForALogLine(t *testing.T) {
	var s progresstest.Screen
	term := NewTerm(&s, func() int { return 40 })
	long := "[=====     ] 50% a long bar that does not fit in forty columns"
	term.Draw(long)
	bar := long[:39]
	if got := s.Lines(); len(got) != 1 || got[0] != bar {
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
	if got := s.Lines(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("screen:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestTermConcurrent: records written while the bar is redrawn from
// another goroutine each end up whole on a line of their own.
func TestTermConcurrent(t *testing.T) {
	var s progresstest.Screen
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
	got := s.Lines()
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
