package main

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
	"github.com/pgcloudbackup/pgcloudbackup/walarchive"
)

// The exit codes are the interface scripts and PostgreSQL read: every
// kind of error, wrapped or not, maps to its documented code.
func TestExitCodeFor(t *testing.T) {
	cf := &checksumFailuresError{total: 3}
	for _, tc := range []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, exitOK},
		{"plain", errors.New("boom"), exitFailed},
		{"usage", usageError("bad flag"), exitUsage},
		{"precondition", failure.New(failure.Precondition, "no server"), exitPrecondition},
		{"interrupted", errInterrupted, exitInterrupted},
		{"checksum failures", cf, exitChecksumFailures},
		{"checksum failures wrapped", fmt.Errorf("backup: %w", cf), exitChecksumFailures},
		// A signal during the summary does not hide the bad pages.
		{"checksum failures when stopped", failure.Wrap(failure.Interrupted, cf, ""), exitChecksumFailures},
	} {
		if got := exitCodeFor(tc.err); got != tc.want {
			t.Errorf("%s: exitCodeFor = %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestWALFetchExitCode(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		code int
		want int
	}{
		{"ok", nil, exitOK, exitOK},
		{"absent", fmt.Errorf("fetch: %w", walarchive.ErrNotArchived), exitFailed, exitWALAbsent},
		{"failed", errors.New("boom"), exitFailed, exitWALFetchFailed},
		{"usage", usageError("x"), exitUsage, exitWALFetchFailed},
		{"interrupted", errInterrupted, exitInterrupted, exitInterrupted},
	} {
		if got := walFetchExitCode(tc.err, tc.code); got != tc.want {
			t.Errorf("%s: walFetchExitCode = %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestInterruptedIfStopped(t *testing.T) {
	running := context.Background()
	stopped, cancel := context.WithCancel(context.Background())
	cancel()
	boom := errors.New("boom")
	if got := exitCodeFor(interruptedIfStopped(running, boom)); got != exitFailed {
		t.Errorf("failure without a signal: exit %d, want %d", got, exitFailed)
	}
	if got := exitCodeFor(interruptedIfStopped(stopped, boom)); got != exitInterrupted {
		t.Errorf("failure during a stop: exit %d, want %d", got, exitInterrupted)
	}
	// A usage or precondition error keeps its code: it was not the stop.
	if got := exitCodeFor(interruptedIfStopped(stopped, usageError("x"))); got != exitUsage {
		t.Errorf("usage error during a stop: exit %d, want %d", got, exitUsage)
	}
	if interruptedIfStopped(stopped, nil) != nil {
		t.Error("no error became an error")
	}
}
