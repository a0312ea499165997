package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pgcloudbackup/pgcloudbackup/manifest"
	"github.com/pgcloudbackup/pgcloudbackup/storage"
)

// cliResult is what one in-process run of the command line did.
type cliResult struct {
	code           int
	stdout, stderr string
}

func runCLI(args ...string) cliResult {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return cliResult{code, out.String(), errb.String()}
}

// testBucket is a file:// bucket in a temporary directory: unlike mem://,
// it outlives one run of the command line.
type testBucket struct {
	t     *testing.T
	dir   string
	url   string
	store *storage.Store
}

func newTestBucket(t *testing.T) *testBucket {
	dir := t.TempDir()
	url := "file://" + dir
	s, err := storage.Open(context.Background(), url, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return &testBucket{t: t, dir: dir, url: url, store: s}
}

func (b *testBucket) cli(args ...string) cliResult {
	return runCLI(append(args, "--bucket", b.url)...)
}

// put writes one object of backup id, modified at mtime.
func (b *testBucket) put(id, name string, data []byte, mtime time.Time) {
	b.t.Helper()
	if err := b.store.WriteAll(context.Background(), b.store.BackupKey(id, name), data, storage.WriteOptions{}); err != nil {
		b.t.Fatal(err)
	}
	if err := os.Chtimes(filepath.Join(b.dir, "backups", id, name), mtime, mtime); err != nil {
		b.t.Fatal(err)
	}
}

// addBackup stores a complete backup that stopped at stop: an archive
// part, backup_manifest, and manifest.json (last). It returns the manifest
// and manifest.json as stored.
func (b *testBucket) addBackup(id string, stop time.Time, edit func(*manifest.Backup)) (*manifest.Backup, []byte) {
	b.t.Helper()
	part, pgm := []byte("pretend this is a compressed tar"), []byte("pretend backup_manifest")
	m := &manifest.Backup{
		ID: id, Label: "nightly " + id, Status: manifest.StatusComplete, ToolVersion: "test",
		PGVersion: "16.4", PGVersionNum: 160004, SystemIdentifier: "7312345678901234567",
		Timeline: 1, StartLSN: 0x3000028, StopLSN: 0x3000158,
		StartTime: stop.Add(-90 * time.Second), StopTime: stop,
		Compression: "zstd", ChecksumsVerified: true,
		Tablespaces: []manifest.Tablespace{{Name: "base", Location: "/var/lib/postgresql/data", Size: 23 << 20, Files: 980,
			Objects: []manifest.Object{{Key: "base.00001.tar.zst", Size: int64(len(part)), RawSize: 23 << 20, SHA256: "ab"}}}},
		BackupManifest: manifest.Object{Key: storage.PGManifestName, Size: int64(len(pgm))},
	}
	if edit != nil {
		edit(m)
	}
	data, err := m.Marshal()
	if err != nil {
		b.t.Fatal(err)
	}
	b.put(id, "base.00001.tar.zst", part, stop)
	b.put(id, storage.PGManifestName, pgm, stop)
	b.put(id, storage.ManifestName, data, stop)
	return m, data
}

// files lists the bucket's files with their sizes and times: what a
// dry run must leave exactly as it was.
func (b *testBucket) files() string {
	b.t.Helper()
	var out []string
	err := filepath.Walk(b.dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			rel, _ := filepath.Rel(b.dir, p)
			out = append(out, fmt.Sprint(rel, " ", info.Size(), " ", info.ModTime()))
		}
		return err
	})
	if err != nil {
		b.t.Fatal(err)
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

// ids returns the backup directories present in the bucket.
func (b *testBucket) ids() []string {
	b.t.Helper()
	ents, err := os.ReadDir(filepath.Join(b.dir, "backups"))
	if err != nil && !os.IsNotExist(err) {
		b.t.Fatal(err)
	}
	var ids []string
	for _, e := range ents {
		ids = append(ids, e.Name())
	}
	return ids
}

// wantOneLineError checks the rule for user-facing errors: the exit code,
// one line on stderr naming what it must.
func wantOneLineError(t *testing.T, r cliResult, code int, contains ...string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", r.code, code, r.stdout, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "pgcloudbackup: error: ") {
		t.Fatalf("want one error line, got:\n%s", r.stderr)
	}
	for _, c := range contains {
		if !strings.Contains(lines[0], c) {
			t.Errorf("error %q does not mention %q", lines[0], c)
		}
	}
}

