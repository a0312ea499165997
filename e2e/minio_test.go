package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/pgcloudbackup/pgcloudbackup/internal/pgtest"
	"github.com/pgcloudbackup/pgcloudbackup/internal/testsvc"
	"github.com/pgcloudbackup/pgcloudbackup/storage"
)

// TestMinIOOverTLS backs a sample cluster up into MinIO over HTTPS, under a
// key prefix, and checks the result with ordinary tools only: the AWS SDK
// client lists and downloads, sha256 checks manifest.json, zstd and tar
// extract, the extracted files are compared with the data directory byte
// for byte, and pg_verifybackup checks the whole. Then the TLS,
// credential and bucket mistakes a user makes first.
func TestMinIOOverTLS(t *testing.T) {
	// Autovacuum off and every table frozen before the backup: then no
	// page of base/, global/ or the tablespace changes while the server
	// idles (no hint bits left to set, nothing to vacuum), and those files
	// must come back byte-equal.
	c := pgtest.New(t, pgtest.Options{Conf: map[string]string{"autovacuum": "off"}})
	sample := c.LoadSample(pgtest.SampleOptions{})
	src := inspectSource(c, sample)
	c.Exec("postgres", "VACUUM (FREEZE, ANALYZE)")
	c.Exec("postgres", "VACUUM (FREEZE)") // freezes the statistics rows ANALYZE wrote
	c.Exec("postgres", "CHECKPOINT")

	m := testsvc.StartMinIO(t, testsvc.MinIOOptions{TLS: true})
	const bucket = "pg-backups"
	m.CreateBucket(t, bucket)
	env := append(c.Env(), m.Env()...)

	t.Run("backup", func(t *testing.T) {
		testMinIOBackup(t, c, m, env, bucket, src)
	})

	stored := listKeys(t, m, bucket, "")
	bucketURL := m.BucketURL(bucket, "prod/cluster-a")
	cases := []struct {
		name     string
		env      []string
		url      string
		contains []string
	}{
		{"no CA bundle", append(slices.Clone(env), "AWS_CA_BUNDLE="), bucketURL,
			[]string{"signed by an unknown authority", "AWS_CA_BUNDLE"}},
		{"wrong secret key", append(slices.Clone(env), "AWS_SECRET_ACCESS_KEY=not-the-secret"), bucketURL,
			[]string{"denied", "AWS_SECRET_ACCESS_KEY"}},
		{"missing bucket", env, m.BucketURL("no-such-bucket", "prod"),
			[]string{`bucket "no-such-bucket" does not exist`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := cli(t, tc.env, "backup", "--bucket", tc.url, "--wal", "--fast")
			assertOneLineError(t, r, 3, tc.contains[0])
			for _, s := range tc.contains[1:] {
				if !strings.Contains(errorLineOf(r), s) {
					t.Errorf("error line does not name %s: %s", s, errorLineOf(r))
				}
			}
			t.Logf("%s", errorLineOf(r))
		})
	}
	// The failed attempts stored nothing and left no session behind.
	if keys := listKeys(t, m, bucket, ""); !slices.Equal(keys, stored) {
		t.Errorf("objects in the bucket changed by failed backups: %v, before %v", keys, stored)
	}
	assertNoBackupSessions(t, c)
}

// storedManifest is what these checks read of manifest.json: the documented
// fields, decoded here rather than with our manifest package.
type storedManifest struct {
	ID             string       `json:"id"`
	Status         string       `json:"status"`
	WALIncluded    bool         `json:"wal_included"`
	BackupManifest storedObject `json:"backup_manifest"`
	Tablespaces    []struct {
		OID     uint32         `json:"oid"`
		Objects []storedObject `json:"objects"`
	} `json:"tablespaces"`
}

