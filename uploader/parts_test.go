package uploader

import (
	"math"
	"testing"

	"github.com/pgcloudbackup/pgcloudbackup/storage"
)

const (
	gb = 1_000_000_000
	tb = 1_000 * gb
)

// uploaderFor returns an Uploader for a store with limits l; part sizing
// never touches the bucket.
func uploaderFor(l storage.Limits, partSize int64) *Uploader {
	return New(&storage.Store{Limits: l}, Options{PartSize: partSize})
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
		u := uploaderFor(tc.limits, tc.explicit)
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
