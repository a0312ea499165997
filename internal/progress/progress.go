// Package progress is the counter a long operation (backup, restore,
// verify) updates and the CLI displays. A nil *Counter ignores updates.
package progress

import "sync/atomic"

// Counter counts bytes done against an estimated total, with a phase name.
type Counter struct {
	total atomic.Int64
	done  atomic.Int64
	phase atomic.Value // string
}

// Snapshot returns bytes done, the estimated total and the current phase.
func (p *Counter) Snapshot() (done, total int64, phase string) {
	if p == nil {
		return 0, 0, ""
	}
	ph, _ := p.phase.Load().(string)
	return p.done.Load(), p.total.Load(), ph
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

// SetPhase names what is happening now.
func (p *Counter) SetPhase(s string) {
	if p != nil {
		p.phase.Store(s)
	}
}
