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

// TestPlanPartsTable pins PlanParts for the budget's share of one part
// (cmd/pgcloudbackup partShare; 5 MiB at the defaults) on each backend,
// huge archives included: the part size never outgrows the share, so
// memory stays flat and the volume splits sooner instead.
func TestPlanPartsTable(t *testing.T) {
	s3 := Caps{Limits: LimitsFor("s3"), PartBuffers: PooledParts}
	gs := Caps{Limits: LimitsFor("gs"), PartBuffers: OnePartPerObject}
	az := Caps{Limits: LimitsFor("azblob"), PartBuffers: PartsInFlightPerObject}
	file := Caps{Limits: LimitsFor("file")}
	const kib = 1 << 10
	for _, tc := range []struct {
		name      string
		c         Caps
		hint      int64
		explicit  int64
		conc      int
		share     int64
		part      int64
		inFlight  int
		maxRawGiB int64 // MaxRawBytes in whole GiB (-1: no limit)
	}{
		// Past ~44 GiB the part size used to grow to 64 MiB (and above the
		// pool, to the transfer manager): now 5 MiB, and the archive is
		// split every 5 MiB × 10,000 / 1.1 ≈ 44 GiB.
		{"s3 50GB", s3, 50e9, 0, 2, 5 * mib, 5 * mib, 2, 44},
		{"s3 1TB", s3, 1e12, 0, 2, 5 * mib, 5 * mib, 2, 44},
		{"s3 unknown", s3, 0, 0, 2, 5 * mib, 5 * mib, 2, 44},
		// A larger --memory gives a larger share: parts grow up to it.
		{"s3 100GB, 24 MiB share", s3, 100e9, 0, 2, 24 * mib, 11 * mib, 2, 97},
		{"s3 1TB, 24 MiB share", s3, 1e12, 0, 2, 24*mib + 100, 24 * mib, 2, 213},
		// No budget (a library caller): the old rule, up to 64 MiB.
		{"s3 1TB, no budget", s3, 1e12, 0, 2, 0, 64 * mib, 2, 568},
		{"s3 explicit", s3, 1e12, 16 * mib, 4, 16 * mib, 16 * mib, 4, 142},
		// GCS: one chunk per object, the default, within the share.
		{"gs 1TB", gs, 1e12, 0, 2, 5 * mib, 5 * mib, 2, -1},
		{"gs small share", gs, 0, 0, 2, 3*mib + 1, 3 * mib, 2, -1},
		// Azure: 2 blocks of 2.5 MiB in flight per object = one 5 MiB share.
		{"azure 1TB", az, 1e12, 0, 2, 5 * mib, 5 * mib / 2, 2, 110},
		{"azure unknown, 4 in flight", az, 0, 0, 4, 5 * mib, 5 * mib / 4 / (256 * kib) * (256 * kib), 4, 55},
		// 32 in flight would be 160 KiB blocks: 5 of 1 MiB instead.
		{"azure 32 in flight", az, 0, 0, 32, 5 * mib, 1 * mib, 5, 44},
		// An explicit block size is kept; the blocks in flight shrink to fit.
		{"azure explicit 8MiB", az, 0, 8 * mib, 4, 20 * mib, 8 * mib, 2, 355},
		{"azure explicit above share", az, 0, 8 * mib, 4, 5 * mib, 8 * mib, 1, 355},
		{"file", file, 1e12, 0, 2, 5 * mib, 5 * mib, 2, -1},
	} {
		part, inFlight := PlanParts(tc.c, tc.hint, tc.explicit, tc.conc, tc.share)
		if part != tc.part || inFlight != tc.inFlight {
			t.Errorf("%s: PlanParts = %d bytes × %d in flight, want %d × %d", tc.name, part, inFlight, tc.part, tc.inFlight)
		}
		raw := MaxRawBytes(tc.c.Limits, part)
		if want := tc.maxRawGiB; (want < 0 && raw != 1<<63-1) || (want >= 0 && raw/gib != want) {
			t.Errorf("%s: MaxRawBytes = %d (%d GiB), want %d GiB", tc.name, raw, raw/gib, want)
		}
	}
}

// TestPlanPartsFitShare checks the rule over a sweep of hints, shares and
// concurrencies on every backend: what one object holds never exceeds its
// share (so jobs + 1 objects never exceed the pool), the part is legal for
// the backend, and a volume cut at MaxRawBytes fits the part limit.
func TestPlanPartsFitShare(t *testing.T) {
	for _, c := range []Caps{
		{Limits: LimitsFor("s3"), PartBuffers: PooledParts},
		{Limits: LimitsFor("gs"), PartBuffers: OnePartPerObject},
		{Limits: LimitsFor("azblob"), PartBuffers: PartsInFlightPerObject},
	} {
		l := c.Limits
		// The budget never gives a share below one default part.
		for share := int64(DefaultPartSize); share <= 200*mib; share = share*3/2 + 12345 {
			for _, conc := range []int{1, 2, 3, 4, 8, 32} {
				for hint := int64(0); hint < 20*tb; hint = hint*4 + 1 {
					part, inFlight := PlanParts(c, hint, 0, conc, share)
					held := part // pooled and GCS: one part of the object's own
					if c.PartBuffers == PartsInFlightPerObject {
						held = part * int64(inFlight)
					}
					switch {
					case held > share:
						t.Fatalf("%v conc %d share %d hint %d: holds %d × %d = %d, above the share", c.PartBuffers, conc, share, hint, part, inFlight, held)
					case inFlight < 1 || inFlight > conc:
						t.Fatalf("%v conc %d: %d in flight", c.PartBuffers, conc, inFlight)
					case part < l.MinPartSize || (l.MaxPartSize > 0 && part > l.MaxPartSize):
						t.Fatalf("%v: part %d outside the backend's bounds", c.PartBuffers, part)
					case part%(256<<10) != 0:
						t.Fatalf("%v: part %d not a multiple of 256 KiB", c.PartBuffers, part)
					}
					if raw := MaxRawBytes(l, part); l.MaxParts > 0 && ceilDiv(withHeadroom(raw), part) > int64(l.MaxParts) {
						t.Fatalf("%v: %d raw bytes may need more than %d parts of %d", c.PartBuffers, raw, l.MaxParts, part)
					}
				}
			}
		}
	}
}

// TestPlanPartsGCSExplicitChunk: an explicit part size on GCS is rounded
// down to a multiple of 256 KiB; the client would round it up and buffer
// more than the share the budget counts.
func TestPlanPartsGCSExplicitChunk(t *testing.T) {
	gs := Caps{Limits: LimitsFor("gs"), PartBuffers: OnePartPerObject}
	for explicit, want := range map[int64]int64{5*mib + 1: 5 * mib, 5*mib - 1: 5*mib - 256<<10, 256 << 10: 256 << 10, 8 * mib: 8 * mib} {
		if got, _ := PlanParts(gs, 0, explicit, 2, explicit); got != want {
			t.Errorf("explicit %d within a share of %d: chunk %d, want %d", explicit, explicit, got, want)
		}
	}
}
