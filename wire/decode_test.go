package wire

import (
	"encoding/json"
	"strconv"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"pgregory.net/rapid"
)

var decodeSeeds = []string{
	`{"version":2,"seq":7,"at":"2027-03-01T12:00:00.123456789Z","gpus":[{"index":0,"power_w":512.5,"energy_j":123456,"temp_c":61,"util_pct":97,"mem_used_mib":70000,"ecc_corrected":3,"ecc_uncorrected":1,"xids":[{"code":79,"at":"2027-03-01T11:59:59+02:00"}],"throttle":["power_cap"],"lost":false,"row_remap_pending":true,"row_remap_failed":false}],"nics":[{"name":"mlx5_0/1","up":false,"errors":9}],"uptime_s":99,"agent_version":"1.2","driver_version":"550.54","checks":[{"name":"disk","ok":false,"message":"full"}],"results":[{"id":"cmd_1","state":"done","message":"ok"}]}`,
	`{"version":1,"seq":1,"at":"2027-03-01T12:00:00Z","gpus":[]}`,
	` { "seq" : -0 , "gpus" : [ { "power_w" : -1.5e-3 } ] } `,
	`{"gpus":null,"nics":[],"checks":null}`,
	`{"Seq":"1"}`,
	`{"seq":1e3,"gpus":[{"energy_j":-1}]}`,
	`{"seq":1,"seq":2}`,
	`{"seq":01}`,
	`{"seq":9223372036854775808}`,
	`{"gpus":[{"power_w":1e400}]}`,
	`{"gpus":nul}`,
	`{"seq":null}`,
	`{"agent_version":"a\"b"}`,
	`{"at":"2027-13-01T00:00:00Z"}`,
	`{"nics":[{"name":"x","up":tru}]}`,
	`{"seq":1}x`,
	`{"seq":1,}`,
	`{"unknown":1}`,
	`[]`,
	``,
}

// FuzzDecodeHeartbeat: whatever DecodeHeartbeat accepts, encoding/json
// reads the same way, and does not refuse.
func FuzzDecodeHeartbeat(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) { checkDecode(t, b) })
}

func checkDecode(t interface {
	Helper()
	Fatalf(string, ...any)
}, b []byte) bool {
	t.Helper()
	if !utf8.Valid(b) {
		return false
	}
	var got Heartbeat
	if !DecodeHeartbeat(b, &got) {
		return false
	}
	var want Heartbeat
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatalf("DecodeHeartbeat accepts %q, encoding/json refuses it: %v", b, err)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("%q read differently (-encoding/json +DecodeHeartbeat):\n%s", b, d)
	}
	return true
}

func TestDecodeHeartbeatSeeds(t *testing.T) {
	accepted := map[string]bool{}
	for _, s := range decodeSeeds {
		accepted[s] = checkDecode(t, []byte(s))
	}
	// The first four are shapes agents write; the others are left to
	// encoding/json.
	for i, s := range decodeSeeds {
		if want := i < 4; accepted[s] != want {
			t.Errorf("%q: accepted %v, want %v", s, accepted[s], want)
		}
	}
}

