// Package catalog is what a bucket holds: its backups with their manifests,
// "latest" and IDs resolved to one of them, and the retention decision of
// which backups to delete. Only Load and Find do I/O; the rest is pure.
package catalog

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
	"github.com/pgcloudbackup/pgcloudbackup/manifest"
	"github.com/pgcloudbackup/pgcloudbackup/storage"
)

// Latest names the newest complete backup wherever an ID is accepted.
const Latest = "latest"

// listHint tells users where to find valid IDs.
const listHint = "see the backups with 'pgcloudbackup list'"

// listAllHint also shows incomplete backups.
const listAllHint = "see the backups with 'pgcloudbackup list --all'"

// FutureSkew is how far in the future a backup's ID time may be before
// it is treated as suspect (clock skew between hosts, or a crafted ID).
const FutureSkew = 5 * time.Minute

// Status of a backup as listed.
const (
	StatusComplete   = manifest.StatusComplete // manifest.json present and readable
	StatusIncomplete = "incomplete"            // objects but no manifest.json: running, failed or being deleted
	StatusUnreadable = "unreadable"            // manifest.json present but not readable by this version
)

// Entry is one backup in the bucket.
type Entry struct {
	storage.BackupRef
	// Manifest is manifest.json, nil unless the backup is complete and
	// its manifest was read.
	Manifest *manifest.Backup
	// JSON is manifest.json as stored (nil when Manifest is nil).
	JSON []byte
	// Err says why manifest.json of a complete backup could not be used.
	Err error
}

// Usable reports whether the entry is a complete backup with a manifest
// this version reads: one that can be restored.
func (e *Entry) Usable() bool { return e.Manifest != nil }

// Status is StatusComplete, StatusIncomplete or StatusUnreadable.
func (e *Entry) Status() string {
	switch {
	case e.Usable():
		return StatusComplete
	case e.Complete:
		return StatusUnreadable
	default:
		return StatusIncomplete
	}
}

// Time is when the backup was taken: the stop time in its manifest, or for
// a backup without a usable manifest, when its newest object was written.
func (e *Entry) Time() time.Time {
	if e.Usable() {
		return e.Manifest.StopTime
	}
	return e.Modified
}

// Started is the time a backup is ordered and aged by: the time in its
// ID, which the tool took from its own clock when it reserved the ID
// (unlike the manifest's stop_time, it cannot be rewritten without
// renaming every object). An ID this tool did not make falls back to the
// manifest's stop time, then to when its newest object was written.
func (e *Entry) Started() time.Time {
	if t, _, ok := storage.ParseBackupID(e.ID); ok {
		return t
	}
	return e.Time()
}

// Catalog is the backups of one bucket, newest first.
type Catalog struct {
	// Where is the bucket, printable (for messages).
	Where   string
	Entries []Entry
	// Now is when the catalog was read: backups dated after Now +
	// FutureSkew are suspect (see InFuture).
	Now time.Time
}

// New returns a catalog of entries, sorted newest first, read now.
func New(where string, entries []Entry) *Catalog {
	c := &Catalog{Where: where, Entries: append([]Entry(nil), entries...), Now: time.Now()}
	sort.SliceStable(c.Entries, func(i, j int) bool { return newer(&c.Entries[i], &c.Entries[j]) })
	return c
}

// newer orders by start time, then by ID sequence (see storage.IDLess).
func newer(a, b *Entry) bool {
	ta, tb := a.Started(), b.Started()
	if !ta.Equal(tb) {
		return ta.After(tb)
	}
	return storage.IDLess(b.ID, a.ID)
}

// InFuture reports whether e is dated more than FutureSkew after c.Now.
// Such a backup is never "latest" nor the newest for retention: one
// skewed clock (or a crafted ID) would otherwise pin both forever.
func (c *Catalog) InFuture(e *Entry) bool {
	return e.Started().After(c.Now.Add(FutureSkew))
}

// Future returns the backups dated in the future (see InFuture), for
// callers to warn about.
func (c *Catalog) Future() []*Entry {
	var out []*Entry
	for i := range c.Entries {
		if c.InFuture(&c.Entries[i]) {
			out = append(out, &c.Entries[i])
		}
	}
	return out
}

// loadConcurrency bounds the manifest reads in flight: enough to hide
// request latency, few enough to stay polite to the store.
const loadConcurrency = 8

// Load lists the backups in store and reads the manifest of each complete
// one. A manifest that cannot be parsed marks its entry (Err) rather than
// failing the whole listing; a storage error fails it.
func Load(ctx context.Context, store *storage.Store) (*Catalog, error) {
	refs, err := store.ListBackups(ctx)
	if err != nil {
		return nil, err
	}
	entries := make([]Entry, len(refs))
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		loadErr error
	)
	sem := make(chan struct{}, loadConcurrency)
	for i, ref := range refs {
		entries[i].BackupRef = ref
		if !ref.Complete {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func(e *Entry) {
			defer wg.Done()
			defer func() { <-sem }()
			if err := readInto(ctx, store, e); err != nil {
				mu.Lock()
				if loadErr == nil {
					loadErr = err
				}
				mu.Unlock()
			}
		}(&entries[i])
	}
	wg.Wait()
	if loadErr != nil {
		return nil, loadErr
	}
	return New(store.Display, entries), nil
}

