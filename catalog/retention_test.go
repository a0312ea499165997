package catalog

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
	"github.com/pgcloudbackup/pgcloudbackup/manifest"
	"github.com/pgcloudbackup/pgcloudbackup/storage"
)

var now = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

// complete is a backup whose manifest says it stopped ago before now.
func complete(id string, ago time.Duration) Entry {
	stop := now.Add(-ago)
	return Entry{
		BackupRef: storage.BackupRef{ID: id, Complete: true, Objects: 3, Bytes: 1000, Modified: stop},
		Manifest:  &manifest.Backup{ID: id, StopTime: stop},
	}
}

// incomplete is a leftover without manifest.json, last written ago.
func incomplete(id string, ago time.Duration) Entry {
	return Entry{BackupRef: storage.BackupRef{ID: id, Objects: 1, Bytes: 10, Modified: now.Add(-ago)}}
}

// unreadable has a manifest.json this version cannot use.
func unreadable(id string, ago time.Duration) Entry {
	return Entry{
		BackupRef: storage.BackupRef{ID: id, Complete: true, Objects: 3, Bytes: 1000, Modified: now.Add(-ago)},
		Err:       errors.New("format version 2 is newer than this pgcloudbackup reads"),
	}
}

func ptr[T any](v T) *T { return &v }

