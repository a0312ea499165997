// Package uploader streams objects into a bucket: raw bytes go in through
// Object.Write, are compressed, hashed (SHA-256 of the stored bytes) and
// uploaded while they are written, with no local staging.
//
// Per object:
//
//	Write -> codec writer -> 256 KiB buffer -> storage.Writer -> SHA-256 + count -> backend
//
// and storage.Writer hands the bytes to the backend's upload goroutine,
// which hashes them (WriteOptions.Tee) as it takes them, so compression and
// hashing and upload overlap.
//
// # Memory
//
// On S3, when the Store has a PartPool (storage.Store.SetPartPool; the
// command line always sets one, sized by --memory), every part buffer of
// every object comes from that one pool and is reused across parts and
// objects: the part memory of the whole run is the pool's budget, however
// many objects are in flight. Concurrency then caps the parts of one object
// in flight; the pool caps them all. Without a pool the S3 transfer manager
// allocates (Concurrency + 1) × PartSize per object plus a first-part read.
//
// Options.PartBudget is one object's share of that budget
// (storage.PlanParts): the automatic part size never outgrows it, so a
// part always fits the pool (no upload leaves it because of its size) and
// a bigger archive is split by the caller into several objects
// (MaxRawBytes) instead: memory stays flat in database size. GCS buffers
// one part (its chunk) per object, within the share; Azure holds
// Concurrency blocks per object, sized so that together they fit the
// share. file:// and mem:// hold no parts.
//
// Per object, besides the parts:
//
//	codec state      zstd ~1.5 MiB (512 KiB window), lz4 ~8 MiB, gzip ~1 MiB
//	256 KiB          the codec's output buffer
//	256 KiB          storage's copy buffer (not on S3)
//
// # Aborting
//
// An abort must never commit a partial object, and on S3 must not leave the
// parts of a multipart upload behind. storage.Writer owns that on every
// backend (its Abort, and the end of the caller's context); Object.Abort
// hands it the cause and recycles the codec.
package uploader

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/pgcloudbackup/pgcloudbackup/codec"
	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
	"github.com/pgcloudbackup/pgcloudbackup/internal/hashio"
	"github.com/pgcloudbackup/pgcloudbackup/storage"
)

const (
	mib = 1 << 20

	// DefaultPartSize is the smallest part size chosen automatically
	// (storage.PartSize).
	DefaultPartSize = storage.DefaultPartSize
	// MaxAutoPartSize caps the automatic part size so memory stays flat;
	// larger archives are split into several objects (MaxRawBytes).
	MaxAutoPartSize = storage.MaxAutoPartSize
	// DefaultConcurrency is the number of parts in flight per object. The
	// backup runs several objects at once, so a small number suffices.
	DefaultConcurrency = 2

	// bufSize is the codec's output buffer: it gathers the codec's small
	// writes (flate emits a few hundred bytes at a time, tar headers are
	// 512) so each hand-off to the storage.Writer's goroutine moves a
	// useful amount of data.
	bufSize = 256 << 10
)

// ErrAborted is the cause recorded when Abort is called with a nil cause.
var ErrAborted = storage.ErrAborted

// Options configure an Uploader.
type Options struct {
	// Codec compresses every object not opened Raw (nil: none).
	Codec codec.Codec
	// PartSize is the multipart part size (blob.WriterOptions.BufferSize);
	// 0 chooses it per object from the size hint within Limits.
	PartSize int64
	// Concurrency is the number of parts in flight per object
	// (WriterOptions.MaxConcurrency); 0 = DefaultConcurrency.
	Concurrency int
	// PartBudget is the memory one object's part buffers may take (0: no
	// bound): the automatic part size never outgrows it, and on Azure the
	// parts in flight of one object share it (storage.PlanParts). The
	// command line sets the part pool's share of one part, so that every
	// backend's part buffers stay within --memory.
	PartBudget int64
	// Logger receives debug lines per object (nil: none).
	Logger *slog.Logger
}

// Uploader writes objects into one store. It is safe for concurrent use.
type Uploader struct {
	store *storage.Store
	caps  storage.Caps
	opts  Options
	log   *slog.Logger
	err   error // invalid Options, returned by Open
}

// New returns an Uploader for store; part sizes follow store.Limits.
// Invalid options are reported by Validate and by every Open.
func New(store *storage.Store, opts Options) *Uploader {
	if opts.Codec == nil {
		opts.Codec = codec.None
	}
	if opts.Concurrency == 0 {
		opts.Concurrency = DefaultConcurrency
	}
	u := &Uploader{
		store: store,
		caps:  store.Caps(),
		opts:  opts,
		log:   opts.Logger,
	}
	if u.log == nil {
		u.log = slog.New(slog.DiscardHandler)
	}
	u.err = validate(opts, store.Limits)
	return u
}

