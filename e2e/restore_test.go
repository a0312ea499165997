package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/pgcloudbackup/pgcloudbackup/internal/pgtest"
	"github.com/pgcloudbackup/pgcloudbackup/internal/testsvc"
)

// TestRestoreFromMinIO is the disaster-recovery path end to end: a --wal
// backup of a cluster with pgbench data, a second tablespace and an
// unlogged table into MinIO over TLS; list, verify, restore with the
// tablespace moved; pg_verifybackup on the restored directory; start it and
// compare the data. Then the same bucket with damage: verify and restore
// name the damaged object; a non-empty target is refused.
func TestRestoreFromMinIO(t *testing.T) {
	c := pgtest.New(t, pgtest.Options{})
	sample := c.LoadSample(pgtest.SampleOptions{})
	m := testsvc.StartMinIO(t, testsvc.MinIOOptions{TLS: true})
	m.CreateBucket(t, "restore-e2e")
	env := append(append([]string{}, c.Env()...), m.Env()...)
	env = append(env, "PGCLOUDBACKUP_BUCKET="+m.BucketURL("restore-e2e", "prod/cluster1"))

	// No credential ever appears in any output of any command below.
	var outputs []result
	defer func() {
		for _, r := range outputs {
			if strings.Contains(r.stdout+r.stderr, m.SecretKey) {
				t.Errorf("the secret key was printed:\n%s", r)
			}
		}
	}()
	cli := func(t *testing.T, env []string, args ...string) result {
		r := cli(t, env, args...)
		outputs = append(outputs, r)
		return r
	}
	r := cli(t, env, "backup", "--wal", "--fast", "--json", "-v")
	if r.code != 0 {
		t.Fatalf("backup: %s", r)
	}
	backup := parseManifest(t, r)

	r = cli(t, env, "list", "--json")
	if r.code != 0 || !strings.Contains(r.stdout, backup.ID) {
		t.Fatalf("list does not show the backup: %s", r)
	}
	r = cli(t, env, "verify", "latest")
	if r.code != 0 || !strings.Contains(r.stdout, "verified") {
		t.Fatalf("verify of a sound backup: %s", r)
	}

	root := pgtest.TempDir(t, "dr-")
	target := filepath.Join(root, "data")
	tsDir := filepath.Join(root, "tablespaces", "spc")
	r = cli(t, env, "restore", "latest", "--target", target, "--tablespace-map", sample.TablespaceOID+"="+tsDir, "--json")
	if r.code != 0 {
		t.Fatalf("restore: %s", r)
	}
	var out struct {
		Status string `json:"status"`
		ID     string `json:"id"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || out.Status != "restored" || out.ID != backup.ID {
		t.Fatalf("restore --json: %v %+v\n%s", err, out, r)
	}
	vout, err := c.Client("pg_verifybackup", target).CombinedOutput()
	if err != nil || !strings.Contains(string(vout), "backup successfully verified") {
		t.Fatalf("pg_verifybackup on the restored directory: %v\n%s", err, vout)
	}
	restored := startRestored(t, c, sample, root, target)
	if n := restored.QueryString("postgres", "SELECT count(*)::text FROM scratch"); n != "0" {
		t.Errorf("unlogged table has %s rows after restore, want 0", n)
	}
	if loc := restored.QueryString("postgres", "SELECT pg_tablespace_location(oid) FROM pg_tablespace WHERE spcname = 'spc'"); loc != tsDir {
		t.Errorf("restored tablespace at %s, want %s", loc, tsDir)
	}
	restored.Stop()

	// Refused: a non-empty target.
	assertOneLineError(t, cli(t, env, "restore", "latest", "--target", target, "--tablespace-map", sample.TablespaceOID+"="+t.TempDir()), 3, "not empty")

	// Damage one stored object: verify and restore name it, exit 1.
	s3c := m.S3Client(t)
	key := "prod/cluster1/backups/" + backup.ID + "/" + backup.Tablespaces[0].Objects[0].Key
	ctx := context.Background()
	obj, err := s3c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("restore-e2e"), Key: aws.String(key)})
	if err != nil {
		t.Fatal(err)
	}
	orig, err := io.ReadAll(obj.Body)
	obj.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Clone(orig)
	bad[len(bad)/2] ^= 0x01
	if _, err := s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("restore-e2e"), Key: aws.String(key), Body: bytes.NewReader(bad)}); err != nil {
		t.Fatal(err)
	}
	assertOneLineError(t, cli(t, env, "verify", backup.ID), 1, key)
	again := filepath.Join(pgtest.TempDir(t, "dr2-"), "data")
	assertOneLineError(t, cli(t, env, "restore", backup.ID, "--target", again, "--tablespace-map", sample.TablespaceOID+"="+again+"-ts"), 1, key)
	if _, err := os.Stat(again); !os.IsNotExist(err) {
		t.Errorf("failed restore left %s behind", again)
	}
	// A deleted object is named as missing.
	if _, err := s3c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String("restore-e2e"), Key: aws.String(key)}); err != nil {
		t.Fatal(err)
	}
	assertOneLineError(t, cli(t, env, "verify", backup.ID), 1, key+" is missing")
}