// seedCatalog fills a bucket with three complete backups, one leftover of a
// crashed backup and one that is running.
func seedCatalog(t *testing.T, now time.Time) *testBucket {
	b := newTestBucket(t)
	// Taken with --no-wal from a server that did not archive: nothing can
	// restore it.
	b.addBackup("20261101T020000Z", now.Add(-23*24*time.Hour), func(m *manifest.Backup) { m.WALArchive = manifest.WALArchiveOff })
	b.addBackup("20261120T020000Z", now.Add(-4*24*time.Hour), func(m *manifest.Backup) {
		m.WALIncluded = true
		m.WALArchive = manifest.WALArchiveOff
		m.ChecksumFailures = []manifest.ChecksumFailure{{Path: "base/5/16384", Count: 3, Blocks: []uint32{7, 8, 9}}}
		m.ChecksumFailuresTotal = 3
		m.NewPagesWithData = []manifest.ChecksumFailure{{Path: "base/5/16390", Count: 2, Blocks: []uint32{1, 2}}}
		m.NewPagesWithDataTotal = 2
	})
	b.addBackup("20261123T020000Z", now.Add(-time.Hour), nil)
	b.put("20261110T020000Z", "base.00001.tar.zst", []byte("crashed"), now.Add(-14*24*time.Hour))
	b.put("20261124T020000Z", "base.00001.tar.zst", []byte("running"), now.Add(-time.Minute))
	return b
}

// documented reports whether a JSON field name is listed in help, a
// field list such as backupJSONFields ("  name   text" lines and
// comma-separated names).
func documented(help, name string) bool {
	return regexp.MustCompile(`(\n  |, )` + regexp.QuoteMeta(name) + `[ ,\n]`).MatchString("\n" + help + "\n")
}

