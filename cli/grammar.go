package cli

import (
	"fmt"
	"time"

	"github.com/neocloud/neocloud"
)

// ParseDuration parses the CLI's durations: an integer and one unit of s,
// m, h, d (24h) or y (365d), e.g. 90s, 15m, 12h, 30d, 3y.
func ParseDuration(s string) (time.Duration, error) { return neocloud.ParseDuration(s) }

// ParseInstant parses an RFC 3339 instant and returns it in UTC.
func ParseInstant(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("instant %q: want RFC 3339, e.g. 2027-01-04T00:00:00Z", s)
	}
	return t.UTC(), nil
}
