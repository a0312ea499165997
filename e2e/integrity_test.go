package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/pgcloudbackup/pgcloudbackup/internal/pgtest"
	"github.com/pgcloudbackup/pgcloudbackup/internal/testsvc"
	"github.com/pgcloudbackup/pgcloudbackup/storage"
)

// integrityTarget is one bucket the integrity tests run against: its URL,
// and the oracles that look at it without our code (the directory itself,
// or MinIO through the AWS SDK).
type integrityTarget struct {
	name string
	url  string
	env  []string
	// objects lists every object, temporary file included, under the
	// bucket URL.
	objects func(t *testing.T) []string
	// pending lists the multipart uploads pending for the given full keys
	// (MinIO answers exact keys only); nil off S3.
	pending func(t *testing.T, keys []string) []string
}

func fileTarget(t *testing.T) integrityTarget {
	dir := pgtest.TempDir(t, "bucket-")
	return integrityTarget{
		name:    "file",
		url:     "file://" + dir,
		objects: func(t *testing.T) []string { return listFiles(t, dir) },
		pending: func(*testing.T, []string) []string { return nil },
	}
}

func minioTarget(t *testing.T, m *testsvc.MinIO, bucket, prefix string) integrityTarget {
	return integrityTarget{
		name:    "minio",
		url:     m.BucketURL(bucket, prefix),
		env:     m.Env(),
		objects: func(t *testing.T) []string { return listKeys(t, m, bucket, prefix+"/") },
		pending: func(t *testing.T, keys []string) []string {
			// Key by key (what MinIO is documented to answer), and the
			// whole bucket (which this MinIO also answers).
			var out []string
			for _, k := range keys {
				out = append(out, m.PendingUploads(t, bucket, prefix+"/"+k)...)
			}
			for _, k := range m.PendingUploads(t, bucket, "") {
				if strings.HasPrefix(k, prefix+"/") && !slices.Contains(out, k) {
					out = append(out, k)
				}
			}
			return out
		},
	}
}

// listed is one backup in 'list --all --json'.
type listed struct {
	ID     string `json:"id"`
	Status string `json:"status"`
}

func listAll(t *testing.T, env []string, url string) []listed {
	t.Helper()
	r := cli(t, env, "list", "--all", "--json", "--bucket", url)
	var out []listed
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &out) != nil {
		t.Fatalf("list --all --json: %s", r)
	}
	return out
}

// idOf finds the backup ID a run logged ("backup=<id>").
var idOf = regexp.MustCompile(`backup=(\d{8}T\d{6}Z(?:-\d+)?)`)

// candidateKeys are the keys a backup started between from and to could
// have written (no tablespaces; IDs with sequence numbers up to 9): what
// MinIO must be asked about, key by key, for pending uploads.
func candidateKeys(from, to time.Time) []string {
	var keys []string
	for s := from.Truncate(time.Second).Add(-time.Second); !s.After(to.Add(time.Second)); s = s.Add(time.Second) {
		for seq := 1; seq <= 9; seq++ {
			id := storage.NewBackupID(s)
			if seq > 1 {
				id = fmt.Sprintf("%s-%d", id, seq)
			}
			names := []string{storage.ManifestName, storage.PGManifestName, storage.MarkerName}
			for p := 1; p <= 4; p++ {
				names = append(names, fmt.Sprintf("base.%05d.tar", p), fmt.Sprintf("base.%05d.tar.zst", p))
			}
			for _, n := range names {
				keys = append(keys, "backups/"+id+"/"+n)
			}
		}
	}
	return keys
}

// waitNoSession waits until the server has no pgcloudbackup session (a
// killed client's backend exits when it notices the closed socket).
func waitNoSession(t *testing.T, c *pgtest.Cluster) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		n := c.QueryString("postgres", "SELECT count(*)::text FROM pg_stat_activity WHERE application_name = 'pgcloudbackup'")
		if n == "0" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s pgcloudbackup sessions still open 30 s after the client died", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestConcurrentBackups launches N backups at once into one bucket, several