// outcome renders decisions as "id:delete", "id:keep" or "id:protected",
// sorted by ID, for comparison with a table.
func outcome(ds []Decision) string {
	var parts []string
	for _, d := range ds {
		o := "keep"
		switch {
		case d.Delete && d.Protected:
			o = "BOTH"
		case d.Delete:
			o = "delete"
		case d.Protected:
			o = "protected"
		}
		if d.Reason == "" {
			o += "(no reason)"
		}
		parts = append(parts, d.Entry.ID+":"+o)
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

func TestRetentionPlan(t *testing.T) {
	h, d := time.Hour, 24*time.Hour
	// c1 is the newest complete backup; r1 an incomplete one that may be
	// running; old1 a leftover of a crashed backup.
	standard := []Entry{
		complete("c1", 1*h), complete("c2", 2*d), complete("c3", 8*d), complete("c4", 15*d),
		incomplete("r1", 30*time.Minute), incomplete("old1", 3*d),
	}
	tests := []struct {
		name    string
		entries []Entry
		policy  Policy
		want    string
	}{
		{"retain 2 keeps the two newest, removes an old leftover, spares a running one",
			standard, Policy{Retain: ptr(2), Grace: d},
			"c1:keep c2:keep c3:delete c4:delete old1:delete r1:protected"},
		{"retain 1",
			standard, Policy{Retain: ptr(1), Grace: d},
			"c1:keep c2:delete c3:delete c4:delete old1:delete r1:protected"},
		{"retain more than there are",
			standard, Policy{Retain: ptr(10), Grace: d},
			"c1:keep c2:keep c3:keep c4:keep old1:delete r1:protected"},
		{"retain 0 with force deletes every complete backup, the newest too",
			standard, Policy{Retain: ptr(0), Grace: d, Force: true},
			"c1:delete c2:delete c3:delete c4:delete old1:delete r1:protected"},
		{"older than 7d",
			standard, Policy{OlderThan: ptr(7 * d), Grace: d},
			"c1:keep c2:keep c3:delete c4:delete old1:delete r1:protected"},
		{"older than 0s spares the newest complete backup",
			standard, Policy{OlderThan: ptr(time.Duration(0)), Grace: d},
			"c1:protected c2:delete c3:delete c4:delete old1:delete r1:protected"},
		{"older than 0s with force",
			standard, Policy{OlderThan: ptr(time.Duration(0)), Grace: d, Force: true},
			"c1:delete c2:delete c3:delete c4:delete old1:delete r1:protected"},
		{"older than 30d deletes nothing complete",
			standard, Policy{OlderThan: ptr(30 * d), Grace: d},
			"c1:keep c2:keep c3:keep c4:keep old1:delete r1:protected"},
		{"both rules keep what either keeps",
			standard, Policy{Retain: ptr(1), OlderThan: ptr(7 * d), Grace: d},
			"c1:keep c2:keep c3:delete c4:delete old1:delete r1:protected"},
		{"both rules, the count one keeping more",
			standard, Policy{Retain: ptr(3), OlderThan: ptr(1 * d), Grace: d},
			"c1:keep c2:keep c3:keep c4:delete old1:delete r1:protected"},
		{"grace 0 removes every incomplete backup",
			standard, Policy{Retain: ptr(4), Grace: 0},
			"c1:keep c2:keep c3:keep c4:keep old1:delete r1:delete"},
		{"a long grace spares every incomplete backup",
			standard, Policy{Retain: ptr(4), Grace: 7 * d},
			"c1:keep c2:keep c3:keep c4:keep old1:protected r1:protected"},
		{"age equal to the limit is not older",
			[]Entry{complete("a", 3*d), complete("b", 7*d), incomplete("i", d)},
			Policy{OlderThan: ptr(7 * d), Grace: d},
			"a:keep b:keep i:protected"},
		{"the newest is judged by stop time, not by ID",
			// "b" started later (larger ID) but "a" stopped last.
			[]Entry{complete("b", 2*h), complete("a", 1*h)},
			Policy{OlderThan: ptr(time.Duration(0)), Grace: d},
			"a:protected b:delete"},
		{"an unreadable manifest is never deleted, and is not the protected newest",
			[]Entry{unreadable("u", 1*h), complete("c1", 2*d), complete("c2", 9*d)},
			Policy{Retain: ptr(1), Grace: d},
			"c1:keep c2:delete u:protected"},
		{"protection goes to the newest usable backup",
			[]Entry{unreadable("u", 1*h), incomplete("i", 2*d), complete("c1", 3*d), complete("c2", 9*d)},
			Policy{OlderThan: ptr(time.Duration(0)), Grace: d},
			"c1:protected c2:delete i:delete u:protected"},
		{"only leftovers",
			[]Entry{incomplete("i1", 2*d), incomplete("i2", h)},
			Policy{Retain: ptr(1), Grace: d},
			"i1:delete i2:protected"},
		{"empty bucket", nil, Policy{Retain: ptr(1), Grace: d}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.policy.Now = now
			c := New("mem://test", tt.entries)
			ds, err := c.Plan(tt.policy)
			if err != nil {
				t.Fatal(err)
			}
			if len(ds) != len(tt.entries) {
				t.Fatalf("%d decisions for %d backups", len(ds), len(tt.entries))
			}
			if got := outcome(ds); got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
			for i := 1; i < len(ds); i++ {
				if ds[i].Entry.Time().After(ds[i-1].Entry.Time()) {
					t.Errorf("decisions not newest first: %s before %s", ds[i-1].Entry.ID, ds[i].Entry.ID)
				}
			}
		})
	}
}

func TestRetentionReasons(t *testing.T) {
	c := New("mem://test", []Entry{complete("c1", time.Hour), complete("c2", 10*24*time.Hour), incomplete("i", 3*24*time.Hour)})
	checkPlanReasons(t, c, Policy{OlderThan: ptr(0 * time.Second), Grace: 24 * time.Hour, Now: now}, map[string]string{
		"c1": "newest complete backup, kept without --force",
		"c2": "10d old, older than 0s",
		"i":  "incomplete, last written 3d ago; grace 1d",
	})

	checkPlanReasons(t, c, Policy{Retain: ptr(1), Grace: 5 * 24 * time.Hour, Now: now}, map[string]string{
		"c1": "the newest complete backup",
		"c2": "not the newest complete backup",
		"i":  "incomplete, last written 3d ago: it may still be running; grace 5d",
	})
	checkPlanReasons(t, c, Policy{Retain: ptr(2), OlderThan: ptr(48 * time.Hour), Now: now}, map[string]string{
		"c1": "one of the 2 newest complete backups",
		"c2": "one of the 2 newest complete backups",
		"i":  "incomplete, last written 3d ago; grace 0s",
	})
	c = New("mem://test", []Entry{complete("c1", time.Hour), complete("c2", 36*time.Hour), complete("c3", 10*24*time.Hour)})
	checkPlanReasons(t, c, Policy{Retain: ptr(1), OlderThan: ptr(48 * time.Hour), Now: now}, map[string]string{
		"c1": "the newest complete backup",
		"c2": "1d12h old, not older than 2d",
		"c3": "not the newest complete backup, and 10d old, older than 2d",
	})
}

func checkPlanReasons(t *testing.T, c *Catalog, p Policy, want map[string]string) {
	t.Helper()
	ds, err := c.Plan(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		if d.Reason != want[d.Entry.ID] {
			t.Errorf("%s: reason %q, want %q", d.Entry.ID, d.Reason, want[d.Entry.ID])
		}
	}
}

func TestRetentionPolicyErrors(t *testing.T) {
	c := New("mem://test", []Entry{complete("c1", time.Hour)})
	for name, p := range map[string]Policy{
		"no rule":            {Grace: time.Hour},
		"retain 0":           {Retain: ptr(0)},
		"negative retain":    {Retain: ptr(-1), Force: true},
		"negative age":       {OlderThan: ptr(-time.Hour)},
		"negative grace":     {Retain: ptr(1), Grace: -time.Hour},
		"retain 0, no force": {Retain: ptr(0), OlderThan: ptr(time.Hour)},
	} {
		p.Now = now
		if _, err := c.Plan(p); failure.KindOf(err) != failure.Usage {
			t.Errorf("%s: error %v, want a usage error", name, err)
		}
	}
}

func TestPlanDelete(t *testing.T) {
	d := 24 * time.Hour
	c := New("file:///bucket", []Entry{
		incomplete("running", time.Minute), complete("new", time.Hour), complete("old", 5*d),
		incomplete("crashed", 3*d), unreadable("future", 2*d),
	})
	tests := []struct {
		id    string
		force bool
		kind  failure.Kind // of the error; -1: none
		msg   string       // in the error
	}{
		{"old", false, -1, ""},
		{"crashed", false, -1, ""},
		{"future", false, -1, ""},
		{"new", false, failure.Precondition, "backup new is the newest complete backup in file:///bucket"},
		{"new", true, -1, ""},
		{"running", false, failure.Precondition, "backup running is incomplete, last written 1m ago: it may still be running"},
		{"running", true, -1, ""},
		{"nope", false, failure.Precondition, "no backup nope in file:///bucket"},
		{"nope", true, failure.Precondition, "no backup nope in file:///bucket"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s force=%v", tt.id, tt.force), func(t *testing.T) {
			dec, err := c.PlanDelete(tt.id, Policy{Grace: d, Force: tt.force, Now: now})
			if tt.kind < 0 {
				if err != nil || !dec.Delete || dec.Entry.ID != tt.id {
					t.Fatalf("got %+v, %v; want %s deleted", dec, err, tt.id)
				}
				return
			}
			if failure.KindOf(err) != tt.kind || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("error %v (%v), want %v containing %q", err, failure.KindOf(err), tt.kind, tt.msg)
			}
			if failure.HintOf(err) == "" {
				t.Errorf("error %q has no hint", err)
			}
		})
	}
}

