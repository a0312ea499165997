// Package metricsfile writes a command's metrics as a Prometheus textfile
// (node_exporter's textfile collector reads *.prom files from a directory).
// The file is replaced atomically: written to a temporary file in the same
// directory, synced, then renamed, so the collector never reads half a file.
//
// A textfile lives across runs, so a few values are carried forward from the
// previous file: the time of the last success (a failed run must not erase
// it) and the run counters.
package metricsfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Namespace prefixes every metric name.
const Namespace = "pgcloudbackup"

// Set is the metrics of one run of one command (subsystem: backup, delete,
// check), all with the same constant labels.
type Set struct {
	path      string
	subsystem string
	labels    prometheus.Labels
	reg       *prometheus.Registry
	prev      map[string]*dto.MetricFamily
}

// New starts the metrics of a run. It reads the previous file at path (if
// any) to carry values forward; a missing file is a first run, an unreadable
// or unparsable one is returned as an error with an empty Set still usable.
func New(path, subsystem string, labels prometheus.Labels) (*Set, error) {
	s := &Set{path: path, subsystem: subsystem, labels: labels, reg: prometheus.NewPedanticRegistry()}
	prev, err := Read(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return s, err
	}
	s.prev = prev
	return s, nil
}

// CheckPath refuses a path whose directory does not exist, so a run fails
// before doing its work rather than after.
func CheckPath(path string) error {
	if path == "" {
		return nil
	}
	dir := filepath.Dir(path)
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("metrics file directory: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("metrics file directory %s is not a directory", dir)
	}
	if st, err := os.Stat(path); err == nil && !st.Mode().IsRegular() {
		return fmt.Errorf("metrics file %s exists and is not a regular file", path)
	}
	// The file is written at the end, through a temporary file beside it:
	// find out now whether that will be allowed.
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".probe-*")
	if err != nil {
		return fmt.Errorf("metrics file directory is not writable: %w", err)
	}
	f.Close()
	return os.Remove(f.Name())
}

// Name is the full metric name of name in this set's subsystem.
func (s *Set) Name(name string) string {
	return prometheus.BuildFQName(Namespace, s.subsystem, name)
}

// Gauge records a gauge.
func (s *Set) Gauge(name, help string, v float64) {
	s.GaugeVec(name, help, nil, v)
}

// GaugeVec records one sample of a gauge with extra labels.
func (s *Set) GaugeVec(name, help string, labels prometheus.Labels, v float64) {
	g := s.gaugeVec(name, help, labels)
	g.With(labels).Set(v)
}

func (s *Set) gaugeVec(name, help string, labels prometheus.Labels) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: s.Name(name), Help: help, ConstLabels: s.labels}, labelNames(labels))
	if err := s.reg.Register(g); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			return are.ExistingCollector.(*prometheus.GaugeVec)
		}
		panic(err) // a programming error: a bad name or inconsistent labels
	}
	return g
}

// CarryGauge records the gauge's value from the previous file (same
// labels), if it had one.
func (s *Set) CarryGauge(name, help string) {
	if v, ok := s.previous(s.Name(name), nil); ok {
		s.Gauge(name, help, v)
	}
}

// AddCounter records a counter: its value in the previous file plus add.
func (s *Set) AddCounter(name, help string, labels prometheus.Labels, add float64) {
	prev, _ := s.previous(s.Name(name), labels)
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: s.Name(name), Help: help, ConstLabels: s.labels}, labelNames(labels))
	if err := s.reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			panic(err)
		}
		c = are.ExistingCollector.(*prometheus.CounterVec)
	}
	c.With(labels).Add(prev + add)
}

// previous finds the value of metric name with this set's labels plus
// extra in the previous file.
func (s *Set) previous(name string, extra prometheus.Labels) (float64, bool) {
	mf := s.prev[name]
	if mf == nil {
		return 0, false
	}
	want := map[string]string{}
	for k, v := range s.labels {
		want[k] = v
	}
	for k, v := range extra {
		want[k] = v
	}
	for _, m := range mf.GetMetric() {
		if len(m.GetLabel()) != len(want) {
			continue
		}
		match := true
		for _, lp := range m.GetLabel() {
			if want[lp.GetName()] != lp.GetValue() {
				match = false
				break
			}
		}
		if !match {
			continue
		}
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Untyped != nil:
			return m.Untyped.GetValue(), true
		}
	}
	return 0, false
}

func labelNames(l prometheus.Labels) []string {
	names := make([]string, 0, len(l))
	for k := range l {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// Write replaces the file with this set's metrics, atomically.
func (s *Set) Write() error {
	mfs, err := s.reg.Gather()
	if err != nil {
		return fmt.Errorf("gather metrics: %w", err)
	}
	dir, base := filepath.Split(s.path)
	if dir == "" {
		dir = "."
	}
	// node_exporter reads only *.prom, so the temporary name is skipped
	// by the collector even if a crash leaves it behind.
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("write metrics file: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename this fails harmlessly
	enc := expfmt.NewEncoder(tmp, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			tmp.Close()
			return fmt.Errorf("write metrics file %s: %w", tmp.Name(), err)
		}
	}
	// Readable by the collector, which usually runs as another user.
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("write metrics file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write metrics file %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write metrics file %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), s.path); err != nil {
		return fmt.Errorf("write metrics file: %w", err)
	}
	return nil
}

// Read parses a textfile. A missing file returns an error matching
// fs.ErrNotExist.
func Read(path string) (map[string]*dto.MetricFamily, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(f)
	if err != nil {
		return nil, fmt.Errorf("parse metrics file %s: %w", path, err)
	}
	return mfs, nil
}
