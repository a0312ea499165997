package engine

import "testing"

func TestExcludeByName(t *testing.T) {
	cases := []struct {
		name  string
		isDir bool
		want  exclusion
		why   string
	}{
		{"pg_stat_tmp", true, keepDirEmpty, "stats temp files are rewritten by the running server"},
		{"pg_replslot", true, keepDirEmpty, "slots would hold back WAL on the restored server"},
		{"pg_dynshmem", true, keepDirEmpty, "DSM segments do not survive a restart"},
		{"pg_notify", true, keepDirEmpty, "NOTIFY queue is reset at startup"},
		{"pg_serial", true, keepDirEmpty, "SSI state is reset at startup"},
		{"pg_snapshots", true, keepDirEmpty, "exported snapshots die with the server"},
		{"pg_subtrans", true, keepDirEmpty, "subtrans is rebuilt at startup"},
		{"pg_stat_tmp", false, include, "a FILE named like an excluded directory is an ordinary file"},
		{"postgresql.auto.conf.tmp", false, skipEntry, "half-written ALTER SYSTEM"},
		{"current_logfiles.tmp", false, skipEntry, "half-written log file name"},
		{"pg_internal.init", false, skipEntry, "relcache init file is rebuilt"},
		{"pg_internal.init.12345", false, skipEntry, "relcache init temp file (prefix match)"},
		{"backup_label", false, skipEntry, "comes from pg_backup_stop"},
		{"tablespace_map", false, skipEntry, "comes from pg_backup_stop"},
		{"backup_manifest", false, skipEntry, "generated for this backup"},
		{"postmaster.pid", false, skipEntry, "lock file would keep the restored server down"},
		{"postmaster.opts", false, skipEntry, "options of the running server"},
		{"pgsql_tmp", true, skipEntry, "temporary file directory"},
		{"pgsql_tmp12345.0", false, skipEntry, "temporary file"},
		{"postgresql.auto.conf", false, include, "the real ALTER SYSTEM file is configuration"},
		{"postgresql.conf", false, include, "configuration is part of the cluster"},
		{"pg_control", false, include, "pg_control is included (last, by the engine)"},
		{"PG_VERSION", false, include, "needed to start"},
		{"pg_xact", true, include, "commit status is needed"},
		{"pg_wal", true, include, "pg_wal is handled by path in the walker, not by name"},
		{"backup_label.old", false, include, "only the exact name is excluded"},
	}
	for _, c := range cases {
		got, reason := excludeByName(c.name, c.isDir)
		if got != c.want {
			t.Errorf("%s (dir=%v): got %v (%s), want %v — %s", c.name, c.isDir, got, reason, c.want, c.why)
		}
		if got != include && reason == "" {
			t.Errorf("%s: excluded without a reason", c.name)
		}
	}
}

func TestExcludeInDatabaseDir(t *testing.T) {
	unlogged := map[string]bool{"16390": true}
	has := func(rel string) bool { return unlogged[rel] }
	cases := []struct {
		name string
		want exclusion
		why  string
	}{
		{"16384", include, "ordinary relation"},
		{"16384.1", include, "second segment of an ordinary relation"},
		{"16384_fsm", include, "free space map of an ordinary relation"},
		{"16384_vm", include, "visibility map"},
		{"16390", skipEntry, "main fork of an unlogged relation"},
		{"16390.3", skipEntry, "segment of an unlogged relation"},
		{"16390_fsm", skipEntry, "fsm of an unlogged relation"},
		{"16390_vm", skipEntry, "vm of an unlogged relation"},
		{"16390_init", include, "init fork is what the server resets the relation from"},
		{"t3_16400", skipEntry, "temporary relation"},
		{"t3_16400_fsm", skipEntry, "fork of a temporary relation"},
		{"t3_16400.1", skipEntry, "segment of a temporary relation"},
		{"t3_x", include, "not a temp relation name"},
		{"PG_VERSION", include, "not a relation"},
		{"pg_filenode.map", include, "relation mapper file"},
		{"16390_foo", include, "unknown fork: not a relation file name"},
	}
	for _, c := range cases {
		got, reason := excludeInDatabaseDir(c.name, has)
		if got != c.want {
			t.Errorf("%s: got %v (%s), want %v — %s", c.name, got, reason, c.want, c.why)
		}
	}
}

func TestIsDatabaseDir(t *testing.T) {
	cases := []struct {
		rel          string
		inTablespace bool
		want         bool
	}{
		{"base/1", false, true},
		{"base/16384", false, true},
		{"base", false, false},
		{"base/pgsql_tmp", false, false},
		{"global", false, false},
		{"x/base/5", false, false},
		{"PG_15_202209061/16384", true, true},
		{"PG_15_202209061", true, false},
		{"PG_9.6_201608131/16384", true, true},
		{"pg_tblspc/16385/PG_15_202209061/5", false, true}, // in-place tablespace
		{"PG_15_x/5", true, false},
	}
	for _, c := range cases {
		if got := isDatabaseDir(c.rel, c.inTablespace); got != c.want {
			t.Errorf("isDatabaseDir(%q, %v) = %v, want %v", c.rel, c.inTablespace, got, c.want)
		}
	}
}
