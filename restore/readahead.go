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

// Read-ahead of one object: readaheadBufs buffers of readaheadSize bytes
// (1 MiB per restore worker). An HTTP body delivers at most a TLS record or
// a socket read per call, so larger buffers only hold more memory.
const (
	readaheadBufs = 4
	readaheadSize = 256 << 10
)

// readaheadPool keeps the buffers of finished objects for the next ones, so
// a restore of many small objects does not allocate them per object.
var readaheadPool = sync.Pool{New: func() any { b := make([]byte, readaheadSize); return &b }}

// newReadahead starts reading src with readaheadBufs buffers.
func newReadahead(src io.Reader) *readahead {
	n := readaheadBufs
	r := &readahead{
		full: make(chan chunk, n),
		free: make(chan []byte, n),
		done: make(chan struct{}),
	}
	for i := 0; i < n; i++ {
		r.free <- *readaheadPool.Get().(*[]byte)
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

// Close stops the reading goroutine, waits for it and hands the buffers
// back to the pool.
func (r *readahead) Close() error {
	r.once.Do(func() {
		close(r.done)
		r.wg.Wait()
		put := func(b []byte) { readaheadPool.Put(&b) }
		if r.buf != nil {
			put(r.buf)
			r.buf, r.cur = nil, nil
		}
		for len(r.free) > 0 {
			put(<-r.free)
		}
		for len(r.full) > 0 {
			put((<-r.full).buf)
		}
	})
	return nil
}