// rounds, and interrupts one in each round: every run gets its own ID (runs
// in the same second take "<time>-2", …), every complete backup passes
// verify, and the interrupted run removed its own objects and nothing of
// the others'.
func TestConcurrentBackups(t *testing.T) {
	c := pgtest.New(t, pgtest.Options{})
	c.Pgbench(1)
	m := testsvc.StartMinIO(t, testsvc.MinIOOptions{})
	m.CreateBucket(t, "conc")
	const n, rounds = 4, 3
	for _, tg := range []integrityTarget{fileTarget(t), minioTarget(t, m, "conc", "shared/prefix")} {
		t.Run(tg.name, func(t *testing.T) {
			env := append(slices.Clone(c.Env()), tg.env...)
			seen := map[string]string{} // ID: what the run that got it printed
			suffixed := 0
			var complete []string
			for round := 0; round < rounds; round++ {
				began := time.Now()
				procs := make([]*started, n)
				for i := range procs {
					procs[i] = startCLI(t, env, "backup", "--bucket", tg.url, "--fast", "--max-rate", "16M", "--json")
				}
				// Interrupt the first once it has started copying.
				procs[0].waitFor(t, "backup started", time.Minute)
				procs[0].signal(t, syscall.SIGINT)
				var failedID string
				for i, p := range procs {
					r := p.wait(t)
					var id string
					switch {
					case i == 0 && r.code == 130:
						mm := idOf.FindStringSubmatch(r.stderr)
						if mm == nil {
							t.Fatalf("interrupted run logged no ID:\n%s", r)
						}
						id, failedID = mm[1], mm[1]
					case r.code == 0:
						var out struct{ ID string }
						if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || out.ID == "" {
							t.Fatalf("backup --json: %v\n%s", err, r)
						}
						id = out.ID
						complete = append(complete, id)
						// backup --json is manifest.json as stored: an
						// empty list of failures is [], not null.
						if !strings.Contains(r.stdout, `"checksum_failures": []`) || strings.Contains(r.stdout, "null") {
							t.Errorf("backup --json has null lists:\n%s", r.stdout)
						}
					default:
						t.Fatalf("run %d of round %d: %s", i, round, r)
					}
					if seen[id] != "" {
						t.Fatalf("ID %s given to two runs:\n--- one ---\n%s\n--- other ---\n%s", id, seen[id], r)
					}
					seen[id] = r.String()
					if strings.Contains(id, "-") {
						suffixed++
					}
				}
				// The interrupted run left nothing: no object, no upload.
				for _, k := range tg.objects(t) {
					if failedID != "" && strings.Contains(k, failedID+"/") {
						t.Errorf("round %d: the interrupted run %s left %s", round, failedID, k)
					}
				}
				if p := tg.pending(t, candidateKeys(began, time.Now())); len(p) != 0 {
					t.Errorf("round %d: multipart uploads pending: %v", round, p)
				}
			}
			// Every complete backup is whole: nobody deleted or overwrote
			// a piece of it.
			for _, id := range complete {
				if r := cli(t, env, "verify", "--bucket", tg.url, id); r.code != 0 {
					t.Errorf("verify %s: %s", id, r)
				}
			}
			got := listAll(t, env, tg.url)
			if len(got) != len(complete) {
				t.Errorf("list --all shows %d backups, want the %d complete ones: %+v", len(got), len(complete), got)
			}
			for _, e := range got {
				if e.Status != "complete" {
					t.Errorf("backup %s is %s", e.ID, e.Status)
				}
			}
			if suffixed == 0 {
				t.Errorf("no two of %d runs started in the same second: the ID race was not exercised (IDs %v)", n*rounds, complete)
			}
			t.Logf("%d runs, %d complete, %d IDs with a sequence number", n*rounds, len(complete), suffixed)
		})
	}
}

