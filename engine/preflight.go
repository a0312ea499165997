package engine

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
)

// Server is an open connection that passed the same preflight checks a
// backup runs first (version, wal_level, block size, system identifier,
// the privilege to start a backup). `pgcloudbackup check` uses it so that
// check and backup can never disagree about what is required.
type Server struct {
	s *session
}

// ServerInfo is what the preflight learned about the server.
type ServerInfo struct {
	Address          string
	Version          string
	VersionNum       int
	SystemIdentifier uint64
	WALLevel         string
	DataChecksums    bool
	InRecovery       bool
	// DataDirectory is "" when the role may not read it.
	DataDirectory  string
	WALSegmentSize int64
}

// Inspect connects (dsn "" reads the libpq environment) and runs the backup's
// preflight checks. The error is classified like backup's own.
func Inspect(ctx context.Context, dsn string, logger *slog.Logger) (*Server, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s, err := connect(ctx, dsn, logger)
	if err != nil {
		return nil, err
	}
	if err := s.inspect(ctx); err != nil {
		s.close()
		return nil, err
	}
	return &Server{s: s}, nil
}

// Close ends the session.
func (v *Server) Close() { v.s.close() }

// Info returns what the preflight learned.
func (v *Server) Info() ServerInfo {
	i := v.s.info
	return ServerInfo{
		Address: i.Address, Version: i.Version, VersionNum: i.VersionNum,
		SystemIdentifier: i.SystemIdentifier, WALLevel: i.WALLevel, DataChecksums: i.DataChecksums,
		InRecovery: i.InRecovery, DataDirectory: i.DataDirectory, WALSegmentSize: i.WALSegmentSize,
	}
}

// CheckDataDir resolves the data directory a backup would read (pgdata, or
// the server's data_directory when pgdata is "") and checks that its
// pg_control belongs to this server, exactly as backup does. It returns the
// absolute directory.
func (v *Server) CheckDataDir(pgdata string) (string, error) {
	dir, err := resolveDataDir(pgdata, v.s.info.DataDirectory)
	if err != nil {
		return "", err
	}
	if _, err := checkDataDirectory(dir, v.s.info.SystemIdentifier, v.s.info.Address); err != nil {
		return dir, err
	}
	return dir, nil
}

// ArchiverStatus is the server's WAL archiving state: archive_mode and
// pg_stat_archiver.
type ArchiverStatus struct {
	Mode              string // archive_mode: off, on, always
	Command           string // archive_command ("" when hidden or unset)
	Library           string // archive_library (PostgreSQL 15+)
	ArchivedCount     int64
	LastArchivedWAL   string
	LastArchivedTime  time.Time // zero when nothing was archived
	FailedCount       int64
	LastFailedWAL     string
	LastFailedTime    time.Time
	StatsReset        time.Time
	CurrentWALSegment string // the segment being written now ("" on a standby)
}

// Failing reports whether the newest archiving attempt failed: a failure
// newer than the last success.
func (a ArchiverStatus) Failing() bool {
	return !a.LastFailedTime.IsZero() && a.LastFailedTime.After(a.LastArchivedTime)
}

// Archiver reads archive_mode, archive_command/archive_library and
// pg_stat_archiver.
func (v *Server) Archiver(ctx context.Context) (ArchiverStatus, error) {
	var a ArchiverStatus
	conn := v.s.conn
	q := `SELECT current_setting('archive_mode'), coalesce(current_setting('archive_command', true), ''), `
	if v.s.info.VersionNum >= 150000 {
		q += `coalesce(current_setting('archive_library', true), '')`
	} else {
		q += `''`
	}
	if err := conn.QueryRow(ctx, q).Scan(&a.Mode, &a.Command, &a.Library); err != nil {
		return a, permissionOr(err, "read archive_mode")
	}
	var lastArch, lastFail, reset *time.Time
	var lastArchWAL, lastFailWAL *string
	err := conn.QueryRow(ctx, `SELECT archived_count, last_archived_wal, last_archived_time,
		failed_count, last_failed_wal, last_failed_time, stats_reset FROM pg_stat_archiver`).
		Scan(&a.ArchivedCount, &lastArchWAL, &lastArch, &a.FailedCount, &lastFailWAL, &lastFail, &reset)
	if err != nil {
		return a, permissionOr(err, "read pg_stat_archiver")
	}
	deref := func(p *time.Time) time.Time {
		if p == nil {
			return time.Time{}
		}
		return p.UTC()
	}
	a.LastArchivedTime, a.LastFailedTime, a.StatsReset = deref(lastArch), deref(lastFail), deref(reset)
	if lastArchWAL != nil {
		a.LastArchivedWAL = *lastArchWAL
	}
	if lastFailWAL != nil {
		a.LastFailedWAL = *lastFailWAL
	}
	if !v.s.info.InRecovery {
		// pg_walfile_name is not allowed during recovery.
		if err := conn.QueryRow(ctx, "SELECT pg_walfile_name(pg_current_wal_lsn())").Scan(&a.CurrentWALSegment); err != nil && err != pgx.ErrNoRows {
			return a, permissionOr(err, "read the current WAL segment")
		}
	}
	return a, nil
}

// String summarises the archiver for a one-line report.
func (a ArchiverStatus) String() string {
	s := fmt.Sprintf("archive_mode=%s, %d archived", a.Mode, a.ArchivedCount)
	if a.LastArchivedWAL != "" {
		s += fmt.Sprintf(", last %s at %s", a.LastArchivedWAL, a.LastArchivedTime.Format(time.RFC3339))
	}
	if a.FailedCount > 0 {
		s += fmt.Sprintf(", %d failed (last %s at %s)", a.FailedCount, a.LastFailedWAL, a.LastFailedTime.Format(time.RFC3339))
	}
	return s
}
