package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
)

func sampleBackup() *Backup {
	return &Backup{
		ID:                "20261124T183026Z",
		Label:             `nightly <prod> & "co"`,
		Status:            StatusComplete,
		ToolVersion:       "0.1.0",
		PGVersion:         "15.18",
		PGVersionNum:      150018,
		SystemIdentifier:  "7301234567890123457", // > 2^53: a float64 would round it
		Timeline:          1,
		StartLSN:          0x3000028,
		StopLSN:           0x3000138,
		StartTime:         time.Date(2026, 11, 24, 18, 30, 26, 123456789, time.UTC),
		StopTime:          time.Date(2026, 11, 24, 18, 31, 2, 0, time.UTC),
		WALIncluded:       true,
		WALArchive:        WALArchiveOff,
		Compression:       "zstd",
		ChecksumsVerified: true,
		Tablespaces: []Tablespace{
			{OID: 0, Name: "base", Location: "/var/lib/postgresql/15/main", Size: 40 << 20, Files: 1200,
				Objects: []Object{
					{Key: "base.00001.tar.zst", Size: 9 << 20, RawSize: 30 << 20, SHA256: strings.Repeat("ab", 32)},
					{Key: "base.00002.tar.zst", Size: 3 << 20, RawSize: 10 << 20, SHA256: strings.Repeat("cd", 32)},
				}},
			{OID: 16385, Name: "fast_ssd", Location: "/mnt/ssd/ts", Size: 8192, Files: 1,
				Objects: []Object{{Key: "16385.00001.tar.zst", Size: 700, RawSize: 10240, SHA256: strings.Repeat("ef", 32)}}},
		},
		ChecksumFailures:      []ChecksumFailure{{Path: "base/5/16384", Count: 2, Blocks: []uint32{3, 4294967295}}},
		ChecksumFailuresTotal: 2,
		NewPagesWithData:      []ChecksumFailure{{Path: "base/5/16390", Count: 1, Blocks: []uint32{7}}},
		NewPagesWithDataTotal: 1,
		PartialPages:          []PartialPage{{Path: "base/5/16391", Block: 2, Size: 20000}},
		BackupManifest:        Object{Key: "backup_manifest", Size: 150000, RawSize: 150000, SHA256: strings.Repeat("01", 32)},
	}
}

func TestBackupRoundTrip(t *testing.T) {
	b := sampleBackup()
	data, err := b.Marshal()
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	got, err := Unmarshal(data)
	if err != nil {
		t.Fatalf("Unmarshal: %v\n%s", err, data)
	}
	want := *b
	want.FormatVersion = FormatVersion
	if !reflect.DeepEqual(got, &want) {
		t.Errorf("round trip:\n%+v\nwant\n%+v", got, &want)
	}
	// Stable bytes.
	again, _ := got.Marshal()
	if !bytes.Equal(data, again) {
		t.Errorf("re-marshal differs:\n%s\n%s", data, again)
	}
	// Readable: labels are not HTML-escaped, it is indented.
	if !bytes.Contains(data, []byte(`"label": "nightly <prod> & \"co\""`)) || !bytes.Contains(data, []byte("\n  \"id\": ")) {
		t.Errorf("unexpected layout:\n%s", data)
	}
	if !bytes.Contains(data, []byte(`"system_identifier": "7301234567890123457"`)) ||
		!bytes.Contains(data, []byte(`"start_lsn": "0/3000028"`)) {
		t.Errorf("identifier or LSN not written as text:\n%s", data)
	}
}

func TestBackupJSONNames(t *testing.T) {
	data, err := sampleBackup().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		t.Fatal(err)
	}
	want := []string{"backup_manifest", "checksum_failures", "checksum_failures_total", "checksums_verified",
		"compression", "format_version", "id", "label", "new_pages_with_data", "new_pages_with_data_total", "partial_pages", "pg_version", "pg_version_num", "start_lsn", "start_time",
		"status", "stop_lsn", "stop_time", "system_identifier", "tablespaces", "timeline", "tool_version", "wal_archive", "wal_included"}
	if got := keys(top); !reflect.DeepEqual(got, want) {
		t.Errorf("top-level names %v\nwant %v", got, want)
	}
	var ts []map[string]json.RawMessage
	_ = json.Unmarshal(top["tablespaces"], &ts)
	if got := keys(ts[0]); !reflect.DeepEqual(got, []string{"files", "location", "name", "objects", "oid", "size"}) {
		t.Errorf("tablespace names %v", got)
	}
	var objs []map[string]json.RawMessage
	_ = json.Unmarshal(ts[0]["objects"], &objs)
	if got := keys(objs[0]); !reflect.DeepEqual(got, []string{"key", "raw_size", "sha256", "size"}) {
		t.Errorf("object names %v", got)
	}
	var cf []map[string]json.RawMessage
	_ = json.Unmarshal(top["checksum_failures"], &cf)
	if got := keys(cf[0]); !reflect.DeepEqual(got, []string{"blocks", "count", "path"}) {
		t.Errorf("checksum failure names %v", got)
	}
}

