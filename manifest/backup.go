// Package manifest writes and reads manifest.json, our catalogue entry of
// a backup (written last: its presence marks a complete backup). The
// PostgreSQL-format backup_manifest is internal/pg/backupmanifest.
package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
	"github.com/pgcloudbackup/pgcloudbackup/internal/pg/wal"
)

// FormatVersion is the manifest.json format this code writes and the newest
// it reads. Bump it for any change an older reader would misread.
const FormatVersion = 1

// StatusComplete is the status of a finished backup. manifest.json is
// written last, so a backup whose manifest.json exists is complete.
const StatusComplete = "complete"

// Backup is manifest.json: what one backup holds and how to restore it.
// It names objects relative to the backup's directory and never holds the
// bucket URL (whose query may carry credentials).
type Backup struct {
	FormatVersion int    `json:"format_version"`
	ID            string `json:"id"`
	Label         string `json:"label"`
	Status        string `json:"status"`
	ToolVersion   string `json:"tool_version"`

	PGVersion    string `json:"pg_version"`     // e.g. "15.18"
	PGVersionNum int    `json:"pg_version_num"` // e.g. 150018
	// SystemIdentifier is a decimal uint64 in a string: JSON readers that
	// use doubles would round it.
	SystemIdentifier string `json:"system_identifier"`

	Timeline  uint32    `json:"timeline"`
	StartLSN  wal.LSN   `json:"start_lsn"`
	StopLSN   wal.LSN   `json:"stop_lsn"`
	StartTime time.Time `json:"start_time"`
	StopTime  time.Time `json:"stop_time"`

	// WALIncluded: the backup holds the WAL from start to stop, so it
	// restores without a WAL archive.
	WALIncluded bool `json:"wal_included"`
	// WALArchive is the state of the server's own WAL archiving when the
	// backup was taken (WALArchive* values; "" in manifests written before
	// it was recorded). A backup without WAL restores only from an archive.
	WALArchive        string `json:"wal_archive,omitempty"`
	Compression       string `json:"compression"` // e.g. "zstd", "none"
	ChecksumsVerified bool   `json:"checksums_verified"`

	Tablespaces []Tablespace `json:"tablespaces"`

	ChecksumFailures      []ChecksumFailure `json:"checksum_failures"`
	ChecksumFailuresTotal int64             `json:"checksum_failures_total"`

	// NewPagesWithData lists pages whose header marks them new (pd_upper
	// == 0) but which are not all zeros, as a zeroed page header looks.
	// PostgreSQL's backup skips such pages unverified, so they are not in
	// ChecksumFailures (which counts what the server counts); they still
	// make the backup end with the checksum failures exit code.
	NewPagesWithData      []ChecksumFailure `json:"new_pages_with_data"`
	NewPagesWithDataTotal int64             `json:"new_pages_with_data_total"`
	// PartialPages lists files whose size is not a whole number of pages:
	// verification of each stopped at that block, as in basebackup.c.
	PartialPages []PartialPage `json:"partial_pages"`

	// BackupManifest is the uploaded PostgreSQL-format backup_manifest.
	BackupManifest Object `json:"backup_manifest"`
}

// WALArchive values.
const (
	// WALArchiveHealthy: archive_mode on and pg_stat_archiver showed a
	// recent success and no failure after it.
	WALArchiveHealthy = "healthy"
	// WALArchiveOff: nothing archived the server's WAL (archive_mode off,
	// or a standby without archive_mode = always).
	WALArchiveOff = "off"
	// WALArchiveFailing: archiving was configured but failing, or had not
	// succeeded recently.
	WALArchiveFailing = "failing"
)

// SelfContained reports whether the backup restores without a WAL archive.
func (b *Backup) SelfContained() bool { return b.WALIncluded }

// Unrestorable reports whether nothing can restore the backup: it holds no
// WAL and the server was not archiving its WAL when it was taken.
func (b *Backup) Unrestorable() bool {
	return !b.WALIncluded && (b.WALArchive == WALArchiveOff || b.WALArchive == WALArchiveFailing)
}

