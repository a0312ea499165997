//go:build unix

package storagetest

import (
	"bytes"
	"io"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// CaptureStderr runs fn with the process's file descriptor 2 pointed at a
// pipe and returns what was written to it: every writer is caught, also one
// that took os.Stderr (or the fd) before the call. Do not run tests in
// parallel with it, and do not call t.Fatal inside fn.
func CaptureStderr(t testing.TB, fn func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	saved, err := unix.Dup(2)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	drained := make(chan struct{})
	go func() { _, _ = io.Copy(&buf, r); close(drained) }()
	if err := unix.Dup2(int(w.Fd()), 2); err != nil {
		t.Fatal(err)
	}
	func() {
		defer func() {
			// Restore fd 2 even if fn panics.
			_ = unix.Dup2(saved, 2)
			_ = unix.Close(saved)
			w.Close()
			<-drained
			r.Close()
		}()
		fn()
	}()
	return buf.String()
}
