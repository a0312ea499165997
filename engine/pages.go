package engine

import (
	"log/slog"
	"sort"
	"sync"

	"github.com/pgcloudbackup/pgcloudbackup/manifest"
)

// pageReport collects, across workers, the page findings that are not
// checksum failures: new pages holding data, and files ending in a partial
// page.
type pageReport struct {
	mu           sync.Mutex
	newWithData  []manifest.ChecksumFailure
	newTotal     int64
	partialPages []manifest.PartialPage
}

func (p *pageReport) addNewWithData(logger *slog.Logger, path string, count int64, blocks []uint32) {
	logger.Warn("pages marked new (pd_upper = 0) hold data: a zeroed page header? PostgreSQL does not verify these pages",
		"file", path, "pages", count, "blocks", manifest.FormatBlocks(blocks, 20))
	p.mu.Lock()
	defer p.mu.Unlock()
	p.newWithData = append(p.newWithData, manifest.ChecksumFailure{Path: path, Count: count, Blocks: append([]uint32(nil), blocks...)})
	p.newTotal += count
}

func (p *pageReport) addPartial(logger *slog.Logger, path string, block uint32, size int64) {
	// basebackup.c: "could not verify checksum in file ..., block N: read
	// buffer size N and page size 8192 differ".
	logger.Warn("file ends in a partial page: its checksums are not verified from this block on (it was being extended or truncated; WAL replay fixes it)",
		"file", path, "block", block, "size", size)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.partialPages = append(p.partialPages, manifest.PartialPage{Path: path, Block: block, Size: size})
}

// fill records the findings in the manifest, sorted by path.
func (p *pageReport) fill(m *manifest.Backup) {
	p.mu.Lock()
	defer p.mu.Unlock()
	m.NewPagesWithData = append([]manifest.ChecksumFailure(nil), p.newWithData...)
	m.NewPagesWithDataTotal = p.newTotal
	m.PartialPages = append([]manifest.PartialPage(nil), p.partialPages...)
	sort.Slice(m.NewPagesWithData, func(i, j int) bool { return m.NewPagesWithData[i].Path < m.NewPagesWithData[j].Path })
	sort.Slice(m.PartialPages, func(i, j int) bool { return m.PartialPages[i].Path < m.PartialPages[j].Path })
}
