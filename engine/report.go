package engine

import (
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/pgcloudbackup/pgcloudbackup/internal/pg/backupmanifest"
	"github.com/pgcloudbackup/pgcloudbackup/manifest"
)

// copyReport is the copyOutput of a backup's workers: it lists files in
// backup_manifest, counts progress, and gathers the page findings for
// manifest.json. It is safe for concurrent use.
type copyReport struct {
	logger     *slog.Logger
	progress   *Progress
	pgManifest *backupmanifest.Writer // set before the first worker starts

	mu            sync.Mutex
	failures      []manifest.ChecksumFailure
	failuresTotal int64
	pages         pageReport // new pages with data, partial pages
}

var _ copyOutput = (*copyReport)(nil)

func (c *copyReport) recordFile(path string, size int64, mtime time.Time, crc uint32) error {
	return c.pgManifest.AddFile(path, size, mtime, crc)
}

func (c *copyReport) copied(n int64) { c.progress.Add(n) }

func (c *copyReport) checksumFailures(path string, count int64, blocks []uint32) {
	c.logger.Warn("page checksum verification failed", "file", path, "failures", count, "blocks", manifest.FormatBlocks(blocks, 20))
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failures = append(c.failures, manifest.ChecksumFailure{Path: path, Count: count, Blocks: append([]uint32(nil), blocks...)})
	c.failuresTotal += count
}

func (c *copyReport) newPagesWithData(path string, count int64, blocks []uint32) {
	c.pages.addNewWithData(c.logger, path, count, blocks)
}

func (c *copyReport) partialPage(path string, block uint32, size int64) {
	c.pages.addPartial(c.logger, path, block, size)
}

// fill records the findings in the manifest, sorted by path.
func (c *copyReport) fill(m *manifest.Backup) {
	c.mu.Lock()
	m.ChecksumFailures = append([]manifest.ChecksumFailure(nil), c.failures...)
	m.ChecksumFailuresTotal = c.failuresTotal
	c.mu.Unlock()
	sort.Slice(m.ChecksumFailures, func(i, j int) bool { return m.ChecksumFailures[i].Path < m.ChecksumFailures[j].Path })
	c.pages.fill(m)
}
