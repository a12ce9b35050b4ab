package cli

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/neocloud/neocloud/wire"
)

// TestBenchBody: the heartbeat the bench writes by hand decodes to the
// report an agent would send.
func TestBenchBody(t *testing.T) {
	a := &benchAgent{seq: 41, energyJ: 8 * 1000}
	at := time.Date(2027, 3, 1, 12, 0, 0, 123456789, time.UTC)
	var got wire.Heartbeat
	if err := json.Unmarshal(a.body(nil, at), &got); err != nil {
		t.Fatal(err)
	}
	want := wire.Heartbeat{Version: wire.Version, Seq: 42, At: at, UptimeS: 420, AgentVersion: "bench"}
	for i := 0; i < 8; i++ {
		want.GPUs = append(want.GPUs, wire.GPUSample{Index: i, PowerW: 500 + float64(i), EnergyJ: 6000, TempC: 60, UtilPct: 90, MemUsedMiB: 60000})
		want.NICs = append(want.NICs, wire.NICSample{Name: fmt.Sprintf("ib%d", i), Up: true})
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("the bench's heartbeat (-want +got):\n%s", d)
	}
}
