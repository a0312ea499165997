package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
	"github.com/pgcloudbackup/pgcloudbackup/internal/pg/wal"
	"github.com/pgcloudbackup/pgcloudbackup/manifest"
)

// MinServerVersion is the oldest PostgreSQL release we back up: 13 brought
// backup manifests and the non-exclusive API in its current form.
const MinServerVersion = 130000

// session is the one SQL session that starts and stops the backup. The
// backup is non-exclusive: it belongs to this session, and closing the
// session (or losing it) aborts the backup on the server, so a failure
// anywhere never leaves the server in backup mode.
type session struct {
	conn   *pgx.Conn
	info   serverInfo
	logger *slog.Logger
	// slot is the temporary replication slot that keeps the backup's WAL
	// from being recycled (only with --wal), "" when none.
	slot string
}

// serverInfo is what the preflight checks learn from the server.
type serverInfo struct {
	VersionNum       int
	Version          string
	DataDirectory    string // "" when the role may not read it
	SystemIdentifier uint64
	WALLevel         string
	DataChecksums    bool
	BlockSize        int
	WALSegmentSize   int64
	WALBlockSize     int    // XLOG_BLCKSZ
	SegmentBlocks    uint32 // RELSEG_SIZE
	StatsTempDir     string // PostgreSQL 13-14 only
	InRecovery       bool
	Address          string // host:port for messages
}

// connect opens the session. dsn may be empty: pgx then reads the libpq
// environment (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGSSLMODE, ~/.pgpass).
func connect(ctx context.Context, dsn string, logger *slog.Logger) (*session, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// pgx echoes the DSN in some parse errors; never print it, it may
		// hold a password.
		return nil, failure.Wrap(failure.Usage, errors.New("invalid connection string (--dsn)"),
			"use keyword=value pairs or a postgres:// URL")
	}
	cfg.RuntimeParams["application_name"] = "pgcloudbackup"
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		// pg_backup_stop reports archiving progress as notices.
		logger.Info("server: "+n.Message, "severity", n.Severity)
	}
	addr := describeAddress(cfg)
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, failure.Wrap(failure.Precondition,
			fmt.Errorf("cannot connect to PostgreSQL at %s: %s", addr, connectReason(err)),
			"check that the server runs and set PGHOST/PGPORT/PGUSER (or --dsn)")
	}
	s := &session{conn: conn, logger: logger}
	s.info.Address = addr
	return s, nil
}

func describeAddress(cfg *pgx.ConnConfig) string {
	host := cfg.Host
	if strings.HasPrefix(host, "/") {
		return fmt.Sprintf("socket %s/.s.PGSQL.%d", host, cfg.Port)
	}
	return net.JoinHostPort(host, strconv.Itoa(int(cfg.Port)))
}

// connectReason is the root cause of a failed connection, without pgx's
// repetition of every address it tried.
func connectReason(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Message
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Err != nil {
		return opErr.Err.Error()
	}
	return oneLine(err)
}

// oneLine flattens an error message so it fits the one-line rule.
func oneLine(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Message
	}
	return failure.OneLine(err)
}

// close ends the session. If a backup is in progress the server aborts it
// (do_pg_abort_backup at session exit), and drops the temporary slot.
func (s *session) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = s.conn.Close(ctx)
}