// WALSummary says in a few words where a restore finds the backup's WAL.
func (b *Backup) WALSummary() string {
	switch {
	case b.WALIncluded:
		return "included (restores without a WAL archive)"
	case b.Unrestorable():
		return "NOT included, and the server's WAL archiving was " + b.WALArchive + ": nothing can restore this backup"
	default:
		return "not included: needs a WAL archive"
	}
}

// Tablespace is one archive set: the main data directory or a tablespace.
type Tablespace struct {
	OID      uint32   `json:"oid"`      // 0 for the main data directory
	Name     string   `json:"name"`     // "base" or the tablespace name
	Location string   `json:"location"` // absolute path on the source host
	Size     int64    `json:"size"`     // bytes of file data
	Files    int64    `json:"files"`
	Objects  []Object `json:"objects"`
}

// Object is one stored object of the backup.
type Object struct {
	Key     string `json:"key"`      // relative to the backup's directory, e.g. "base.00001.tar.zst"
	Size    int64  `json:"size"`     // stored bytes
	RawSize int64  `json:"raw_size"` // bytes before compression
	SHA256  string `json:"sha256"`   // hex, of the stored bytes
}

// ChecksumFailure lists the data pages of one file whose checksum did not
// match.
type ChecksumFailure struct {
	Path   string   `json:"path"` // as in backup_manifest, e.g. "base/5/16384"
	Count  int64    `json:"count"`
	Blocks []uint32 `json:"blocks"`
}

// PartialPage is a file that ended in a partial page (being extended or
// truncated while read): its pages from Block on were not verified.
type PartialPage struct {
	Path  string `json:"path"`
	Block uint32 `json:"block"`
	Size  int64  `json:"size"` // bytes of the file as stored
}

// PageProblems is the number of pages the backup found bad: checksum
// failures plus new pages holding data.
func (b *Backup) PageProblems() int64 {
	return b.ChecksumFailuresTotal + b.NewPagesWithDataTotal
}

// TotalSize is the bytes of file data in the backup (before compression).
func (b *Backup) TotalSize() int64 {
	var n int64
	for _, ts := range b.Tablespaces {
		n += ts.Size
	}
	return n
}

// StoredSize is the bytes the backup occupies in the bucket: every archive
// object plus the backup_manifest (manifest.json itself not counted).
func (b *Backup) StoredSize() int64 {
	n := b.BackupManifest.Size
	for _, ts := range b.Tablespaces {
		for _, o := range ts.Objects {
			n += o.Size
		}
	}
	return n
}

// Marshal returns manifest.json: indented, snake_case, times in UTC, empty
// lists as [] (never null), so equal backups give equal bytes. It refuses a
// Backup that Unmarshal would reject.
func (b *Backup) Marshal() ([]byte, error) {
	c := *b
	if c.FormatVersion == 0 {
		c.FormatVersion = FormatVersion
	}
	c.StartTime = c.StartTime.UTC()
	c.StopTime = c.StopTime.UTC()
	c.Tablespaces = make([]Tablespace, len(b.Tablespaces))
	for i, ts := range b.Tablespaces {
		if ts.Objects == nil {
			ts.Objects = []Object{}
		}
		c.Tablespaces[i] = ts
	}
	c.ChecksumFailures = make([]ChecksumFailure, len(b.ChecksumFailures))
	for i, f := range b.ChecksumFailures {
		if f.Blocks == nil {
			f.Blocks = []uint32{}
		}
		c.ChecksumFailures[i] = f
	}
	c.NewPagesWithData = make([]ChecksumFailure, len(b.NewPagesWithData))
	for i, f := range b.NewPagesWithData {
		if f.Blocks == nil {
			f.Blocks = []uint32{}
		}
		c.NewPagesWithData[i] = f
	}
	c.PartialPages = append([]PartialPage{}, b.PartialPages...)
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("write manifest.json: %w", err)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // keep labels and paths readable
	enc.SetIndent("", "  ")
	if err := enc.Encode(&c); err != nil {
		return nil, fmt.Errorf("write manifest.json: %w", err)
	}
	return buf.Bytes(), nil
}

