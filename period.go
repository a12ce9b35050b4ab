package neocloud

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParsePeriod parses a UTC calendar period — 2027-01 (month), 2027-Q1
// (quarter), 2027-H1 (half) or 2027 (year) — into its half-open [start, end).
func ParsePeriod(s string) (start, end time.Time, err error) {
	bad := fmt.Errorf("period %q: want 2027, 2027-01, 2027-Q1 or 2027-H1", s)
	year, rest, _ := strings.Cut(s, "-")
	y, err := strconv.Atoi(year)
	if err != nil || len(year) != 4 {
		return time.Time{}, time.Time{}, bad
	}
	first, months := 1, 12
	switch {
	case rest == "":
	case len(rest) == 2 && rest[0] == 'Q' && rest[1] >= '1' && rest[1] <= '4':
		first, months = 1+3*int(rest[1]-'1'), 3
	case len(rest) == 2 && rest[0] == 'H' && (rest[1] == '1' || rest[1] == '2'):
		first, months = 1+6*int(rest[1]-'1'), 6
	default:
		m, err := strconv.Atoi(rest)
		if err != nil || len(rest) != 2 || m < 1 || m > 12 {
			return time.Time{}, time.Time{}, bad
		}
		first, months = m, 1
	}
	start = time.Date(y, time.Month(first), 1, 0, 0, 0, 0, time.UTC)
	return start, start.AddDate(0, months, 0), nil
}

// ParseDuration parses the durations of the CLI and the console: an integer and one unit of s,
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
