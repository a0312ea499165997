package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pgcloudbackup/pgcloudbackup/internal/pgtest"
	"github.com/pgcloudbackup/pgcloudbackup/internal/testenv"
)

// TestPromises checks, through the binary and on one sample cluster, the
// README promises no other test covers: secrecy on a successful run and in
// JSON logs, progress lines every 10 s, --recovery and --standby restores
// that PostgreSQL starts in the mode asked for, a backup_manifest whose
// only damage is one file's CRC, --jobs, and an unreadable data directory
// as a non-root user.
func TestPromises(t *testing.T) {
	c := pgtest.New(t, pgtest.Options{})
	sample := c.LoadSample(pgtest.SampleOptions{})

	t.Run("secrecy", func(t *testing.T) {
		t.Parallel()
		bucket := "file://" + pgtest.TempDir(t, "bucket-")
		const pw = "SECRETPW2x"
		// A password the server does not need (trust), so the run succeeds.
		dsn := fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres sslmode=disable password=%s", c.Port, pw)
		for _, args := range [][]string{
			{"backup", "--bucket", bucket, "--dsn", dsn, "--fast", "-v", "--json"},
			{"backup", "--bucket", bucket, "--dsn", dsn, "--fast", "-v", "--log-format", "json"},
			{"backup", "--bucket", bucket, "--dsn", "postgres://postgres:" + pw + "@127.0.0.1:" + fmt.Sprint(c.Port) + "/postgres?sslmode=disable", "--fast", "-v", "--log-format", "json"},
		} {
			r := cli(t, nil, args...)
			if r.code != 0 {
				t.Fatalf("%v: %s", args, r)
			}
			if strings.Contains(r.stdout+r.stderr, pw) {
				t.Errorf("the password was printed by a successful run %v:\n%s", args, r)
			}
		}
		// JSON logs of a failing run: every line is JSON, none holds the
		// password, and the error line is still there.
		bad := fmt.Sprintf("host=127.0.0.1 port=%d user=postgres password=%s", pgtest.FreePort(t), pw)
		r := cli(t, nil, "backup", "--bucket", bucket, "--dsn", bad, "-v", "--log-format", "json")
		if r.code != 3 || strings.Contains(r.stdout+r.stderr, pw) {
			t.Errorf("failing run with --log-format json: exit %d, password printed?\n%s", r.code, r)
		}
		jsonLines := 0
		for _, l := range strings.Split(strings.TrimSpace(r.stderr), "\n") {
			if strings.HasPrefix(l, "pgcloudbackup: error:") {
				continue
			}
			var v map[string]any
			if err := json.Unmarshal([]byte(l), &v); err != nil {
				t.Errorf("--log-format json wrote a line that is not JSON: %q", l)
			}
			jsonLines++
		}
		if jsonLines == 0 {
			t.Errorf("--log-format json -v logged nothing:\n%s", r)
		}
		// Files in the bucket do not hold it either.
		dir := strings.TrimPrefix(bucket, "file://")
		for _, f := range listFiles(t, dir) {
			if strings.Contains(string(mustRead(t, filepath.Join(dir, f))), pw) {
				t.Errorf("%s holds the password", f)
			}
		}
	})

	t.Run("progress every 10 s", func(t *testing.T) {
		t.Parallel()
		// ~25 MB at 1 MB/s: about 25 s, so two or more periodic lines.
		r := cli(t, c.Env(), "backup", "--bucket", "file://"+pgtest.TempDir(t, "bucket-"), "--fast", "--progress", "--max-rate", "1M")
		if r.code != 0 {
			t.Fatalf("backup: %s", r)
		}
		var times []time.Time
		re := regexp.MustCompile(`^time=(\S+) .*msg=progress `)
		for _, l := range strings.Split(r.stderr, "\n") {
			if m := re.FindStringSubmatch(l); m != nil {
				tm, err := time.Parse(time.RFC3339Nano, m[1])
				if err != nil {
					t.Fatalf("progress line time %q: %v", m[1], err)
				}
				times = append(times, tm)
			}
		}
		// The last line is the final state, logged at the end.
		if len(times) < 3 {
			t.Fatalf("%d progress lines, want 2 or more every 10 s plus the final one:\n%s", len(times), r.stderr)
		}
		for i := 1; i < len(times)-1; i++ {
			if gap := times[i].Sub(times[i-1]); gap < 9500*time.Millisecond || gap > 11*time.Second {
				t.Errorf("progress lines %d and %d are %s apart, want 10 s", i-1, i, gap)
			}
		}
		t.Logf("%d progress lines at %v", len(times), times)
	})

	t.Run("jobs", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct {
			jobs string
			code int
		}{{"0", 2}, {"-1", 2}, {"1", 0}, {"3", 0}} {
			bucket := "file://" + pgtest.TempDir(t, "bucket-")
			r := cli(t, c.Env(), "backup", "--bucket", bucket, "--fast", "--jobs", tc.jobs)
			if r.code != tc.code {
				t.Errorf("--jobs %s: exit %d, want %d\n%s", tc.jobs, r.code, tc.code, r)
				continue
			}
			if tc.code != 0 {
				assertOneLineError(t, r, tc.code, "--jobs")
				continue
			}
			if r := cli(t, nil, "verify", "--bucket", bucket, "latest"); r.code != 0 {
				t.Errorf("verify of a --jobs %s backup: %s", tc.jobs, r)
			}
		}
	})

	bucketDir := pgtest.TempDir(t, "bucket-")
	bucket := "file://" + bucketDir
	r := cli(t, c.Env(), "backup", "--bucket", bucket, "--fast", "--wal", "--json")
	if r.code != 0 {
		t.Fatalf("backup: %s", r)
	}
	id := parseManifest(t, r).ID

	for _, mode := range []string{"recovery", "standby"} {
		t.Run("restore --"+mode, func(t *testing.T) {
			root := pgtest.TempDir(t, "restore-")
			target := filepath.Join(root, "data")
			r := cli(t, nil, "restore", id, "--bucket", bucket, "--target", target, "--"+mode,
				"--restore-command", "false", "--tablespace-map", sample.TablespaceOID+"="+filepath.Join(root, "ts"))
			if r.code != 0 {
				t.Fatalf("restore --%s: %s", mode, r)
			}
			other := map[string]string{"recovery": "standby", "standby": "recovery"}[mode]
			if _, err := os.Stat(filepath.Join(target, mode+".signal")); err != nil {
				t.Errorf("%s.signal missing: %v", mode, err)
			}
			if _, err := os.Stat(filepath.Join(target, other+".signal")); err == nil {
				t.Errorf("%s.signal written for --%s", other, mode)
			}
			if conf := string(mustRead(t, filepath.Join(target, "postgresql.auto.conf"))); !strings.Contains(conf, "restore_command = 'false'") {
				t.Errorf("postgresql.auto.conf lacks the restore_command:\n%s", conf)
			}
			if pgtest.RunningAsRoot() {
				pgtest.ChownToServerUser(t, root)
			}
			s := pgtest.Adopt(t, target)
			// --recovery: replays the WAL in the backup, finds no more in
			// the "archive", promotes onto a new timeline. --standby: stays
			// in recovery, read-only.
			inRecovery := s.QueryString("postgres", "SELECT pg_is_in_recovery()::text")
			switch mode {
			case "recovery":
				deadline := time.Now().Add(30 * time.Second)
				for inRecovery != "false" && time.Now().Before(deadline) {
					time.Sleep(100 * time.Millisecond)
					inRecovery = s.QueryString("postgres", "SELECT pg_is_in_recovery()::text")
				}
				if inRecovery != "false" {
					t.Fatalf("--recovery: still in recovery after 30 s")
				}
				if _, err := os.Stat(filepath.Join(target, "pg_wal", "00000002.history")); err != nil {
					t.Errorf("--recovery: no promotion to timeline 2: %v", err)
				}
			case "standby":
				if inRecovery != "true" {
					t.Fatalf("--standby: pg_is_in_recovery() = %s, want true", inRecovery)
				}
			}
			if diff := pgtest.Compare(c, s, sample.CompareQueries); diff != "" {
				t.Errorf("restored data differs: %s", diff)
			}
		})
	}

	t.Run("backup_manifest CRC mismatch alone", func(t *testing.T) {
		dir := filepath.Join(bucketDir, "backups", id)
		pgm := string(mustRead(t, filepath.Join(dir, "backup_manifest")))
		mj := string(mustRead(t, filepath.Join(dir, "manifest.json")))
		// One file's CRC changed, the Manifest-Checksum recomputed and
		// manifest.json's SHA-256 of backup_manifest updated: nothing else
		// is wrong, so only the CRC check can find it.
		line := regexp.MustCompile(`(?m)^\{ "Path": "postgresql\.conf",.*"Checksum": "([0-9a-f]{8})" \},?$`).FindStringSubmatch(pgm)
		if line == nil {
			t.Fatalf("postgresql.conf not found in backup_manifest:\n%.2000s", pgm)
		}
		crc := line[1]
		badCRC := fmt.Sprintf("%08x", ^mustHex32(t, crc))
		damaged := strings.Replace(pgm, line[0], strings.Replace(line[0], crc, badCRC, 1), 1)
		damaged = resealPGManifest(t, pgm, damaged)
		oldSum, newSum := sha256.Sum256([]byte(pgm)), sha256.Sum256([]byte(damaged))
		if !strings.Contains(mj, hex.EncodeToString(oldSum[:])) {
			t.Fatal("manifest.json does not hold backup_manifest's SHA-256")
		}
		mj = strings.Replace(mj, hex.EncodeToString(oldSum[:]), hex.EncodeToString(newSum[:]), 1)
		writeFile(t, filepath.Join(dir, "backup_manifest"), []byte(damaged))
		writeFile(t, filepath.Join(dir, "manifest.json"), []byte(mj))

		assertOneLineError(t, cli(t, nil, "verify", "--bucket", bucket, id), 1, "postgresql.conf")
		target := filepath.Join(pgtest.TempDir(t, "crc-"), "data")
		r := cli(t, nil, "restore", id, "--bucket", bucket, "--target", target, "--tablespace-map", sample.TablespaceOID+"="+target+"-ts")
		assertOneLineError(t, r, 1, "postgresql.conf")
		if _, err := os.Stat(target); !os.IsNotExist(err) {
			t.Errorf("failed restore left %s behind", target)
		}
	})

	t.Run("unreadable data directory", func(t *testing.T) {
		if !pgtest.RunningAsRoot() {
			t.Skip("needs root to run the binary as another non-root user")
		}
		if _, err := exec.LookPath("setpriv"); err != nil {
			testenv.Unavailable(t, "setpriv: %v", err)
		}
		bdir := pgtest.TempDir(t, "bucket-")
		if err := os.Chmod(bdir, 0o777); err != nil {
			t.Fatal(err)
		}
		// nobody may connect (trust) but not read the postgres-owned
		// 0700 data directory.
		cmd := exec.Command("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--",
			binary, "backup", "--bucket", "file://"+bdir, "--pgdata", c.DataDir, "--fast")
		cmd.Env = append(cleanEnv(), c.Env()...)
		r := runCmd(t, cmd)
		assertOneLineError(t, r, 3, "permission denied")
		if files := listFiles(t, bdir); len(files) != 0 {
			t.Errorf("a refused backup wrote %v", files)
		}
		assertNoBackupSessions(t, c)
	})
}

func mustHex32(t *testing.T, s string) uint32 {
	t.Helper()
	var v uint32
	if _, err := fmt.Sscanf(s, "%08x", &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// resealPGManifest recomputes a PostgreSQL backup_manifest's
// Manifest-Checksum (SHA-256 of every byte before the line that holds it),
// after checking that rule against the original.
func resealPGManifest(t *testing.T, orig, damaged string) string {
	t.Helper()
	const key = `"Manifest-Checksum": "`
	seal := func(s string) (string, string) {
		i := strings.LastIndex(s, key)
		if i < 0 {
			t.Fatal("no Manifest-Checksum in backup_manifest")
		}
		sum := sha256.Sum256([]byte(s[:i]))
		return hex.EncodeToString(sum[:]), s[i+len(key) : i+len(key)+64]
	}
	if want, got := seal(orig); want != got {
		t.Fatalf("Manifest-Checksum rule misunderstood: computed %s, stored %s", want, got)
	}
	want, old := seal(damaged)
	return strings.Replace(damaged, key+old, key+want, 1)
}