func TestResolve(t *testing.T) {
	d := 24 * time.Hour
	c := New("file:///bucket", []Entry{
		unreadable("future", time.Minute), incomplete("running", time.Minute),
		complete("b", 2*d), complete("a", d), complete("z", 9*d),
	})
	if e, err := c.Resolve(Latest); err != nil || e.ID != "a" {
		t.Fatalf("latest: %v %v, want a (newest stop time among usable backups)", e, err)
	}
	if e, err := c.Resolve("z"); err != nil || e.ID != "z" || e.Manifest == nil {
		t.Fatalf("z: %v %v", e, err)
	}
	for _, tt := range []struct{ ref, msg, hint string }{
		{"nope", "no backup nope in file:///bucket", "pgcloudbackup list"},
		{"running", "backup running in file:///bucket is incomplete", "pgcloudbackup list"},
		{"future", "backup future: format version 2", ""}, // "": no hint at all
	} {
		_, err := c.Resolve(tt.ref)
		hint := failure.HintOf(err)
		hintOK := strings.Contains(hint, tt.hint) && (tt.hint != "" || hint == "")
		if err == nil || !strings.Contains(err.Error(), tt.msg) || !hintOK {
			t.Errorf("%s: error %v (hint %q), want %q (hint with %q)", tt.ref, err, failure.HintOf(err), tt.msg, tt.hint)
		}
	}
	for _, ref := range []string{"nope", "running"} {
		if _, err := c.Resolve(ref); failure.KindOf(err) != failure.Precondition {
			t.Errorf("%s: kind %v, want precondition", ref, failure.KindOf(err))
		}
	}
	empty := New("file:///empty", nil)
	_, err := empty.Resolve(Latest)
	if failure.KindOf(err) != failure.Precondition || !strings.Contains(err.Error(), `no complete backup in file:///empty to use as "latest"`) ||
		!strings.Contains(failure.HintOf(err), "pgcloudbackup list") {
		t.Errorf("latest in an empty bucket: %v (hint %q)", err, failure.HintOf(err))
	}
	_, err = empty.Resolve("20261124T000000Z")
	if !strings.Contains(fmt.Sprint(err), "no backup 20261124T000000Z (the bucket holds no backups) in file:///empty") {
		t.Errorf("ID in an empty bucket: %v", err)
	}
}