// inspect runs the preflight queries and checks what must hold before a
// backup starts.
func (s *session) inspect(ctx context.Context) error {
	var versionNum string
	if err := s.conn.QueryRow(ctx, "SELECT current_setting('server_version_num')").Scan(&versionNum); err != nil {
		return fmt.Errorf("query server version: %w", err)
	}
	n, err := strconv.Atoi(versionNum)
	if err != nil {
		return fmt.Errorf("parse server_version_num %q: %w", versionNum, err)
	}
	s.info.VersionNum = n
	if n < MinServerVersion {
		return failure.New(failure.Precondition, "PostgreSQL %d.%d at %s is not supported: version 13 or later is required",
			n/10000, n%10000, s.info.Address)
	}
	// A long backup must not be cut short by the role's timeouts.
	stmts := []string{"SET statement_timeout = 0", "SET lock_timeout = 0"}
	if n >= 140000 {
		stmts = append(stmts, "SET idle_session_timeout = 0")
	}
	for _, st := range stmts {
		if _, err := s.conn.Exec(ctx, st); err != nil {
			return fmt.Errorf("%s: %w", st, err)
		}
	}

	settings := map[string]string{}
	rows, err := s.conn.Query(ctx, `SELECT name, setting FROM pg_settings
		WHERE name IN ('server_version', 'wal_level', 'data_checksums', 'block_size',
		               'wal_segment_size', 'wal_block_size', 'segment_size', 'stats_temp_directory', 'data_directory')`)
	if err != nil {
		return fmt.Errorf("query settings: %w", err)
	}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return fmt.Errorf("read settings: %w", err)
		}
		settings[k] = v
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read settings: %w", err)
	}
	s.info.Version = settings["server_version"]
	s.info.WALLevel = settings["wal_level"]
	s.info.DataChecksums = settings["data_checksums"] == "on"
	// data_directory is only visible to superusers and pg_read_all_settings.
	s.info.DataDirectory = settings["data_directory"]
	s.info.StatsTempDir = settings["stats_temp_directory"]
	if s.info.BlockSize, err = strconv.Atoi(settings["block_size"]); err != nil {
		return fmt.Errorf("parse block_size %q: %w", settings["block_size"], err)
	}
	if s.info.BlockSize != 8192 {
		return failure.New(failure.Precondition, "server block size is %d: only 8192 is supported", s.info.BlockSize)
	}
	if s.info.WALSegmentSize, err = strconv.ParseInt(settings["wal_segment_size"], 10, 64); err != nil {
		return fmt.Errorf("parse wal_segment_size %q: %w", settings["wal_segment_size"], err)
	}
	if s.info.WALBlockSize, err = strconv.Atoi(settings["wal_block_size"]); err != nil {
		return fmt.Errorf("parse wal_block_size %q: %w", settings["wal_block_size"], err)
	}
	segBlocks, err := strconv.ParseUint(settings["segment_size"], 10, 32)
	if err != nil {
		return fmt.Errorf("parse segment_size %q: %w", settings["segment_size"], err)
	}
	s.info.SegmentBlocks = uint32(segBlocks)
	if s.info.WALLevel == "minimal" {
		return failure.New(failure.Precondition, "wal_level is minimal on %s: a base backup needs wal_level = replica (or logical); set it and restart the server", s.info.Address)
	}

	var sysid string
	err = s.conn.QueryRow(ctx, "SELECT system_identifier::text, pg_is_in_recovery() FROM pg_control_system()").Scan(&sysid, &s.info.InRecovery)
	if err != nil {
		return permissionOr(err, "read the system identifier (pg_control_system)")
	}
	if s.info.SystemIdentifier, err = strconv.ParseUint(sysid, 10, 64); err != nil {
		return fmt.Errorf("parse system identifier %q: %w", sysid, err)
	}

	fn := "pg_backup_start(text, boolean)"
	if n < 150000 {
		fn = "pg_start_backup(text, boolean, boolean)"
	}
	var allowed bool
	if err := s.conn.QueryRow(ctx, "SELECT has_function_privilege($1, 'EXECUTE')", fn).Scan(&allowed); err != nil {
		return fmt.Errorf("check privilege on %s: %w", fn, err)
	}
	if !allowed {
		return failure.Wrap(failure.Precondition,
			fmt.Errorf("the role may not run %s on %s", fn, s.info.Address),
			"connect as a superuser or GRANT EXECUTE on the backup functions to the role")
	}
	return nil
}

// permissionOr classifies "permission denied" as an unmet precondition.
func permissionOr(err error, what string) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42501" {
		return failure.Wrap(failure.Precondition, fmt.Errorf("%s: %s", what, pgErr.Message),
			"connect as a superuser or a role with the needed grants")
	}
	return fmt.Errorf("%s: %w", what, err)
}

// reserveWAL creates a temporary physical replication slot that reserves
// WAL from now on, so the segments a backup that includes its WAL needs
// cannot be recycled while it runs. The slot disappears with the session.
// Without it the backup could not promise its WAL, so failure is an unmet
// precondition, found before the server checkpoints.
func (s *session) reserveWAL(ctx context.Context, name string) error {
	_, err := s.conn.Exec(ctx, "SELECT pg_create_physical_replication_slot($1, true, true)", name)
	if err == nil {
		s.slot = name
		return nil
	}
	hint := "a backup that includes its WAL reserves it with a temporary replication slot; or take it with --no-wal if the WAL is archived"
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "42501": // insufficient_privilege
			hint = "give the role the REPLICATION attribute (ALTER ROLE ... REPLICATION), which creating the temporary replication slot that reserves the backup's WAL needs; or take the backup with --no-wal if the WAL is archived"
		case "53400", "55000": // configuration_limit_exceeded (all slots in use), object_not_in_prerequisite_state (max_replication_slots = 0)
			hint = "free a replication slot or raise max_replication_slots (restart needed): the backup reserves its WAL with a temporary slot; or take it with --no-wal if the WAL is archived"
		}
	}
	return failure.Wrap(failure.Precondition,
		fmt.Errorf("cannot reserve the backup's WAL on %s: create temporary replication slot %s: %s", s.info.Address, name, oneLine(err)), hint)
}

// archiveFreshness: archiving whose last success is older than this is not
// proof that the server archives its WAL now.
const archiveFreshness = 24 * time.Hour

// archiveState is what the server says about its own WAL archiving.
type archiveState struct {
	Healthy bool
	Status  string // manifest.WALArchive* value
	Reason  string // why it is (not) healthy, for the log
}

