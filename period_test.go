package neocloud

import (
	"testing"
	"time"
)

func TestParsePeriod(t *testing.T) {
	d := func(y, m int) time.Time { return time.Date(y, time.Month(m), 1, 0, 0, 0, 0, time.UTC) }
	for _, tc := range []struct {
		in         string
		start, end time.Time
		ok         bool
	}{
		{"2027-01", d(2027, 1), d(2027, 2), true},
		{"2027-12", d(2027, 12), d(2028, 1), true},
		{"2027-Q1", d(2027, 1), d(2027, 4), true},
		{"2027-Q4", d(2027, 10), d(2028, 1), true},
		{"2027-H2", d(2027, 7), d(2028, 1), true},
		{"2027", d(2027, 1), d(2028, 1), true},
		{"2027-13", time.Time{}, time.Time{}, false},
		{"2027-Q5", time.Time{}, time.Time{}, false},
		{"27-01", time.Time{}, time.Time{}, false},
		{"2027-1", time.Time{}, time.Time{}, false},
	} {
		s, e, err := ParsePeriod(tc.in)
		if (err == nil) != tc.ok || !s.Equal(tc.start) || !e.Equal(tc.end) {
			t.Errorf("ParsePeriod(%q) = [%v, %v), %v; want [%v, %v) ok=%v", tc.in, s, e, err, tc.start, tc.end, tc.ok)
		}
	}
}

func FuzzParsePeriod(f *testing.F) {
	for _, s := range []string{"2027-01", "2027-Q1", "2027-H2", "2027", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		start, end, err := ParsePeriod(s)
		if err == nil && !end.After(start) {
			t.Errorf("ParsePeriod(%q) = [%v, %v): empty period", s, start, end)
		}
	})
}
