package httpapi

import (
	"encoding/json"
	"testing"
	"unicode/utf8"

	gojson "github.com/goccy/go-json"
	"github.com/google/go-cmp/cmp"

	"github.com/neocloud/neocloud/wire"
)

// FuzzHeartbeatDecode: heartbeats are decoded with go-json for speed; on
// every body encoding/json accepts, it must read the same report. (Bodies
// that are not valid UTF-8 are refused before decoding: the two differ
// there, encoding/json replacing bad bytes, go-json keeping them.)
func FuzzHeartbeatDecode(f *testing.F) {
	f.Add([]byte(`{"version":2,"seq":7,"at":"2027-03-01T12:00:00.123456789Z","gpus":[{"index":0,"power_w":512.5,"energy_j":123456,"temp_c":61,"util_pct":97,"mem_used_mib":70000,"ecc_corrected":3,"xids":[{"code":79,"at":"2027-03-01T11:59:59Z"}],"throttle":["power_cap"],"row_remap_pending":true}],"nics":[{"name":"mlx5_0/1","up":false,"errors":9}],"uptime_s":99,"checks":[{"name":"disk","ok":false,"message":"full"}],"results":[{"id":"cmd_1","state":"done"}]}`))
	f.Add([]byte(`{"version":1,"seq":1,"at":"2027-03-01T12:00:00Z","gpus":[]}`))
	f.Add([]byte(`{"Seq":"1"}`))
	f.Add([]byte(`{"seq":1e3,"gpus":[{"energy_j":-1}]}`))
	f.Add([]byte(`{"seq":1,"seq":2}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var want, got wire.Heartbeat
		if !utf8.Valid(body) || json.Unmarshal(body, &want) != nil {
			return
		}
		if err := gojson.Unmarshal(body, &got); err != nil {
			t.Fatalf("encoding/json reads %q, go-json refuses it: %v", body, err)
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Fatalf("%q read differently (-encoding/json +go-json):\n%s", body, d)
		}
	})
}
