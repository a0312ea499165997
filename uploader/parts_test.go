package uploader

import (
	"math"
	"testing"

	"gocloud.dev/blob/memblob"

	"github.com/pgcloudbackup/pgcloudbackup/storage"
)

const (
	gb = 1_000_000_000
	tb = 1_000 * gb
)

// uploaderFor returns an Uploader for a store of scheme's backend with
// limits l; part sizing never touches the bucket.
func uploaderFor(scheme string, l storage.Limits, o Options) *Uploader {
	s := storage.NewStore(memblob.OpenBucket(nil), scheme)
	s.Limits = l
	return New(s, o)
}

// schemeOf names the backend of the limits the tables use.
func schemeOf(l storage.Limits) string {
	for _, s := range []string{"s3", "azblob", "gs", "file"} {
		if storage.LimitsFor(s) == l {
			return s
		}
	}
	return "mem"
}

// TestPartSizeTable pins the sizes for the cases the design names; the
// arithmetic behind each is in its comment.
func TestPartSizeTable(t *testing.T) {
	s3 := storage.LimitsFor("s3")     // 10,000 parts of 5 MiB .. 5 GiB
	az := storage.LimitsFor("azblob") // 50,000 parts of 1 MiB .. 4000 MiB
	for _, tc := range []struct {
		name     string
		limits   storage.Limits
		explicit int64
		hint     int64
		part     int64
		maxRaw   int64
	}{
		// Unknown size: the default part; 10,000 × 5 MiB / 1.1 ≈ 44 GiB.
		{"s3 unknown", s3, 0, 0, 5 * mib, 5 * mib * 10000 / 11 * 10},
		// 1 GB × 1.1 / 10,000 = 110 kB: far below the 5 MiB default.
		{"s3 1GB", s3, 0, 1 * gb, 5 * mib, 5 * mib * 10000 / 11 * 10},
		// 100 GB × 1.1 / 10,000 = 11,000,000 B = 10.49 MiB -> 11 MiB.
		{"s3 100GB", s3, 0, 100 * gb, 11 * mib, 11 * mib * 10000 / 11 * 10},
		// 1 TB × 1.1 / 10,000 = 104.9 MiB: capped at 64 MiB, so one object
		// takes 64 MiB × 10,000 / 1.1 ≈ 610 GB and the caller splits.
		{"s3 1TB", s3, 0, 1 * tb, 64 * mib, 64 * mib * 10000 / 11 * 10},
		// An explicit size wins whatever the hint.
		{"s3 explicit 16MiB", s3, 16 * mib, 1 * gb, 16 * mib, 16 * mib * 10000 / 11 * 10},
		{"s3 explicit 5MiB", s3, 5 * mib, 1 * tb, 5 * mib, 5 * mib * 10000 / 11 * 10},
		// Azure: 1 TB × 1.1 / 50,000 = 22,000,000 B = 20.98 MiB -> 21 MiB.
		{"azure 1TB", az, 0, 1 * tb, 21 * mib, 21 * mib * 50000 / 11 * 10},
		// Backends without a part count never make the caller split.
		{"file 1TB", storage.LimitsFor("file"), 0, 1 * tb, 5 * mib, math.MaxInt64},
		{"gs 1TB", storage.LimitsFor("gs"), 0, 1 * tb, 5 * mib, math.MaxInt64},
		{"mem unknown", storage.LimitsFor("mem"), 0, 0, 5 * mib, math.MaxInt64},
	} {
		u := uploaderFor(schemeOf(tc.limits), tc.limits, Options{PartSize: tc.explicit})
		if err := u.Validate(); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := u.PartSize(tc.hint); got != tc.part {
			t.Errorf("%s: PartSize(%d) = %d (%.2f MiB), want %d", tc.name, tc.hint, got, float64(got)/mib, tc.part)
		}
		if got := u.MaxRawBytes(tc.hint); got != tc.maxRaw {
			t.Errorf("%s: MaxRawBytes(%d) = %d, want %d", tc.name, tc.hint, got, tc.maxRaw)
		}
	}
}

// TestPartSizeHugeArchive: with the part budget the command line sets (the
// pool's share of one part: 5 MiB at the defaults), a huge archive keeps
// the default part size, so its parts fit the pool (it used to get 64 MiB
// parts, past the 15 MiB pool, through the transfer manager's own
// buffers), and the engine splits it into volumes sooner instead. Azure
// shares the budget between its blocks in flight. The decisions only: no
// terabyte is uploaded.
func TestPartSizeHugeArchive(t *testing.T) {
	const share = 5 * mib // partShare(15 MiB, 2 jobs, 2 in flight)
	for _, tc := range []struct {
		scheme   string
		hint     int64
		part     int64
		inFlight int
		volumes  int64 // volumes of hint raw bytes (0: one, no part limit)
	}{
		// 50 GB > 5 MiB × 10,000 / 1.1 = 47.66 GB: two volumes.
		{"s3", 50 * gb, 5 * mib, 2, 2},
		// 1 TB / 47.66 GB: 21 volumes of 5 MiB parts.
		{"s3", 1 * tb, 5 * mib, 2, 21},
		// 10 TB: still 5 MiB parts (it was 64), 210 volumes.
		{"s3", 10 * tb, 5 * mib, 2, 210},
		// 2.5 MiB × 50,000 / 1.1 = 119 GB a volume.
		{"azblob", 1 * tb, 5 * mib / 2, 2, 9},
		{"gs", 1 * tb, 5 * mib, 2, 0},
	} {
		l := storage.LimitsFor(tc.scheme)
		u := uploaderFor(tc.scheme, l, Options{Concurrency: 2, PartBudget: share})
		if err := u.Validate(); err != nil {
			t.Fatal(err)
		}
		part, inFlight := u.plan(tc.hint)
		if part != tc.part || inFlight != tc.inFlight {
			t.Errorf("%s %d GB: %d bytes × %d in flight, want %d × %d", tc.scheme, tc.hint/gb, part, inFlight, tc.part, tc.inFlight)
		}
		if part != u.PartSize(tc.hint) {
			t.Errorf("%s: PartSize disagrees with what Open uses", tc.scheme)
		}
		held := part
		if tc.scheme == "azblob" {
			held *= int64(inFlight)
		}
		if held > share {
			t.Errorf("%s %d GB: one object holds %d bytes of parts, above its share of %d", tc.scheme, tc.hint/gb, held, share)
		}
		raw := u.MaxRawBytes(tc.hint)
		if tc.volumes == 0 {
			if raw != math.MaxInt64 {
				t.Errorf("%s: MaxRawBytes = %d, want no limit", tc.scheme, raw)
			}
			continue
		}
		if n := (tc.hint + raw - 1) / raw; n != tc.volumes {
			t.Errorf("%s %d GB: %d volumes of at most %d raw bytes, want %d", tc.scheme, tc.hint/gb, n, raw, tc.volumes)
		}
	}
	// Without a budget (a library caller) the old rule holds: 64 MiB.
	if got := uploaderFor("s3", storage.LimitsFor("s3"), Options{}).PartSize(1 * tb); got != 64*mib {
		t.Errorf("no budget: PartSize(1 TB) = %d, want 64 MiB", got)
	}
}
