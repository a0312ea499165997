package engine

import (
	"strings"

	"github.com/pgcloudbackup/pgcloudbackup/internal/pg/pagecheck"
)

// The exclusion rules of PostgreSQL's basebackup.c (sendDir), each with its
// reason. Like basebackup.c, names are matched in every directory of the
// walk, not only at the top.

// excludedDirContents are directories whose contents are not backed up; the
// directory itself is kept so the restored server finds it.
var excludedDirContents = map[string]string{
	// Statistics temporary files: rewritten by the server while running and
	// of no use to a restored one.
	"pg_stat_tmp": "temporary statistics files",
	// Replication slots are not valid on a restored cluster: copying them
	// would hold back WAL there and confuse subscribers.
	"pg_replslot": "replication slots belong to the running server",
	// Dynamic shared memory segments do not survive a restart.
	"pg_dynshmem": "dynamic shared memory is recreated at startup",
	// LISTEN/NOTIFY queue is reset when the server starts.
	"pg_notify": "notification queue is reset at startup",
	// Old serializable transaction information is reset at startup.
	"pg_serial": "serializable transaction state is reset at startup",
	// Exported snapshots do not survive a restart.
	"pg_snapshots": "exported snapshots are gone after a restart",
	// Subtransaction status is rebuilt at startup.
	"pg_subtrans": "subtransaction state is rebuilt at startup",
}

// excludedFiles are files never backed up (exact names).
var excludedFiles = map[string]string{
	// A partial ALTER SYSTEM write in progress.
	"postgresql.auto.conf.tmp": "ALTER SYSTEM temporary file",
	// A partial log-file-name update in progress.
	"current_logfiles.tmp": "log collector temporary file",
	// Written from pg_backup_stop's result instead, so the restored server
	// sees the label of THIS backup.
	"backup_label":   "comes from pg_backup_stop",
	"tablespace_map": "comes from pg_backup_stop",
	// Generated for this backup; a stale one would describe another backup.
	"backup_manifest": "generated for this backup",
	// Lock file of the running server: a copy would stop the restored
	// server from starting (or mislead it about a live postmaster).
	"postmaster.pid": "lock file of the running server",
	// Command line of the running server, rewritten at every start.
	"postmaster.opts": "options of the running server",
}

// relcacheInitPrefix: relation cache init files (pg_internal.init and, in
// newer releases, pg_internal.init.<pid> temporaries) are rebuilt at startup.
const relcacheInitPrefix = "pg_internal.init"

// tempFilePrefix: temporary files and directories (sorts, hashes, temporary
// tablespace files) are only valid for the session that made them.
const tempFilePrefix = "pgsql_tmp"

// dsStore: PostgreSQL 17 and later skip macOS Finder metadata files, found
// where someone browsed the data directory on a Mac, in every directory.
const dsStore = ".DS_Store"

// excludeForVersion applies the name rules that depend on the server's
// version (server_version_num), after excludeByName.
func excludeForVersion(name string, versionNum int) (exclusion, string) {
	if versionNum >= 170000 && name == dsStore {
		return skipEntry, "macOS Finder metadata"
	}
	return include, ""
}

// exclusion is the decision for one directory entry.
type exclusion int

const (
	include      exclusion = iota
	skipEntry              // leave the entry out entirely
	keepDirEmpty           // store the directory entry, none of its contents
)

// excludeByName applies the name-based rules that basebackup.c applies in
// every directory. isDir tells whether the entry is a directory. It returns
// the decision and the reason (for logs and tests).
func excludeByName(name string, isDir bool) (exclusion, string) {
	if strings.HasPrefix(name, tempFilePrefix) {
		return skipEntry, "temporary file of a session"
	}
	if !isDir {
		if reason, ok := excludedFiles[name]; ok {
			return skipEntry, reason
		}
		if strings.HasPrefix(name, relcacheInitPrefix) {
			return skipEntry, "relation cache init file is rebuilt at startup"
		}
		return include, ""
	}
	if reason, ok := excludedDirContents[name]; ok {
		return keepDirEmpty, reason
	}
	return include, ""
}

// excludeInDatabaseDir applies the rules for files inside a database
// directory (base/<oid> or <tablespace>/PG_*/<oid>): temporary relations
// are skipped, and so are all forks of an unlogged relation except its init
// fork (the server resets unlogged relations from it after a restore).
// hasInitFork answers whether "<relfilenode>_init" exists in the same
// directory.
func excludeInDatabaseDir(name string, hasInitFork func(relNumber string) bool) (exclusion, string) {
	if looksLikeTempRelName(name) {
		return skipEntry, "temporary relation"
	}
	rel, fork, ok := parseRelationFileName(name)
	if ok && fork != "init" && hasInitFork(rel) {
		return skipEntry, "unlogged relation (only its init fork is kept)"
	}
	return include, ""
}

// isDatabaseDir reports whether a directory (path relative to the archive
// root, slash-separated) holds relation files: an all-digit name whose parent
// is the top-level "base" of the data directory or a tablespace version
// directory (PG_<major>_<catversion>).
func isDatabaseDir(rel string, inTablespace bool) bool {
	parent, name := splitLast(rel)
	if name == "" || !allDigits(name) {
		return false
	}
	if !inTablespace && parent == "base" {
		return true
	}
	_, parentName := splitLast(parent)
	return strings.HasPrefix(parentName, "PG_") && isTablespaceVersionDir(parentName)
}

// isTablespaceVersionDir matches "PG_<major>_<catversion>".
func isTablespaceVersionDir(name string) bool {
	rest, ok := strings.CutPrefix(name, "PG_")
	if !ok {
		return false
	}
	major, cat, ok := strings.Cut(rest, "_")
	return ok && major != "" && cat != "" && allDigits(cat) && (allDigits(major) || isDottedVersion(major))
}

// isDottedVersion accepts pre-10 style majors such as "9.6".
func isDottedVersion(s string) bool {
	a, b, ok := strings.Cut(s, ".")
	return ok && allDigits(a) && allDigits(b)
}

func splitLast(rel string) (parent, name string) {
	i := strings.LastIndexByte(rel, '/')
	if i < 0 {
		return "", rel
	}
	return rel[:i], rel[i+1:]
}

func allDigits(s string) bool { return pagecheck.AllDigits(s) }

// parseRelationFileName splits "<digits>[_<fork>][.<segment>]" into the
// relation number and fork ("" for main), with pagecheck's parser (one rule
// for what a relation file is).
func parseRelationFileName(name string) (rel, fork string, ok bool) {
	f, ok := pagecheck.ParseRelationFileName(name)
	return f.Number, f.Fork, ok
}

// looksLikeTempRelName matches "t<digits>_<digits>[_<fork>][.<segment>]",
// the files of temporary tables, which are useless after a restart.
func looksLikeTempRelName(name string) bool {
	rest, ok := strings.CutPrefix(name, "t")
	if !ok {
		return false
	}
	backend, relPart, ok := strings.Cut(rest, "_")
	if !ok || !allDigits(backend) {
		return false
	}
	_, _, ok = parseRelationFileName(relPart)
	return ok
}