func TestListCommand(t *testing.T) {
	now := time.Now().UTC()
	b := seedCatalog(t, now)

	r := b.cli("list")
	if r.code != 0 {
		t.Fatalf("list: exit %d\n%s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[0], "ID ") {
		t.Fatalf("want a header, 3 backups and a note about hidden ones:\n%s", r.stdout)
	}
	for i, id := range []string{"20261123T020000Z", "20261120T020000Z", "20261101T020000Z"} {
		if !strings.HasPrefix(lines[i+1], id+" ") {
			t.Errorf("row %d is not %s (newest first):\n%s", i+1, id, r.stdout)
		}
	}
	// Aligned: every column starts at the same offset in every row.
	for _, col := range []string{"LABEL", "STOP LSN", "CHECKSUM FAILURES"} {
		at := strings.Index(lines[0], col)
		for _, l := range lines[1:4] {
			if at < 1 || len(l) <= at || l[at-1] != ' ' || l[at] == ' ' {
				t.Errorf("column %s not aligned in %q", col, l)
			}
		}
	}
	for _, want := range []string{"nightly 20261120T020000Z", "16.4", "23.0 MiB", "0/3000028", "0/3000158", "yes"} {
		if !strings.Contains(lines[2], want) {
			t.Errorf("row %q lacks %q", lines[2], want)
		}
	}
	// WAL column: "archive" for a backup without WAL (and no record of the
	// server's archiving), "NONE" when nothing can restore it.
	if !strings.Contains(lines[1], " archive ") || !strings.Contains(lines[3], " NONE ") {
		t.Errorf("WAL column wrong:\n%s", r.stdout)
	}
	if !strings.HasSuffix(lines[2], " 3 (+2 new pages with data)") || !strings.HasSuffix(lines[1], " 0") {
		t.Errorf("checksum failures column wrong:\n%s", r.stdout)
	}
	if !strings.Contains(lines[4], "2 incomplete or unreadable not shown") {
		t.Errorf("no note about hidden backups: %q", lines[4])
	}

	var list []map[string]any
	r = b.cli("list", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || r.code != 0 {
		t.Fatalf("list --json: %v\n%+v", err, r)
	}
	if len(list) != 3 || list[0]["id"] != "20261123T020000Z" || list[2]["id"] != "20261101T020000Z" {
		t.Fatalf("list --json: %v", list)
	}
	first := list[1]
	want := map[string]any{
		"status": "complete", "label": "nightly 20261120T020000Z", "pg_version": "16.4", "pg_version_num": 160004.0,
		"system_identifier": "7312345678901234567", "timeline": 1.0, "start_lsn": "0/3000028", "stop_lsn": "0/3000158",
		"wal_included": true, "wal_archive": "off", "self_contained": true, "restorable": true, "compression": "zstd", "size": float64(23 << 20), "checksums_verified": true,
		"checksum_failures": 3.0, "objects": 3.0,
	}
	for k, v := range want {
		if first[k] != v {
			t.Errorf("%s = %#v, want %#v", k, first[k], v)
		}
	}
	if l := list[2]; l["wal_included"] != false || l["self_contained"] != false || l["restorable"] != false || l["wal_archive"] != "off" {
		t.Errorf("backup nothing can restore: %v", l)
	}
	if l := list[0]; l["restorable"] != true || l["self_contained"] != false {
		t.Errorf("backup that needs an archive: %v", l)
	}
	for k := range first {
		if !documented(backupJSONFields, k) {
			t.Errorf("field %q is not documented in the help", k)
		}
	}
	for _, k := range []string{"time", "stop_time"} {
		if !jsonTime(t, first[k]).Equal(now.Add(-4 * 24 * time.Hour)) {
			t.Errorf("%s = %v, want the stop time %v", k, first[k], now.Add(-4*24*time.Hour))
		}
	}
	stored := 0.0
	for _, f := range []string{"base.00001.tar.zst", storage.PGManifestName, storage.ManifestName} {
		info, err := os.Stat(filepath.Join(b.dir, "backups", "20261120T020000Z", f))
		if err != nil {
			t.Fatal(err)
		}
		stored += float64(info.Size())
	}
	if first["stored_size"] != stored {
		t.Errorf("stored_size %v, want %v (the files in the bucket)", first["stored_size"], stored)
	}

	r = b.cli("list", "--all", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list) != 5 {
		t.Fatalf("list --all --json: %v\n%s", err, r.stdout)
	}
	crashed := list[3]
	if crashed["id"] != "20261110T020000Z" || crashed["status"] != "incomplete" || crashed["objects"] != 1.0 ||
		crashed["stored_size"] != float64(len("crashed")) ||
		!jsonTime(t, crashed["time"]).Equal(now.Add(-14*24*time.Hour)) {
		t.Errorf("crashed backup: %v", crashed)
	}
	if _, ok := crashed["label"]; ok {
		t.Errorf("an incomplete backup has manifest fields: %v", crashed)
	}
	if list[0]["id"] != "20261124T020000Z" || list[0]["status"] != "incomplete" {
		t.Errorf("running backup not first: %v", list[0])
	}

	r = b.cli("list", "--all")
	if !regexp.MustCompile(`(?m)^20261110T020000Z .*  INCOMPLETE: 1 objects, no manifest.json$`).MatchString(r.stdout) ||
		strings.Contains(r.stdout, "not shown") {
		t.Errorf("list --all:\n%s", r.stdout)
	}
}

func jsonTime(t *testing.T, v any) time.Time {
	t.Helper()
	s, _ := v.(string)
	tm, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Errorf("time %#v: %v", v, err)
	}
	return tm
}

func TestListUnreadableAndEmpty(t *testing.T) {
	b := newTestBucket(t)
	r := b.cli("list")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "no backups in file://") {
		t.Errorf("empty bucket: %+v", r)
	}
	if r = b.cli("list", "--json"); r.code != 0 || strings.TrimSpace(r.stdout) != "[]" {
		t.Errorf("empty bucket, --json: %+v", r)
	}
	_, data := b.addBackup("20261101T020000Z", time.Now(), nil)
	b.put("20261102T020000Z", storage.ManifestName,
		bytes.Replace(data, []byte(`"format_version": 1`), []byte(`"format_version": 9`), 1), time.Now())
	r = b.cli("list", "--all", "--json")
	var list []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list) != 2 {
		t.Fatalf("%v\n%+v", err, r)
	}
	u := list[0]
	if u["status"] != "unreadable" || !strings.Contains(u["error"].(string), "format version 9 is newer") ||
		!strings.Contains(u["error"].(string), "upgrade pgcloudbackup") {
		t.Errorf("unreadable backup: %v", u)
	}
	if r = b.cli("list"); strings.Contains(r.stdout, "20261102T020000Z") || !strings.Contains(r.stdout, "1 incomplete or unreadable not shown") {
		t.Errorf("list shows an unreadable backup without --all:\n%s", r.stdout)
	}
}

func TestListUsage(t *testing.T) {
	wantOneLineError(t, runCLI("list", "--bucket", "nope://x"), exitUsage, "nope")
	wantOneLineError(t, runCLI("list", "extra", "--bucket", "file:///tmp/x"), exitUsage)
}
