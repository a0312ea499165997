// Package progress is the counter a long operation (backup, restore,
// verify) updates and the CLI displays. A nil *Counter ignores updates.
package progress

import "sync/atomic"

// Counter counts bytes done against an estimated total, with a phase name.
// The estimate may be corrected as the work goes (AddTotal, Finish); done
// is never reported above the total.
type Counter struct {
	total atomic.Int64
	done  atomic.Int64
	phase atomic.Value // string
}

// Snapshot returns bytes done, the estimated total and the current phase.
// When the work outgrew its estimate, the total reported is what is done
// so far (the estimate catches up rather than showing more than 100%).
func (p *Counter) Snapshot() (done, total int64, phase string) {
	if p == nil {
		return 0, 0, ""
	}
	ph, _ := p.phase.Load().(string)
	done, total = p.done.Load(), p.total.Load()
	if total < done {
		total = done
	}
	return done, total, ph
}

// Estimate returns the current estimate of the total as set, which may be
// below what is done (Snapshot never shows that).
func (p *Counter) Estimate() int64 {
	if p == nil {
		return 0
	}
	return p.total.Load()
}

// Add counts n more bytes done.
func (p *Counter) Add(n int64) {
	if p != nil {
		p.done.Add(n)
	}
}

// SetTotal sets the estimated total.
func (p *Counter) SetTotal(n int64) {
	if p != nil {
		p.total.Store(n)
	}
}

// AddTotal corrects the estimate by n bytes (negative: less work than
// estimated).
func (p *Counter) AddTotal(n int64) {
	if p != nil {
		p.total.Add(n)
	}
}

// Finish makes the total what was done: the work is over, and the final
// report shows its real size.
func (p *Counter) Finish() {
	if p != nil {
		p.total.Store(p.done.Load())
	}
}

// SetPhase names what is happening now.
func (p *Counter) SetPhase(s string) {
	if p != nil {
		p.phase.Store(s)
	}
}