// readInto reads e's manifest.json into e. It returns only storage errors.
func readInto(ctx context.Context, store *storage.Store, e *Entry) error {
	data, err := readManifestJSON(ctx, store, e.ID)
	var tooBig *failure.Error
	if errors.As(err, &tooBig) {
		e.Err = err
		return nil
	}
	if errors.Is(err, storage.ErrNotFound) {
		// Deleted since the listing (delete removes manifest.json
		// first): what is left is incomplete.
		e.Complete = false
		return nil
	}
	if err != nil {
		return store.Classify(err, fmt.Sprintf("read %s of backup %s", storage.ManifestName, e.ID))
	}
	m, err := manifest.Unmarshal(data)
	switch {
	case err != nil:
		e.Err = err
	case m.ID != e.ID:
		// A directory copied or renamed by hand: a restore by this ID
		// would not get what the manifest describes.
		e.Err = fmt.Errorf("read %s: it describes backup %q, not %q", storage.ManifestName, m.ID, e.ID)
	default:
		e.Manifest, e.JSON = m, data
	}
	return nil
}

// readManifestJSON reads a backup's manifest.json with bounded memory: the
// bucket is untrusted input. An object over the limit is a *failure.Error;
// other errors come from the store.
func readManifestJSON(ctx context.Context, store *storage.Store, id string) ([]byte, error) {
	r, err := store.NewReader(ctx, store.BackupKey(id, storage.ManifestName))
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return manifest.ReadBounded(r, r.Size(), manifest.MaxBackupJSONSize, storage.ManifestName)
}

// Find resolves ref (an ID or "latest") in store to a complete backup with
// its manifest. For an ID it reads only that backup's manifest.
func Find(ctx context.Context, store *storage.Store, ref string) (*Entry, error) {
	if ref == Latest {
		c, err := Load(ctx, store)
		if err != nil {
			return nil, err
		}
		return c.Resolve(ref)
	}
	refs, err := store.ListBackups(ctx)
	if err != nil {
		return nil, err
	}
	// The other entries only serve the "not found" message: their
	// manifests are not read, so this catalog goes no further.
	entries := make([]Entry, len(refs))
	for i, r := range refs {
		entries[i].BackupRef = r
		if r.ID == ref && r.Complete {
			if err := readInto(ctx, store, &entries[i]); err != nil {
				return nil, err
			}
		}
	}
	return New(store.Display, entries).Resolve(ref)
}

// Resolve returns the complete backup ref names: an ID or "latest" (the
// newest complete backup). A missing, incomplete or unreadable backup is a
// Precondition error that names it and how to list the backups.
func (c *Catalog) Resolve(ref string) (*Entry, error) {
	if ref == Latest {
		if e := c.Newest(); e != nil {
			return e, nil
		}
		return nil, &failure.Error{Kind: failure.Precondition,
			Err:  fmt.Errorf("no complete backup in %s to use as %q", c.Where, Latest),
			Hint: listAllHint}
	}
	e, err := c.Lookup(ref)
	if err != nil {
		return nil, err
	}
	switch e.Status() {
	case StatusIncomplete:
		return nil, &failure.Error{Kind: failure.Precondition,
			Err:  fmt.Errorf("backup %s in %s is incomplete (no %s): it is still running, failed, or is being deleted", ref, c.Where, storage.ManifestName),
			Hint: listAllHint}
	case StatusUnreadable:
		return nil, failure.Wrap(failure.KindOf(e.Err), fmt.Errorf("backup %s: %w", ref, e.Err), failure.HintOf(e.Err))
	}
	return e, nil
}

// Lookup returns the backup with this ID, complete or not.
func (c *Catalog) Lookup(id string) (*Entry, error) {
	for i := range c.Entries {
		if c.Entries[i].ID == id {
			return &c.Entries[i], nil
		}
	}
	what := "no backup " + quoteIfOdd(id)
	if len(c.Entries) == 0 {
		what += " (the bucket holds no backups)"
	}
	return nil, &failure.Error{Kind: failure.Precondition,
		Err: fmt.Errorf("%s in %s", what, c.Where), Hint: listHint}
}

// Newest returns the newest usable complete backup not dated in the
// future (InFuture), or nil.
func (c *Catalog) Newest() *Entry {
	for i := range c.Entries {
		if e := &c.Entries[i]; e.Usable() && !c.InFuture(e) {
			return e
		}
	}
	return nil
}

// quoteIfOdd quotes an ID that is empty or holds spaces or control
// characters, so the one-line message stays readable.
func quoteIfOdd(id string) string {
	if id == "" || strings.ContainsFunc(id, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return fmt.Sprintf("%q", id)
	}
	return id
}