// Unmarshal reads manifest.json. It refuses a format version other than
// FormatVersion (a newer one asks for a newer pgcloudbackup) and a manifest
// missing a required field.
func Unmarshal(data []byte) (*Backup, error) {
	// Look at the version alone first: a newer format may not even decode
	// into today's types, and "upgrade" is the useful message then.
	var head struct {
		FormatVersion *json.Number `json:"format_version"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&head); err != nil {
		return nil, failure.Wrap(failure.Failed, fmt.Errorf("read manifest.json: not valid JSON: %w", err), "")
	}
	if head.FormatVersion == nil {
		return nil, failure.Wrap(failure.Failed, errors.New("read manifest.json: missing format_version: not a pgcloudbackup manifest"), "")
	}
	v, err := strconv.Atoi(string(*head.FormatVersion))
	if err != nil || v < 1 {
		return nil, failure.Wrap(failure.Failed, fmt.Errorf("read manifest.json: invalid format_version %s", *head.FormatVersion), "")
	}
	if v > FormatVersion {
		return nil, failure.Wrap(failure.Precondition,
			fmt.Errorf("read manifest.json: format version %d is newer than this pgcloudbackup reads (%d)", v, FormatVersion),
			"upgrade pgcloudbackup to a version that reads this backup")
	}
	if v != FormatVersion {
		return nil, failure.Wrap(failure.Failed, fmt.Errorf("read manifest.json: unsupported format version %d", v), "")
	}

	if len(data) > MaxBackupJSONSize {
		return nil, failure.Wrap(failure.Failed, fmt.Errorf("read manifest.json: %d bytes, more than the %d this version reads", len(data), MaxBackupJSONSize), "")
	}
	var b Backup
	if err := json.Unmarshal(data, &b); err != nil {
		return nil, failure.Wrap(failure.Failed, fmt.Errorf("read manifest.json: %w", err), "")
	}
	if err := b.validate(); err != nil {
		return nil, failure.Wrap(failure.Failed, fmt.Errorf("read manifest.json: %w", err), "")
	}
	// Only on reading: what PostgreSQL accepted as a label is never
	// refused when the backup is written.
	if len(b.Label) > MaxLabelLen {
		return nil, failure.Wrap(failure.Failed, fmt.Errorf("read manifest.json: label of %d bytes, more than PostgreSQL's %d", len(b.Label), MaxLabelLen), "")
	}
	return &b, nil
}

// validate checks what a restore relies on.
func (b *Backup) validate() error {
	missing := func(field string) error { return fmt.Errorf("missing required field %q", field) }
	if b.FormatVersion != FormatVersion {
		return fmt.Errorf("format_version %d, want %d", b.FormatVersion, FormatVersion)
	}
	switch {
	case b.ID == "":
		return missing("id")
	case b.Status == "":
		return missing("status")
	case b.PGVersion == "":
		return missing("pg_version")
	case b.PGVersionNum <= 0:
		return missing("pg_version_num")
	case b.SystemIdentifier == "":
		return missing("system_identifier")
	case b.Timeline == 0:
		return missing("timeline")
	case b.StartLSN == 0:
		return missing("start_lsn")
	case b.StopLSN == 0:
		return missing("stop_lsn")
	case b.StartTime.IsZero():
		return missing("start_time")
	case b.StopTime.IsZero():
		return missing("stop_time")
	case len(b.Tablespaces) == 0:
		return missing("tablespaces")
	case b.BackupManifest.Key == "":
		return missing("backup_manifest.key")
	}
	if err := checkKey(b.ID); err != nil || strings.Contains(b.ID, "/") {
		return fmt.Errorf("id %q: must be a single plain name", b.ID)
	}
	if _, err := strconv.ParseUint(b.SystemIdentifier, 10, 64); err != nil {
		return fmt.Errorf("system_identifier %q is not a decimal uint64", b.SystemIdentifier)
	}
	if b.StopLSN < b.StartLSN {
		return fmt.Errorf("stop_lsn %s is before start_lsn %s", b.StopLSN, b.StartLSN)
	}
	switch b.WALArchive {
	case "", WALArchiveHealthy, WALArchiveOff, WALArchiveFailing:
	default:
		return fmt.Errorf("wal_archive %q: want %q, %q or %q", b.WALArchive, WALArchiveHealthy, WALArchiveOff, WALArchiveFailing)
	}
	if b.ChecksumFailuresTotal < 0 {
		return errors.New("negative checksum_failures_total")
	}
	if b.NewPagesWithDataTotal < 0 {
		return errors.New("negative new_pages_with_data_total")
	}
	if err := checkObject(b.BackupManifest); err != nil {
		return fmt.Errorf("backup_manifest: %w", err)
	}
	oids := map[uint32]bool{}
	for i, ts := range b.Tablespaces {
		if ts.Name == "" {
			return missing(fmt.Sprintf("tablespaces[%d].name", i))
		}
		if oids[ts.OID] {
			return fmt.Errorf("tablespace oid %d listed twice", ts.OID)
		}
		oids[ts.OID] = true
		if ts.Size < 0 || ts.Files < 0 {
			return fmt.Errorf("tablespace %q: negative size or file count", ts.Name)
		}
		for _, o := range ts.Objects {
			if err := checkObject(o); err != nil {
				return fmt.Errorf("tablespace %q: %w", ts.Name, err)
			}
		}
	}
	for i, f := range b.ChecksumFailures {
		if f.Path == "" {
			return missing(fmt.Sprintf("checksum_failures[%d].path", i))
		}
		if f.Count < 0 {
			return fmt.Errorf("checksum failure %q: negative count", f.Path)
		}
	}
	for i, f := range b.NewPagesWithData {
		if f.Path == "" {
			return missing(fmt.Sprintf("new_pages_with_data[%d].path", i))
		}
		if f.Count < 0 {
			return fmt.Errorf("new pages with data %q: negative count", f.Path)
		}
	}
	for i, p := range b.PartialPages {
		if p.Path == "" {
			return missing(fmt.Sprintf("partial_pages[%d].path", i))
		}
	}
	return nil
}

func checkObject(o Object) error {
	if o.Key == "" {
		return errors.New("object without a key")
	}
	if err := checkKey(o.Key); err != nil {
		return fmt.Errorf("object %q: %w", o.Key, err)
	}
	if o.Size < 0 || o.RawSize < 0 {
		return fmt.Errorf("object %q: negative size", o.Key)
	}
	return nil
}

// checkKey keeps names relative to the backup's directory. It also keeps a
// bucket URL (and the credentials its query may hold) out of the manifest.
func checkKey(k string) error {
	switch {
	case strings.HasPrefix(k, "/"):
		return errors.New("must be relative to the backup's directory")
	case strings.Contains(k, "://"), strings.ContainsAny(k, "?#\\"):
		return errors.New("must be a plain object name, not a URL")
	}
	for _, part := range strings.Split(k, "/") {
		if part == "" || part == "." || part == ".." {
			return errors.New("must not contain empty, \".\" or \"..\" path elements")
		}
	}
	return nil
}

// FormatBlocks writes sorted block numbers (of ChecksumFailure and
// NewPagesWithData) as ranges, "0-127, 300", at most max of them: a torn
// file can fail on every page.
func FormatBlocks(blocks []uint32, max int) string {
	var b strings.Builder
	ranges := 0
	for i := 0; i < len(blocks); {
		j := i
		for j+1 < len(blocks) && blocks[j+1] == blocks[j]+1 {
			j++
		}
		if ranges == max {
			fmt.Fprintf(&b, ", … (%d more blocks)", len(blocks)-i)
			break
		}
		if ranges > 0 {
			b.WriteString(", ")
		}
		if j > i {
			fmt.Fprintf(&b, "%d-%d", blocks[i], blocks[j])
		} else {
			fmt.Fprintf(&b, "%d", blocks[i])
		}
		ranges++
		i = j + 1
	}
	return b.String()
}
