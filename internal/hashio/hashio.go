// Package hashio counts and hashes a stream as it passes.
package hashio

import (
	"hash"
	"io"
)

// Reader passes reads of R through, feeding every byte to H and counting
// them in N.
type Reader struct {
	R io.Reader
	H hash.Hash
	N int64
}

func (r *Reader) Read(p []byte) (int, error) {
	n, err := r.R.Read(p)
	r.H.Write(p[:n])
	r.N += int64(n)
	return n, err
}

// Writer passes writes through to W, feeding every byte W accepted to H and
// counting them in N.
type Writer struct {
	W io.Writer
	H hash.Hash
	N int64
}

func (w *Writer) Write(p []byte) (int, error) {
	n, err := w.W.Write(p)
	w.H.Write(p[:n])
	w.N += int64(n)
	return n, err
}
