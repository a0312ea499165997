// Package faultyblob wraps a bucket so tests can make chosen calls fail: the
// Nth writer to open, a writer after N bytes, the Close that would commit an
// object, a Delete, List or Attributes call. Everything else passes through
// to the wrapped bucket, so a failure leaves exactly the state the real
// backend would be left in.
//
// A writer reaches the inner bucket the way the caller used it: a stream of
// Writes, or Bucket.Upload's reader handed to the inner bucket's Upload (so
// azureblob keeps its UploadStream path). As answers for the inner bucket.
// Wrap any bucket but s3blob (memblob, fileblob, gcsblob, azureblob): s3blob
// aborts a multipart upload in ways a wrapper cannot reproduce.
package faultyblob

import (
	"context"
	"io"
	"sync"

	"gocloud.dev/blob"
	"gocloud.dev/blob/driver"
	"gocloud.dev/gcerrors"
)

// Op names a bucket call that can be made to fail.
type Op string

const (
	NewWriter  Op = "NewWriter" // opening a writer (driver NewTypedWriter)
	Write      Op = "Write"     // a writer's Write (faults are per writer, see FailWrite)
	Close      Op = "Close"     // a writer's Close, the commit
	NewReader  Op = "NewReader"
	Attributes Op = "Attributes"
	List       Op = "List"
	Delete     Op = "Delete"
	Copy       Op = "Copy"
)

// Faults says which calls fail. The zero value injects nothing; all methods
// are safe for concurrent use, also while the bucket is in use.
type Faults struct {
	mu      sync.Mutex
	calls   map[Op]int
	rules   []rule
	stalled chan struct{} // closed when a writer first stalls
}

type rule struct {
	op    Op
	n     int   // the call (for Write/Close: the writer) it hits; 0 = all
	after int64 // Write only: bytes a writer accepts before failing
	stall bool  // Write only: block until the writer's context ends
	err   error
}

// Fail makes the nth call of op fail with err (n counts from 1; 0 = every
// call from now on). For Write and Close, n is the writer's number: writer n
// is the one the nth NewWriter call opened (Fail(Write, n, err) fails its
// first Write). A writer takes its Write and Close faults when it opens, so
// add them before.
func (f *Faults) Fail(op Op, n int, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules = append(f.rules, rule{op: op, n: n, err: err})
}

// FailWrite makes writer n (opened by the nth NewWriter call; 0 = every
// writer) fail once it has accepted after bytes: the Write that
// crosses the mark writes up to it and returns err, and so do all later ones.
func (f *Faults) FailWrite(n int, after int64, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules = append(f.rules, rule{op: Write, n: n, after: after, err: err})
}

// StallWrite makes writer n (0 = every writer) hang, like a dead network
// connection, once it has accepted after bytes: the Write that crosses the
// mark writes up to it and then blocks until the writer's context is
// cancelled, returning the context's error.
func (f *Faults) StallWrite(n int, after int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules = append(f.rules, rule{op: Write, n: n, after: after, stall: true})
}

// FailClose makes the Close of writer number n (0 = every writer) fail with
// err without committing the object, as a rejected final request would.
func (f *Faults) FailClose(n int, err error) { f.Fail(Close, n, err) }

// Calls returns how many times op was called, failed calls included.
func (f *Faults) Calls(op Op) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

// Stalled returns a channel closed once a writer has hit a StallWrite mark
// and blocks: tests wait on it instead of guessing how long that takes.
func (f *Faults) Stalled() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stalled == nil {
		f.stalled = make(chan struct{})
	}
	return f.stalled
}

func (f *Faults) markStalled() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stalled == nil {
		f.stalled = make(chan struct{})
	}
	select {
	case <-f.stalled:
	default:
		close(f.stalled)
	}
}

// Reset removes every rule and zeroes the counters.
func (f *Faults) Reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules, f.calls, f.stalled = nil, nil, nil
}

// call counts a call of op and returns its number and the error it must
// fail with, if any.
func (f *Faults) call(op Op) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.calls == nil {
		f.calls = map[Op]int{}
	}
	f.calls[op]++
	n := f.calls[op]
	for _, r := range f.rules {
		if r.op == op && (r.n == 0 || r.n == n) {
			return n, r.err
		}
	}
	return n, nil
}

// writerFaults returns the faults of writer n.
func (f *Faults) writerFaults(n int) (write, close *rule) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.rules {
		r := &f.rules[i]
		if r.n != 0 && r.n != n {
			continue
		}
		switch {
		case r.op == Write && write == nil:
			rc := *r
			write = &rc
		case r.op == Close && close == nil:
			rc := *r
			close = &rc
		}
	}
	return write, close
}

