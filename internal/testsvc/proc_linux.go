package testsvc

import "syscall"

// sysProcAttr puts the server in its own process group (so stop can signal
// it and its children) and kills it if the test binary dies first, so a
// crashed or timed-out test leaves no server behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
