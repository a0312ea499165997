package storage

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/smithy-go"
	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"

	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
)

// MarkerName is the object that reserves a backup ID. It is created with a
// conditional write before anything else of the backup (and before the
// server is touched), so two runs can never share an ID; it stays for the
// backup's life and is deleted last. On S3 it also lists the keys the run
// started uploading: MinIO lists pending multipart uploads only by exact
// key, so a crashed run's uploads are found through it.
const MarkerName = "reservation.json"

// maxMarkerSize bounds how much of a marker is read: the bucket is untrusted.
const maxMarkerSize = 1 << 20

// maxIDAttempts bounds the IDs tried for one second ("<time>", "<time>-2", …).
const maxIDAttempts = 99

// Marker is the content of MarkerName.
type Marker struct {
	ID string `json:"id"`
	// Reserved is when the run reserved the ID (its own clock).
	Reserved time.Time `json:"reserved"`
	Host     string    `json:"host,omitempty"`
	PID      int       `json:"pid,omitempty"`
	// Keys are the objects (full keys) the run started writing, S3 only.
	Keys []string `json:"keys,omitempty"`
}

var idPattern = regexp.MustCompile(`^(\d{8}T\d{6}Z)(?:-(\d{1,2}))?$`)

// ParseBackupID returns the time an ID was made at and its sequence number
// in that second (1 for "<time>", n for "<time>-n"). ok is false for an ID
// this tool did not make.
func ParseBackupID(id string) (t time.Time, seq int, ok bool) {
	m := idPattern.FindStringSubmatch(id)
	if m == nil {
		return time.Time{}, 0, false
	}
	t, err := time.Parse(idLayout, m[1])
	if err != nil {
		return time.Time{}, 0, false
	}
	seq = 1
	if m[2] != "" {
		seq, _ = strconv.Atoi(m[2])
		if seq < 2 {
			return time.Time{}, 0, false
		}
	}
	return t, seq, true
}

// Reservation is a backup ID this run holds. It records what the run
// writes under it, so that Discard removes exactly that.
type Reservation struct {
	ID     string
	store  *Store
	marker Marker

	mu       sync.Mutex
	written  []string        // keys, in the order uploads started
	seen     map[string]bool // keys in written
	released bool            // Discard ran: the marker must not come back

	stopRefresh context.CancelFunc
	refreshed   chan struct{} // closed when the refresh loop has ended
}

// DefaultRefresh is how often a reservation's marker is rewritten while
// its backup runs (Store.Refresh overrides): an incomplete backup whose
// newest object is older than that is not running. Retention's grace
// period must be longer.
const DefaultRefresh = 10 * time.Minute

// Reserve takes the first free ID for a backup started at now: the time,
// then "<time>-2", "<time>-3", … (IDs sort by time, then sequence). The
// marker is created with a conditional write (IfNotExist; on a file://
// bucket with an exclusive create, since fileblob's check is not atomic
// between processes), so exactly one of several runs gets each ID. The write is
// also the permission check: a bucket we may not write fails here, as a
// Precondition error, before anything else happens.
//
// From then on every upload (Write, NewWriter) reports its key to the
// reservation (see Reservation.Written, Discard).
func (s *Store) Reserve(ctx context.Context, now time.Time) (*Reservation, error) {
	base := NewBackupID(now)
	host, _ := os.Hostname()
	for i := 1; i <= maxIDAttempts; i++ {
		id := base
		if i > 1 {
			id = fmt.Sprintf("%s-%d", base, i)
		}
		r := &Reservation{ID: id, store: s, seen: map[string]bool{},
			marker: Marker{ID: id, Reserved: now.UTC(), Host: host, PID: os.Getpid()}}
		data, err := json.Marshal(r.marker)
		if err != nil {
			return nil, err
		}
		err = s.createOnce(ctx, s.BackupKey(id, MarkerName), data)
		if isTaken(err) {
			continue
		}
		if err != nil {
			return nil, s.Classify(err, "reserve backup ID "+id+" in "+s.Display)
		}
		s.reservation.Store(r)
		r.startRefresh(ctx)
		return r, nil
	}
	return nil, failure.New(failure.Failed, "no free backup ID in %s for %s (tried %d)", s.Display, base, maxIDAttempts)
}

