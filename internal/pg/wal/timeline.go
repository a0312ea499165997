package wal

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// Timelines follow timeline.c: a history file "<tli>.history" lists, one
// line per ancestor, the parent timeline and the LSN where it ended (the
// child began there), oldest first.

// HistoryFileName is the history file of timeline tli ("00000002.history").
func HistoryFileName(tli uint32) string { return fmt.Sprintf("%08X.history", tli) }

// Timeline is one timeline of a history and the WAL it holds: [Begin, End).
// Begin is 0 for the oldest timeline; End is 0 for the newest (still open).
type Timeline struct {
	TLI   uint32
	Begin LSN
	End   LSN
}

// ParseHistory reads the history file of timeline tli and returns the whole
// history, newest timeline (tli itself, open-ended) first, as
// readTimeLineHistory does. Timeline IDs must increase down the file and
// switch points must not go back.
func ParseHistory(tli uint32, data []byte) ([]Timeline, error) {
	var parents []Timeline
	sc := bufio.NewScanner(bytes.NewReader(data))
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		fields := strings.Fields(text)
		if len(fields) < 2 {
			return nil, fmt.Errorf("history of timeline %d, line %d: want \"<timeline> <LSN> <reason>\"", tli, line)
		}
		parent, err := strconv.ParseUint(fields[0], 10, 32)
		if err != nil || parent == 0 {
			return nil, fmt.Errorf("history of timeline %d, line %d: invalid timeline %q", tli, line, fields[0])
		}
		end, err := ParseLSN(fields[1])
		if err != nil {
			return nil, fmt.Errorf("history of timeline %d, line %d: %w", tli, line, err)
		}
		if n := len(parents); n > 0 {
			if uint32(parent) <= parents[n-1].TLI {
				return nil, fmt.Errorf("history of timeline %d, line %d: timeline IDs must be in increasing sequence", tli, line)
			}
			if end < parents[n-1].End {
				return nil, fmt.Errorf("history of timeline %d, line %d: switch point %s goes back", tli, line, end)
			}
		}
		parents = append(parents, Timeline{TLI: uint32(parent), End: end})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("history of timeline %d: %w", tli, err)
	}
	if n := len(parents); n > 0 && parents[n-1].TLI >= tli {
		return nil, fmt.Errorf("history of timeline %d lists timeline %d: not an ancestor", tli, parents[n-1].TLI)
	}
	out := make([]Timeline, 0, len(parents)+1)
	self := Timeline{TLI: tli}
	if n := len(parents); n > 0 {
		self.Begin = parents[n-1].End
	}
	out = append(out, self)
	for i := len(parents) - 1; i >= 0; i-- {
		t := parents[i]
		if i > 0 {
			t.Begin = parents[i-1].End
		}
		out = append(out, t)
	}
	return out, nil
}

// Span is the WAL a backup needs on one timeline: [Start, End).
type Span struct {
	TLI   uint32
	Start LSN
	End   LSN
}

// BackupSpans returns the WAL a backup from start (on startTLI) to stop
// needs, one span per timeline, newest first, as basebackup.c's
// AddWALInfoToBackupManifest lists "WAL-Ranges". history is the history of
// the timeline the backup ended on, newest first (ParseHistory); a
// single-timeline backup passes []Timeline{{TLI: startTLI}}. The newest
// timeline that began before stop is the end timeline.
func BackupSpans(history []Timeline, startTLI uint32, start, stop LSN) ([]Span, error) {
	if stop <= start {
		return nil, fmt.Errorf("backup stop LSN %s is not after start LSN %s", stop, start)
	}
	var spans []Span
	end := stop
	for _, t := range history {
		if len(spans) == 0 && t.TLI != startTLI && t.Begin >= stop {
			// A timeline that began after the backup's end: not its end
			// timeline.
			continue
		}
		if t.End != 0 && t.End < start {
			break
		}
		if t.TLI == startTLI {
			spans = append(spans, Span{TLI: t.TLI, Start: start, End: end})
			return spans, nil
		}
		if t.Begin == 0 {
			break
		}
		if t.Begin <= start {
			return nil, fmt.Errorf("timeline %d began at %s, before the backup started at %s on timeline %d", t.TLI, t.Begin, start, startTLI)
		}
		spans = append(spans, Span{TLI: t.TLI, Start: t.Begin, End: end})
		end = t.Begin
	}
	return nil, fmt.Errorf("the backup started on timeline %d, which is not in the history of the timeline it ended on", startTLI)
}

// SegmentFile is one WAL segment file a backup needs.
type SegmentFile struct {
	TLI uint32
	Seg SegNo
	// Limit is how many bytes from the segment's start hold WAL the backup
	// needs on this timeline (its pages must be valid); the rest of the
	// file may be unwritten or left over from a recycled segment.
	Limit int64
}

// Name is the segment's file name.
func (f SegmentFile) Name(segSize int64) string { return FileName(f.TLI, f.Seg, segSize) }

// SegmentFiles lists the segment files spans need, by segment number and
// then timeline, as basebackup.c sends them: each span's segments on its
// own timeline, so the segment holding a switch point is needed on both
// sides of it.
func SegmentFiles(spans []Span, segSize int64) []SegmentFile {
	var files []SegmentFile
	for i := len(spans) - 1; i >= 0; i-- {
		s := spans[i]
		if s.End <= s.Start {
			continue
		}
		last := SegmentBefore(s.End, segSize)
		for seg := SegmentOf(s.Start, segSize); seg <= last; seg++ {
			limit := segSize
			if seg == last {
				limit = int64(uint64(s.End) - uint64(seg)*uint64(segSize))
			}
			files = append(files, SegmentFile{TLI: s.TLI, Seg: seg, Limit: limit})
		}
	}
	return files
}
