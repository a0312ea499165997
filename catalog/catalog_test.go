package catalog

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
	"github.com/pgcloudbackup/pgcloudbackup/internal/pg/wal"
	"github.com/pgcloudbackup/pgcloudbackup/manifest"
	"github.com/pgcloudbackup/pgcloudbackup/storage"
)

// sampleManifest is a valid manifest.json for backup id that stopped at stop.
func sampleManifest(id string, stop time.Time) *manifest.Backup {
	return &manifest.Backup{
		ID: id, Label: "label " + id, Status: manifest.StatusComplete, ToolVersion: "test",
		PGVersion: "16.4", PGVersionNum: 160004, SystemIdentifier: "7312345678901234567",
		Timeline: 1, StartLSN: 0x2000028, StopLSN: 0x2000100,
		StartTime: stop.Add(-time.Minute), StopTime: stop, Compression: "zstd",
		Tablespaces: []manifest.Tablespace{{Name: "base", Location: "/data", Size: 1000, Files: 3,
			Objects: []manifest.Object{{Key: "base.00001.tar.zst", Size: 100, RawSize: 1000, SHA256: "00"}}}},
		BackupManifest: manifest.Object{Key: storage.PGManifestName, Size: 10},
	}
}

func put(t *testing.T, s *storage.Store, id, name string, data []byte) {
	t.Helper()
	if err := s.WriteAll(context.Background(), s.BackupKey(id, name), data, storage.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
}

func putManifest(t *testing.T, s *storage.Store, m *manifest.Backup) []byte {
	t.Helper()
	data, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	put(t, s, m.ID, "base.00001.tar.zst", []byte("archive"))
	put(t, s, m.ID, storage.ManifestName, data)
	return data
}

func memStore(t *testing.T, url string) *storage.Store {
	t.Helper()
	s, err := storage.Open(context.Background(), url, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestLoad(t *testing.T) {
	ctx := context.Background()
	s := memStore(t, "mem://test/some/prefix")
	t0 := time.Date(2026, 11, 20, 3, 0, 0, 0, time.UTC)
	// "b" started after "a" (its ID sorts later) but stopped before it.
	a := putManifest(t, s, sampleManifest("20261120T020000Z", t0.Add(2*time.Hour)))
	b := putManifest(t, s, sampleManifest("20261120T030000Z", t0.Add(time.Hour)))
	putManifest(t, s, sampleManifest("20261101T000000Z", t0.Add(-19*24*time.Hour)))
	put(t, s, "20261121T000000Z", "base.00001.tar.zst", []byte("still running"))
	put(t, s, "20261121T000000Z", "16384.00001.tar.zst", []byte("still"))
	put(t, s, "corrupt", storage.ManifestName, []byte("{not json"))
	renamed, err := sampleManifest("original", t0).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	put(t, s, "renamed", storage.ManifestName, renamed)
	future := bytes.Replace(a, []byte(`"format_version": 1`), []byte(`"format_version": 2`), 1)
	put(t, s, "future", storage.ManifestName, future)

	c, err := Load(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if c.Where != s.Display {
		t.Errorf("Where %q, want %q", c.Where, s.Display)
	}
	status := map[string]string{}
	var order []string
	for _, e := range c.Entries {
		status[e.ID] = e.Status()
		order = append(order, e.ID)
	}
	want := map[string]string{
		"20261120T020000Z": StatusComplete, "20261120T030000Z": StatusComplete, "20261101T000000Z": StatusComplete,
		"20261121T000000Z": StatusIncomplete, "corrupt": StatusUnreadable, "renamed": StatusUnreadable, "future": StatusUnreadable,
	}
	if len(status) != len(want) {
		t.Fatalf("entries %v, want %v", status, want)
	}
	for id, st := range want {
		if status[id] != st {
			t.Errorf("%s: status %q, want %q", id, status[id], st)
		}
	}
	for i := 1; i < len(c.Entries); i++ {
		if c.Entries[i].Started().After(c.Entries[i-1].Started()) {
			t.Errorf("not newest first: %v", order)
		}
	}
	// Newest by the time in the ID (the tool's clock when it reserved
	// the ID), not by the manifest's stop_time.
	if n := c.Newest(); n == nil || n.ID != "20261120T030000Z" || !bytes.Equal(n.JSON, b) {
		t.Errorf("newest %+v, want 20261120T030000Z (started last) with its manifest.json as stored", n)
	}
	e, _ := c.Lookup("20261120T030000Z")
	if e.Manifest.StopTime != t0.Add(time.Hour) || !bytes.Equal(e.JSON, b) || e.Manifest.Label != "label 20261120T030000Z" {
		t.Errorf("manifest of b read wrong: %+v", e.Manifest)
	}
	if e.Objects != 2 || e.Bytes != int64(len("archive")+len(b)) {
		t.Errorf("b: %d objects %d bytes", e.Objects, e.Bytes)
	}
	inc, _ := c.Lookup("20261121T000000Z")
	if inc.Objects != 2 || inc.Bytes != int64(len("still running")+len("still")) || inc.Manifest != nil {
		t.Errorf("incomplete backup: %+v", inc)
	}
	for id, msg := range map[string]string{
		"corrupt": "not valid JSON", "renamed": `describes backup "original", not "renamed"`, "future": "format version 2 is newer",
	} {
		e, _ := c.Lookup(id)
		if e.Err == nil || !strings.Contains(e.Err.Error(), msg) {
			t.Errorf("%s: error %v, want %q", id, e.Err, msg)
		}
	}
	if e, _ := c.Lookup("future"); failure.KindOf(e.Err) != failure.Precondition || !strings.Contains(failure.HintOf(e.Err), "upgrade") {
		t.Errorf("newer format: %v (hint %q), want a precondition asking for an upgrade", e.Err, failure.HintOf(e.Err))
	}

	// Find: by ID reads one manifest; latest the newest; the rest fail.
	if e, err := Find(ctx, s, Latest); err != nil || e.ID != "20261120T030000Z" {
		t.Errorf("Find(latest) = %v, %v", e, err)
	}
	if _, err := Find(ctx, s, "20261121T000000Z"); failure.HintOf(err) != "see the backups with 'pgcloudbackup list --all'" {
		t.Errorf("Find(incomplete) hint %q, want the list --all hint with --all inside the quotes", failure.HintOf(err))
	}
	if e, err := Find(ctx, s, "20261101T000000Z"); err != nil || e.Manifest.ID != "20261101T000000Z" || e.Manifest.StartLSN != wal.LSN(0x2000028) {
		t.Errorf("Find(20261101T000000Z) = %+v, %v", e, err)
	}
	for ref, msg := range map[string]string{
		"20261121T000000Z": "is incomplete", "nope": "no backup nope in mem://test/some/prefix/", "future": "format version 2",
	} {
		if _, err := Find(ctx, s, ref); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("Find(%s): %v, want %q", ref, err, msg)
		}
	}
}

func TestLoadEmpty(t *testing.T) {
	c, err := Load(context.Background(), memStore(t, "mem://"))
	if err != nil || len(c.Entries) != 0 || c.Newest() != nil {
		t.Fatalf("empty bucket: %+v, %v", c, err)
	}
}

// More backups than manifest reads in flight: every one is read.
func TestLoadMany(t *testing.T) {
	s := memStore(t, "mem://")
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const n = 3*loadConcurrency + 1
	for i := 0; i < n; i++ {
		putManifest(t, s, sampleManifest(storage.NewBackupID(t0.Add(time.Duration(i)*time.Hour)), t0.Add(time.Duration(i)*time.Hour+time.Minute)))
	}
	c, err := Load(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Entries) != n {
		t.Fatalf("%d entries, want %d", len(c.Entries), n)
	}
	for i, e := range c.Entries {
		if want := storage.NewBackupID(t0.Add(time.Duration(n-1-i) * time.Hour)); !e.Usable() || e.ID != want || e.Manifest.ID != want {
			t.Errorf("entry %d: %s (%s), want %s complete", i, e.ID, e.Status(), want)
		}
	}
}
