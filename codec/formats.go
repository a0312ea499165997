package codec

import (
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// The codecs. Lookup and ForExt return these values.
var (
	None Codec = noneCodec{}
	Zstd Codec = zstdCodec{}
	LZ4  Codec = lz4Codec{}
	Gzip Codec = gzipCodec{}
)

var errClosed = errors.New("codec: use after Close")

// --- none ---

type noneCodec struct{}

func (noneCodec) Name() string { return "none" }
func (noneCodec) Ext() string  { return "" }

func (noneCodec) ContentType() string { return "" }

func (noneCodec) NewWriter(w io.Writer) (io.WriteCloser, error) { return nopWriteCloser{w}, nil }
func (noneCodec) NewReader(r io.Reader) (io.ReadCloser, error)  { return io.NopCloser(r), nil }

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

// --- zstd ---

// zstdWindow bounds the back-reference distance and with it the memory of
// every encoder (its history buffer: twice the window, at least 1 MiB) and
// decoder. At the fastest level a window beyond 512 KiB gains nothing on
// database pages (8 KiB, matches within a page or a few): measured on the
// bench data set (1.5 GB, pgbench and random rows), 1 MiB stored 0.2% less
// than 2 MiB, and 512 KiB the same as 1 MiB to 0.2% (run-to-run noise), at
// the same CPU; each halving saves 1 MiB per parallel stream (no less: the
// history buffer is at least 1 MiB); the library default (8 MiB) would cost
// ~16 MiB per stream.
const zstdWindow = 512 << 10

var (
	zstdEncoders sync.Pool // *zstd.Encoder
	zstdDecoders sync.Pool // *zstd.Decoder
)

type zstdCodec struct{}

func (zstdCodec) Name() string { return "zstd" }
func (zstdCodec) Ext() string  { return ".zst" }

func (zstdCodec) ContentType() string { return "application/zstd" }

func (zstdCodec) NewWriter(w io.Writer) (io.WriteCloser, error) {
	enc, _ := zstdEncoders.Get().(*zstd.Encoder)
	if enc == nil {
		var err error
		// Concurrency 1: the backup runs several archive streams in parallel,
		// so one goroutine per stream keeps the cores busy without the
		// encoder's own block pipeline and its extra buffers.
		enc, err = zstd.NewWriter(nil,
			zstd.WithEncoderLevel(zstd.SpeedFastest),
			zstd.WithEncoderConcurrency(1),
			zstd.WithWindowSize(zstdWindow),
			zstd.WithZeroFrames(true), // an empty stream is still a valid .zst file
			// Literals stored without Huffman coding: measured on the
			// bench data set (pgbench pages plus random rows), 40% less
			// CPU for 1% more output. Backups are CPU-bound on the
			// compressor, and in a cloud backup the object store shares
			// the machine's cores.
			zstd.WithNoEntropyCompression(true),
			// The frame checksum (xxhash, ~4% of the CPU) stays: someone
			// extracting by hand with `zstd -d` gets damage reported too,
			// not only our SHA-256 and CRC32C checks.
		)
		if err != nil {
			return nil, fmt.Errorf("zstd encoder: %w", err)
		}
	}
	enc.Reset(w)
	return &zstdWriter{enc: enc}, nil
}

type zstdWriter struct{ enc *zstd.Encoder }

func (z *zstdWriter) Write(p []byte) (int, error) {
	if z.enc == nil {
		return 0, errClosed
	}
	return z.enc.Write(p)
}

func (z *zstdWriter) Close() error {
	if z.enc == nil {
		return nil
	}
	err := z.enc.Close()
	z.enc.Reset(nil) // drop the reference to the destination before pooling
	zstdEncoders.Put(z.enc)
	z.enc = nil
	return err
}

// zstdMaxWindow is the largest window a stored frame may ask for: ours
// write 512 KiB (1 MiB before), the zstd command line at most 8 MiB below
// --long and --ultra.
const zstdMaxWindow = 8 << 20

func (zstdCodec) NewReader(r io.Reader) (io.ReadCloser, error) {
	dec, _ := zstdDecoders.Get().(*zstd.Decoder)
	if dec == nil {
		var err error
		// Concurrency 1 decodes in the caller's goroutine (no background
		// goroutines to leak); a restore runs several streams in parallel.
		// The window is the history the decoder holds, and a frame from the
		// bucket says how large it is: zstdMaxWindow bounds it (the library
		// allows 512 MiB per stream).
		dec, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(zstdMaxWindow))
		if err != nil {
			return nil, fmt.Errorf("zstd decoder: %w", err)
		}
	}
	if err := dec.Reset(r); err != nil {
		zstdDecoders.Put(dec)
		return nil, fmt.Errorf("zstd decoder: %w", err)
	}
	return &zstdReader{dec: dec}, nil
}

type zstdReader struct{ dec *zstd.Decoder }

func (z *zstdReader) Read(p []byte) (int, error) {
	if z.dec == nil {
		return 0, errClosed
	}
	return z.dec.Read(p)
}

