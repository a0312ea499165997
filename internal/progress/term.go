package progress

import (
	"io"
	"sync"
)

// clearLine returns the cursor to the start of the line and erases it.
const clearLine = "\r\x1b[K"

// Term is a terminal shared by a redrawn progress bar and log records: a
// record (one Write) clears the bar's line first and redraws the bar after
// it, so log lines never land in the middle of the bar. The logger and the
// bar must both write through the same Term.
type Term struct {
	mu    sync.Mutex
	w     io.Writer
	width func() int
	bar   string // the bar as last drawn, "" when none is on screen
}

// NewTerm returns a Term writing to w (a terminal) whose width in columns
// width tells (nil or 0: unknown). The bar is cut to the width: a bar that
// wraps cannot be erased with its line.
func NewTerm(w io.Writer, width func() int) *Term { return &Term{w: w, width: width} }

// Write writes p (a log record, or any output) on lines of its own.
func (t *Term) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.bar == "" {
		return t.w.Write(p)
	}
	if _, err := io.WriteString(t.w, clearLine); err != nil {
		return 0, err
	}
	n, err := t.w.Write(p)
	if err != nil {
		return n, err
	}
	if len(p) > 0 && p[len(p)-1] != '\n' {
		// The bar needs a line of its own.
		if _, err := io.WriteString(t.w, "\n"); err != nil {
			return n, err
		}
	}
	_, err = io.WriteString(t.w, t.bar)
	return n, err
}

// Draw replaces the bar on screen by line (one line, no newline).
func (t *Term) Draw(line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.bar = t.fit(line)
	_, _ = io.WriteString(t.w, clearLine+t.bar)
}

// Finish draws the bar's last state in full and leaves it on its own line:
// what is written next goes below it.
func (t *Term) Finish(line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.bar = ""
	_, _ = io.WriteString(t.w, clearLine+line+"\n")
}

// fit cuts line to one column less than the terminal's width (writing the
// last column wraps on some terminals).
func (t *Term) fit(line string) string {
	if t.width == nil {
		return line
	}
	w := t.width() - 1
	if w <= 0 {
		return line
	}
	r := []rune(line)
	if len(r) > w {
		return string(r[:w])
	}
	return line
}
