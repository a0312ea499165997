package catalog

import (
	"errors"
	"fmt"
	"time"

	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
)

// Policy says which backups a retention run deletes. Each rule that is set
// keeps some complete backups; a complete backup that no rule keeps goes.
// Nil rules are off, so the zero Policy keeps every complete backup.
type Policy struct {
	// Retain keeps the Retain newest complete backups.
	Retain *int
	// OlderThan keeps the complete backups that started (Entry.Started)
	// at most OlderThan before Now.
	OlderThan *time.Duration
	// Grace is how long an incomplete backup (no manifest.json) is left
	// alone after its newest object was written: it may be running.
	// Incomplete backups older than that are deleted.
	Grace time.Duration
	// Force lifts the safeguards: the newest complete backup may go,
	// Retain may be 0, and "delete ID" may remove a backup in its grace
	// period.
	Force bool
	// Now is the time ages are measured from.
	Now time.Time
}

// Decision is what happens to one backup.
type Decision struct {
	Entry  *Entry
	Delete bool
	// Reason says why, for people ("older than 7d", "newest complete
	// backup, kept without --force").
	Reason string
	// Protected marks a backup kept only by a safeguard: the newest
	// complete backup, an incomplete one in its grace period, or one whose
	// manifest cannot be read.
	Protected bool
}

// Plan decides, for every backup in the catalog (newest first), whether a
// retention run with policy p deletes it. It never deletes the newest
// usable complete backup without p.Force, nor a backup whose manifest.json
// it cannot read (it cannot tell how old or how good that one is).
func (c *Catalog) Plan(p Policy) ([]Decision, error) {
	if p.Retain == nil && p.OlderThan == nil {
		return nil, failure.New(failure.Usage, "a retention run needs --retain or --older-than")
	}
	if p.Retain != nil && (*p.Retain < 0 || *p.Retain == 0 && !p.Force) {
		return nil, failure.New(failure.Usage, "--retain %d: keep at least 1 backup (--force allows 0)", *p.Retain)
	}
	if (p.OlderThan != nil && *p.OlderThan < 0) || p.Grace < 0 {
		return nil, failure.New(failure.Usage, "negative duration in the retention policy")
	}
	c = c.at(p.Now)
	newest := c.Newest()
	out := make([]Decision, 0, len(c.Entries))
	rank := 0 // usable complete backups seen so far, newest first
	for i := range c.Entries {
		e := &c.Entries[i]
		d := Decision{Entry: e}
		switch e.Status() {
		case StatusIncomplete:
			d = p.incomplete(e)
		case StatusUnreadable:
			d.Protected = true
			d.Reason = "manifest.json cannot be read: " + e.Err.Error()
		default:
			if c.InFuture(e) {
				// Kept, but it neither counts toward --retain nor
				// stands as the newest: it shields nothing.
				d.Protected = true
				d.Reason = futureReason(e, p.Now)
				break
			}
			rank++
			age := p.Now.Sub(e.Started())
			switch {
			case p.Retain != nil && rank <= *p.Retain:
				d.Reason = newestN(*p.Retain)
			case p.OlderThan != nil && age <= *p.OlderThan:
				d.Reason = fmt.Sprintf("%s old, not older than %s", FormatDuration(age), FormatDuration(*p.OlderThan))
			case e == newest && !p.Force:
				d.Protected = true
				d.Reason = "newest complete backup, kept without --force"
			default:
				d.Delete = true
				d.Reason = p.deleteReason(age)
			}
		}
		out = append(out, d)
	}
	return out, nil
}

// at returns c as seen at now (for InFuture); c itself if now is zero.
// Entries are shared, so decisions point into c.
func (c *Catalog) at(now time.Time) *Catalog {
	if now.IsZero() {
		return c
	}
	return &Catalog{Where: c.Where, Entries: c.Entries, Now: now}
}

// futureReason explains why a backup dated in the future is kept.
func futureReason(e *Entry, now time.Time) string {
	return fmt.Sprintf("dated %s in the future (clock skew or a crafted ID): kept, but not counted as newest nor toward --retain; delete it by ID",
		FormatDuration(e.Started().Sub(now)))
}

// deleteReason names the rules that let a complete backup go.
func (p Policy) deleteReason(age time.Duration) string {
	var r string
	if p.Retain != nil {
		r = "not " + newestN(*p.Retain)
	}
	if p.OlderThan != nil {
		if r != "" {
			r += ", and "
		}
		r += fmt.Sprintf("%s old, older than %s", FormatDuration(age), FormatDuration(*p.OlderThan))
	}
	return r
}

// newestN describes the backups --retain n keeps.
func newestN(n int) string {
	if n == 1 {
		return "the newest complete backup"
	}
	return fmt.Sprintf("one of the %d newest complete backups", n)
}

// incomplete decides about a backup without manifest.json: it goes once
// nothing has been written to it for longer than the grace period.
func (p Policy) incomplete(e *Entry) Decision {
	age := p.Now.Sub(e.Modified)
	if age > p.Grace {
		return Decision{Entry: e, Delete: true, Reason: fmt.Sprintf(
			"incomplete, last written %s ago; grace %s", FormatDuration(age), FormatDuration(p.Grace))}
	}
	return Decision{Entry: e, Protected: true, Reason: fmt.Sprintf(
		"incomplete, last written %s ago: it may still be running; grace %s", FormatDuration(age), FormatDuration(p.Grace))}
}

// PlanDelete decides about deleting the one backup id on request. Without
// p.Force it refuses (a Precondition error) the newest complete backup and
// an incomplete one still in its grace period: deleting a running backup's
// parts would let it finish into a manifest that names missing objects.
//
// id may be "latest": the backup Resolve names, which is always the newest
// complete one, so deleting it needs --force like deleting it by ID.
func (c *Catalog) PlanDelete(id string, p Policy) (Decision, error) {
	c = c.at(p.Now)
	var e *Entry
	var err error
	if id == Latest {
		e, err = c.Resolve(id)
		if err == nil {
			id = e.ID
		}
	} else {
		e, err = c.Lookup(id)
	}
	if err != nil {
		return Decision{}, err
	}
	d := Decision{Entry: e, Delete: true, Reason: "requested"}
	if p.Force {
		return d, nil
	}
	if e == c.Newest() {
		return Decision{}, &failure.Error{Kind: failure.Precondition,
			Err:  fmt.Errorf("backup %s is the newest complete backup in %s", id, c.Where),
			Hint: "add --force to delete it anyway"}
	}
	if e.Status() == StatusIncomplete {
		if inc := p.incomplete(e); !inc.Delete {
			return Decision{}, &failure.Error{Kind: failure.Precondition,
				Err:  errors.New("backup " + id + " is " + inc.Reason),
				Hint: "add --force to delete it anyway, once you know no backup is writing it"}
		}
	}
	return d, nil
}
