package main

import (
	"strings"
	"testing"
	"time"

	"github.com/pgcloudbackup/pgcloudbackup/manifest"
)

// TestBackupSummaryKeepsPageFindingsApart: checksum failures are what
// PostgreSQL counts; pages marked new that hold data have their own line,
// and only together they decide exit code 4.
func TestBackupSummaryKeepsPageFindingsApart(t *testing.T) {
	m := &manifest.Backup{
		ID: "20261129T000000Z", ChecksumsVerified: true,
		ChecksumFailures:      []manifest.ChecksumFailure{{Path: "base/5/16384", Count: 1, Blocks: []uint32{4}}},
		ChecksumFailuresTotal: 1,
		NewPagesWithData:      []manifest.ChecksumFailure{{Path: "base/5/16384", Count: 2, Blocks: []uint32{2, 6}}},
		NewPagesWithDataTotal: 2,
		PartialPages:          []manifest.PartialPage{{Path: "base/5/16389", Block: 30, Size: 249856}},
	}
	var b strings.Builder
	printBackupSummary(&b, m, time.Second)
	out := b.String()
	for _, want := range []string{
		"checksums:    1 PAGE CHECKSUM FAILURES in 1 files:\n                base/5/16384: 1 (blocks 4)\n",
		"new pages:    2 PAGES MARKED NEW (pd_upper = 0) HOLD DATA in 1 files:\n                base/5/16384: 2 (blocks 2, 6)\n",
		"partial:      1 files end in a partial page (not verified from that block on):\n                base/5/16389: block 30 (249856 bytes)\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	if m.PageProblems() != 3 {
		t.Errorf("PageProblems %d, want 3", m.PageProblems())
	}
	m.ChecksumFailures, m.ChecksumFailuresTotal = nil, 0
	b.Reset()
	printBackupSummary(&b, m, time.Second)
	if !strings.Contains(b.String(), "checksums:    verified, no failures\n") || m.PageProblems() != 2 {
		t.Errorf("only new pages: PageProblems %d, summary:\n%s", m.PageProblems(), b.String())
	}
}