// isTaken reports whether a conditional create failed because the object
// exists (AWS may also answer 409 ConditionalRequestConflict to a race).
func isTaken(err error) bool {
	if err == nil {
		return false
	}
	if gcerrors.Code(err) == gcerrors.FailedPrecondition || errors.Is(err, os.ErrExist) {
		return true
	}
	var ae smithy.APIError
	return errors.As(err, &ae) && (ae.ErrorCode() == "PreconditionFailed" || ae.ErrorCode() == "ConditionalRequestConflict")
}

// createOnce creates key with data unless it exists.
func (s *Store) createOnce(ctx context.Context, key string, data []byte) error {
	if s.fileDir != "" {
		return s.createOnceFile(key, data)
	}
	// Upload, not WriteAll: azureblob's Write path panics in Close after a
	// failed (here: refused) upload; its Upload path does not.
	return s.bucket.Upload(ctx, key, bytes.NewReader(data), &blob.WriterOptions{IfNotExist: true, ContentType: "application/json"})
}

// createOnceFile creates key's file with O_EXCL, which is atomic between
// processes (fileblob's IfNotExist checks with stat and then renames, which
// two processes can both pass). A crash between create and write leaves an
// empty marker: it still holds the ID, and readMarker treats it as holding
// no keys.
func (s *Store) createOnceFile(key string, data []byte) error {
	path := filepath.Join(s.fileDir, filepath.FromSlash(key))
	if err := os.MkdirAll(filepath.Dir(path), s.fileDirMode()); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
	}
	return err
}

func (s *Store) fileDirMode() os.FileMode {
	if s.dirMode != 0 {
		return s.dirMode
	}
	return 0o700
}

// record notes that an upload of key is about to start. Keys of this
// reservation's backup are remembered; on S3 the marker is rewritten with
// them first, so that a crash mid-upload leaves the key findable.
func (r *Reservation) record(ctx context.Context, key string) error {
	if !strings.HasPrefix(key, r.store.BackupKey(r.ID, "")) {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen[key] {
		return nil
	}
	if r.store.be.caps().RecordKeys {
		m := r.marker
		m.Keys = append(append([]string(nil), r.written...), key)
		data, err := json.Marshal(m)
		if err != nil {
			return err
		}
		if err := r.store.bucket.WriteAll(ctx, r.store.BackupKey(r.ID, MarkerName), data, &blob.WriterOptions{ContentType: "application/json"}); err != nil {
			return r.store.Classify(err, "record "+key+" in "+MarkerName)
		}
	}
	r.seen[key] = true
	r.written = append(r.written, key)
	return nil
}

// startRefresh rewrites the marker every Store.Refresh until Close or
// Discard, so that a backup that runs for hours without finishing an
// object (one huge multipart upload) still looks alive to retention.
func (r *Reservation) startRefresh(ctx context.Context) {
	every := r.store.Refresh
	if every <= 0 {
		every = DefaultRefresh
	}
	ctx, r.stopRefresh = context.WithCancel(context.WithoutCancel(ctx))
	r.refreshed = make(chan struct{})
	go func() {
		defer close(r.refreshed)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				r.refresh(ctx)
			}
		}
	}()
}

// refresh rewrites the marker unless the reservation was released.
func (r *Reservation) refresh(ctx context.Context) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.released {
		return
	}
	s := r.store
	key := s.BackupKey(r.ID, MarkerName)
	var err error
	if s.fileDir != "" {
		now := time.Now()
		err = os.Chtimes(filepath.Join(s.fileDir, filepath.FromSlash(key)), now, now)
	} else {
		m := r.marker
		if s.be.caps().RecordKeys {
			m.Keys = r.written
		}
		data, _ := json.Marshal(m)
		err = s.bucket.Upload(ctx, key, bytes.NewReader(data), &blob.WriterOptions{ContentType: "application/json"})
	}
	if err != nil && ctx.Err() == nil {
		s.logger().WarnContext(ctx, "could not refresh the backup's reservation; a retention run with a short --grace might take it for a crashed backup", "backup", r.ID, "error", err)
	}
}

