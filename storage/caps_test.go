package storage_test

import (
	"context"
	"testing"

	"gocloud.dev/blob/memblob"

	"github.com/pgcloudbackup/pgcloudbackup/storage"
)

// TestCaps pins what each backend declares: the code and the conformance
// suite branch on these, never on the scheme.
func TestCaps(t *testing.T) {
	for _, tc := range []struct {
		scheme  string
		commit  storage.CommitKind
		pending bool // PendingUploads
		record  bool // RecordKeys
		temp    bool // TempFiles
		ctype   bool // ContentType
		max     int64
	}{
		{"s3", storage.CommitMultipart, true, true, false, true, 5 << 40},
		{"azblob", storage.CommitBlockList, true, false, false, true, 50000 * 4000 << 20},
		{"gs", storage.CommitOnClose, false, false, false, true, 5 << 40},
		{"file", storage.CommitOnClose, false, false, true, false, 0},
		{"mem", storage.CommitOnClose, false, false, false, true, 0},
	} {
		// NewStore builds every backend, s3 included (it used to panic).
		s := storage.NewStore(memblob.OpenBucket(nil), tc.scheme)
		c := s.Caps()
		if c.Commit != tc.commit || c.PendingUploads != tc.pending || c.RecordKeys != tc.record ||
			c.TempFiles != tc.temp || c.ContentType != tc.ctype || c.MaxObjectSize != tc.max {
			t.Errorf("%s: Caps = %+v", tc.scheme, c)
		}
		if c.Limits != storage.LimitsFor(tc.scheme) || c.Create != storage.CreateIfNoneMatch {
			t.Errorf("%s: Limits %+v, Create %v", tc.scheme, c.Limits, c.Create)
		}
		s.Limits.MaxParts = 7 // --max-parts-per-object lowers it
		if s.Caps().Limits.MaxParts != 7 {
			t.Errorf("%s: Caps().Limits does not follow Store.Limits", tc.scheme)
		}
	}
	ctx := context.Background()
	for _, tc := range []struct {
		url   string
		ctype bool
	}{
		{"file://" + t.TempDir(), false},
		{"file://" + t.TempDir() + "?metadata=", true}, // sidecars keep the type
	} {
		s, err := storage.Open(ctx, tc.url, storage.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if c := s.Caps(); c.Create != storage.CreateExclusiveFile || c.ContentType != tc.ctype || !c.TempFiles {
			t.Errorf("%s: Caps = %+v", tc.url, c)
		}
		s.Close()
	}
}
