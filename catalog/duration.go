package catalog

import (
	"fmt"
	"math"
	"strings"
	"time"
)

const (
	day  = 24 * time.Hour
	week = 7 * day
)

// ParseDuration parses a retention age such as "7d", "36h", "2w" or
// "1w3d12h": what time.ParseDuration accepts (ns, us, µs, ms, s, m, h), plus
// d (24 hours) and w (7 days), which retention wants and Go lacks. Days are
// exactly 24 hours: no calendar, no time zones. Negative ages are refused.
func ParseDuration(s string) (time.Duration, error) {
	in := strings.TrimSpace(s)
	if in == "0" {
		return 0, nil
	}
	if in == "" {
		return 0, fmt.Errorf("empty duration: want e.g. 7d, 36h, 2w")
	}
	var total time.Duration
	for rest := in; rest != ""; {
		num := len(rest) - len(strings.TrimLeft(rest, "0123456789."))
		unit := num + len(rest[num:]) - len(strings.TrimLeft(rest[num:], "abcdefghijklmnopqrstuvwxyzµμ"))
		if num == 0 || unit == num {
			return 0, fmt.Errorf("invalid duration %q: want a number and a unit (s, m, h, d, w), e.g. 7d, 36h, 2w", s)
		}
		n, u := rest[:num], rest[num:unit]
		rest = rest[unit:]
		goUnit, mult := u, time.Duration(1)
		switch u {
		case "d":
			goUnit, mult = "h", 24
		case "w":
			goUnit, mult = "h", 24*7
		}
		d, err := time.ParseDuration(n + goUnit)
		if err != nil {
			return 0, fmt.Errorf("invalid duration %q: unknown unit %q or bad number (units: s, m, h, d, w)", s, u)
		}
		if d > math.MaxInt64/mult || total > math.MaxInt64-d*mult {
			return 0, fmt.Errorf("duration %q is too long", s)
		}
		total += d * mult
	}
	return total, nil
}

// FormatDuration writes d the way ParseDuration reads it, to whole seconds
// and at most two units: "3d4h", "36m12s", "0s".
func FormatDuration(d time.Duration) string {
	if d < 0 {
		return "-" + FormatDuration(-d)
	}
	d = d.Round(time.Second)
	units := []struct {
		name string
		size time.Duration
	}{{"d", day}, {"h", time.Hour}, {"m", time.Minute}, {"s", time.Second}}
	var b strings.Builder
	parts := 0
	for _, u := range units {
		if parts == 2 {
			break
		}
		if n := d / u.size; n > 0 || parts > 0 {
			if n > 0 {
				fmt.Fprintf(&b, "%d%s", n, u.name)
			}
			d -= n * u.size
			parts++
		}
	}
	if b.Len() == 0 {
		return "0s"
	}
	return b.String()
}
