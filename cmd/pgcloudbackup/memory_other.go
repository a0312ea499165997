//go:build !linux

package main

// releaseStartupPages is Linux-only (see memory_linux.go).
func releaseStartupPages() {}
