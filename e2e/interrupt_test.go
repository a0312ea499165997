package e2e

import (
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pgcloudbackup/pgcloudbackup/internal/pgtest"
	"github.com/pgcloudbackup/pgcloudbackup/internal/testsvc"
)

// TestInterruptedRestoreAndVerify: SIGINT or SIGTERM while restore or
// verify is downloading an archive (the proxy holds the download, so the
// signal surely comes mid-way) ends it with exit 130 and one error line;
// an interrupted restore leaves no target directory behind.
func TestInterruptedRestoreAndVerify(t *testing.T) {
	c := pgtest.New(t, pgtest.Options{})
	c.Pgbench(1)
	m := testsvc.StartMinIO(t, testsvc.MinIOOptions{})
	m.CreateBucket(t, faultBucket)
	p := startFaultProxy(t, m, nil)
	env := append(append(c.Env(), m.Env()...), "PGCLOUDBACKUP_BUCKET="+p.BucketURL(m, faultBucket, "db"))
	if r := cli(t, env, "backup", "--fast"); r.code != 0 {
		t.Fatalf("backup: %s", r)
	}

	release := make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	held := func(call *s3Call) bool {
		return strings.HasPrefix(call.Op, "GET ") && strings.HasSuffix(call.Op, ".tar.zst")
	}
	p.setFault(func(call *s3Call) action {
		if held(call) {
			return action{hold: release}
		}
		return action{}
	})

	cases := []struct {
		name string
		sig  syscall.Signal
		args func(t *testing.T) ([]string, string)
	}{
		{"restore SIGINT", syscall.SIGINT, func(t *testing.T) ([]string, string) {
			target := pgtest.TempDir(t, "restore-") + "/data"
			return []string{"restore", "latest", "--target", target}, target
		}},
		{"restore SIGTERM", syscall.SIGTERM, func(t *testing.T) ([]string, string) {
			target := pgtest.TempDir(t, "restore-") + "/data"
			return []string{"restore", "latest", "--target", target}, target
		}},
		{"verify SIGINT", syscall.SIGINT, func(t *testing.T) ([]string, string) { return []string{"verify", "latest"}, "" }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args, target := tc.args(t)
			before := len(p.Calls())
			s := startCLI(t, env, args...)
			deadline := time.Now().Add(time.Minute)
			for {
				calls := p.Calls()[before:]
				if i := indexOfCall(calls, held); i >= 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no archive download started within a minute\n%s", s.stderr.String())
				}
				time.Sleep(20 * time.Millisecond)
			}
			s.signal(t, tc.sig)
			r := s.wait(t)
			assertOneLineError(t, r, 130, "interrupted")
			if target != "" {
				if files := listFilesIfExists(t, target); files != nil {
					t.Errorf("interrupted restore left %s with %d files", target, len(files))
				}
			}
		})
	}
}

func indexOfCall(calls []s3Call, f func(*s3Call) bool) int {
	for i := range calls {
		if f(&calls[i]) {
			return i
		}
	}
	return -1
}

// listFilesIfExists is listFiles, or nil when dir does not exist.
func listFilesIfExists(t *testing.T, dir string) []string {
	t.Helper()
	if _, err := os.Stat(dir); err != nil {
		return nil
	}
	files := listFiles(t, dir)
	if files == nil {
		files = []string{}
	}
	return files
}
