package validate

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func load(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "pgcloudbackup.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestManifestIsValid(t *testing.T) {
	o, err := Decode(load(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range o.Check() {
		t.Error(e)
	}
	if len(o.CronJobs) != 2 {
		t.Fatalf("%d CronJobs, want backup and verify", len(o.CronJobs))
	}
	backup := o.CronJobs[0]
	pod := backup.Spec.JobTemplate.Spec.Template.Spec
	if len(pod.InitContainers) != 1 || pod.InitContainers[0].Args[0] != "backup" || pod.Containers[0].Args[0] != "delete" {
		t.Error("backup CronJob: want backup as the init container, retention as the container (retention only after exit 0)")
	}
	if backup.Spec.JobTemplate.Spec.BackoffLimit == nil || *backup.Spec.JobTemplate.Spec.BackoffLimit != 0 {
		t.Error("backup CronJob must not retry (backoffLimit 0)")
	}
	bucket := o.Secrets["pgcloudbackup"].StringData["PGCLOUDBACKUP_BUCKET"]
	if !strings.Contains(bucket, "&use_path_style=true&region=") {
		t.Errorf("the bucket URL lost its '&' parameters: %q", bucket)
	}
}

// The validator can fail: each break below must be caught.
func TestValidatorCatchesBreaks(t *testing.T) {
	good := string(load(t))
	breaks := map[string][2]string{
		"unknown field":        {"concurrencyPolicy: Forbid", "concurrencyPolicy: Forbid\n  concurencyPolicy: Allow"},
		"overlap allowed":      {"concurrencyPolicy: Forbid", "concurrencyPolicy: Allow"},
		"missing secret":       {"name: pgcloudbackup\n              env: &pgenv", "name: pgcloudbackp\n              env: &pgenv"},
		"CA file not provided": {"value: /etc/pgcloudbackup/ca/ca.crt\n              volumeMounts:\n                - name: pgdata", "value: /etc/pgcloudbackup/ca/root.crt\n              volumeMounts:\n                - name: pgdata"},
		"wrong type":           {"backoffLimit: 0", "backoffLimit: none"},
		"latest image":         {"pgcloudbackup:v0.1.0\n              args: [\"verify\"", "pgcloudbackup:latest\n              args: [\"verify\""},
	}
	for name, br := range breaks {
		if !strings.Contains(good, br[0]) {
			t.Fatalf("%s: the manifest no longer contains %q", name, br[0])
		}
		bad := strings.Replace(good, br[0], br[1], 1)
		o, err := Decode([]byte(bad))
		if err == nil && len(o.Check()) == 0 {
			t.Errorf("%s: not detected", name)
		}
	}
}
