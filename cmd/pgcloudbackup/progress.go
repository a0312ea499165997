package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/pgcloudbackup/pgcloudbackup/internal/progress"
)

// startProgress shows (when enabled) backup progress: a redrawn line on a terminal,
// a log line every 10 seconds otherwise (cron, systemd, Kubernetes logs).
func startProgress(g *globalOptions, p *progress.Counter, enabled bool) (stop func()) {
	if !enabled {
		return func() {}
	}
	tty := g.term != nil
	interval := 10 * time.Second
	if tty {
		interval = 250 * time.Millisecond
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	start := time.Now()
	est := &etaEstimator{}
	go func() {
		defer close(finished)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				if tty {
					g.term.Finish(progressLine(p, start, est, time.Now()))
				} else {
					logProgress(g, p, est, time.Now())
				}
				return
			case now := <-t.C:
				if tty {
					g.term.Draw(progressLine(p, start, est, now))
				} else {
					logProgress(g, p, est, now)
				}
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

// logOutput is where the log goes: stderr, through a progress.Term when it
// is a terminal, so that a log record clears the progress bar first and
// redraws it after (the bar draws through the same Term).
func (g *globalOptions) logOutput() io.Writer {
	f, ok := g.stderr.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return g.stderr
	}
	g.term = progress.NewTerm(f, func() int {
		w, _, err := term.GetSize(int(f.Fd()))
		if err != nil {
			return 0
		}
		return w
	})
	return g.term
}

func logProgress(g *globalOptions, p *progress.Counter, est *etaEstimator, now time.Time) {
	d, total, phase := p.Snapshot()
	args := []any{"phase", phase, "done", d, "total", total, "percent", percent(d, total)}
	if eta, ok := est.eta(d, total, now); ok {
		args = append(args, "eta", humanDuration(eta))
	}
	g.logger.Info("progress", args...)
}

// etaEstimator predicts the time left from the rate since the first bytes
// were done (not since the start: a spread checkpoint may take minutes
// before any byte is copied).
type etaEstimator struct {
	t0 time.Time
	d0 int64
}

// eta returns the estimated time left, ok false while it cannot be told.
func (e *etaEstimator) eta(done, total int64, now time.Time) (time.Duration, bool) {
	if done <= 0 {
		return 0, false
	}
	if e.t0.IsZero() {
		e.t0, e.d0 = now, done
		return 0, false
	}
	if done >= total {
		return 0, true
	}
	elapsed := now.Sub(e.t0)
	if elapsed < time.Second || done <= e.d0 {
		return 0, false
	}
	rate := float64(done-e.d0) / elapsed.Seconds()
	left := time.Duration(float64(total-done) / rate * float64(time.Second))
	return left.Round(time.Second), true
}

func percent(done, total int64) int {
	if total <= 0 {
		return 0
	}
	p := int(done * 100 / total)
	if p > 100 {
		p = 100
	}
	return p
}

func progressLine(p *progress.Counter, start time.Time, est *etaEstimator, now time.Time) string {
	done, total, phase := p.Snapshot()
	pct := percent(done, total)
	const width = 30
	bar := strings.Repeat("=", pct*width/100) + strings.Repeat(" ", width-pct*width/100)
	rate := float64(done) / now.Sub(start).Seconds() / (1 << 20)
	eta := "ETA --"
	if left, ok := est.eta(done, total, now); ok {
		eta = "ETA " + humanDuration(left)
	}
	return fmt.Sprintf("[%s] %3d%% %s/%s %.0f MiB/s %-10s %-10s", bar, pct, humanBytes(done), humanBytes(total), rate, eta, phase)
}