// New returns a bucket that behaves as inner except for the faults (nil:
// none). Closing it does not close inner.
func New(inner *blob.Bucket, faults *Faults) *blob.Bucket {
	if faults == nil {
		faults = &Faults{}
	}
	return blob.NewBucket(&bucket{inner: inner, f: faults})
}

type bucket struct {
	inner *blob.Bucket
	f     *Faults
}

var _ driver.Bucket = (*bucket)(nil)

func (b *bucket) ErrorCode(err error) gcerrors.ErrorCode { return gcerrors.Code(err) }
func (b *bucket) As(i any) bool                          { return b.inner.As(i) }
func (b *bucket) ErrorAs(err error, i any) bool          { return b.inner.ErrorAs(err, i) }
func (b *bucket) Close() error                           { return nil }

func (b *bucket) Attributes(ctx context.Context, key string) (*driver.Attributes, error) {
	if _, err := b.f.call(Attributes); err != nil {
		return nil, err
	}
	a, err := b.inner.Attributes(ctx, key)
	if err != nil {
		return nil, err
	}
	return &driver.Attributes{
		CacheControl:       a.CacheControl,
		ContentDisposition: a.ContentDisposition,
		ContentEncoding:    a.ContentEncoding,
		ContentLanguage:    a.ContentLanguage,
		ContentType:        a.ContentType,
		Metadata:           a.Metadata,
		CreateTime:         a.CreateTime,
		ModTime:            a.ModTime,
		Size:               a.Size,
		MD5:                a.MD5,
		ETag:               a.ETag,
		AsFunc:             a.As,
	}, nil
}

func (b *bucket) ListPaged(ctx context.Context, opts *driver.ListOptions) (*driver.ListPage, error) {
	if _, err := b.f.call(List); err != nil {
		return nil, err
	}
	token := opts.PageToken
	if len(token) == 0 {
		token = blob.FirstPageToken
	}
	size := opts.PageSize
	if size <= 0 {
		size = 1000
	}
	objs, next, err := b.inner.ListPage(ctx, token, size, &blob.ListOptions{
		Prefix: opts.Prefix, Delimiter: opts.Delimiter, BeforeList: opts.BeforeList,
	})
	if err != nil {
		return nil, err
	}
	page := &driver.ListPage{Objects: make([]*driver.ListObject, len(objs)), NextPageToken: next}
	for i, o := range objs {
		page.Objects[i] = &driver.ListObject{Key: o.Key, ModTime: o.ModTime, Size: o.Size, MD5: o.MD5, IsDir: o.IsDir, AsFunc: o.As}
	}
	return page, nil
}

func (b *bucket) NewRangeReader(ctx context.Context, key string, offset, length int64, opts *driver.ReaderOptions) (driver.Reader, error) {
	if _, err := b.f.call(NewReader); err != nil {
		return nil, err
	}
	r, err := b.inner.NewRangeReader(ctx, key, offset, length, &blob.ReaderOptions{BeforeRead: opts.BeforeRead})
	if err != nil {
		return nil, err
	}
	return reader{r}, nil
}

type reader struct{ *blob.Reader }

func (r reader) Attributes() *driver.ReaderAttributes {
	return &driver.ReaderAttributes{ContentType: r.ContentType(), ModTime: r.ModTime(), Size: r.Size()}
}

func (b *bucket) NewTypedWriter(ctx context.Context, key, contentType string, opts *driver.WriterOptions) (driver.Writer, error) {
	n, err := b.f.call(NewWriter)
	if err != nil {
		return nil, err
	}
	wf, cf := b.f.writerFaults(n)
	// The inner writer gets its own cancel so an injected Close failure can
	// abort it the way the real backend aborts a cancelled write.
	ctx, cancel := context.WithCancel(ctx)
	fw := &writer{f: b.f, ctx: ctx, cancel: cancel, fault: wf, inner: b.inner, key: key, opts: &blob.WriterOptions{
		BufferSize:                  opts.BufferSize,
		MaxConcurrency:              opts.MaxConcurrency,
		CacheControl:                opts.CacheControl,
		ContentDisposition:          opts.ContentDisposition,
		ContentEncoding:             opts.ContentEncoding,
		ContentLanguage:             opts.ContentLanguage,
		ContentType:                 contentType,
		DisableContentTypeDetection: contentType == "",
		ContentMD5:                  opts.ContentMD5,
		Metadata:                    opts.Metadata,
		BeforeWrite:                 opts.BeforeWrite,
		IfNotExist:                  opts.IfNotExist,
	}}
	if wf != nil {
		fw.left = wf.after
	}
	if cf != nil {
		fw.closeErr = cf.err
	}
	return fw, nil
}