// tool is a complete backup with an ID this tool makes, started ago before
// now; its manifest's stop time says stopAgo (it may lie).
func tool(ago, stopAgo time.Duration, seq int) Entry {
	id := storage.NewBackupID(now.Add(-ago))
	if seq > 1 {
		id = fmt.Sprintf("%s-%d", id, seq)
	}
	e := complete(id, stopAgo)
	return e
}

// TestFutureDatedBackups: a backup whose ID is in the future (a skewed
// clock on another host sharing the prefix, or a crafted directory) is not
// "latest", is not the newest retention protects, does not count toward
// --retain, and is kept with a reason saying so; the ordering follows the
// IDs, whatever stop_time the manifests claim.
func TestFutureDatedBackups(t *testing.T) {
	h, d := time.Hour, 24*time.Hour
	future := tool(-30*d, -30*d, 1) // 30 days ahead, manifest too
	recent := tool(1*h, 50*d, 1)    // manifest claims an old stop time
	older := tool(2*d, 2*d, 1)
	oldest := tool(9*d, -100*d, 1) // manifest claims a future stop time
	c := New("mem://", []Entry{oldest, future, recent, older})
	c.Now = now
	var order []string
	for _, e := range c.Entries {
		order = append(order, e.ID)
	}
	if want := []string{future.ID, recent.ID, older.ID, oldest.ID}; fmt.Sprint(order) != fmt.Sprint(want) {
		t.Errorf("order %v, want by ID time %v", order, want)
	}
	if got := c.Future(); len(got) != 1 || got[0].ID != future.ID {
		t.Errorf("Future() = %v, want only %s", got, future.ID)
	}
	if e, err := c.Resolve(Latest); err != nil || e.ID != recent.ID {
		t.Errorf("latest = %v, %v; want %s, not the future-dated one", e, err, recent.ID)
	}
	ds, err := c.Plan(Policy{Retain: ptr(1), Grace: d, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Decision{}
	for _, dd := range ds {
		got[dd.Entry.ID] = dd
	}
	if dd := got[future.ID]; dd.Delete || !dd.Protected || !strings.Contains(dd.Reason, "future") {
		t.Errorf("future-dated: %+v, want kept, protected, reason naming the future", dd)
	}
	if got[recent.ID].Delete || !got[older.ID].Delete || !got[oldest.ID].Delete {
		t.Errorf("retain 1: %s", outcome(ds))
	}
	// --older-than ages by the ID: the oldest's future stop_time does
	// not shield it, the recent one's old stop_time does not doom it.
	ds, err = c.Plan(Policy{OlderThan: ptr(7 * d), Grace: d, Now: now, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("%s:protected %s:keep %s:keep %s:delete", future.ID, recent.ID, older.ID, oldest.ID)
	if parts := strings.Fields(want); outcome(ds) != strings.Join(sortStrings(parts), " ") {
		t.Errorf("older than 7d: %s, want %s", outcome(ds), want)
	}
}

func sortStrings(s []string) []string { sort.Strings(s); return s }

// TestDeleteLatest: "latest" names the newest complete backup for delete
// as for show and restore, under the same protection.
func TestDeleteLatest(t *testing.T) {
	h := time.Hour
	c := New("mem://", []Entry{tool(2*h, 2*h, 1), tool(1*h, 1*h, 1), tool(1*h, 1*h, 2)})
	c.Now = now
	newest := storage.NewBackupID(now.Add(-h)) + "-2"
	_, err := c.PlanDelete(Latest, Policy{Now: now})
	if failure.KindOf(err) != failure.Precondition || !strings.Contains(err.Error(), newest) || !strings.Contains(failure.HintOf(err), "--force") {
		t.Errorf("delete latest without --force: %v, want refused naming %s", err, newest)
	}
	d, err := c.PlanDelete(Latest, Policy{Now: now, Force: true})
	if err != nil || d.Entry.ID != newest || !d.Delete {
		t.Errorf("delete latest --force = %+v, %v; want %s", d, err, newest)
	}
	if _, err := New("mem://", nil).PlanDelete(Latest, Policy{Now: now, Force: true}); failure.KindOf(err) != failure.Precondition {
		t.Errorf("delete latest in an empty bucket: %v, want a precondition", err)
	}
}