// Every heartbeat encoding/json writes, with the strings agents send
// (nothing it escapes), is decoded without falling back, and as written.
func TestDecodeHeartbeatRoundTrip(t *testing.T) {
	word := rapid.StringMatching(`[a-zA-Z0-9_./: -]{0,12}`)
	at := rapid.Custom(func(t *rapid.T) time.Time {
		loc := time.FixedZone("", rapid.IntRange(-12, 12).Draw(t, "zone")*3600)
		return time.Unix(rapid.Int64Range(0, 4e9).Draw(t, "s"), rapid.Int64Range(0, 999999999).Draw(t, "ns")).In(loc)
	})
	num := rapid.Custom(func(t *rapid.T) float64 {
		return rapid.OneOf(rapid.Float64Range(-1e6, 1e6), rapid.Just(0.0), rapid.Float64Range(1e-9, 1e-3)).Draw(t, "f")
	})
	rapid.Check(t, func(t *rapid.T) {
		hb := Heartbeat{Version: rapid.IntRange(0, 3).Draw(t, "version"), Seq: rapid.Int64().Draw(t, "seq"), At: at.Draw(t, "at"),
			UptimeS: rapid.Int64().Draw(t, "uptime"), AgentVersion: word.Draw(t, "agent"), DriverVersion: word.Draw(t, "driver")}
		for range rapid.IntRange(0, 8).Draw(t, "gpus") {
			g := GPUSample{Index: rapid.Int().Draw(t, "index"), PowerW: num.Draw(t, "power"), EnergyJ: rapid.Uint64().Draw(t, "energy"),
				TempC: num.Draw(t, "temp"), UtilPct: num.Draw(t, "util"), MemUsedMiB: rapid.Int().Draw(t, "mem"),
				ECCCorrected: rapid.Uint64().Draw(t, "ecc"), ECCUncorrected: rapid.Uint64().Draw(t, "eccu"),
				Lost: rapid.Bool().Draw(t, "lost"), RowRemapPending: rapid.Bool().Draw(t, "rrp"), RowRemapFailed: rapid.Bool().Draw(t, "rrf")}
			for range rapid.IntRange(0, 2).Draw(t, "xids") {
				g.XIDs = append(g.XIDs, XID{Code: rapid.IntRange(0, 200).Draw(t, "code"), At: at.Draw(t, "xat")})
			}
			g.Throttle = rapid.SliceOfN(word, 0, 2).Draw(t, "throttle")
			hb.GPUs = append(hb.GPUs, g)
		}
		for range rapid.IntRange(0, 4).Draw(t, "nics") {
			hb.NICs = append(hb.NICs, NICSample{Name: word.Draw(t, "nic"), Up: rapid.Bool().Draw(t, "up"), Errors: rapid.Uint64().Draw(t, "errors")})
		}
		for range rapid.IntRange(0, 2).Draw(t, "checks") {
			hb.Checks = append(hb.Checks, Check{Name: word.Draw(t, "check"), OK: rapid.Bool().Draw(t, "ok"), Message: word.Draw(t, "msg")})
		}
		for range rapid.IntRange(0, 2).Draw(t, "results") {
			hb.Results = append(hb.Results, Result{ID: word.Draw(t, "id"), State: word.Draw(t, "state"), Message: word.Draw(t, "rmsg")})
		}
		b, err := json.Marshal(hb)
		if err != nil {
			t.Fatal(err)
		}
		if !checkDecode(t, b) {
			t.Fatalf("%s: left to encoding/json", b)
		}
	})
}

// BenchmarkDecodeHeartbeat: an 8-GPU, 8-NIC report, by hand and by
// encoding/json. Run: go test -run '^$' -bench DecodeHeartbeat ./wire
func BenchmarkDecodeHeartbeat(b *testing.B) {
	hb := Heartbeat{Version: Version, Seq: 41, At: time.Date(2027, 3, 1, 12, 0, 0, 123456789, time.UTC), UptimeS: 410, AgentVersion: "1.0"}
	for i := range 8 {
		hb.GPUs = append(hb.GPUs, GPUSample{Index: i, PowerW: 512.5, EnergyJ: 123456789, TempC: 61, UtilPct: 97, MemUsedMiB: 70000})
		hb.NICs = append(hb.NICs, NICSample{Name: "mlx5_" + strconv.Itoa(i), Up: true})
	}
	body, _ := json.Marshal(hb)
	b.Run("by-hand", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var got Heartbeat
			if !DecodeHeartbeat(body, &got) {
				b.Fatal("left to encoding/json")
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var got Heartbeat
			if err := json.Unmarshal(body, &got); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// The strings agents repeat are interned: a report decoded again takes
// only its two lists (GPUs, NICs), not a string per NIC name and version.
func TestDecodeInterns(t *testing.T) {
	hb := Heartbeat{Version: Version, Seq: 1, At: time.Date(2027, 3, 1, 12, 0, 0, 0, time.UTC), AgentVersion: "1.0", DriverVersion: "550.54"}
	for i := range 8 {
		hb.GPUs = append(hb.GPUs, GPUSample{Index: i, PowerW: 500})
		hb.NICs = append(hb.NICs, NICSample{Name: "mlx5_" + strconv.Itoa(i), Up: true})
	}
	body, _ := json.Marshal(hb)
	var got Heartbeat
	allocs := testing.AllocsPerRun(100, func() {
		got = Heartbeat{}
		if !DecodeHeartbeat(body, &got) {
			t.Fatal("left to encoding/json")
		}
	})
	if allocs > 2 {
		t.Errorf("%v allocations a report, want 2 (the GPU and NIC lists)", allocs)
	}
	if got.NICs[3].Name != "mlx5_3" || got.DriverVersion != "550.54" {
		t.Errorf("decoded %+v", got)
	}
	// Two strings in one slot: each still reads back as itself.
	for _, s := range []string{"a", "b", "a", "ab", "b"} {
		if v := intern([]byte(s)); v != s {
			t.Errorf("intern(%q) = %q", s, v)
		}
	}
}
