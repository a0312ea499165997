package codec

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
	"github.com/pgcloudbackup/pgcloudbackup/internal/testenv"
)

var all = []Codec{None, Zstd, LZ4, Gzip}

// mixedData returns n bytes alternating, in uneven runs, between text-like
// compressible data, zero pages and random bytes, so each codec meets both
// its easy and its incompressible case in one stream.
func mixedData(n int, seed byte) []byte {
	rng := rand.NewChaCha8([32]byte{seed})
	pick := rand.New(rng)
	buf := make([]byte, n)
	text := []byte("INSERT INTO pgbench_accounts VALUES (42, 7, 0, 'filler filler filler');\n")
	for off := 0; off < n; {
		run := min(n-off, 1+pick.IntN(700_000))
		switch pick.IntN(3) {
		case 0:
			for i := 0; i < run; i++ {
				buf[off+i] = text[(off+i)%len(text)]
			}
		case 1: // zero-filled pages: left as is
		case 2:
			_, _ = rng.Read(buf[off : off+run])
		}
		off += run
	}
	return buf
}

// writeChunked feeds data through w in the uneven chunk sizes an archive
// writer produces: 512-byte tar headers, odd sizes, 256 KiB file chunks.
func writeChunked(t testing.TB, w io.Writer, data []byte) {
	t.Helper()
	sizes := []int{512, 1, 256 << 10, 7777, 512, 64 << 10, 3}
	for i := 0; len(data) > 0; i++ {
		n := min(sizes[i%len(sizes)], len(data))
		m, err := w.Write(data[:n])
		if err != nil || m != n {
			t.Fatalf("write %d bytes: wrote %d, %v", n, m, err)
		}
		data = data[n:]
	}
}

func compress(t testing.TB, c Codec, data []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	w, err := c.NewWriter(&out)
	if err != nil {
		t.Fatal(err)
	}
	writeChunked(t, w, data)
	if err := w.Close(); err != nil {
		t.Fatalf("%s close: %v", c.Name(), err)
	}
	return out.Bytes()
}

func decompress(t testing.TB, c Codec, stored []byte) []byte {
	t.Helper()
	// A reader that hides bytes.Reader's Len, so decoders take their
	// streaming path as they will on a network body.
	r, err := c.NewReader(struct{ io.Reader }{bytes.NewReader(stored)})
	if err != nil {
		t.Fatalf("%s reader: %v", c.Name(), err)
	}
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("%s read: %v", c.Name(), err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("%s reader close: %v", c.Name(), err)
	}
	return got
}

func TestRoundTrip(t *testing.T) {
	big := mixedData(50<<20, 1)
	cases := map[string][]byte{
		"empty": {},
		"byte":  {0x42},
		"small": []byte(strings.Repeat("hello, archive\n", 1000)),
		"50MB":  big,
	}
	for _, c := range all {
		for name, data := range cases {
			t.Run(c.Name()+"/"+name, func(t *testing.T) {
				stored := compress(t, c, data)
				got := decompress(t, c, stored)
				if !bytes.Equal(got, data) {
					t.Fatalf("round trip changed the data: %d bytes in, %d out", len(data), len(got))
				}
				if c == None && !bytes.Equal(stored, data) {
					t.Fatal("none altered the bytes")
				}
				if name == "50MB" {
					t.Logf("%s: %d -> %d bytes (%.1f%%)", c.Name(), len(data), len(stored), 100*float64(len(stored))/float64(len(data)))
					// The data is about two thirds compressible; a codec that
					// does not shrink it is not compressing.
					if c != None && len(stored) > len(data)*9/10 {
						t.Errorf("%s stored %d of %d bytes: not compressing", c.Name(), len(stored), len(data))
					}
				}
			})
		}
	}
}

// TestPooledReuse runs many streams through the pools, interleaved and after
// failed writes, and checks each one stays independent and correct.
func TestPooledReuse(t *testing.T) {
	for _, c := range all[1:] {
		t.Run(c.Name(), func(t *testing.T) {
			for i := 0; i < 20; i++ {
				a := mixedData(100_000+i*1000, byte(i))
				b := mixedData(50_000, byte(100+i))
				var outA, outB bytes.Buffer
				wa, err := c.NewWriter(&outA)
				if err != nil {
					t.Fatal(err)
				}
				wb, err := c.NewWriter(&outB)
				if err != nil {
					t.Fatal(err)
				}
				writeChunked(t, wa, a[:len(a)/2])
				writeChunked(t, wb, b)
				writeChunked(t, wa, a[len(a)/2:])
				if err := wb.Close(); err != nil {
					t.Fatal(err)
				}
				if err := wa.Close(); err != nil {
					t.Fatal(err)
				}
				if _, err := wa.Write([]byte("x")); err == nil {
					t.Fatal("write after Close succeeded")
				}
				if err := wa.Close(); err != nil {
					t.Fatalf("second Close: %v", err)
				}
				if got := decompress(t, c, outA.Bytes()); !bytes.Equal(got, a) {
					t.Fatalf("stream A damaged (iteration %d)", i)
				}
				if got := decompress(t, c, outB.Bytes()); !bytes.Equal(got, b) {
					t.Fatalf("stream B damaged (iteration %d)", i)
				}

				// A stream whose destination fails goes back to the pool
				// too; the next stream must not inherit anything from it.
				boom := errors.New("disk full")
				wf, err := c.NewWriter(&failingWriter{after: 1000, err: boom})
				if err != nil {
					t.Fatal(err)
				}
				noise := make([]byte, 64<<10)
				_, _ = rand.NewChaCha8([32]byte{byte(i)}).Read(noise)
				var werr error
				for j := 0; j < 40 && werr == nil; j++ {
					_, werr = wf.Write(noise)
				}
				if cerr := wf.Close(); werr == nil && cerr == nil {
					t.Fatal("a failing destination went unnoticed")
				}
			}
		})
	}
}