// archiveStatus checks whether the server provably archives its WAL:
// archive_mode on (always, on a standby: with "on" only the primary
// archives) and pg_stat_archiver showing a recent success with no failure
// after it.
func (s *session) archiveStatus(ctx context.Context) (archiveState, error) {
	var mode string
	var archived, failed *string
	var fresh, failedAfter *bool
	err := s.conn.QueryRow(ctx, `SELECT current_setting('archive_mode'),
			last_archived_wal || ' at ' || last_archived_time::text,
			last_failed_wal || ' at ' || last_failed_time::text,
			now() - last_archived_time < make_interval(secs => $1),
			last_failed_time >= last_archived_time OR (last_failed_time IS NOT NULL AND last_archived_time IS NULL)
		FROM pg_stat_archiver`, archiveFreshness.Seconds()).Scan(&mode, &archived, &failed, &fresh, &failedAfter)
	if err != nil {
		return archiveState{}, permissionOr(err, "read the WAL archiver status (pg_stat_archiver)")
	}
	off := func(reason string) (archiveState, error) {
		return archiveState{Status: manifest.WALArchiveOff, Reason: reason}, nil
	}
	failing := func(reason string) (archiveState, error) {
		return archiveState{Status: manifest.WALArchiveFailing, Reason: reason}, nil
	}
	switch {
	case mode == "off":
		return off("archive_mode is off")
	case s.info.InRecovery && mode != "always":
		return off("this standby does not archive WAL (archive_mode is " + mode + ", not always)")
	case failedAfter != nil && *failedAfter:
		return failing("archiving failed (" + deref(failed) + ") and has not succeeded since")
	case archived == nil:
		return failing("no WAL has been archived yet (pg_stat_archiver)")
	case fresh == nil || !*fresh:
		return failing(fmt.Sprintf("the last WAL archived (%s) is more than %s old", *archived, archiveFreshness))
	}
	return archiveState{Healthy: true, Status: manifest.WALArchiveHealthy, Reason: "last archived " + *archived}, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// endTimeline is the timeline a standby's backup may have ended on: the
// one recovery had reached when the backup stopped (pg_backup_stop takes
// its stop point from the same place, minRecoveryPoint). A primary cannot
// change timeline while it runs.
func (s *session) endTimeline(ctx context.Context, startTLI uint32) (uint32, error) {
	if !s.info.InRecovery {
		return startTLI, nil
	}
	var tli int64
	if err := s.conn.QueryRow(ctx, "SELECT min_recovery_end_timeline::bigint FROM pg_control_recovery()").Scan(&tli); err != nil {
		return 0, permissionOr(err, "read the standby's recovery timeline (pg_control_recovery)")
	}
	if uint32(tli) < startTLI {
		return startTLI, nil
	}
	return uint32(tli), nil
}

// start begins the non-exclusive backup and returns its start LSN.
func (s *session) start(ctx context.Context, label string, fast bool) (wal.LSN, error) {
	q := "SELECT pg_backup_start($1, $2)::text"
	if s.info.VersionNum < 150000 {
		q = "SELECT pg_start_backup($1, $2, false)::text"
	}
	var lsn string
	if err := s.conn.QueryRow(ctx, q, label, fast).Scan(&lsn); err != nil {
		return 0, fmt.Errorf("start backup: %s", oneLine(err))
	}
	return wal.ParseLSN(lsn)
}

// stopResult is what the server returns when the backup stops.
type stopResult struct {
	LSN           wal.LSN
	LabelFile     string
	TablespaceMap string
}

// stop ends the backup. waitForArchive makes the server wait until the WAL
// the backup needs has been archived (when archiving is on).
func (s *session) stop(ctx context.Context, waitForArchive bool) (stopResult, error) {
	q := "SELECT lsn::text, labelfile, spcmapfile FROM pg_backup_stop($1)"
	if s.info.VersionNum < 150000 {
		q = "SELECT lsn::text, labelfile, spcmapfile FROM pg_stop_backup(false, $1)"
	}
	var r stopResult
	var lsn string
	var spcmap *string
	if err := s.conn.QueryRow(ctx, q, waitForArchive).Scan(&lsn, &r.LabelFile, &spcmap); err != nil {
		return r, fmt.Errorf("stop backup: %s", oneLine(err))
	}
	if spcmap != nil {
		r.TablespaceMap = *spcmap
	}
	var err error
	r.LSN, err = wal.ParseLSN(lsn)
	return r, err
}

// ping checks the session is alive (the server may die mid-backup; better
// to notice now than after copying the rest of the cluster).
func (s *session) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := s.conn.Ping(ctx); err != nil {
		return fmt.Errorf("lost the backup session with %s (the server stopped or the connection broke): %s", s.info.Address, oneLine(err))
	}
	return nil
}

// labelTimeline extracts "START TIMELINE: n" from a backup_label.
func labelTimeline(label string) (uint32, error) {
	for _, line := range strings.Split(label, "\n") {
		if v, ok := strings.CutPrefix(line, "START TIMELINE: "); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
			if err != nil {
				return 0, fmt.Errorf("backup_label START TIMELINE %q: %w", v, err)
			}
			return uint32(n), nil
		}
	}
	return 0, errors.New("backup_label has no START TIMELINE line")
}
