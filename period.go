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