func validate(o Options, l storage.Limits) error {
	switch {
	case o.Concurrency < 0:
		return failure.New(failure.Usage, "upload concurrency %d is negative", o.Concurrency)
	case o.PartSize < 0:
		return failure.New(failure.Usage, "part size %d is negative", o.PartSize)
	case o.PartBudget < 0:
		return failure.New(failure.Usage, "part budget %d is negative", o.PartBudget)
	case o.PartSize == 0:
		return nil
	case o.PartSize > math.MaxInt:
		return failure.New(failure.Usage, "part size %s is too large", sizeString(o.PartSize))
	case l.MinPartSize > 0 && o.PartSize < l.MinPartSize:
		return failure.Wrap(failure.Usage,
			fmt.Errorf("part size %s is below the backend's minimum of %s", sizeString(o.PartSize), sizeString(l.MinPartSize)),
			"use a part size of at least "+sizeString(l.MinPartSize)+", or leave it unset to choose it automatically")
	case l.MaxPartSize > 0 && o.PartSize > l.MaxPartSize:
		return failure.Wrap(failure.Usage,
			fmt.Errorf("part size %s is above the backend's maximum of %s", sizeString(o.PartSize), sizeString(l.MaxPartSize)),
			"use a part size of at most "+sizeString(l.MaxPartSize)+", or leave it unset to choose it automatically")
	}
	return nil
}

// Validate reports invalid Options (a failure.Usage error), so a caller can
// refuse them before starting any work.
func (u *Uploader) Validate() error { return u.err }

// Codec returns the codec objects not opened Raw are stored with; their keys
// must end in its Ext.
func (u *Uploader) Codec() codec.Codec { return u.opts.Codec }

// PartSize returns the part size Open uses for an object of about sizeHint
// raw bytes (0: unknown): Options.PartSize if set, else storage.PartSize
// from the store's Limits, within Options.PartBudget (storage.PlanParts).
func (u *Uploader) PartSize(sizeHint int64) int64 {
	ps, _ := u.plan(sizeHint)
	return ps
}

// plan returns the part size and parts in flight of an object of about
// sizeHint raw bytes.
func (u *Uploader) plan(sizeHint int64) (int64, int) {
	c := u.caps
	c.Limits = u.store.Limits // a caller may lower them after New
	return storage.PlanParts(c, sizeHint, u.opts.PartSize, u.opts.Concurrency, u.opts.PartBudget)
}

// MaxRawBytes returns how many raw bytes one object opened with sizeHint may
// take (storage.MaxRawBytes for the part size PartSize chooses): past that
// the caller must end it and continue in a next object.
func (u *Uploader) MaxRawBytes(sizeHint int64) int64 {
	return storage.MaxRawBytes(u.store.Limits, u.PartSize(sizeHint))
}

// ObjectOptions describe one object.
type ObjectOptions struct {
	// SizeHint is the expected number of raw bytes (0: unknown); it chooses
	// the part size.
	SizeHint int64
	// Raw stores the bytes as written, without the Uploader's codec
	// (manifests).
	Raw bool
	// ContentType defaults to the codec's type (application/zstd, ...) or
	// application/octet-stream.
	ContentType string
}

// Result describes a committed object.
type Result struct {
	Key     string
	Size    int64  // stored (compressed) bytes
	RawSize int64  // bytes passed to Write
	SHA256  string // hex SHA-256 of the stored bytes
}

// Open starts the upload of key. The caller must end it with Close or Abort.
// key is used as given; for a compressed object it must end in Codec().Ext()
// so that the codec is found again on restore (storage.ParseVolumeName).
func (u *Uploader) Open(ctx context.Context, key string, o ObjectOptions) (*Object, error) {
	if u.err != nil {
		return nil, u.err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("upload %s: %w", key, err)
	}
	c := u.opts.Codec
	if o.Raw {
		c = codec.None
	}
	if !strings.HasSuffix(key, c.Ext()) {
		return nil, fmt.Errorf("upload %s: key must end in %q for %s compression", key, c.Ext(), c.Name())
	}
	ct := o.ContentType
	if ct == "" {
		if ct = c.ContentType(); ct == "" {
			ct = "application/octet-stream"
		}
	}
	partSize, inFlight := u.plan(o.SizeHint)

	ob := &Object{u: u, key: key, hw: hashio.Writer{W: io.Discard, H: sha256.New()}}
	ob.bw = getBufWriter(toWriter{ob})
	cw, err := c.NewWriter(ob.bw)
	if err != nil {
		putBufWriter(ob.bw)
		return nil, fmt.Errorf("upload %s: %w", key, err)
	}
	ob.cw = cw
	// Only now the upload starts (with a run's reservation, by recording
	// the key).
	ob.w = u.store.NewWriter(ctx, key, storage.WriteOptions{
		ContentType: ct,
		PartSize:    partSize,
		Concurrency: inFlight,
		Tee:         &ob.hw, // hashed in the upload's goroutine
	})
	u.log.Debug("upload started", "key", key, "codec", c.Name(), "part_size", partSize, "parts_in_flight", inFlight, "size_hint", o.SizeHint)
	return ob, nil
}