func keys(m map[string]json.RawMessage) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	sort.Strings(k)
	return k
}

func TestBackupEmptyListsAndUTC(t *testing.T) {
	b := sampleBackup()
	b.ChecksumFailures = nil
	b.ChecksumFailuresTotal = 0
	b.Tablespaces[1].Objects = nil
	b.StartTime = b.StartTime.In(time.FixedZone("CET", 3600))
	data, err := b.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, []byte("null")) {
		t.Errorf("null in manifest.json:\n%s", data)
	}
	if !bytes.Contains(data, []byte(`"checksum_failures": []`)) || !bytes.Contains(data, []byte(`"start_time": "2026-11-24T18:30:26.123456789Z"`)) {
		t.Errorf("empty list or UTC time missing:\n%s", data)
	}
	if b.Tablespaces[1].Objects != nil || b.StartTime.Location().String() != "CET" {
		t.Error("Marshal modified its receiver")
	}
}

func TestUnmarshalRejectsVersions(t *testing.T) {
	good, err := sampleBackup().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	withVersion := func(v string) []byte {
		return bytes.Replace(good, []byte(`"format_version": 1,`), []byte(`"format_version": `+v+`,`), 1)
	}
	if bytes.Equal(withVersion("2"), good) {
		t.Fatal("test cannot find format_version")
	}

	// A newer format: a precondition with an upgrade hint, even if the
	// rest no longer fits today's types.
	newer := withVersion("2")
	newer = bytes.Replace(newer, []byte(`"timeline": 1`), []byte(`"timeline": {"id": 1}`), 1)
	_, err = Unmarshal(newer)
	if err == nil || !strings.Contains(err.Error(), "newer") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("newer version: err = %v", err)
	}
	if failure.KindOf(err) != failure.Precondition || !strings.Contains(failure.HintOf(err), "upgrade") {
		t.Errorf("newer version: kind %v hint %q", failure.KindOf(err), failure.HintOf(err))
	}

	for name, data := range map[string][]byte{
		"version 0":         withVersion("0"),
		"version -1":        withVersion("-1"),
		"version 1.5":       withVersion("1.5"),
		"version string":    withVersion(`"1"`),
		"no version":        bytes.Replace(good, []byte(`"format_version": 1,`), nil, 1),
		"not JSON":          []byte("<html>"),
		"empty":             nil,
		"wrong type":        bytes.Replace(good, []byte(`"pg_version_num": 150018`), []byte(`"pg_version_num": "x"`), 1),
		"bad LSN":           bytes.Replace(good, []byte(`"0/3000028"`), []byte(`"nope"`), 1),
		"bad system id":     bytes.Replace(good, []byte(`"7301234567890123457"`), []byte(`"73012345678901234570000"`), 1),
		"no system id":      bytes.Replace(good, []byte(`"7301234567890123457"`), []byte(`""`), 1),
		"no id":             bytes.Replace(good, []byte(`"id": "20261124T183026Z"`), []byte(`"id": ""`), 1),
		"stop before start": bytes.Replace(good, []byte(`"0/3000138"`), []byte(`"0/1"`), 1),
	} {
		if _, err := Unmarshal(data); err == nil {
			t.Errorf("%s: accepted", name)
		} else if failure.KindOf(err) != failure.Failed || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: kind %v, error %q", name, failure.KindOf(err), err)
		}
	}
}

func TestUnmarshalNamesMissingFields(t *testing.T) {
	good, _ := sampleBackup().Marshal()
	for _, field := range []string{"id", "status", "pg_version", "pg_version_num", "system_identifier", "timeline",
		"start_lsn", "stop_lsn", "start_time", "stop_time", "tablespaces", "backup_manifest"} {
		var m map[string]any
		if err := json.Unmarshal(good, &m); err != nil {
			t.Fatal(err)
		}
		delete(m, field)
		data, _ := json.Marshal(m)
		_, err := Unmarshal(data)
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("without %s: err = %v, want it named", field, err)
		}
	}
}

