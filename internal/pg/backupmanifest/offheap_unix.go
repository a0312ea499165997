//go:build unix

package backupmanifest

import "syscall"

// allocOffHeap returns n zeroed bytes of anonymous memory outside the Go
// heap, and the function that gives them back. Data without pointers only:
// the garbage collector neither scans nor counts it, so a large index does
// not double the heap goal (GOGC) the way a Go allocation of its size does.
func allocOffHeap(n int) ([]byte, func()) {
	b, err := syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		// Out of address space or refused by the kernel: the Go heap
		// still works, at twice the cost.
		return make([]byte, n), func() {}
	}
	return b, func() { _ = syscall.Munmap(b) }
}
