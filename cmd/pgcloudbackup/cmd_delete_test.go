package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type deleteReportJSON struct {
	Deleted []map[string]any `json:"deleted"`
	Kept    []map[string]any `json:"kept"`
	DryRun  bool             `json:"dry_run"`
}

func parseDeleteReport(t *testing.T, r cliResult) deleteReportJSON {
	t.Helper()
	var rep deleteReportJSON
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || r.code != 0 {
		t.Fatalf("delete --json: %v\nexit %d\n%s\n%s", err, r.code, r.stdout, r.stderr)
	}
	return rep
}

func ids(list []map[string]any) string {
	var out []string
	for _, e := range list {
		out = append(out, fmt.Sprint(e["id"]))
	}
	return strings.Join(out, " ")
}

func TestDeleteUsage(t *testing.T) {
	b := seedCatalog(t, time.Now())
	before := b.files()
	for _, tt := range []struct {
		args []string
		msg  string
	}{
		{[]string{"delete"}, "give the backup ID to delete, or a retention policy"},
		{[]string{"delete", "20261101T020000Z", "--retain", "2"}, "not both"},
		{[]string{"delete", "20261101T020000Z", "--older-than", "7d"}, "not both"},
		{[]string{"delete", "--retain", "0"}, "--retain 0: keep at least 1"},
		{[]string{"delete", "--retain", "-1", "--force"}, "--retain -1"},
		{[]string{"delete", "--older-than", "7days"}, `--older-than: invalid duration "7days"`},
		{[]string{"delete", "--older-than", "-1d"}, "--older-than"},
		{[]string{"delete", "--retain", "2", "--grace", "soon"}, "--grace"},
		{[]string{"delete", "a", "b"}, "at most 1"},
	} {
		wantOneLineError(t, b.cli(tt.args...), exitUsage, tt.msg)
	}
	// An ID that is no backup never reaches the storage layer.
	wantOneLineError(t, b.cli("delete", "../backups"), exitPrecondition, "no backup ../backups")
	if after := b.files(); after != before {
		t.Errorf("a refused delete changed the bucket:\n%s\nwas\n%s", after, before)
	}
}

func TestDeleteRetention(t *testing.T) {
	now := time.Now().UTC()
	b := seedCatalog(t, now)
	before := b.files()

	// Dry run: the plan, and the bucket untouched.
	rep := parseDeleteReport(t, b.cli("delete", "--retain", "2", "--dry-run", "--json"))
	if !rep.DryRun || ids(rep.Deleted) != "20261101T020000Z 20261110T020000Z" ||
		ids(rep.Kept) != "20261124T020000Z 20261123T020000Z 20261120T020000Z" {
		t.Fatalf("dry run plan: deleted [%s] kept [%s]", ids(rep.Deleted), ids(rep.Kept))
	}
	for _, e := range append(rep.Deleted, rep.Kept...) {
		if e["reason"] == "" || e["status"] == nil {
			t.Errorf("entry without reason or status: %v", e)
		}
		for k := range e {
			if k != "reason" && !documented(backupJSONFields, k) {
				t.Errorf("field %q not documented", k)
			}
		}
	}
	if after := b.files(); after != before {
		t.Fatalf("--dry-run changed the bucket:\n%s\nwas\n%s", after, before)
	}
	r := b.cli("delete", "--retain", "2", "--dry-run")
	if !strings.Contains(r.stdout, "would delete 20261101T020000Z") || !strings.Contains(r.stdout, "would delete 2 backups") ||
		!strings.Contains(r.stdout, "would keep 20261124T020000Z") || !strings.Contains(r.stdout, "may still be running") ||
		// What it keeps, and why, as --older-than lists it.
		!strings.Contains(r.stdout, "would keep 20261123T020000Z") || !strings.Contains(r.stdout, "would keep 20261120T020000Z") ||
		!strings.Contains(r.stdout, "one of the 2 newest complete backups") || !strings.Contains(r.stdout, "would keep 3\n") {
		t.Errorf("dry run output:\n%s", r.stdout)
	}

	// The real run deletes exactly the plan.
	r = b.cli("delete", "--retain", "2")
	if r.code != 0 || !strings.Contains(r.stdout, "deleted 20261101T020000Z") || !strings.Contains(r.stdout, "deleted 20261110T020000Z") {
		t.Fatalf("delete --retain 2: %+v", r)
	}
	if got := fmt.Sprint(b.ids()); got != "[20261120T020000Z 20261123T020000Z 20261124T020000Z]" {
		t.Fatalf("left in the bucket: %s", got)
	}

	// --older-than 0s covers everything but spares the newest complete backup
	// and the running one.
	rep = parseDeleteReport(t, b.cli("delete", "--older-than", "0s", "--json"))
	if rep.DryRun || ids(rep.Deleted) != "20261120T020000Z" || ids(rep.Kept) != "20261124T020000Z 20261123T020000Z" {
		t.Fatalf("older than 0s: deleted [%s] kept [%s]", ids(rep.Deleted), ids(rep.Kept))
	}
	if rep.Kept[1]["reason"] != "newest complete backup, kept without --force" {
		t.Errorf("reason: %v", rep.Kept[1]["reason"])
	}
	if got := fmt.Sprint(b.ids()); got != "[20261123T020000Z 20261124T020000Z]" {
		t.Fatalf("left in the bucket: %s", got)
	}

	// Nor does "delete <id>" take it, without --force.
	wantOneLineError(t, b.cli("delete", "20261123T020000Z"), exitPrecondition, "newest complete backup", "--force")
	wantOneLineError(t, b.cli("delete", "20261124T020000Z"), exitPrecondition, "may still be running", "--force")
	wantOneLineError(t, b.cli("delete", "20261124T999999Z"), exitPrecondition, "no backup 20261124T999999Z", "pgcloudbackup list")
	rep = parseDeleteReport(t, b.cli("delete", "20261123T020000Z", "--force", "--dry-run", "--json"))
	if ids(rep.Deleted) != "20261123T020000Z" || !rep.DryRun {
		t.Errorf("forced dry run: %+v", rep)
	}
	if got := fmt.Sprint(b.ids()); got != "[20261123T020000Z 20261124T020000Z]" {
		t.Fatalf("dry run deleted: %s", got)
	}
	r = b.cli("delete", "20261123T020000Z", "--force")
	if r.code != 0 || !strings.Contains(r.stdout, "deleted 20261123T020000Z") || !strings.Contains(r.stdout, "deleted 1 backup (") {
		t.Fatalf("forced delete: %+v", r)
	}
	// A shorter grace lets the leftover go.
	rep = parseDeleteReport(t, b.cli("delete", "--retain", "1", "--grace", "30s", "--json"))
	if ids(rep.Deleted) != "20261124T020000Z" || len(b.ids()) != 0 {
		t.Errorf("grace 30s: deleted [%s], left %v", ids(rep.Deleted), b.ids())
	}
	if _, err := os.Stat(filepath.Join(b.dir, "backups")); err != nil {
		t.Errorf("bucket directory: %v", err)
	}
}