type storedObject struct {
	Key    string `json:"key"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// source is what the comparison needs to know about the cluster, read
// before the backup (reading it later could dirty catalog pages).
type source struct {
	dataDir, tablespaceDir, tablespaceOID string
	// unlogged relation files (main fork paths): only their _init fork
	// is backed up.
	unlogged []string
	// must be among the files compared byte for byte.
	mustCompare []string
}

func inspectSource(c *pgtest.Cluster, sample *pgtest.Sample) source {
	unlogged := c.QueryString("postgres", "SELECT coalesce(string_agg(pg_relation_filepath(oid), ' '), '') FROM pg_class WHERE relpersistence = 'u'")
	must := strings.Fields(c.QueryString("postgres", `SELECT string_agg(pg_relation_filepath(c), ' ') FROM unnest(
		ARRAY['pgbench_accounts', 'pgbench_accounts_pkey', 'pgbench_branches', 'pgbench_tellers']::regclass[]) c`))
	// in_spc lives in the tablespace: pg_tblspc/<oid>/<PG_version>/<db>/<file>.
	inSpc := c.RelationPath("postgres", "in_spc")
	must = append(must, "PG_VERSION", "postgresql.conf", "pg_hba.conf", "global/pg_filenode.map")
	must = append(must, "ts:"+strings.TrimPrefix(inSpc, "pg_tblspc/"+sample.TablespaceOID+"/"))
	return source{
		dataDir:       c.DataDir,
		tablespaceDir: sample.TablespaceDir,
		tablespaceOID: sample.TablespaceOID,
		unlogged:      strings.Fields(unlogged),
		mustCompare:   must,
	}
}

func testMinIOBackup(t *testing.T, c *pgtest.Cluster, m *testsvc.MinIO, env []string, bucket string, src source) {
	const prefix = "prod/cluster-a/"
	r := cli(t, env, "backup", "--bucket", m.BucketURL(bucket, strings.TrimSuffix(prefix, "/")), "--wal", "--fast", "--json")
	if r.code != 0 {
		t.Fatalf("backup: %s", r)
	}
	var printed storedManifest
	if err := json.Unmarshal([]byte(r.stdout), &printed); err != nil {
		t.Fatalf("--json output: %v\n%s", err, r)
	}
	dir := prefix + "backups/" + printed.ID + "/"

	// The bucket holds the objects manifest.json names, both manifests,
	// and nothing else, all under the prefix.
	work := t.TempDir()
	download(t, m, bucket, dir+"manifest.json", filepath.Join(work, "manifest.json"))
	var stored storedManifest
	if err := json.Unmarshal(mustRead(t, filepath.Join(work, "manifest.json")), &stored); err != nil {
		t.Fatalf("manifest.json in the bucket: %v", err)
	}
	if stored.ID != printed.ID || stored.Status != "complete" || !stored.WALIncluded {
		t.Fatalf("manifest.json in the bucket: id %q status %q wal %v; printed id %q", stored.ID, stored.Status, stored.WALIncluded, printed.ID)
	}
	want := []string{dir + "backup_manifest", dir + "manifest.json", dir + storage.MarkerName}
	objects := []storedObject{stored.BackupManifest}
	for _, ts := range stored.Tablespaces {
		for _, o := range ts.Objects {
			want = append(want, dir+o.Key)
			objects = append(objects, o)
		}
	}
	sort.Strings(want)
	if got := listKeys(t, m, bucket, ""); !slices.Equal(got, want) {
		t.Fatalf("objects in the bucket:\n%v\nwant:\n%v", got, want)
	}

	// Every object's bytes match manifest.json's size and SHA-256.
	for _, o := range objects {
		size, sum := download(t, m, bucket, dir+o.Key, filepath.Join(work, o.Key))
		if size != o.Size || sum != o.SHA256 {
			t.Errorf("%s: downloaded %d bytes, SHA-256 %s; manifest.json says %d bytes, %s", o.Key, size, sum, o.Size, o.SHA256)
		}
	}

	// Extract with zstd and tar: base archive into data/, the tablespace
	// archive into ts/.
	root := pgtest.TempDir(t, "extract-")
	data, ts := filepath.Join(root, "data"), filepath.Join(root, "ts")
	for _, tsp := range stored.Tablespaces {
		dest := data
		if tsp.OID != 0 {
			dest = ts
		}
		if err := os.MkdirAll(dest, 0o700); err != nil {
			t.Fatal(err)
		}
		for _, o := range tsp.Objects {
			sh(t, fmt.Sprintf("zstd -dc %q | tar -xf - -C %q", filepath.Join(work, o.Key), dest))
		}
	}
	compareWithSource(t, src, data, ts)

	// PostgreSQL's verifier: every file against backup_manifest, and the
	// included WAL with pg_waldump.
	link := filepath.Join(data, "pg_tblspc", src.tablespaceOID)
	if err := os.Remove(link); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(ts, link); err != nil {
		t.Fatal(err)
	}
	out, err := c.Client("pg_verifybackup", "-m", filepath.Join(work, "backup_manifest"), data).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "backup successfully verified") {
		t.Fatalf("pg_verifybackup: %v\n%s", err, out)
	}
}

// compareWithSource compares the extracted archives with the source.
//
// Byte-equal (the server idles, autovacuum is off, everything was frozen
// and checkpointed before the backup, whose own checkpoint flushed the
// rest): every file under base/ and global/ except global/pg_control, every
// tablespace file, PG_VERSION and the configuration files. Also, each such
// source file is in the backup unless the backup must skip it
// (pg_internal.init, pgsql_tmp*, forks of unlogged relations but _init).
//
// Present in the source but may differ: global/pg_control (the backup
// copies it last; checkpoints rewrite it), pg_xact, pg_multixact,
// pg_commit_ts, pg_subtrans (SLRU pages flushed at checkpoints), pg_logical
// (replorigin_checkpoint is rewritten by every checkpoint), pg_wal (the
// current segment is written on past the backup's stop LSN; pg_verifybackup
// checks the WAL instead). In the backup only: backup_label and
// tablespace_map, from pg_backup_stop.
func compareWithSource(t *testing.T, src source, data, ts string) {
	t.Helper()
	compared := map[string]bool{}
	check := func(label, extracted, original string, stable func(string) bool) {
		for _, rel := range listFiles(t, extracted) {
			if label == "" && (rel == "backup_label" || rel == "tablespace_map") {
				continue
			}
			orig, err := os.ReadFile(filepath.Join(original, rel))
			if err != nil {
				if label == "" && strings.HasPrefix(rel, "pg_wal/") {
					continue // a segment recycled since: pg_verifybackup checks WAL
				}
				t.Errorf("%s%s is in the backup but not in the source: %v", label, rel, err)
				continue
			}
			if !stable(rel) {
				continue
			}
			if !bytes.Equal(mustRead(t, filepath.Join(extracted, rel)), orig) {
				t.Errorf("%s%s differs from the source", label, rel)
			}
			compared[label+rel] = true
		}
		for _, rel := range listFiles(t, original) {
			if stable(rel) && !skipped(rel, src.unlogged) {
				if _, err := os.Stat(filepath.Join(extracted, rel)); err != nil {
					t.Errorf("%s%s is in the source but not in the backup", label, rel)
				}
			}
		}
	}
	check("", data, src.dataDir, stableInDataDir)
	check("ts:", ts, src.tablespaceDir, func(string) bool { return true })
	for _, f := range src.mustCompare {
		if !compared[f] {
			t.Errorf("%s was not compared byte for byte", f)
		}
	}
	for _, f := range []string{"backup_label", "tablespace_map", "global/pg_control"} {
		if _, err := os.Stat(filepath.Join(data, f)); err != nil {
			t.Errorf("%s missing from the backup: %v", f, err)
		}
	}
	t.Logf("%d files compared byte for byte", len(compared))
}

var configFiles = []string{"PG_VERSION", "postgresql.conf", "postgresql.auto.conf", "pg_hba.conf", "pg_ident.conf"}

func stableInDataDir(rel string) bool {
	switch {
	case slices.Contains(configFiles, rel):
		return true
	case rel == "global/pg_control":
		return false
	}
	return strings.HasPrefix(rel, "base/") || strings.HasPrefix(rel, "global/")
}

var forkOrSegment = regexp.MustCompile(`^(.*?)(_fsm|_vm|_init)?(\.\d+)?$`)

// skipped: files the backup must leave out (DESIGN.md's exclusions that
// apply under base/ and global/).
func skipped(rel string, unlogged []string) bool {
	base := path.Base(rel)
	if strings.HasPrefix(base, "pg_internal.init") || strings.HasPrefix(base, "pgsql_tmp") || strings.Contains(rel, "/pgsql_tmp/") {
		return true
	}
	if m := forkOrSegment.FindStringSubmatch(rel); m != nil && m[2] != "_init" && slices.Contains(unlogged, m[1]) {
		return true
	}
	return false
}