// Close stops refreshing the marker: the backup is complete (or the
// caller gave up on it). The marker stays.
func (r *Reservation) Close() {
	if r.stopRefresh != nil {
		r.stopRefresh()
		<-r.refreshed
	}
}

// Written returns the keys this run started writing under its ID.
func (r *Reservation) Written() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.written...)
}

// Discard removes what this run wrote, and only that: the objects it
// uploaded (ManifestName first, should it exist), the multipart uploads of
// those keys still pending, then the marker, which releases the ID (not
// before the second the ID names is over, so that no later run reuses
// it). On a file:// bucket the emptied directory goes too. It returns how many
// objects it deleted, and an error naming what it could not remove.
func (r *Reservation) Discard(ctx context.Context) (int, error) {
	r.Close()
	s := r.store
	keys := r.Written()
	sort.SliceStable(keys, func(i, j int) bool {
		return strings.HasSuffix(keys[i], "/"+ManifestName) && !strings.HasSuffix(keys[j], "/"+ManifestName)
	})
	deleted := 0
	var errs []error
	for _, k := range keys {
		err := s.bucket.Delete(ctx, k)
		switch {
		case err == nil:
			deleted++
		case gcerrors.Code(err) != gcerrors.NotFound:
			errs = append(errs, s.Classify(err, "delete "+k))
		}
		if s.be.caps().RecordKeys {
			if _, err := s.AbortIncompleteUploads(ctx, k); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(errs) == 0 {
		// Keep the marker while anything of ours may remain: it is what
		// makes the leftovers visible and removable. And keep it until
		// the second of its ID is over: a run starting later in that
		// second would otherwise take the released ID, and one ID would
		// name two runs in logs and reports.
		hold := time.NewTimer(time.Until(r.marker.Reserved.Truncate(time.Second).Add(time.Second)))
		select {
		case <-hold.C:
		case <-ctx.Done():
			hold.Stop()
		}
		r.mu.Lock()
		r.released = true
		r.mu.Unlock()
		if err := s.deleteKey(ctx, s.BackupKey(r.ID, MarkerName)); err != nil {
			errs = append(errs, s.Classify(err, "delete "+MarkerName))
		}
		s.removeEmptyDir(r.ID)
	}
	s.reservation.CompareAndSwap(r, nil)
	return deleted, errors.Join(errs...)
}

// removeEmptyDir removes backup id's directory of a file:// bucket if it
// is empty (fileblob leaves emptied directories behind).
func (s *Store) removeEmptyDir(id string) {
	if s.fileDir == "" {
		return
	}
	_ = os.Remove(filepath.Join(s.fileDir, filepath.FromSlash(strings.TrimSuffix(s.BackupKey(id, ""), "/"))))
}

// readMarker reads backup id's marker; nil, nil when there is none. A
// marker that is too large or does not parse is an error.
func (s *Store) readMarker(ctx context.Context, id string) (*Marker, error) {
	key := s.BackupKey(id, MarkerName)
	rd, err := s.bucket.NewReader(ctx, key, nil)
	if gcerrors.Code(err) == gcerrors.NotFound {
		return nil, nil
	}
	if err != nil {
		return nil, s.Classify(err, "read "+key)
	}
	defer rd.Close()
	data, err := io.ReadAll(io.LimitReader(rd, maxMarkerSize+1))
	if err != nil {
		return nil, s.Classify(err, "read "+key)
	}
	if len(data) > maxMarkerSize {
		return nil, fmt.Errorf("read %s: larger than %d bytes", key, maxMarkerSize)
	}
	var m Marker
	if len(data) == 0 {
		return &m, nil // created, then crashed before writing (file://)
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	return &m, nil
}
