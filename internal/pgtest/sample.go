package pgtest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Sample describes the data a sample cluster holds: what backup tests
// need to find (or not find) in a backup.
type Sample struct {
	// TablespaceDir is the location of tablespace "spc"; TablespaceOID its OID.
	TablespaceDir string
	TablespaceOID string
	// Unlogged is the relation path of the unlogged table "scratch".
	Unlogged string
	// Corrupt is the relation path of table "victim", whose blocks
	// CorruptBlocks have bad page checksums (empty without SampleOptions.Corrupt).
	Corrupt       string
	CorruptBlocks []uint32
	// CompareQueries return one value each that must be equal on the
	// source and on a restored copy.
	CompareQueries []string
}

// SampleOptions shape the sample data.
type SampleOptions struct {
	Scale   int  // pgbench scale (default 1, about 15 MB)
	Corrupt bool // corrupt two pages of table "victim"
}

// LoadSample fills the cluster with pgbench data, a table in a second
// tablespace, an unlogged table, a leftover temporary file and junk in
// pg_stat_tmp, and with Corrupt, a table with two corrupted pages. The
// server is restarted on the way (to corrupt pages behind its back).
func (c *Cluster) LoadSample(opts SampleOptions) *Sample {
	t := c.t
	t.Helper()
	if opts.Scale == 0 {
		opts.Scale = 1
	}
	s := &Sample{}
	c.Pgbench(opts.Scale)
	s.TablespaceDir = filepath.Join(TempDir(t, "tblspc-"), "ts")
	if err := os.Mkdir(s.TablespaceDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if RunningAsRoot() {
		ChownToServerUser(t, s.TablespaceDir)
	}
	c.Exec("postgres", fmt.Sprintf("CREATE TABLESPACE spc LOCATION '%s'", s.TablespaceDir))
	c.Exec("postgres", `CREATE TABLE in_spc (id int primary key, payload text) TABLESPACE spc;
		INSERT INTO in_spc SELECT g, md5(g::text) FROM generate_series(1, 20000) g;
		CREATE UNLOGGED TABLE scratch (id int, v text);
		INSERT INTO scratch SELECT g, 'x' FROM generate_series(1, 5000) g;
		CREATE TABLE victim (id int, v text);
		INSERT INTO victim SELECT g, repeat('v', 100) FROM generate_series(1, 3000) g;
		CHECKPOINT`)
	s.TablespaceOID = c.QueryString("postgres", "SELECT oid::text FROM pg_tablespace WHERE spcname = 'spc'")
	s.Unlogged = c.RelationPath("postgres", "scratch")
	s.Corrupt = c.RelationPath("postgres", "victim")
	s.CompareQueries = []string{
		"SELECT md5(string_agg(a::text, ',' ORDER BY aid)) FROM pgbench_accounts a",
		"SELECT md5(string_agg(b::text, ',' ORDER BY bid)) FROM pgbench_branches b",
		"SELECT md5(string_agg(t::text, ',' ORDER BY tid)) FROM pgbench_tellers t",
		"SELECT md5(string_agg(s::text, ',' ORDER BY id)) FROM in_spc s",
		"SELECT count(*)::text FROM pgbench_accounts",
	}
	c.Stop()
	if opts.Corrupt {
		// Flip bytes in the middle of blocks 1 and 3 (not the header): their
		// page checksums no longer match.
		s.CorruptBlocks = []uint32{1, 3}
		path := filepath.Join(c.DataDir, s.Corrupt)
		fh, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, blk := range s.CorruptBlocks {
			if _, err := fh.WriteAt([]byte("CORRUPTED!"), int64(blk)*8192+4000); err != nil {
				t.Fatal(err)
			}
		}
		fh.Close()
	}
	// A temporary file a crashed session would leave, and junk that must
	// never be copied.
	tmpDir := filepath.Join(c.DataDir, "base", "pgsql_tmp")
	if err := os.MkdirAll(tmpDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tmpDir, "pgsql_tmp123.0"), []byte("temp"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.DataDir, "pg_stat_tmp", "junk.stat"), []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	if RunningAsRoot() {
		ChownToServerUser(t, c.DataDir)
	}
	c.Start()
	return s
}

// VersionDir is the tablespace's PG_<major>_<catversion> directory name.
func (s *Sample) VersionDir() (string, error) {
	ents, err := os.ReadDir(s.TablespaceDir)
	if err != nil {
		return "", err
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "PG_") {
			return e.Name(), nil
		}
	}
	return "", fmt.Errorf("no PG_* directory in %s", s.TablespaceDir)
}

// Compare runs the sample's comparison queries on both clusters and returns
// a description of the first difference ("" when equal).
func Compare(src, dst *Cluster, queries []string) string {
	for _, q := range queries {
		a, b := src.QueryString("postgres", q), dst.QueryString("postgres", q)
		if a != b {
			return fmt.Sprintf("%s: source %s, restored %s", q, a, b)
		}
	}
	return ""
}
