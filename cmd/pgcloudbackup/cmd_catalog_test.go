package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgcloudbackup/pgcloudbackup/storage"
)

// TestReadOnlyCommandsCreateNothing: list, show, verify, delete and
// restore on a mistyped file:// path fail with exit 3 and create nothing
// (they used to create the directory and answer "no backups").
func TestReadOnlyCommandsCreateNothing(t *testing.T) {
	parent := t.TempDir()
	missing := filepath.Join(parent, "typo", "bucket")
	url := "file://" + missing
	target := filepath.Join(t.TempDir(), "restore-target")
	for _, args := range [][]string{
		{"list"}, {"list", "--all"}, {"show", "latest"}, {"verify", "latest"},
		{"delete", "20261101T020000Z"}, {"delete", "--retain", "2"}, {"delete", "latest", "--force"},
		{"restore", "latest", "--target", target},
	} {
		r := runCLI(append(args, "--bucket", url)...)
		wantOneLineError(t, r, exitPrecondition, "bucket directory "+missing+" does not exist")
	}
	if ents, err := os.ReadDir(parent); err != nil || len(ents) != 0 {
		t.Errorf("read-only commands created %v (%v)", ents, err)
	}
}

// TestBucketURLUsageErrors: relative file URLs and invalid S3 bucket
// names are usage errors, found before anything is contacted.
func TestBucketURLUsageErrors(t *testing.T) {
	for url, msg := range map[string]string{
		"file://./relbucket":  "relative directory",
		"s3://ab?region=x":    "3 to 63",
		"s3://Bad_Name/p":     "character",
		"s3://a..b?region=us": "adjacent",
		// The SDK refuses this pair only at the first request (it was exit 1).
		"s3://my-bucket?region=us-east-1&accelerate=true&use_path_style=true": "accelerate=true and use_path_style=true",
	} {
		r := runCLI("list", "--bucket", url)
		wantOneLineError(t, r, exitUsage, msg)
	}
	r := runCLI("list", "--bucket", "file://./relbucket")
	if !strings.Contains(r.stderr, "file://$PWD/relbucket") {
		t.Errorf("no hint with the absolute form: %s", r.stderr)
	}
}

// TestDeleteLatestCommand: "delete latest" is refused without --force (it
// is the newest complete backup by definition) and with --force deletes
// exactly that backup.
func TestDeleteLatestCommand(t *testing.T) {
	b := seedCatalog(t, time.Now().UTC())
	before := b.files()
	wantOneLineError(t, b.cli("delete", "latest"), exitPrecondition, "20261123T020000Z is the newest complete backup", "--force")
	if b.files() != before {
		t.Fatal("a refused delete latest changed the bucket")
	}
	r := b.cli("delete", "latest", "--force")
	if r.code != 0 || !strings.Contains(r.stdout, "deleted 20261123T020000Z") || !strings.Contains(r.stdout, "deleted 1 backup (") {
		t.Fatalf("delete latest --force: %+v", r)
	}
	for _, id := range b.ids() {
		if id == "20261123T020000Z" {
			t.Errorf("20261123T020000Z still there: %v", b.ids())
		}
	}
	if len(b.ids()) != 4 {
		t.Errorf("delete latest removed more than one backup: %v", b.ids())
	}
}

// TestFutureDatedBackupWarned: a backup dated a year ahead is listed with
// a warning, is not "latest", and does not let retention delete the real
// newest backup.
func TestFutureDatedBackupWarned(t *testing.T) {
	now := time.Now().UTC()
	b := seedCatalog(t, now)
	future := storage.NewBackupID(now.Add(365 * 24 * time.Hour))
	b.addBackup(future, now.Add(365*24*time.Hour), nil)
	r := b.cli("list")
	if r.code != 0 || !strings.Contains(r.stderr, "dated in the future") || !strings.Contains(r.stderr, future) || !strings.Contains(r.stdout, future) {
		t.Fatalf("list with a future-dated backup: %+v", r)
	}
	r = b.cli("show", "latest")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "backup 20261123T020000Z ") || !strings.Contains(r.stderr, "dated in the future") {
		t.Fatalf("show latest: %+v", r)
	}
	rep := parseDeleteReport(t, b.cli("delete", "--retain", "1", "--json"))
	if ids(rep.Deleted) != "20261101T020000Z 20261110T020000Z 20261120T020000Z" {
		t.Errorf("retain 1 with a future-dated backup deleted [%s]", ids(rep.Deleted))
	}
	left := strings.Join(b.ids(), " ")
	if !strings.Contains(left, "20261123T020000Z") || !strings.Contains(left, future) {
		t.Errorf("left %s: the real newest and the future-dated one must stay", left)
	}
}
