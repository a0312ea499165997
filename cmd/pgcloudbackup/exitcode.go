package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
	"github.com/pgcloudbackup/pgcloudbackup/walarchive"
)

// Exit codes are part of the interface: scripts depend on them. They are
// documented in the README; never renumber.
const (
	exitOK               = 0
	exitFailed           = 1 // the operation started and failed
	exitUsage            = 2 // bad flags, arguments or URL; nothing was attempted
	exitPrecondition     = 3 // server, bucket, permissions, target, backup id
	exitChecksumFailures = 4 // backup complete, but page checksum failures were found
	exitInterrupted      = 130
)

// exitCodeFor is the exit code of a command that returned err (wal-fetch
// maps it further: walFetchExitCode).
func exitCodeFor(err error) int {
	if err == nil {
		return exitOK
	}
	if errors.As(err, new(*checksumFailuresError)) {
		return exitChecksumFailures
	}
	switch failure.KindOf(err) {
	case failure.Usage:
		return exitUsage
	case failure.Precondition:
		return exitPrecondition
	case failure.Interrupted:
		return exitInterrupted
	default:
		return exitFailed
	}
}

// wal-fetch has exit codes of its own, because PostgreSQL reads them: 1
// means "not in the archive" (recovery may end there), and a status above
// 125 makes recovery stop with an error instead of promoting early.
const (
	exitWALAbsent      = 1
	exitWALFetchFailed = 128
)

// walFetchExitCode maps wal-fetch's outcome onto the codes PostgreSQL
// understands: anything but success and "absent" is fatal for recovery.
func walFetchExitCode(err error, code int) int {
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, walarchive.ErrNotArchived):
		return exitWALAbsent
	case code > 125:
		return code
	default:
		return exitWALFetchFailed
	}
}

// checksumFailuresError ends a backup that completed with page checksum
// failures: its own exit code, the summary already printed.
type checksumFailuresError struct{ total int64 }

func (e *checksumFailuresError) Error() string {
	return fmt.Sprintf("backup complete, but %d bad pages (checksum failures, or pages marked new that hold data) were found", e.total)
}

var errInterrupted = failure.Wrap(failure.Interrupted, errors.New("interrupted by signal"), "")

// interruptedError is what a command stopped by SIGINT/SIGTERM reports
// (exit 130), rather than "context canceled".
func interruptedError(op string, ctx context.Context) error {
	msg := op + " interrupted"
	if c := context.Cause(ctx); c != nil && !errors.Is(c, context.Canceled) {
		msg += " (" + c.Error() + ")"
	}
	return failure.Wrap(failure.Interrupted, errors.New(msg), "")
}

// interruptedIfStopped reports a failure of a command that a signal was
// stopping as interrupted: the failure is most likely the stop itself.
func interruptedIfStopped(ctx context.Context, err error) error {
	if err != nil && ctx.Err() != nil && failure.KindOf(err) == failure.Failed {
		return failure.Wrap(failure.Interrupted, err, "")
	}
	return err
}

// usageError marks an error as a usage error.
func usageError(format string, args ...any) error {
	return failure.New(failure.Usage, format, args...)
}

// exactArgs is cobra.ExactArgs with a message that says what to give.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) != n {
			return usageError("%s (got %d arguments)", what, len(args))
		}
		return nil
	}
}

// errorLine renders an error as the one line the user sees.
func errorLine(err error) string {
	msg := failure.OneLine(err)
	if hint := failure.HintOf(err); hint != "" {
		msg += " (hint: " + hint + ")"
	}
	return msg
}

func printError(w io.Writer, err error) {
	fmt.Fprintf(w, "pgcloudbackup: error: %s\n", errorLine(err))
}
