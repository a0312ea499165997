// Package testenv holds the rules every integration test follows about the
// servers it needs: skip on a laptop that lacks them, fail when CI is set.
package testenv

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// InCI reports whether the tests run under CI (the CI variable is set and not
// "false"/"0"). In CI a missing server is a failure, never a skip.
func InCI() bool {
	v := os.Getenv("CI")
	return v != "" && v != "0" && v != "false"
}

// Unavailable stops the test because something it needs is missing: a skip
// locally, a fatal error in CI.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if InCI() {
		t.Fatalf("required for this test but unavailable (CI is set): "+format, args...)
	}
	t.Skipf("skipping: "+format, args...)
}

// RepoRoot returns the nearest directory at or above the working directory
// that holds a go.mod: where the project's own tools (.tools) are.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}
