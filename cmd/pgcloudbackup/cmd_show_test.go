package main

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pgcloudbackup/pgcloudbackup/manifest"
)

func TestShowCommand(t *testing.T) {
	now := time.Now().UTC()
	b := seedCatalog(t, now)
	// The newest by ID, though its manifest says it stopped first:
	// "latest" follows the time the tool took for the ID, not stop_time.
	m, stored := b.addBackup("20261125T020000Z", now.Add(-100*24*time.Hour), func(m *manifest.Backup) {
		m.Label = "two\ttablespaces"
		m.Tablespaces = append(m.Tablespaces, manifest.Tablespace{OID: 16385, Name: "fast", Location: "/ssd/ts", Size: 5 << 20, Files: 12,
			Objects: []manifest.Object{
				{Key: "16385.00001.tar.zst", Size: 4 << 20, RawSize: 4 << 20, SHA256: "cd"},
				{Key: "16385.00002.tar.zst", Size: 1 << 20, RawSize: 1 << 20, SHA256: "ef"}}})
		m.ChecksumFailures = []manifest.ChecksumFailure{{Path: "pg_tblspc/16385/PG_16_202307071/5/16390", Count: 5, Blocks: []uint32{0, 1, 2, 3, 40}}}
		m.ChecksumFailuresTotal = 5
		m.WALArchive = manifest.WALArchiveHealthy
		m.NewPagesWithData = []manifest.ChecksumFailure{{Path: "base/5/16400", Count: 2, Blocks: []uint32{6, 9}}}
		m.NewPagesWithDataTotal = 2
		m.PartialPages = []manifest.PartialPage{{Path: "base/5/16401", Block: 30, Size: 249856}}
	})

	r := b.cli("show", "latest")
	if r.code != 0 {
		t.Fatalf("show latest: exit %d\n%s", r.code, r.stderr)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`^backup 20261125T020000Z \(complete\)\n`),
		regexp.MustCompile(`label: +two tablespaces\n`),
		regexp.MustCompile(`start: +` + regexp.QuoteMeta(m.StartTime.UTC().Format("2006-01-02 15:04:05")) + ` UTC, LSN 0/3000028\n`),
		regexp.MustCompile(`stop: +` + regexp.QuoteMeta(m.StopTime.UTC().Format("2006-01-02 15:04:05")) + ` UTC, LSN 0/3000158 \(took 1m30s\)\n`),
		regexp.MustCompile(`timeline: +1\n`),
		regexp.MustCompile(`system identifier: +7312345678901234567\n`),
		regexp.MustCompile(`PostgreSQL: +16.4 \(160004\)\n`),
		regexp.MustCompile(`WAL: +not included: needs a WAL archive\n`),
		regexp.MustCompile(`WAL archiving: +healthy when the backup was taken\n`),
		regexp.MustCompile(`compression: +zstd\n`),
		regexp.MustCompile(`page checksums: +5 FAILURES in 1 files\n`),
		regexp.MustCompile(`\n  0 +base +/var/lib/postgresql/data +23.0 MiB +980 +base.00001.tar.zst +32 B\n`),
		regexp.MustCompile(`\n  16385 +fast +/ssd/ts +5.0 MiB +12 +16385.00001.tar.zst +4.0 MiB\n +16385.00002.tar.zst +1.0 MiB\n`),
		regexp.MustCompile(`\n  pg_tblspc/16385/PG_16_202307071/5/16390 +5 +0-3, 40\n`),
		regexp.MustCompile(`new pages: +2 PAGES MARKED NEW \(pd_upper = 0\) HOLD DATA in 1 files\n`),
		regexp.MustCompile(`\npages marked new \(pd_upper = 0\) that hold data.*\n  FILE +PAGES +BLOCKS\n  base/5/16400 +2 +6, 9\n`),
		regexp.MustCompile(`\n  base/5/16401 +30 +249856\n`),
	} {
		if !want.MatchString(r.stdout) {
			t.Errorf("show latest lacks %s:\n%s", want, r.stdout)
		}
	}

	r = b.cli("show", "20261101T020000Z", "--json")
	if r.code != 0 || !strings.Contains(r.stdout, `"id": "20261101T020000Z"`) {
		t.Fatalf("show ID --json: %+v", r)
	}
	if r = b.cli("show", "--json", "latest"); r.stdout != string(stored) {
		t.Errorf("show --json is not manifest.json as stored:\n%s\nwant\n%s", r.stdout, stored)
	}

	wantOneLineError(t, b.cli("show", "20261124T999999Z"), exitPrecondition, "no backup 20261124T999999Z in file://", "pgcloudbackup list")
	wantOneLineError(t, b.cli("show", "20261110T020000Z"), exitPrecondition, "backup 20261110T020000Z", "incomplete", "pgcloudbackup list")
	r = b.cli("show", "nope", "--json")
	wantOneLineError(t, r, exitPrecondition, "nope")
	if !strings.Contains(r.stdout, `"kind": "precondition"`) {
		t.Errorf("show --json of an unknown ID: stdout %s", r.stdout)
	}
	wantOneLineError(t, b.cli("show"), exitUsage, "give one backup ID, or latest")
	wantOneLineError(t, b.cli("show", "a", "b"), exitUsage, "give one backup ID")

	empty := newTestBucket(t)
	wantOneLineError(t, empty.cli("show", "latest"), exitPrecondition, `"latest"`, "pgcloudbackup list")
	wantOneLineError(t, empty.cli("show", "20261101T020000Z"), exitPrecondition, "20261101T020000Z", "pgcloudbackup list")
}