// Put stores a small object as given (no codec) and returns its Result.
func (u *Uploader) Put(ctx context.Context, key string, data []byte, contentType string) (Result, error) {
	o, err := u.Open(ctx, key, ObjectOptions{SizeHint: int64(len(data)), Raw: true, ContentType: contentType})
	if err != nil {
		return Result{}, err
	}
	if _, err := o.Write(data); err != nil {
		o.Abort(err)
		return Result{}, err
	}
	return o.Close()
}

// Object is one upload in progress. Write and Close must not be called
// concurrently with each other; Abort may be called from any goroutine, also
// to unblock a Write that waits for the upload.
type Object struct {
	u   *Uploader
	key string
	w   *storage.Writer // owns the upload and its abort

	mu      sync.Mutex // serialises Write, Close and the codec teardown
	cw      io.WriteCloser
	bw      *bufio.Writer
	hw      hashio.Writer // hashes and counts exactly the bytes the backend took (read after Commit)
	state   state
	werr    error // why the first Write failed: the stream is damaged, never commit it
	result  Result
	err     error // the final error once failed
	written atomic.Int64

	committed atomic.Bool
}

type state int

const (
	open state = iota
	closed
	failed
)

// Write compresses p into the object. An error means the upload failed; the
// caller should Abort (Close would report the same error).
func (o *Object) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.state != open {
		return 0, o.stateErr()
	}
	if o.werr != nil {
		return 0, o.werr
	}
	n, err := o.cw.Write(p)
	o.written.Add(int64(n))
	if err != nil {
		o.werr = o.w.Fail(err) // the writer's own error if it failed, named
		return n, o.werr
	}
	return n, nil
}

// Written returns the raw bytes accepted so far. It is safe to call from any
// goroutine (progress reporting).
func (o *Object) Written() int64 { return o.written.Load() }

// Close flushes the codec, finishes the upload and returns what was stored.
// On an error nothing was committed: the upload has been aborted.
func (o *Object) Close() (Result, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	switch o.state {
	case closed:
		return o.result, nil
	case failed:
		return Result{}, o.err
	}
	err := o.werr
	if err == nil {
		cw := o.cw
		o.cw = nil // Close hands the encoder back to its pool, even on error
		if cerr := cw.Close(); cerr != nil {
			err = o.w.Fail(cerr)
		} else if ferr := o.bw.Flush(); ferr != nil {
			err = o.w.Fail(ferr)
		}
	}
	if err != nil {
		o.abortLocked(err)
		return Result{}, o.err
	}
	err = o.w.Commit()
	o.releaseLocked()
	if err != nil {
		o.state, o.err = failed, err // the writer's error names the key
		return Result{}, o.err
	}
	o.state = closed
	o.committed.Store(true)
	o.result = Result{
		Key:     o.key,
		Size:    o.hw.N,
		RawSize: o.written.Load(),
		SHA256:  hex.EncodeToString(o.hw.H.Sum(nil)),
	}
	o.u.log.Debug("upload done", "key", o.key, "raw", o.result.RawSize, "stored", o.result.Size)
	return o.result, nil
}

// Abort stops the upload so that no object and, on S3, no multipart upload
// remains, and returns once that is done. It is idempotent, safe after a
// failed Close, and a no-op after a successful one. A nil cause records
// ErrAborted.
func (o *Object) Abort(cause error) {
	if o.committed.Load() {
		return
	}
	if cause == nil {
		cause = ErrAborted
	}
	o.w.Abort(cause) // first, without the lock: it unblocks a Write stuck in the writer
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.state == open {
		o.abortLocked(cause)
	}
}

func (o *Object) abortLocked(cause error) {
	o.err = o.w.Abort(cause)
	o.releaseLocked()
	o.state = failed
	o.u.log.Debug("upload aborted", "key", o.key, "cause", cause)
}

// releaseLocked returns the codec and buffer to their pools.
func (o *Object) releaseLocked() {
	if o.cw != nil {
		_ = o.cw.Close() // the writer is closed: this only recycles the encoder
		o.cw = nil
	}
	if o.bw != nil {
		putBufWriter(o.bw)
		o.bw = nil
	}
}

func (o *Object) stateErr() error {
	if o.state == failed {
		return o.err
	}
	return fmt.Errorf("upload %s: write after Close", o.key)
}

// toWriter hands the codec's buffered output to the object's
// storage.Writer, which is made only once the codec exists.
type toWriter struct{ o *Object }

func (t toWriter) Write(p []byte) (int, error) { return t.o.w.Write(p) }

var bufWriters sync.Pool // *bufio.Writer of bufSize

func getBufWriter(w io.Writer) *bufio.Writer {
	if bw, ok := bufWriters.Get().(*bufio.Writer); ok {
		bw.Reset(w)
		return bw
	}
	return bufio.NewWriterSize(w, bufSize)
}

func putBufWriter(bw *bufio.Writer) {
	bw.Reset(nil)
	bufWriters.Put(bw)
}

func sizeString(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= mib && n%mib == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
