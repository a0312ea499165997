package main

import (
	"fmt"
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
	tty := false
	if f, ok := g.stderr.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	interval := 10 * time.Second
	if tty {
		interval = 250 * time.Millisecond
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(finished)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				if tty {
					fmt.Fprint(g.stderr, "\r"+progressLine(p, start)+"\n")
				} else {
					logProgress(g, p)
				}
				return
			case <-t.C:
				if tty {
					fmt.Fprint(g.stderr, "\r"+progressLine(p, start))
				} else {
					logProgress(g, p)
				}
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

func logProgress(g *globalOptions, p *progress.Counter) {
	d, total, phase := p.Snapshot()
	g.logger.Info("progress", "phase", phase, "done", d, "total", total, "percent", percent(d, total))
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

func progressLine(p *progress.Counter, start time.Time) string {
	done, total, phase := p.Snapshot()
	pct := percent(done, total)
	const width = 30
	bar := strings.Repeat("=", pct*width/100) + strings.Repeat(" ", width-pct*width/100)
	rate := float64(done) / time.Since(start).Seconds() / (1 << 20)
	return fmt.Sprintf("[%s] %3d%% %s/%s %.0f MiB/s %-10s", bar, pct, humanBytes(done), humanBytes(total), rate, phase)
}
