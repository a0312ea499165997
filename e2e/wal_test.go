package e2e

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgcloudbackup/pgcloudbackup/internal/pgtest"
	"github.com/pgcloudbackup/pgcloudbackup/manifest"
)

// TestSelfContainedByDefault: on a cluster that does not archive its WAL a
// backup without --wal includes it, verifies as self-contained, restores
// and starts with no archive at all; --no-wal is warned about and verify
// fails that backup (it needs an archive that does not exist).
func TestSelfContainedByDefault(t *testing.T) {
	c := pgtest.New(t, pgtest.Options{})
	sample := c.LoadSample(pgtest.SampleOptions{})
	bucketDir := pgtest.TempDir(t, "bucket-")
	env := append(c.Env(), "PGCLOUDBACKUP_BUCKET=file://"+bucketDir)

	r := cli(t, env, "backup", "--fast", "--json")
	if r.code != 0 {
		t.Fatalf("default backup: %s", r)
	}
	m := parseManifest(t, r)
	if !m.WALIncluded || m.WALArchive != manifest.WALArchiveOff || !strings.Contains(r.stderr, "including the WAL") {
		t.Fatalf("default backup of a cluster without archiving: wal_included %v wal_archive %q\n%s", m.WALIncluded, m.WALArchive, r)
	}
	r = cli(t, env, "verify", m.ID)
	if r.code != 0 || !strings.Contains(r.stdout, "restores without a WAL archive") {
		t.Fatalf("verify: %s", r)
	}
	root := pgtest.TempDir(t, "restore-")
	target := filepath.Join(root, "data")
	r = cli(t, env, "restore", m.ID, "--target", target, "--tablespace-map", sample.TablespaceOID+"="+filepath.Join(root, "ts"))
	if r.code != 0 || strings.Contains(r.stderr, "restore_command") {
		t.Fatalf("restore of a self-contained backup (no restore_command needed): %s", r)
	}
	if out, err := c.Client("pg_verifybackup", target).CombinedOutput(); err != nil {
		t.Fatalf("pg_verifybackup: %v\n%s", err, out)
	}
	restored := startRestored(t, c, sample, root, target)
	restored.Stop()

	// The warning survives -q (the server's own notice about archiving
	// used to be an info line -q hid).
	r = cli(t, env, "backup", "--fast", "--no-wal", "-q", "--json")
	if r.code != 0 {
		t.Fatalf("--no-wal backup: %s", r)
	}
	nowal := parseManifest(t, r)
	if nowal.WALIncluded || nowal.WALArchive != manifest.WALArchiveOff || !strings.Contains(r.stderr, "level=WARN") ||
		!strings.Contains(r.stderr, "--no-wal") {
		t.Fatalf("--no-wal: wal_included %v wal_archive %q, want a warning\n%s", nowal.WALIncluded, nowal.WALArchive, r)
	}
	assertOneLineError(t, cli(t, env, "verify", nowal.ID), 1, "needs a WAL archive")
	r = cli(t, env, "list")
	if !strings.Contains(r.stdout, " NONE ") || !strings.Contains(r.stdout, " yes ") {
		t.Errorf("list does not say which backup nothing can restore:\n%s", r)
	}
	assertOneLineError(t, cli(t, env, "backup", "--wal", "--no-wal"), 2, "contradict")
}

