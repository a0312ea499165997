package e2e

import (
	"io/fs"
	"path/filepath"
	"testing"
	"time"

	"github.com/pgcloudbackup/pgcloudbackup/internal/pgtest"
)

// assertNoBackupSessions waits (10 s at most) until the server shows no
// pgcloudbackup session: the server notices a closed connection on its own
// time, so a check right after the binary exits could see a session that is
// already on its way out.
func assertNoBackupSessions(t *testing.T, c *pgtest.Cluster) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		// The server ends the session (aborting the backup, dropping the
		// temporary WAL slot) shortly after the client is gone.
		n := c.QueryString("postgres", `SELECT ((SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgcloudbackup') +
			(SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'pgcloudbackup%'))::text`)
		if n == "0" {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%s pgcloudbackup sessions or WAL-reserving slots still there 10 s after the binary exited: the server may be left in backup mode", n)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitForFileIn waits until a file (a finished object or an upload's
// temporary file) appears below dir: the backup is then writing into the
// bucket.
func waitForFileIn(t *testing.T, p *started, dir string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		found := false
		_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				found = true
				return fs.SkipAll
			}
			return nil // files come and go while the backup runs
		})
		if found {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing was written into %s within a minute\n%s", dir, p.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
