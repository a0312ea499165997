package storage

import "testing"

const tb = 1 << 40

// TestPartSizeTable pins PartSize and MaxRawBytes, pure functions of the
// limits and the size hint, for the cases the design names.
func TestPartSizeTable(t *testing.T) {
	s3, az := LimitsFor("s3"), LimitsFor("azblob")
	for _, tc := range []struct {
		name   string
		l      Limits
		hint   int64
		part   int64
		maxRaw int64
	}{
		{"s3 unknown", s3, 0, 5 * mib, 5 * mib * 10000 / 11 * 10},
		// 100 GB + 10% over 10,000 parts needs 11 MiB parts.
		{"s3 100GB", s3, 100e9, 11 * mib, 11 * mib * 10000 / 11 * 10},
		// 1 TB would need 106 MiB parts: capped at 64 MiB, split by the caller.
		{"s3 1TB", s3, 1e12, 64 * mib, 64 * mib * 10000 / 11 * 10},
		{"azure 1TB", az, 1e12, 21 * mib, 21 * mib * 50000 / 11 * 10},
		{"gs no part count", LimitsFor("gs"), 1e12, 5 * mib, 1<<63 - 1},
		{"file", LimitsFor("file"), 1e12, 5 * mib, 1<<63 - 1},
		// A backend whose minimum is above the automatic cap.
		{"big minimum", Limits{MaxParts: 100, MinPartSize: 128 * mib, MaxPartSize: 1 << 30}, 1e12, 128 * mib, 128 * mib * 100 / 11 * 10},
		// A lowered part count (--max-parts-per-object) and a small maximum.
		{"small max", Limits{MaxParts: 4, MinPartSize: 5 * mib, MaxPartSize: 5 * mib}, 1e9, 5 * mib, 5 * mib * 4 / 11 * 10},
	} {
		ps := PartSize(tc.l, tc.hint)
		if ps != tc.part {
			t.Errorf("%s: PartSize = %d MiB, want %d MiB", tc.name, ps/mib, tc.part/mib)
		}
		if got := MaxRawBytes(tc.l, ps); got != tc.maxRaw {
			t.Errorf("%s: MaxRawBytes = %d, want %d", tc.name, got, tc.maxRaw)
		}
	}
}

// TestPartSizeProperties checks the rule itself over a sweep of hints: the
// chosen size is legal, minimal, and an object cut at MaxRawBytes fits in
// the part limit even when compression expands it by 10%.
func TestPartSizeProperties(t *testing.T) {
	for _, scheme := range []string{"s3", "azblob"} {
		l := LimitsFor(scheme)
		parts := int64(l.MaxParts)
		floor := max(int64(DefaultPartSize), l.MinPartSize)
		for hint := int64(1); hint < 20*tb; hint = hint*5/4 + 1 {
			ps := PartSize(l, hint)
			raw := MaxRawBytes(l, ps)
			switch {
			case ps%mib != 0:
				t.Fatalf("%s %d: part size %d is not whole MiB", scheme, hint, ps)
			case ps < floor || ps < l.MinPartSize:
				t.Fatalf("%s %d: part size %d below the floor %d", scheme, hint, ps, floor)
			case ps > MaxAutoPartSize || ps > l.MaxPartSize:
				t.Fatalf("%s %d: part size %d above the cap", scheme, hint, ps)
			}
			// Worst case: every raw byte grows by 10%.
			if stored := withHeadroom(raw); ceilDiv(stored, ps) > parts {
				t.Fatalf("%s %d: %d raw bytes may need %d parts of %d", scheme, hint, raw, ceilDiv(stored, ps), ps)
			}
			if withHeadroom(hint) <= MaxAutoPartSize*parts {
				// It fits in one object: it must, and with no bigger part
				// (no more memory) than needed.
				if raw < hint {
					t.Fatalf("%s %d: fits in one object, yet MaxRawBytes = %d", scheme, hint, raw)
				}
				if ps > floor && (ps-mib)*parts >= withHeadroom(hint) {
					t.Fatalf("%s %d: part size %d MiB is bigger than needed", scheme, hint, ps/mib)
				}
			} else if raw >= hint {
				t.Fatalf("%s %d: too big for one object, yet MaxRawBytes = %d", scheme, hint, raw)
			}
		}
	}
}