func TestMarshalRefusesURLsAndBadKeys(t *testing.T) {
	for _, key := range []string{
		"s3://bucket/backups/x/base.tar.zst?access_key=AKIA&secret_key=s3cr3t",
		"base.tar.zst?X-Amz-Signature=abc",
		"/abs/base.tar.zst",
		"../other/base.tar.zst",
		"a//b",
		`a\b`,
	} {
		b := sampleBackup()
		b.Tablespaces[0].Objects[0].Key = key
		if data, err := b.Marshal(); err == nil {
			t.Errorf("key %q accepted:\n%s", key, data)
		}
	}
	b := sampleBackup()
	b.BackupManifest.Key = ""
	if _, err := b.Marshal(); err == nil {
		t.Error("missing backup_manifest key accepted")
	}
	b = sampleBackup()
	b.FormatVersion = 2
	if _, err := b.Marshal(); err == nil {
		t.Error("Marshal wrote a format version it does not know")
	}
	b = sampleBackup()
	b.ID = "a/b"
	if _, err := b.Marshal(); err == nil {
		t.Error("id with a slash accepted")
	}
}

func TestSizes(t *testing.T) {
	b := sampleBackup()
	if got, want := b.TotalSize(), int64(40<<20+8192); got != want {
		t.Errorf("TotalSize = %d, want %d", got, want)
	}
	if got, want := b.StoredSize(), int64(9<<20+3<<20+700+150000); got != want {
		t.Errorf("StoredSize = %d, want %d", got, want)
	}
}

func TestUnmarshalErrorIsClassified(t *testing.T) {
	_, err := Unmarshal([]byte("{"))
	var fe *failure.Error
	if !errors.As(err, &fe) {
		t.Fatalf("error %v is not classified", err)
	}
}

// TestRestorability: a backup without WAL taken while the server did not
// archive is restorable by nothing; one from an archiving server, or from a
// manifest older than the field, needs the archive.
func TestRestorability(t *testing.T) {
	cases := []struct {
		wal        bool
		archive    string
		self, dead bool
	}{
		{true, WALArchiveOff, true, false},
		{true, "", true, false},
		{false, WALArchiveHealthy, false, false},
		{false, "", false, false},
		{false, WALArchiveOff, false, true},
		{false, WALArchiveFailing, false, true},
	}
	for _, c := range cases {
		b := sampleBackup()
		b.WALIncluded, b.WALArchive = c.wal, c.archive
		if b.SelfContained() != c.self || b.Unrestorable() != c.dead {
			t.Errorf("wal %v archive %q: self-contained %v unrestorable %v, want %v %v", c.wal, c.archive, b.SelfContained(), b.Unrestorable(), c.self, c.dead)
		}
		data, err := b.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		back, err := Unmarshal(data)
		if err != nil || back.WALArchive != c.archive || back.WALIncluded != c.wal {
			t.Errorf("round trip wal %v archive %q: %+v %v", c.wal, c.archive, back, err)
		}
	}
	b := sampleBackup()
	data, _ := b.Marshal()
	data = bytes.Replace(data, []byte(`"wal_archive": "off"`), []byte(`"wal_archive": "maybe"`), 1)
	if _, err := Unmarshal(data); err == nil || !strings.Contains(err.Error(), "wal_archive") {
		t.Errorf("unknown wal_archive value accepted: %v", err)
	}
}

func TestFormatBlocks(t *testing.T) {
	for _, tt := range []struct {
		blocks []uint32
		max    int
		want   string
	}{
		{nil, 5, ""},
		{[]uint32{7}, 5, "7"},
		{[]uint32{0, 1, 2, 3, 40, 42, 43}, 5, "0-3, 40, 42-43"},
		{[]uint32{1, 3, 5, 7, 8}, 2, "1, 3, … (3 more blocks)"},
		{[]uint32{2, 6}, 10, "2, 6"},
	} {
		if got := FormatBlocks(tt.blocks, tt.max); got != tt.want {
			t.Errorf("FormatBlocks(%v, %d) = %q, want %q", tt.blocks, tt.max, got, tt.want)
		}
	}
}
