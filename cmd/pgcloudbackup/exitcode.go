package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
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

func exitCodeFor(err error) int {
	if err == nil {
		return exitOK
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

// usageError marks an error as a usage error.
func usageError(format string, args ...any) error {
	return failure.New(failure.Usage, format, args...)
}

var errInterrupted = failure.Wrap(failure.Interrupted, errors.New("interrupted by signal"), "")
