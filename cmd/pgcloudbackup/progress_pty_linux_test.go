package main

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/pgcloudbackup/pgcloudbackup/internal/progress"
	"github.com/pgcloudbackup/pgcloudbackup/internal/progress/progresstest"
)

// TestProgressBarAndLogOnATerminal runs the progress bar with stderr on a
// pseudo-terminal and logs while the bar is up: on screen the log record
// is on a line of its own, not glued to the end of the bar.
func TestProgressBarAndLogOnATerminal(t *testing.T) {
	master, slave := openPTY(t)
	var s progresstest.Screen
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			_, _ = s.Write(buf[:n])
			if err != nil {
				return
			}
		}
	}()
	defer func() {
		slave.Close()
		master.Close()
		<-readDone
	}()

	g := &globalOptions{stderr: slave, logFormat: "text"}
	if err := g.setup(); err != nil {
		t.Fatal(err)
	}
	var c progress.Counter
	c.SetTotal(100 << 20)
	c.Add(30 << 20)
	c.SetPhase("copy")
	stop := startProgress(g, &c, true)
	s.WaitFor(t, "MiB/s") // the bar is drawn
	const msg = "a log line while the bar is up"
	g.logger.Warn(msg)
	s.WaitFor(t, msg)
	c.Add(20 << 20)
	stop()
	fmt.Fprint(slave, "END\n")
	s.WaitFor(t, "END")

	lines := s.Lines()
	logRow := -1
	for i, l := range lines {
		switch {
		case strings.Contains(l, msg):
			logRow = i
			if !strings.HasPrefix(l, "time=") || strings.Contains(l, "MiB/s") {
				t.Errorf("log record shares its line with the bar: %q", l)
			}
		case strings.HasPrefix(l, "[") && strings.Contains(l, "MiB/s"), l == "END":
		default:
			t.Errorf("line %d on screen is neither a log record nor the bar: %q", i, l)
		}
	}
	if logRow < 0 || logRow+1 >= len(lines) || !strings.HasPrefix(lines[logRow+1], "[") {
		t.Errorf("the bar is not redrawn below the log record:\n%s", strings.Join(lines, "\n"))
	}
}

// openPTY opens a pseudo-terminal pair with /dev/ptmx (no pty library).
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	rc, err := m.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n uint32
	var ioErr error
	if err := rc.Control(func(fd uintptr) {
		if ioErr = unix.IoctlSetPointerInt(int(fd), unix.TIOCSPTLCK, 0); ioErr != nil {
			return
		}
		if ioErr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: 50, Col: 200}); ioErr != nil {
			return
		}
		n, ioErr = unix.IoctlGetUint32(int(fd), unix.TIOCGPTN)
	}); err != nil || ioErr != nil {
		m.Close()
		t.Fatalf("set up pty: %v %v", err, ioErr)
	}
	sl, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		t.Fatal(err)
	}
	return m, sl
}
