package metricsfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func value(t *testing.T, path, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	mfs, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	s := &Set{prev: mfs, labels: prometheus.Labels{"bucket": "mem://x"}}
	return s.previous(name, labels)
}

func TestWriteParsesBackAndCarriesForward(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "pgcloudbackup_backup.prom")
	labels := prometheus.Labels{"bucket": "mem://x"}

	s, err := New(path, "backup", labels)
	if err != nil {
		t.Fatal(err)
	}
	s.Gauge("last_success_timestamp_seconds", "t", 1000)
	s.Gauge("stored_bytes", "b", 42)
	s.AddCounter("runs_total", "r", prometheus.Labels{"result": "success"}, 1)
	if err := s.Write(); err != nil {
		t.Fatal(err)
	}
	if v, ok := value(t, path, "pgcloudbackup_backup_stored_bytes", nil); !ok || v != 42 {
		t.Fatalf("stored_bytes = %v, %v", v, ok)
	}

	// A failed run: the last success time survives, counters add up.
	s, err = New(path, "backup", labels)
	if err != nil {
		t.Fatal(err)
	}
	s.CarryGauge("last_success_timestamp_seconds", "t")
	s.AddCounter("runs_total", "r", prometheus.Labels{"result": "success"}, 0)
	s.AddCounter("runs_total", "r", prometheus.Labels{"result": "failure"}, 1)
	if err := s.Write(); err != nil {
		t.Fatal(err)
	}
	if v, ok := value(t, path, "pgcloudbackup_backup_last_success_timestamp_seconds", nil); !ok || v != 1000 {
		t.Fatalf("carried last success = %v, %v", v, ok)
	}
	if v, _ := value(t, path, "pgcloudbackup_backup_runs_total", map[string]string{"result": "success"}); v != 1 {
		t.Fatalf("success runs = %v", v)
	}
	if v, _ := value(t, path, "pgcloudbackup_backup_runs_total", map[string]string{"result": "failure"}); v != 1 {
		t.Fatalf("failure runs = %v", v)
	}
	if _, ok := value(t, path, "pgcloudbackup_backup_stored_bytes", nil); ok {
		t.Fatal("a gauge not recorded in this run was carried forward")
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("directory holds %d entries, want only the metrics file (no temp leftovers)", len(ents))
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o644 {
		t.Fatalf("mode %v, want 0644 so node_exporter can read it", st.Mode().Perm())
	}
	b, _ := os.ReadFile(path)
	if !strings.Contains(string(b), "# TYPE pgcloudbackup_backup_runs_total counter") {
		t.Fatalf("no counter TYPE line in:\n%s", b)
	}
}

// A garbled previous file does not stop the run: New reports it, and
// Write replaces it with a valid file.
func TestGarbledPreviousFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.prom")
	if err := os.WriteFile(path, []byte("this is { not metrics\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := New(path, "check", nil)
	if err == nil {
		t.Fatal("garbled previous file not reported")
	}
	s.Gauge("up", "u", 1)
	if err := s.Write(); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(path); err != nil {
		t.Fatalf("rewritten file does not parse: %v", err)
	}
}

func TestCheckPath(t *testing.T) {
	dir := t.TempDir()
	if err := CheckPath(filepath.Join(dir, "nope", "m.prom")); err == nil {
		t.Error("missing directory accepted")
	}
	if err := CheckPath(dir); err == nil {
		t.Error("a directory accepted as the metrics file")
	}
	if err := CheckPath(filepath.Join(dir, "m.prom")); err != nil {
		t.Error(err)
	}
}
