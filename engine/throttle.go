package engine

import (
	"context"
	"fmt"
	"io"
	"time"

	"golang.org/x/time/rate"
)

// newThrottle returns the --max-rate limiter. Like basebackup.c (which
// sleeps after every rate/8 bytes sent) it lets at most an eighth of a
// second's worth through at once, capped at 256 KiB, and it starts empty:
// no initial burst.
func newThrottle(bytesPerSecond int64) *rate.Limiter {
	burst := bytesPerSecond / 8
	burst = min(max(burst, 4096), chunkSize)
	lim := rate.NewLimiter(rate.Limit(bytesPerSecond), int(burst))
	lim.AllowN(time.Now(), int(burst)) // drain the initial bucket
	return lim
}

// throttledWriter holds every byte of an archive stream to the rate limit:
// tar headers, padding and the end-of-archive blocks count as much as file
// data (as PostgreSQL 15+ counts every byte sent), so a tree of many small
// files does not exceed --max-rate.
type throttledWriter struct {
	ctx context.Context
	lim *rate.Limiter
	w   io.Writer
}

func (t *throttledWriter) Write(b []byte) (int, error) {
	written := 0
	for len(b) > 0 {
		n := min(len(b), t.lim.Burst())
		if err := t.lim.WaitN(t.ctx, n); err != nil {
			return written, fmt.Errorf("throttle: %w", err)
		}
		m, err := t.w.Write(b[:n])
		written += m
		if err != nil {
			return written, err
		}
		b = b[n:]
	}
	return written, nil
}
