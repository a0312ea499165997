//go:build !race

package uploader

const raceEnabled = false