// TestKillBackupAnyInstant kills a backup with SIGKILL at seeded random
// instants from process start to past its end, to MinIO and to file://.
// After each kill: whatever is listed complete passes verify, whatever
// the run left is listed by 'list --all', and delete (by ID, or by
// retention with no grace) leaves zero objects, zero temporary files and
// zero pending multipart uploads; the server is not left in backup mode.
func TestKillBackupAnyInstant(t *testing.T) {
	c := pgtest.New(t, pgtest.Options{})
	c.Pgbench(1)
	m := testsvc.StartMinIO(t, testsvc.MinIOOptions{})
	m.CreateBucket(t, "kill")
	const kills = 20
	for _, tg := range []integrityTarget{fileTarget(t), minioTarget(t, m, "kill", "p")} {
		t.Run(tg.name, func(t *testing.T) {
			env := append(slices.Clone(c.Env()), tg.env...)
			// Uncompressed, in 5 MiB parts: pgbench data compresses so well
			// that zstd output would fit one part, and S3 would see single
			// PUTs only, never a multipart upload to leave pending.
			args := []string{"backup", "--bucket", tg.url, "--fast", "--max-rate", "8M", "--jobs", "2",
				"--compression", "none", "--part-size", "5MiB"}
			// How long a whole run takes, to spread the kills over it.
			began := time.Now()
			if r := cli(t, env, args...); r.code != 0 {
				t.Fatalf("backup: %s", r)
			}
			whole := time.Since(began)
			if r := cli(t, env, "delete", "--bucket", tg.url, "latest", "--force"); r.code != 0 {
				t.Fatalf("delete: %s", r)
			}
			t.Logf("a whole backup takes %s", whole.Round(time.Millisecond))
			rng := rand.New(rand.NewPCG(20261129, uint64(len(tg.name))))
			stats := map[string]int{}
			for i := 0; i < kills; i++ {
				at := time.Duration(rng.Int64N(int64(whole) * 11 / 10))
				began := time.Now()
				p := startCLI(t, env, args...)
				timer := time.NewTimer(at) // the experiment's kill point, not a wait for state
				<-timer.C
				_ = p.cmd.Process.Kill()
				r := p.wait(t)
				ended := time.Now()
				waitNoSession(t, c)

				got := listAll(t, env, tg.url)
				objs := tg.objects(t)
				for _, o := range objs {
					if !slices.ContainsFunc(got, func(e listed) bool { return strings.Contains(o, "backups/"+e.ID+"/") }) {
						t.Errorf("kill %d at %s: %s is in the bucket but 'list --all' does not show its backup (%+v)", i, at, o, got)
					}
				}
				state := "nothing left"
				for _, e := range got {
					state = e.Status
					if e.Status == "complete" {
						if v := cli(t, env, "verify", "--bucket", tg.url, e.ID); v.code != 0 {
							t.Errorf("kill %d at %s: backup %s is listed complete but fails verify: %s", i, at, e.ID, v)
						}
					}
				}
				stats[state]++
				if p := tg.pending(t, candidateKeys(began, ended)); len(p) > 0 {
					stats["left pending multipart uploads"]++
				}
				if slices.ContainsFunc(objs, func(o string) bool { return strings.HasSuffix(o, ".tmp") }) {
					stats["left temporary files"]++
				}
				// Delete: by ID, or by retention past a zero grace.
				if i%2 == 0 {
					for _, e := range got {
						if d := cli(t, env, "delete", "--bucket", tg.url, e.ID, "--force"); d.code != 0 {
							t.Errorf("kill %d: delete %s: %s", i, e.ID, d)
						}
					}
				} else if d := cli(t, env, "delete", "--bucket", tg.url, "--retain", "0", "--force", "--grace", "0s"); d.code != 0 {
					t.Errorf("kill %d: delete --retain 0: %s", i, d)
				}
				if left := tg.objects(t); len(left) != 0 {
					t.Errorf("kill %d at %s (exit %d): left after delete: %v", i, at, r.code, left)
				}
				if p := tg.pending(t, candidateKeys(began, ended)); len(p) != 0 {
					t.Errorf("kill %d at %s: multipart uploads pending after delete: %v", i, at, p)
				}
				if t.Failed() {
					t.Fatalf("stopping after kill %d; the run's log:\n%s", i, r.stderr)
				}
			}
			t.Logf("%d kills: %v", kills, stats)
			// The kills must have hit uploads in flight, or the test
			// proves nothing about cleaning them up.
			if tg.name == "minio" && stats["left pending multipart uploads"] == 0 {
				t.Errorf("no kill left a pending multipart upload: the cleanup of one was not exercised")
			}
			if tg.name == "file" && stats["left temporary files"] == 0 {
				t.Errorf("no kill left a temporary file: the cleanup of one was not exercised")
			}
		})
	}
}

