// Package testenv holds the rules every integration test follows about the
// servers it needs: skip on a laptop that lacks them, fail when CI is set.
package testenv

import (
	"os"
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
