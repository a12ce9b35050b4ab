package wire

import (
	"strconv"
	"time"
)

// AppendHeartbeatAnswer appends a as JSON to b, as encoding/json.Marshal
// writes it, in a fraction of the time: the server answers every node
// every few seconds. It reports false, leaving b to be discarded, for an
// answer carrying commands (rare: the caller marshals those), or a string
// that encoding/json would escape (TestAppendHeartbeatAnswer).
func AppendHeartbeatAnswer(b []byte, a HeartbeatAnswer) ([]byte, bool) {
	if len(a.Commands) > 0 {
		return b, false
	}
	b = append(b, `{"version":`...)
	b = strconv.AppendInt(b, int64(a.Version), 10)
	b = append(b, `,"acked":`...)
	b = strconv.AppendInt(b, a.Acked, 10)
	if a.Duplicate {
		b = append(b, `,"duplicate":true`...)
	}
	b = append(b, `,"health":`...)
	ok := true
	b, ok = appendPlain(b, a.Health, ok)
	if s := a.Assignment; s != nil {
		b = append(b, `,"assignment":{"generation":`...)
		b = strconv.AppendInt(b, s.Generation, 10)
		b = append(b, `,"reservation":`...)
		b, ok = appendPlain(b, s.Reservation, ok)
		if s.End != nil {
			b = append(b, `,"end":`...)
			b, ok = appendTime(b, *s.End, ok)
		}
		if len(s.Notices) > 0 {
			b = append(b, `,"notices":[`...)
			for i, n := range s.Notices {
				if i > 0 {
					b = append(b, ',')
				}
				b = append(b, `{"kind":`...)
				b, ok = appendPlain(b, n.Kind, ok)
				b = append(b, `,"deadline":`...)
				b, ok = appendTime(b, n.Deadline, ok)
				if n.Reason != "" {
					b = append(b, `,"reason":`...)
					b, ok = appendPlain(b, n.Reason, ok)
				}
				b = append(b, '}')
			}
			b = append(b, ']')
		}
		b = append(b, '}')
	}
	if a.PowerCapW != 0 {
		b = append(b, `,"power_cap_w":`...)
		b = strconv.AppendInt(b, int64(a.PowerCapW), 10)
	}
	return append(b, '}'), ok
}

// appendPlain appends s quoted, and ok only when s has nothing that
// encoding/json might escape: ASCII but for control characters, ", \,
// <, > and &.
func appendPlain(b []byte, s string, ok bool) ([]byte, bool) {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c >= 0x80, c == '"', c == '\\', c == '<', c == '>', c == '&':
			ok = false
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"'), ok
}

// appendTime appends t as time.Time.MarshalJSON writes it, and ok only
// when that would succeed (a year of four digits, an offset under a day).
func appendTime(b []byte, t time.Time, ok bool) ([]byte, bool) {
	if y := t.Year(); y < 0 || y > 9999 {
		return b, false
	}
	if _, off := t.Zone(); off <= -86400 || off >= 86400 {
		return b, false
	}
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"'), ok
}
