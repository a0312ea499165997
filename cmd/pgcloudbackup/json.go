package main

import (
	"encoding/json"
	"io"
	"time"

	"github.com/pgcloudbackup/pgcloudbackup/catalog"
	"github.com/pgcloudbackup/pgcloudbackup/internal/pg/wal"
	"github.com/pgcloudbackup/pgcloudbackup/walarchive"
)

// JSON output (--json): the encoder and the backup object that list and
// delete print. Scripts parse these names; they only ever gain fields.

func writeJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// backupJSONFields documents backupJSON for the help of list and delete:
// scripts parse these names, so they only ever gain fields.
const backupJSONFields = `  id                  backup ID (UTC start time, e.g. 20261124T183026Z)
  status              complete, incomplete (objects but no manifest.json: running,
                      failed or being deleted) or unreadable (manifest.json this
                      version cannot read; see error)
  time                RFC 3339, UTC: the stop time of a complete backup, else
                      when its newest object was written
  objects             objects in the bucket
  stored_size         bytes those objects occupy (manifest.json included)
  error               why manifest.json is unreadable (unreadable only)
  and, for complete backups only:
  label, start_time, stop_time, pg_version, pg_version_num, system_identifier
  (decimal string), timeline, start_lsn, stop_lsn ("X/X"), wal_included,
  wal_archive (healthy, off or failing: the server's WAL archiving when the
  backup was taken; absent if not recorded), self_contained (restores
  without a WAL archive), restorable (false: no WAL and no archive),
  compression, size (bytes of data before compression), checksums_verified,
  checksum_failures (pages with a bad checksum)`

// backupJSON is one backup in list and delete --json output.
type backupJSON struct {
	ID         string    `json:"id"`
	Status     string    `json:"status"`
	Time       time.Time `json:"time"`
	Objects    int       `json:"objects"`
	StoredSize int64     `json:"stored_size"`
	Error      string    `json:"error,omitempty"`
	// Embedded by pointer: its fields appear only for complete backups.
	*manifestJSON
	// WAL is the recoverable window in the WAL archive (list --wal).
	WAL *walarchive.Window `json:"wal,omitempty"`
}

type manifestJSON struct {
	Label             string    `json:"label"`
	StartTime         time.Time `json:"start_time"`
	StopTime          time.Time `json:"stop_time"`
	PGVersion         string    `json:"pg_version"`
	PGVersionNum      int       `json:"pg_version_num"`
	SystemIdentifier  string    `json:"system_identifier"`
	Timeline          uint32    `json:"timeline"`
	StartLSN          wal.LSN   `json:"start_lsn"`
	StopLSN           wal.LSN   `json:"stop_lsn"`
	WALIncluded       bool      `json:"wal_included"`
	WALArchive        string    `json:"wal_archive,omitempty"`
	SelfContained     bool      `json:"self_contained"`
	Restorable        bool      `json:"restorable"`
	Compression       string    `json:"compression"`
	Size              int64     `json:"size"`
	ChecksumsVerified bool      `json:"checksums_verified"`
	ChecksumFailures  int64     `json:"checksum_failures"`
}

func toJSON(e *catalog.Entry) backupJSON {
	j := backupJSON{ID: e.ID, Status: e.Status(), Time: e.Time().UTC(), Objects: e.Objects, StoredSize: e.Bytes}
	if e.Err != nil {
		j.Error = errorLine(e.Err)
	}
	if m := e.Manifest; m != nil {
		j.manifestJSON = &manifestJSON{
			Label: m.Label, StartTime: m.StartTime.UTC(), StopTime: m.StopTime.UTC(),
			PGVersion: m.PGVersion, PGVersionNum: m.PGVersionNum, SystemIdentifier: m.SystemIdentifier,
			Timeline: m.Timeline, StartLSN: m.StartLSN, StopLSN: m.StopLSN,
			WALIncluded: m.WALIncluded, WALArchive: m.WALArchive, SelfContained: m.SelfContained(), Restorable: !m.Unrestorable(),
			Compression: m.Compression, Size: m.TotalSize(),
			ChecksumsVerified: m.ChecksumsVerified, ChecksumFailures: m.ChecksumFailuresTotal,
		}
	}
	return j
}

type decisionJSON struct {
	backupJSON
	Reason string `json:"reason"`
}
