package restore

import (
	"io"
	"sync"
)

// readahead reads its source in a goroutine a few buffers ahead of the
// consumer, so downloading overlaps decompression and writing.
type readahead struct {
	full chan chunk
	free chan []byte
	done chan struct{}
	once sync.Once
	wg   sync.WaitGroup

	cur []byte
	buf []byte // backing buffer of cur, returned to free when used up
	err error
}

type chunk struct {
	buf []byte
	n   int
	err error
}

// newReadahead starts reading src with n buffers of size bytes.
func newReadahead(src io.Reader, n, size int) *readahead {
	r := &readahead{
		full: make(chan chunk, n),
		free: make(chan []byte, n),
		done: make(chan struct{}),
	}
	for i := 0; i < n; i++ {
		r.free <- make([]byte, size)
	}
	r.wg.Add(1)
	go r.fill(src)
	return r
}

func (r *readahead) fill(src io.Reader) {
	defer r.wg.Done()
	for {
		var buf []byte
		select {
		case buf = <-r.free:
		case <-r.done:
			return
		}
		n, err := io.ReadFull(src, buf)
		if err == io.ErrUnexpectedEOF {
			err = io.EOF
		}
		select {
		case r.full <- chunk{buf: buf, n: n, err: err}:
		case <-r.done:
			return
		}
		if err != nil {
			return
		}
	}
}

func (r *readahead) Read(p []byte) (int, error) {
	for len(r.cur) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		if r.buf != nil {
			r.free <- r.buf
			r.buf = nil
		}
		c := <-r.full
		r.buf, r.cur, r.err = c.buf, c.buf[:c.n], c.err
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

// Close stops the reading goroutine and waits for it.
func (r *readahead) Close() error {
	r.once.Do(func() { close(r.done) })
	r.wg.Wait()
	return nil
}
