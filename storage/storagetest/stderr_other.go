//go:build !unix

package storagetest

import "testing"

// CaptureStderr needs dup2; elsewhere it skips the test.
func CaptureStderr(t testing.TB, fn func()) string {
	t.Skip("capturing stderr needs a unix system")
	return ""
}