// TestArchivedWALNotIncluded: when the server provably archives its WAL the
// default backup leaves it out (the archive holds it), --wal still includes
// it, and a failing archiver is no proof: WAL included.
func TestArchivedWALNotIncluded(t *testing.T) {
	archive := pgtest.TempDir(t, "archive-")
	c := pgtest.New(t, pgtest.Options{Conf: map[string]string{
		"archive_mode":    "on",
		"archive_command": "'test ! -f " + archive + "/%f && cp %p " + archive + "/%f'",
	}})
	c.Exec("postgres", "CREATE TABLE t AS SELECT 1 AS x; SELECT pg_switch_wal()")
	waitArchiver(t, c, "last_archived_wal IS NOT NULL")
	bucketDir := pgtest.TempDir(t, "bucket-")
	env := append(c.Env(), "PGCLOUDBACKUP_BUCKET=file://"+bucketDir)

	r := cli(t, env, "backup", "--fast", "--json")
	if r.code != 0 {
		t.Fatalf("backup: %s", r)
	}
	m := parseManifest(t, r)
	if m.WALIncluded || m.WALArchive != manifest.WALArchiveHealthy {
		t.Fatalf("backup of an archiving server: wal_included %v wal_archive %q\n%s", m.WALIncluded, m.WALArchive, r)
	}
	r = cli(t, env, "verify", m.ID)
	if r.code != 0 || !strings.Contains(r.stdout, "needs a WAL archive") {
		t.Fatalf("verify of a backup relying on a healthy archive: %s", r)
	}
	r = cli(t, env, "backup", "--fast", "--wal", "--json")
	if m := parseManifest(t, r); r.code != 0 || !m.WALIncluded || m.WALArchive != manifest.WALArchiveHealthy {
		t.Fatalf("--wal on an archiving server: %s", r)
	}

	// Archiving breaks: no longer proof.
	c.Exec("postgres", "ALTER SYSTEM SET archive_command = 'false'")
	c.Exec("postgres", "SELECT pg_reload_conf()")
	c.Exec("postgres", "CREATE TABLE t2 AS SELECT 1 AS x; SELECT pg_switch_wal()")
	waitArchiver(t, c, "last_failed_time > last_archived_time")
	r = cli(t, env, "backup", "--fast", "--json")
	if m := parseManifest(t, r); r.code != 0 || !m.WALIncluded || m.WALArchive != manifest.WALArchiveFailing {
		t.Fatalf("backup while archiving fails: %s", r)
	}
}

func waitArchiver(t *testing.T, c *pgtest.Cluster, cond string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for c.QueryString("postgres", "SELECT ("+cond+")::text FROM pg_stat_archiver") != "true" {
		if time.Now().After(deadline) {
			t.Fatalf("pg_stat_archiver never showed %s", cond)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestWALReserveNeedsReplication: a role without the REPLICATION attribute
// cannot create the slot that reserves the backup's WAL: exit 3 with a hint,
// before the server is put in backup mode; --no-wal does without a slot.
func TestWALReserveNeedsReplication(t *testing.T) {
	c := pgtest.New(t, pgtest.Options{})
	c.Exec("postgres", `CREATE ROLE operator LOGIN;
		GRANT EXECUTE ON FUNCTION pg_backup_start(text, boolean), pg_backup_stop(boolean) TO operator;
		GRANT pg_read_all_settings, pg_read_all_stats TO operator`)
	bucketDir := pgtest.TempDir(t, "bucket-")
	env := append(c.Env(), "PGCLOUDBACKUP_BUCKET=file://"+bucketDir, "PGUSER=operator")
	before := c.QueryString("postgres", "SELECT checkpoints_req::text FROM pg_stat_bgwriter")
	r := cli(t, env, "backup", "--fast")
	assertOneLineError(t, r, 3, "REPLICATION")
	if after := c.QueryString("postgres", "SELECT checkpoints_req::text FROM pg_stat_bgwriter"); after != before {
		t.Errorf("the server checkpointed for a backup refused beforehand (%s -> %s)", before, after)
	}
	r = cli(t, env, "backup", "--fast", "--no-wal", "--json")
	if m := parseManifest(t, r); r.code != 0 || m.WALIncluded {
		t.Fatalf("--no-wal needs no slot: %s", r)
	}

	// No slot to be had: the same, with the setting named.
	noSlots := pgtest.New(t, pgtest.Options{Conf: map[string]string{"max_replication_slots": "0"}})
	r = cli(t, append(noSlots.Env(), "PGCLOUDBACKUP_BUCKET=file://"+bucketDir), "backup", "--fast")
	assertOneLineError(t, r, 3, "max_replication_slots")
}
