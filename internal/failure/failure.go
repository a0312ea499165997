// Package failure classifies errors so the CLI can map them to documented
// exit codes and print one clear line (plus an optional hint) for each.
package failure

import (
	"errors"
	"fmt"
	"strings"
)

// Kind says which class of failure an error belongs to. Each kind has its own
// exit code in cmd/pgcloudbackup; scripts depend on them, so never renumber.
type Kind int

const (
	// Failed is the default: the operation started and did not complete
	// (I/O error, server died, damaged object, ...).
	Failed Kind = iota
	// Usage is a bad flag, argument or URL: nothing was attempted.
	Usage
	// Precondition is an unmet requirement found before any work was done:
	// server unreachable or unsupported, bucket missing, no permission,
	// target directory not empty, no such backup.
	Precondition
	// Interrupted means a signal (SIGINT/SIGTERM) stopped the operation.
	Interrupted
)

func (k Kind) String() string {
	switch k {
	case Usage:
		return "usage"
	case Precondition:
		return "precondition"
	case Interrupted:
		return "interrupted"
	default:
		return "failed"
	}
}

// Error is an error with a kind and an optional hint that tells the operator
// what to do about it.
type Error struct {
	Kind Kind
	Err  error
	Hint string
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// New returns an error of the given kind with a formatted message.
func New(kind Kind, format string, args ...any) error {
	return &Error{Kind: kind, Err: fmt.Errorf(format, args...)}
}

// Wrap marks err with a kind and a hint (hint may be empty). It returns nil
// for a nil err.
func Wrap(kind Kind, err error, hint string) error {
	if err == nil {
		return nil
	}
	return &Error{Kind: kind, Err: err, Hint: hint}
}

// KindOf returns the kind of the outermost classified error in err's chain,
// or Failed when none is classified.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return Failed
}

// HintOf returns the first non-empty hint in err's chain.
func HintOf(err error) string {
	for err != nil {
		var e *Error
		if !errors.As(err, &e) {
			return ""
		}
		if e.Hint != "" {
			return e.Hint
		}
		err = e.Err
	}
	return ""
}

// OneLine is err's message as OneLineText: errors are shown as one line.
func OneLine(err error) string {
	return OneLineText(err.Error())
}

// OneLineText folds text for one line of output (an error, a label or a
// path from the bucket in a table): control characters become spaces, and
// every run of white space (line breaks included) one space.
func OneLineText(s string) string {
	return strings.Join(strings.Fields(strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)), " ")
}