type failingWriter struct {
	after int
	err   error
}

func (f *failingWriter) Write(p []byte) (int, error) {
	if len(p) > f.after {
		n := f.after
		f.after = 0
		return n, f.err
	}
	f.after -= len(p)
	return len(p), nil
}

func TestCorruptInputFails(t *testing.T) {
	data := mixedData(300_000, 9)
	for _, c := range all[1:] {
		t.Run(c.Name(), func(t *testing.T) {
			stored := compress(t, c, data)
			// Flip a byte in the middle and cut the tail: either must surface
			// as an error, never as silently different data.
			bad := bytes.Clone(stored)
			bad[len(bad)/2] ^= 0xff
			for name, in := range map[string][]byte{"flipped": bad, "truncated": stored[:len(stored)*2/3]} {
				r, err := c.NewReader(bytes.NewReader(in))
				if err == nil {
					var got []byte
					got, err = io.ReadAll(r)
					r.Close()
					if err == nil && bytes.Equal(got, data) {
						t.Fatalf("%s: damaged input decoded to the original?", name)
					}
				}
				if err == nil {
					t.Errorf("%s input decoded without an error", name)
				}
			}
		})
	}
}

// TestPoolsAvoidBigAllocations checks the point of pooling: after warm-up a
// stream costs far less than one encoder state (zstd's alone is MiBs).
func TestPoolsAvoidBigAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items on purpose under the race detector")
	}
	data := mixedData(1<<20, 3)
	for _, c := range all[1:] {
		t.Run(c.Name(), func(t *testing.T) {
			var sink bytes.Buffer
			sink.Grow(2 << 20)
			round := func() {
				sink.Reset()
				w, err := c.NewWriter(&sink)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := w.Write(data); err != nil {
					t.Fatal(err)
				}
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
				r, err := c.NewReader(bytes.NewReader(sink.Bytes()))
				if err != nil {
					t.Fatal(err)
				}
				if _, err := io.Copy(io.Discard, r); err != nil {
					t.Fatal(err)
				}
				r.Close()
			}
			// No collection during the measurement: a GC empties sync.Pools
			// and would make reuse look like allocation.
			defer debug.SetGCPercent(debug.SetGCPercent(-1))
			allocated := func(rounds int) uint64 {
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				for i := 0; i < rounds; i++ {
					round()
				}
				runtime.ReadMemStats(&after)
				return (after.TotalAlloc - before.TotalAlloc) / uint64(rounds)
			}
			runtime.GC() // two collections empty every pool: the next
			runtime.GC() // round builds its encoder and decoder from scratch
			cold := allocated(1)
			warm := allocated(10)
			t.Logf("%s: 1 MiB stream (write+read) allocates %d bytes cold, %d with pools", c.Name(), cold, warm)
			if warm*4 > cold {
				t.Errorf("%s: a pooled stream allocates %d bytes, a fresh one %d: state is not reused", c.Name(), warm, cold)
			}
		})
	}
}

func TestLookup(t *testing.T) {
	for _, c := range all {
		got, err := Lookup(c.Name())
		if err != nil || got != c {
			t.Errorf("Lookup(%q) = %v, %v", c.Name(), got, err)
		}
	}
	_, err := Lookup("bzip2")
	if err == nil {
		t.Fatal("Lookup accepted bzip2")
	}
	if failure.KindOf(err) != failure.Usage {
		t.Errorf("unknown codec is %v, want a usage error", failure.KindOf(err))
	}
	hint := failure.HintOf(err)
	for _, n := range Names() {
		if !strings.Contains(hint, n) {
			t.Errorf("hint %q does not list %q", hint, n)
		}
	}
}

func TestForExt(t *testing.T) {
	// Every codec's own suffix maps back to it.
	for _, c := range all {
		if got, err := ForExt(c.Ext()); err != nil || got != c {
			t.Errorf("ForExt(%q) = %v, %v; want %s", c.Ext(), got, err, c.Name())
		}
	}
	// Suffixes we never write, and near misses of ours, are refused.
	for _, ext := range []string{".bz2", ".xz", ".ZST", ".zst.tmp", "zst", ".tar", ".", " "} {
		if c, err := ForExt(ext); err == nil {
			t.Errorf("ForExt(%q) = %s, want an error", ext, c.Name())
		}
	}
}

