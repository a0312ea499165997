//go:build !linux

package testsvc

import "syscall"

// sysProcAttr puts the server in its own process group so stop can signal it
// and its children. (Only Linux can also tie its life to the test binary.)
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