// TestUnwritableBucket: a bucket the user may list but not write (a
// root-owned directory for the postgres user; a MinIO bucket with a
// read-only policy) fails with exit 3 before the server is contacted, so
// the server never checkpoints nor enters backup mode. (The reservation of
// the ID is the first write.)
func TestUnwritableBucket(t *testing.T) {
	if !pgtest.RunningAsRoot() {
		t.Skip("needs root to run the binary as another user")
	}
	c := pgtest.New(t, pgtest.Options{Conf: map[string]string{"log_connections": "on"}})
	dir := t.TempDir() // owned by root: the server user may read, not write
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	connections := func() int { return strings.Count(c.Log(), "application_name=pgcloudbackup") }
	before := connections()
	cmd := pgtest.ServerCommand(binary, "backup", "--bucket", "file://"+dir, "--fast")
	cmd.Env = append(append(cleanEnv(), c.Env()...), "HOME=/tmp")
	r := runCmd(t, cmd)
	assertOneLineError(t, r, 3, "denied")
	t.Logf("file: %s", errorLineOf(r))
	if n := connections() - before; n != 0 {
		t.Errorf("the refused backup connected to the server %d times:\n%s", n, c.Log())
	}
	if strings.Contains(c.Log(), "checkpoint starting: immediate force wait") {
		t.Errorf("the refused backup requested a checkpoint:\n%s", c.Log())
	}
	if files := listFiles(t, dir); len(files) != 0 {
		t.Errorf("files left: %v", files)
	}
	// The same on S3: a MinIO bucket anonymous users may list and read
	// but not write.
	m := testsvc.StartMinIO(t, testsvc.MinIOOptions{})
	m.CreateBucket(t, "readonly")
	policy := `{"Version":"2012-10-17","Statement":[` +
		`{"Effect":"Allow","Principal":{"AWS":["*"]},"Action":["s3:ListBucket","s3:GetBucketLocation"],"Resource":["arn:aws:s3:::readonly"]},` +
		`{"Effect":"Allow","Principal":{"AWS":["*"]},"Action":["s3:GetObject"],"Resource":["arn:aws:s3:::readonly/*"]}]}`
	if _, err := m.S3Client(t).PutBucketPolicy(context.Background(), &s3.PutBucketPolicyInput{Bucket: aws.String("readonly"), Policy: aws.String(policy)}); err != nil {
		t.Fatal(err)
	}
	if r := cli(t, append(c.Env(), m.Env()...), "list", "--bucket", m.BucketURL("readonly", "p")+"&anonymous=true"); r.code != 0 {
		t.Fatalf("list on the read-only bucket: %s", r)
	}
	r = cli(t, append(c.Env(), m.Env()...), "backup", "--fast", "--bucket", m.BucketURL("readonly", "p")+"&anonymous=true")
	assertOneLineError(t, r, 3, "denied")
	t.Logf("S3: %s", errorLineOf(r))
	if n := connections() - before; n != 0 {
		t.Errorf("the refused S3 backup connected to the server %d times:\n%s", n, c.Log())
	}
	if keys := listKeys(t, m, "readonly", ""); len(keys) != 0 {
		t.Errorf("objects in the read-only bucket: %v", keys)
	}

	// The oracle can see a connection: the same backup as a user who may
	// write connects (and succeeds).
	if r := cli(t, c.Env(), "backup", "--bucket", "file://"+dir, "--fast"); r.code != 0 {
		t.Fatalf("backup as root: %s", r)
	}
	if connections() == before {
		t.Errorf("log_connections shows no pgcloudbackup connection even for a backup that ran:\n%s", c.Log())
	}
}

// TestBackupToMissingDirectory: a file:// bucket directory that does not
// exist (a typo, an unmounted mount point) is exit 3 and is not created.
func TestBackupToMissingDirectory(t *testing.T) {
	c := pgtest.New(t, pgtest.Options{})
	parent := t.TempDir()
	missing := filepath.Join(parent, "mnt", "backups")
	r := cli(t, c.Env(), "backup", "--bucket", "file://"+missing, "--fast")
	assertOneLineError(t, r, 3, "does not exist")
	if ents, _ := os.ReadDir(parent); len(ents) != 0 {
		t.Errorf("the backup created %v", ents)
	}
}

// TestEarlyFailureCleanup: a backup that fails before it uploads anything
// (here: --pgdata names a directory that is no data directory) removes its
// reservation without a misleading warning ("could not remove … no backup
// X" used to be logged) and leaves no empty backup directory behind.
func TestEarlyFailureCleanup(t *testing.T) {
	c := pgtest.New(t, pgtest.Options{})
	dir := pgtest.TempDir(t, "bucket-")
	r := cli(t, c.Env(), "backup", "--bucket", "file://"+dir, "--fast", "--pgdata", t.TempDir())
	if r.code != 3 {
		t.Fatalf("backup with a wrong --pgdata: %s", r)
	}
	for _, bad := range []string{"could not remove", "no backup", "WARN"} {
		if strings.Contains(r.stderr, bad) {
			t.Errorf("stderr mentions %q:\n%s", bad, r.stderr)
		}
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "backups"))
	if len(ents) != 0 {
		t.Errorf("left in backups/: %v", ents)
	}
	if got := listAll(t, c.Env(), "file://"+dir); len(got) != 0 {
		t.Errorf("list --all after an early failure: %+v", got)
	}
}
