package restore

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"testing/iotest"
)

// TestReadahead: the bytes come through unchanged in any read size, a
// source error arrives after the bytes before it, and Close mid-stream (an
// endless source) returns instead of waiting for the source to end.
func TestReadahead(t *testing.T) {
	data := make([]byte, 3*readaheadSize*readaheadBufs+12345)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	for _, src := range []io.Reader{
		bytes.NewReader(data),
		iotest.OneByteReader(bytes.NewReader(data[:100000])),
		iotest.HalfReader(bytes.NewReader(data)),
	} {
		ra := newReadahead(src)
		got, err := io.ReadAll(iotest.HalfReader(ra))
		ra.Close()
		if err != nil || (!bytes.Equal(got, data) && !bytes.Equal(got, data[:100000])) {
			t.Fatalf("read %d bytes (%v), not the source's", len(got), err)
		}
	}

	boom := errors.New("connection reset")
	ra := newReadahead(io.MultiReader(bytes.NewReader(data[:1000]), iotest.ErrReader(boom)))
	got, err := io.ReadAll(ra)
	ra.Close()
	if !errors.Is(err, boom) || !bytes.Equal(got, data[:1000]) {
		t.Fatalf("got %d bytes and %v, want 1000 bytes then the source's error", len(got), err)
	}

	ra = newReadahead(endless{})
	buf := make([]byte, 1000)
	if _, err := io.ReadFull(ra, buf); err != nil {
		t.Fatal(err)
	}
	ra.Close() // must return: the filler stops at the next buffer
	ra.Close() // and again
}

type endless struct{}

func (endless) Read(p []byte) (int, error) { return len(p), nil }