func (z *zstdReader) WriteTo(w io.Writer) (int64, error) {
	if z.dec == nil {
		return 0, errClosed
	}
	return z.dec.WriteTo(w)
}

func (z *zstdReader) Close() error {
	if z.dec == nil {
		return nil
	}
	_ = z.dec.Reset(nil) // releases the source; the decoder stays reusable
	zstdDecoders.Put(z.dec)
	z.dec = nil
	return nil
}

// --- lz4 ---

var (
	lz4Writers sync.Pool // *lz4.Writer
	lz4Readers sync.Pool // *lz4.Reader
)

type lz4Codec struct{}

func (lz4Codec) Name() string { return "lz4" }
func (lz4Codec) Ext() string  { return ".lz4" }

func (lz4Codec) ContentType() string { return "application/x-lz4" }

func (lz4Codec) NewWriter(w io.Writer) (io.WriteCloser, error) {
	zw, _ := lz4Writers.Get().(*lz4.Writer)
	if zw == nil {
		zw = lz4.NewWriter(nil)
		// The frame format (not the legacy one) is what the lz4 CLI writes
		// and reads; one goroutine per stream as for zstd.
		if err := zw.Apply(lz4.CompressionLevelOption(lz4.Fast), lz4.ConcurrencyOption(1)); err != nil {
			return nil, fmt.Errorf("lz4 encoder: %w", err)
		}
	}
	zw.Reset(w)
	return &lz4Writer{zw: zw}, nil
}

type lz4Writer struct{ zw *lz4.Writer }

func (z *lz4Writer) Write(p []byte) (int, error) {
	if z.zw == nil {
		return 0, errClosed
	}
	return z.zw.Write(p)
}

func (z *lz4Writer) Close() error {
	if z.zw == nil {
		return nil
	}
	err := z.zw.Close()
	z.zw.Reset(nil) // frees the block buffer back to lz4's own pool
	lz4Writers.Put(z.zw)
	z.zw = nil
	return err
}

func (lz4Codec) NewReader(r io.Reader) (io.ReadCloser, error) {
	zr, _ := lz4Readers.Get().(*lz4.Reader)
	if zr == nil {
		zr = lz4.NewReader(nil)
	}
	zr.Reset(r)
	return &lz4Reader{zr: zr}, nil
}

type lz4Reader struct{ zr *lz4.Reader }

func (z *lz4Reader) Read(p []byte) (int, error) {
	if z.zr == nil {
		return 0, errClosed
	}
	return z.zr.Read(p)
}

func (z *lz4Reader) Close() error {
	if z.zr == nil {
		return nil
	}
	z.zr.Reset(nil)
	lz4Readers.Put(z.zr)
	z.zr = nil
	return nil
}

// --- gzip ---

var (
	gzipWriters sync.Pool // *gzip.Writer
	gzipReaders sync.Pool // *gzip.Reader
)

type gzipCodec struct{}

func (gzipCodec) Name() string { return "gzip" }
func (gzipCodec) Ext() string  { return ".gz" }

func (gzipCodec) ContentType() string { return "application/gzip" }

func (gzipCodec) NewWriter(w io.Writer) (io.WriteCloser, error) {
	zw, _ := gzipWriters.Get().(*gzip.Writer)
	if zw == nil {
		var err error
		if zw, err = gzip.NewWriterLevel(w, gzip.BestSpeed); err != nil {
			return nil, fmt.Errorf("gzip encoder: %w", err)
		}
	} else {
		zw.Reset(w)
	}
	return &gzipWriter{zw: zw}, nil
}

type gzipWriter struct{ zw *gzip.Writer }

func (z *gzipWriter) Write(p []byte) (int, error) {
	if z.zw == nil {
		return 0, errClosed
	}
	return z.zw.Write(p)
}

func (z *gzipWriter) Close() error {
	if z.zw == nil {
		return nil
	}
	err := z.zw.Close()
	z.zw.Reset(io.Discard) // drop the destination before pooling
	gzipWriters.Put(z.zw)
	z.zw = nil
	return err
}

func (gzipCodec) NewReader(r io.Reader) (io.ReadCloser, error) {
	zr, _ := gzipReaders.Get().(*gzip.Reader)
	var err error
	if zr == nil {
		zr, err = gzip.NewReader(r)
	} else {
		err = zr.Reset(r)
	}
	if err != nil {
		if zr != nil {
			gzipReaders.Put(zr)
		}
		return nil, fmt.Errorf("gzip header: %w", err)
	}
	return &gzipReader{zr: zr}, nil
}

type gzipReader struct{ zr *gzip.Reader }

func (z *gzipReader) Read(p []byte) (int, error) {
	if z.zr == nil {
		return 0, errClosed
	}
	return z.zr.Read(p)
}

func (z *gzipReader) Close() error {
	if z.zr == nil {
		return nil
	}
	err := z.zr.Close()
	gzipReaders.Put(z.zr)
	z.zr = nil
	return err
}
