package wire

import (
	"encoding/json"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// TestAppendHeartbeatAnswer: whatever AppendHeartbeatAnswer accepts, it
// writes as encoding/json does; and it accepts every answer without
// commands or strings to escape.
func TestAppendHeartbeatAnswer(t *testing.T) {
	plain := rapid.SampledFrom([]string{"", "ok", "degraded", "failed", "res_01J2", "replacement", "node n-7 left the work"})
	str := rapid.OneOf(plain, plain, plain, rapid.SampledFrom([]string{"a<b", `q"`, "é", "tab\t", "x&y", `back\`, "\u2028"}), rapid.String())
	when := rapid.Custom(func(t *rapid.T) time.Time {
		zone := time.FixedZone("z", rapid.SampledFrom([]int{0, 3600, -5*3600 - 1800, 59, 86399, 86400, -86400, -90000}).Draw(t, "offset"))
		at := time.Unix(rapid.Int64Range(-70000000000, 300000000000).Draw(t, "unix"), rapid.Int64Range(0, 999999999).Draw(t, "ns"))
		if rapid.IntRange(0, 3).Draw(t, "utc") == 0 {
			return at.UTC()
		}
		return at.In(zone)
	})
	rapid.Check(t, func(t *rapid.T) {
		a := HeartbeatAnswer{Version: rapid.IntRange(-1, 3).Draw(t, "version"), Acked: rapid.Int64().Draw(t, "acked"),
			Duplicate: rapid.Bool().Draw(t, "duplicate"), Health: str.Draw(t, "health"), PowerCapW: rapid.IntRange(-1, 1000).Draw(t, "cap")}
		if rapid.Bool().Draw(t, "assigned") {
			s := &Assignment{Generation: rapid.Int64().Draw(t, "generation"), Reservation: str.Draw(t, "reservation")}
			if rapid.Bool().Draw(t, "ends") {
				end := when.Draw(t, "end")
				s.End = &end
			}
			for range rapid.IntRange(0, 3).Draw(t, "notices") {
				s.Notices = append(s.Notices, Notice{Kind: str.Draw(t, "kind"), Deadline: when.Draw(t, "deadline"), Reason: str.Draw(t, "reason")})
			}
			a.Assignment = s
		}
		if rapid.IntRange(0, 9).Draw(t, "commands") == 0 {
			a.Commands = []Command{{ID: "cmd_1", Kind: "drain"}}
		}
		got, ok := AppendHeartbeatAnswer([]byte("prefix"), a)
		want, err := json.Marshal(a)
		if ok {
			if err != nil {
				t.Fatalf("accepted what encoding/json refuses (%v): %s", err, got)
			}
			if string(got) != "prefix"+string(want) {
				t.Fatalf("wrote\n%s\nencoding/json writes\n%s", got[len("prefix"):], want)
			}
			return
		}
		if err != nil || len(a.Commands) > 0 {
			return
		}
		// Refused without commands: some string must need escaping.
		plain := func(s string) bool { _, ok := appendPlain(nil, s, true); return ok }
		escapes := !plain(a.Health)
		if s := a.Assignment; s != nil {
			escapes = escapes || !plain(s.Reservation)
			for _, n := range s.Notices {
				escapes = escapes || !plain(n.Kind) || !plain(n.Reason)
			}
		}
		if !escapes {
			t.Fatalf("refused an answer with nothing to escape: %s", want)
		}
	})
}

// TestAppendPlain: the strings AppendHeartbeatAnswer writes as they are
// are those encoding/json writes as they are.
func TestAppendPlain(t *testing.T) {
	for c := range 256 {
		s := string([]byte{byte(c)})
		_, ok := appendPlain(nil, s, true)
		want, _ := json.Marshal(s)
		verbatim := string(want) == `"`+s+`"`
		if ok != verbatim {
			t.Errorf("byte %#x: plain %v, encoding/json verbatim %v (%s)", c, ok, verbatim, want)
		}
	}
}
