package main

import (
	"strings"
	"testing"
	"time"

	"github.com/pgcloudbackup/pgcloudbackup/internal/progress"
)

func TestProgressETA(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	e := &etaEstimator{}
	if _, ok := e.eta(0, 1000, t0); ok {
		t.Error("ETA before any byte is done")
	}
	if _, ok := e.eta(100, 1000, t0.Add(time.Minute)); ok { // copying starts a minute in (checkpoint)
		t.Error("ETA from a single sample")
	}
	// 100 bytes/s since copying began: 500 left → 5 s.
	if left, ok := e.eta(500, 1000, t0.Add(time.Minute+4*time.Second)); !ok || left != 5*time.Second {
		t.Errorf("ETA %v %v, want 5s", left, ok)
	}
	var p progress.Counter
	p.SetTotal(1000)
	p.Add(1500)
	line := progressLine(&p, t0, &etaEstimator{}, t0.Add(time.Second))
	if !strings.Contains(line, "100%") || !strings.Contains(line, "ETA --") || strings.Count(line, humanBytes(1500)) != 2 {
		t.Errorf("progress line %q: want done = total = %s, 100%%, no ETA yet", line, humanBytes(1500))
	}
}
