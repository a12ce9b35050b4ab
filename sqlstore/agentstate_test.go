package sqlstore

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/neocloud/neocloud/agents"
	"github.com/neocloud/neocloud/fleet"
	"github.com/neocloud/neocloud/wire"
	"pgregory.net/rapid"
)

// TestAgentStateRoundTrip: a node's state reads back as it was stored.
func TestAgentStateRoundTrip(t *testing.T) {
	ctx := context.Background()
	db := openWithNodes(t, "node_state")
	text := rapid.OneOf(rapid.String(), rapid.SampledFrom([]string{"", "<b>&amp;", "\u2028", "é", `"q"`, "a\\b", "\x00\x1f"}))
	num := rapid.OneOf(rapid.Float64(), rapid.SampledFrom([]float64{0, math.Copysign(0, -1), 1e21, 1e-7, 123.456, math.MaxFloat64, math.SmallestNonzeroFloat64}))
	when := rapid.Custom(func(t *rapid.T) time.Time {
		return time.Unix(rapid.Int64Range(0, 4e9).Draw(t, "s"), rapid.Int64Range(0, 999999999).Draw(t, "ns")).UTC()
	})
	seq := int64(0)
	rapid.Check(t, func(rt *rapid.T) {
		seq++
		st := agents.State{NodeID: "node_state", Seq: seq, SeenAt: when.Draw(rt, "seen"), Health: fleet.HealthDegraded, Action: agents.ActionReset,
			Heartbeat: wire.Heartbeat{Version: 2, Seq: seq, At: when.Draw(rt, "at"), AgentVersion: text.Draw(rt, "agent"),
				NICs:    []wire.NICSample{{Name: text.Draw(rt, "nic"), Up: true, Errors: rapid.Uint64().Draw(rt, "errors")}},
				Results: []wire.Result{{ID: "cmd_1", State: "done", Message: text.Draw(rt, "message")}}},
			Found:      []wire.GPUInfo{{Index: 0, UUID: text.Draw(rt, "uuid")}},
			Conditions: []agents.Condition{{GPU: 0, Kind: "xid", Code: 79, Health: fleet.HealthFailed, Action: agents.ActionRepair, Reason: text.Draw(rt, "reason"), At: when.Draw(rt, "cond")}},
		}
		for i := range rapid.IntRange(0, 8).Draw(rt, "gpus") {
			st.Heartbeat.GPUs = append(st.Heartbeat.GPUs, wire.GPUSample{Index: i, PowerW: num.Draw(rt, "power"), EnergyJ: rapid.Uint64().Draw(rt, "energy"),
				TempC: num.Draw(rt, "temp"), UtilPct: num.Draw(rt, "util"), MemUsedMiB: rapid.Int().Draw(rt, "mem"),
				XIDs: []wire.XID{{Code: 79, At: when.Draw(rt, "xid")}}, Throttle: []string{text.Draw(rt, "throttle")}, Lost: rapid.Bool().Draw(rt, "lost")})
		}
		if _, err := db.PutAgentState(ctx, st); err != nil {
			rt.Fatal(err)
		}
		got, err := db.AgentState(ctx, "node_state")
		if err != nil {
			rt.Fatal(err)
		}
		if diff := cmp.Diff(st, got, cmpopts.IgnoreUnexported(agents.State{}), cmpopts.EquateEmpty(), cmpopts.EquateNaNs()); diff != "" {
			rt.Fatalf("read back (-stored +read):\n%s", diff)
		}
	})
}