// cli names the standard tool that reads each codec's output.
var cli = map[string]string{"zstd": "zstd", "lz4": "lz4", "gzip": "gzip"}

// TestReadableByStandardTools is the promise that a stored archive needs no
// pgcloudbackup to extract: the reference CLIs decompress our output, and we
// read theirs.
func TestReadableByStandardTools(t *testing.T) {
	data := mixedData(3<<20, 5)
	for _, c := range all[1:] {
		t.Run(c.Name(), func(t *testing.T) {
			tool, err := exec.LookPath(cli[c.Name()])
			if err != nil {
				testenv.Unavailable(t, "%s CLI not installed (apt-get install %s)", cli[c.Name()], cli[c.Name()])
			}
			dir := t.TempDir()
			for name, in := range map[string][]byte{"empty": {}, "mixed": data} {
				f := filepath.Join(dir, name+"-ours"+c.Ext())
				if err := os.WriteFile(f, compress(t, c, in), 0o600); err != nil {
					t.Fatal(err)
				}
				out, err := exec.Command(tool, "-d", "-c", f).Output()
				if err != nil {
					t.Fatalf("%s -d %s: %v: %s", tool, name, err, stderrOf(err))
				}
				if !bytes.Equal(out, in) {
					t.Fatalf("%s -d gave %d bytes (sha %x), want %d (sha %x)", tool, len(out), sha256.Sum256(out), len(in), sha256.Sum256(in))
				}

				// And the other way: the CLI's output through our reader.
				raw := filepath.Join(dir, name+".raw")
				if err := os.WriteFile(raw, in, 0o600); err != nil {
					t.Fatal(err)
				}
				theirs, err := exec.Command(tool, "-c", raw).Output()
				if err != nil {
					t.Fatalf("%s -c %s: %v: %s", tool, name, err, stderrOf(err))
				}
				if got := decompress(t, c, theirs); !bytes.Equal(got, in) {
					t.Fatalf("our %s reader misread the CLI's output of %s", c.Name(), name)
				}
			}
		})
	}
}

func stderrOf(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(ee.Stderr)
	}
	return fmt.Sprint(err)
}

// TestZstdWindowBounded: a frame from the bucket that asks for a larger
// history window than any backup uses is refused, not allocated.
func TestZstdWindowBounded(t *testing.T) {
	for _, tc := range []struct {
		window int
		ok     bool
	}{{zstdMaxWindow, true}, {4 * zstdMaxWindow, false}} {
		var buf bytes.Buffer
		enc, err := zstd.NewWriter(&buf, zstd.WithWindowSize(tc.window), zstd.WithEncoderConcurrency(1))
		if err != nil {
			t.Fatal(err)
		}
		// More than the window and no content size: the frame header
		// declares the window.
		data := bytes.Repeat([]byte("pgcloudbackup window "), (tc.window+zstdMaxWindow)/20)
		if _, err := enc.Write(data); err != nil {
			t.Fatal(err)
		}
		if err := enc.Close(); err != nil {
			t.Fatal(err)
		}
		r, err := Zstd.NewReader(&buf)
		var got []byte
		if err == nil {
			got, err = io.ReadAll(r)
			r.Close()
		}
		switch {
		case tc.ok && (err != nil || !bytes.Equal(got, data)):
			t.Errorf("window %d MiB: %v (%d of %d bytes)", tc.window>>20, err, len(got), len(data))
		case !tc.ok && err == nil:
			t.Errorf("window %d MiB: decoded, want refused", tc.window>>20)
		}
	}
}

// TestZstdSingleSegmentWindowBounded: a single-segment frame has no window
// descriptor: its window is its declared content size. A frame from the
// bucket declaring 16 MiB or 1 GiB of content (then holding 1 KiB) must not make the
// decoder allocate a 1 GiB history: zstdMaxWindow bounds it too.
func TestZstdSingleSegmentWindowBounded(t *testing.T) {
	for _, fcs := range []uint64{2 * zstdMaxWindow, 1 << 30} {
		frame := []byte{0x28, 0xb5, 0x2f, 0xfd, 0xe0} // magic; single segment, 8-byte content size
		frame = binary.LittleEndian.AppendUint64(frame, fcs)
		const n = 1024
		hdr := uint32(n<<3 | 1) // last block, raw
		frame = append(frame, byte(hdr), byte(hdr>>8), byte(hdr>>16))
		frame = append(frame, bytes.Repeat([]byte{'x'}, n)...)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		r, err := Zstd.NewReader(bytes.NewReader(frame))
		if err == nil {
			_, err = io.Copy(io.Discard, r)
			r.Close()
		}
		runtime.ReadMemStats(&after)
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4*zstdMaxWindow {
			t.Errorf("a frame declaring %d MiB of content made the decoder allocate %d MiB (%v)", fcs>>20, alloc>>20, err)
		}
		if err == nil {
			t.Errorf("a frame declaring %d MiB of content, more than the window allowed, decoded", fcs>>20)
		}
	}
}
