package cli

import (
	"fmt"
	"strconv"
	"time"
)

// ParseDuration parses the CLI's durations: an integer and one unit of s,
// m, h, d (24h) or y (365d), e.g. 90s, 15m, 12h, 30d, 3y.
func ParseDuration(s string) (time.Duration, error) {
	if len(s) < 2 {
		return 0, fmt.Errorf("duration %q: want a number and a unit (s, m, h, d, y), e.g. 30d", s)
	}
	n, err := strconv.ParseInt(s[:len(s)-1], 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("duration %q: want a non-negative whole number before the unit, e.g. 30d", s)
	}
	unit := map[byte]time.Duration{'s': time.Second, 'm': time.Minute, 'h': time.Hour, 'd': 24 * time.Hour, 'y': 365 * 24 * time.Hour}[s[len(s)-1]]
	if unit == 0 {
		return 0, fmt.Errorf("duration %q: unit must be s, m, h, d or y", s)
	}
	if n > int64(1<<62)/int64(unit) {
		return 0, fmt.Errorf("duration %q: too long", s)
	}
	return time.Duration(n) * unit, nil
}

// ParseInstant parses an RFC 3339 instant and returns it in UTC.
func ParseInstant(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("instant %q: want RFC 3339, e.g. 2027-01-04T00:00:00Z", s)
	}
	return t.UTC(), nil
}
