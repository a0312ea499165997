package storage

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"time"

	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"
)

// The object operations below are the door to the bucket for catalog,
// restore, walarchive and cmd: they never see gocloud.dev. Driver errors are
// returned unclassified (callers add what they were doing with Classify),
// but two outcomes callers branch on are marked once, here:
// errors.Is(err, ErrNotFound) and errors.Is(err, ErrExists).

var (
	// ErrNotFound marks an error for an object that does not exist.
	ErrNotFound = errors.New("object not found")
	// ErrExists marks a conditional create refused because the object
	// exists.
	ErrExists = errors.New("object exists")
)

// markedError keeps the driver's error in the chain (Classify still sees
// it) and adds a sentinel for errors.Is.
type markedError struct {
	err  error
	mark error
}

func (e *markedError) Error() string   { return e.err.Error() }
func (e *markedError) Unwrap() []error { return []error{e.err, e.mark} }

// mark classifies a driver error: NotFound and "exists" get their sentinel.
func mark(err error) error {
	switch {
	case err == nil:
		return nil
	case gcerrors.Code(err) == gcerrors.NotFound:
		return &markedError{err: err, mark: ErrNotFound}
	case isTaken(err):
		return &markedError{err: err, mark: ErrExists}
	}
	return err
}

// Attributes is what is known about an object without reading it.
type Attributes struct {
	Size        int64
	ModTime     time.Time
	ContentType string
	// ETag is the service's entity tag (S3: a multipart object's ends in
	// -<parts>), without quotes; may be empty.
	ETag string
	// Metadata is the user metadata written with the object (keys in
	// lower case).
	Metadata map[string]string
}

// Attributes returns the attributes of the object at key.
func (s *Store) Attributes(ctx context.Context, key string) (*Attributes, error) {
	a, err := s.bucket.Attributes(ctx, key)
	if err != nil {
		return nil, mark(err)
	}
	return &Attributes{Size: a.Size, ModTime: a.ModTime, ContentType: a.ContentType, ETag: strings.Trim(a.ETag, `"`), Metadata: a.Metadata}, nil
}

// Exists reports whether an object exists at key.
func (s *Store) Exists(ctx context.Context, key string) (bool, error) {
	ok, err := s.bucket.Exists(ctx, key)
	return ok, mark(err)
}

// Reader reads one object.
type Reader struct{ r *blob.Reader }

func (r *Reader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		err = mark(err)
	}
	return n, err
}

// Close releases the reader.
func (r *Reader) Close() error { return r.r.Close() }

// Size is the size of the whole object (not of the range read).
func (r *Reader) Size() int64 { return r.r.Size() }

// NewReader opens the object at key for reading from the start.
func (s *Store) NewReader(ctx context.Context, key string) (*Reader, error) {
	return s.NewRangeReader(ctx, key, 0, -1)
}

// NewRangeReader opens length bytes of the object at key from offset
// (length < 0: to the end).
func (s *Store) NewRangeReader(ctx context.Context, key string, offset, length int64) (*Reader, error) {
	r, err := s.bucket.NewRangeReader(ctx, key, offset, length, nil)
	if err != nil {
		return nil, mark(err)
	}
	return &Reader{r: r}, nil
}

// ObjectInfo is one object of a listing.
type ObjectInfo struct {
	Key     string
	Size    int64
	ModTime time.Time
}

// maxListPage bounds one page of ListPage: the bucket is untrusted and a
// page is held in memory.
const maxListPage = 1000

// ListPage returns up to pageSize (at most 1000) objects whose keys start
// with prefix, in key order, from the page token (nil: the first page), and
// the token of the next page (nil: no more).
func (s *Store) ListPage(ctx context.Context, prefix string, token []byte, pageSize int) ([]ObjectInfo, []byte, error) {
	if pageSize <= 0 || pageSize > maxListPage {
		pageSize = maxListPage
	}
	if token == nil {
		token = blob.FirstPageToken
	}
	objs, next, err := s.bucket.ListPage(ctx, token, pageSize, &blob.ListOptions{Prefix: prefix})
	if err != nil {
		return nil, nil, mark(err)
	}
	out := make([]ObjectInfo, 0, len(objs))
	for _, o := range objs {
		if o.IsDir {
			continue
		}
		out = append(out, ObjectInfo{Key: o.Key, Size: o.Size, ModTime: o.ModTime})
	}
	return out, next, nil
}

// ObjectIterator walks a listing one object at a time, fetching pages as it
// goes (memory stays bounded by one page).
type ObjectIterator struct{ it *blob.ListIterator }

// Next returns the next object, or io.EOF after the last.
func (it *ObjectIterator) Next(ctx context.Context) (*ObjectInfo, error) {
	for {
		o, err := it.it.Next(ctx)
		if err != nil {
			if err == io.EOF {
				return nil, io.EOF
			}
			return nil, mark(err)
		}
		if o.IsDir {
			continue
		}
		return &ObjectInfo{Key: o.Key, Size: o.Size, ModTime: o.ModTime}, nil
	}
}

// List lists the objects whose keys start with prefix, in key order.
func (s *Store) List(prefix string) *ObjectIterator {
	return &ObjectIterator{it: s.bucket.List(&blob.ListOptions{Prefix: prefix})}
}

// Delete removes the object at key.
func (s *Store) Delete(ctx context.Context, key string) error {
	return mark(s.bucket.Delete(ctx, key))
}

// WriteOptions are the options of Write and Create.
type WriteOptions struct {
	ContentType string
	Metadata    map[string]string
	// IfNotExist refuses to overwrite: the write fails with ErrExists.
	IfNotExist bool
	// PartSize is the multipart part size (0: the backend's default; see
	// PartSize for choosing one).
	PartSize int64
	// Concurrency is the number of parts in flight (0: the backend's
	// default).
	Concurrency int
	// Tee, for NewWriter, sees every byte the backend takes, in the
	// upload's goroutine, so that hashing and counting overlap with the
	// caller's work. Its Write must not fail.
	Tee io.Writer
}

func (o WriteOptions) blob() *blob.WriterOptions {
	return &blob.WriterOptions{ContentType: o.ContentType, Metadata: o.Metadata, IfNotExist: o.IfNotExist,
		BufferSize: int(o.PartSize), MaxConcurrency: o.Concurrency}
}

// Write stores r at key, all or nothing: a failed or cancelled write, or
// one whose reader fails, leaves no object (see NewWriter to write a
// stream instead).
func (s *Store) Write(ctx context.Context, key string, r io.Reader, opts WriteOptions) error {
	return mark(s.upload(ctx, key, r, opts.blob()))
}

// WriteAll stores data at key in one write, all or nothing, through the
// backend's upload (never the driver's WriteAll: azureblob's Write path
// panics in Close after a refused conditional write, storagetest ObjectDoor
// on Azurite). Unlike Write it does not report key to a run's reservation.
func (s *Store) WriteAll(ctx context.Context, key string, data []byte, opts WriteOptions) error {
	if opts.ContentType == "" {
		opts.ContentType = "application/octet-stream" // Upload requires one
	}
	return mark(s.be.upload(ctx, key, bytes.NewReader(data), opts.blob()))
}

// ReadAll reads the object at key, at most limit bytes: a larger object is
// an error (the bucket is untrusted).
func (s *Store) ReadAll(ctx context.Context, key string, limit int64) ([]byte, error) {
	r, err := s.NewReader(ctx, key)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, io.LimitReader(r, limit+1)); err != nil {
		return nil, err
	}
	if int64(buf.Len()) > limit {
		return nil, errors.New("object " + key + " is larger than expected")
	}
	return buf.Bytes(), nil
}