// writer passes a stream of Writes to an inner writer, or, when the caller
// uses Bucket.Upload, hands the reader to the inner bucket's Upload, so that
// a driver that reads the stream itself (azureblob's UploadStream) takes
// that path as it would unwrapped. Either way the Write faults strike the
// bytes on their way to the inner bucket.
type writer struct {
	f        *Faults
	ctx      context.Context
	cancel   context.CancelFunc
	inner    *blob.Bucket
	key      string
	opts     *blob.WriterOptions
	w        *blob.Writer // opened by the first Write (or Close)
	fault    *rule        // the Write fault, if any
	left     int64        // bytes still accepted before the fault strikes
	failed   error        // sticky result once it struck
	closeErr error

	uploaded bool  // Upload was used instead of Write
	upErr    error // its result
	blocked  bool  // Upload: the commit was stopped for closeErr
}

var _ driver.Uploader = (*writer)(nil)

func (w *writer) open() error {
	if w.w != nil {
		return nil
	}
	iw, err := w.inner.NewWriter(w.ctx, w.key, w.opts)
	if err != nil {
		return err
	}
	w.w = iw
	return nil
}

// room returns how many of n bytes may go on before the fault strikes.
func (w *writer) room(n int) int {
	if w.fault != nil && int64(n) > w.left {
		return int(w.left)
	}
	return n
}

// strike fails the writer as its fault says, once the bytes before the
// mark have gone through.
func (w *writer) strike() error {
	if w.fault.stall {
		w.f.markStalled()
		<-w.ctx.Done()
		w.failed = w.ctx.Err()
	} else {
		w.failed = w.fault.err
	}
	return w.failed
}

func (w *writer) Write(p []byte) (int, error) {
	_, _ = w.f.call(Write) // counted only: Write faults are per writer
	if w.failed != nil {
		return 0, w.failed
	}
	if err := w.open(); err != nil {
		return 0, err
	}
	k := w.room(len(p))
	n, err := w.w.Write(p[:k])
	w.left -= int64(n)
	if err != nil || k == len(p) {
		return n, err
	}
	return n, w.strike()
}

// Upload feeds r to the inner bucket's Upload (the outer Bucket.Upload
// guarantees a content type). A Close fault cancels the inner write once r
// is drained, so the commit fails as a rejected final request would.
func (w *writer) Upload(r io.Reader) error {
	w.uploaded = true
	w.upErr = w.inner.Upload(w.ctx, w.key, &faultReader{w: w, r: r}, w.opts)
	if w.blocked {
		return nil // Close reports closeErr
	}
	return w.upErr
}

// faultReader is the stream the inner driver reads in Upload; each Read
// that passes bytes on counts as a Write.
type faultReader struct {
	w *writer
	r io.Reader
}

func (fr *faultReader) Read(p []byte) (int, error) {
	w := fr.w
	if w.failed != nil {
		return 0, w.failed
	}
	if w.fault != nil && w.left == 0 {
		return 0, w.strike()
	}
	n, err := fr.r.Read(p[:w.room(len(p))])
	w.left -= int64(n)
	if n > 0 {
		_, _ = w.f.call(Write)
	}
	if err == io.EOF && w.closeErr != nil {
		w.blocked = true
		w.cancel()
	}
	return n, err
}

func (w *writer) Close() error {
	_, _ = w.f.call(Close)
	defer w.cancel()
	if w.uploaded {
		if w.closeErr != nil {
			return w.closeErr
		}
		return w.upErr
	}
	// No Write came: the inner writer still makes the (empty) object.
	if err := w.open(); err != nil {
		return err
	}
	if w.closeErr != nil {
		w.cancel() // the commit "fails": the object must not appear
		_ = w.w.Close()
		return w.closeErr
	}
	return w.w.Close()
}

func (b *bucket) Copy(ctx context.Context, dstKey, srcKey string, opts *driver.CopyOptions) error {
	if _, err := b.f.call(Copy); err != nil {
		return err
	}
	return b.inner.Copy(ctx, dstKey, srcKey, &blob.CopyOptions{BeforeCopy: opts.BeforeCopy})
}

func (b *bucket) Delete(ctx context.Context, key string, opts *driver.DeleteOptions) error {
	if _, err := b.f.call(Delete); err != nil {
		return err
	}
	return b.inner.DeleteWithOptions(ctx, key, &blob.DeleteOptions{BeforeDelete: opts.BeforeDelete})
}

func (b *bucket) SignedURL(ctx context.Context, key string, opts *driver.SignedURLOptions) (string, error) {
	return b.inner.SignedURL(ctx, key, &blob.SignedURLOptions{
		Expiry: opts.Expiry, Method: opts.Method, ContentType: opts.ContentType,
		EnforceAbsentContentType: opts.EnforceAbsentContentType, BeforeSign: opts.BeforeSign,
	})
}
