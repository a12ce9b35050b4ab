package agents_test

import (
	"context"
	"testing"
	"time"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/agents"
	"github.com/neocloud/neocloud/fleet"
	"github.com/neocloud/neocloud/internal/testdb"
	"github.com/neocloud/neocloud/sqlstore"
	"github.com/neocloud/neocloud/wire"
)

// TestRejoinedAgentCountsOn: a node re-keyed and re-imaged joins again
// with an agent whose count of reports starts again. The join tells it
// where to count from, so that its reports (an XID 79 among them) are
// applied, not taken for replays of its predecessor's; a node that never
// reported counts from 1.
func TestRejoinedAgentCountsOn(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sqlstore.DB) {
		l := newLab(t, db)
		ctx := context.Background()
		op := neocloud.Principal{TokenID: "tok_op", Role: neocloud.RoleOperatorAdmin}
		join := func(n fleet.Node) wire.JoinResponse {
			t.Helper()
			if _, err := l.ag.Rekey(ctx, op, n.ID); err != nil {
				t.Fatal(err)
			}
			_, secret, err := l.ag.CreateJoinToken(ctx, op, agents.JoinTokenInput{Site: "lab", MaxUses: 1, TTLS: 3600})
			if err != nil {
				t.Fatal(err)
			}
			jr, err := l.ag.Join(ctx, secret, wire.JoinRequest{Version: wire.Version, Hostname: n.Hostname, Serial: n.Serial})
			if err != nil {
				t.Fatal(err)
			}
			return jr
		}
		if jr := join(l.nodes[4]); jr.NextSeq != 0 {
			t.Errorf("a node that never reported: next seq %d, want 0 (count from 1)", jr.NextSeq)
		}
		n := l.nodes[3]
		p := neocloud.Principal{TokenID: "tok_" + n.ID, Role: neocloud.RoleAgent, NodeID: n.ID}
		for seq := int64(1); seq <= 20; seq++ {
			if _, err := l.ag.Heartbeat(ctx, p, wire.Heartbeat{Version: wire.Version, Seq: seq, At: l.now, GPUs: []wire.GPUSample{{PowerW: 100}}}); err != nil {
				t.Fatal(err)
			}
		}
		jr := join(n)
		if jr.NextSeq <= 20 {
			t.Fatalf("next seq %d after 20 reports", jr.NextSeq)
		}
		l.now = l.now.Add(time.Minute)
		ans, err := l.ag.Heartbeat(ctx, p, wire.Heartbeat{Version: wire.Version, Seq: jr.NextSeq, At: l.now,
			GPUs: []wire.GPUSample{{PowerW: 100, XIDs: []wire.XID{{Code: 79, At: l.now}}}}})
		if err != nil || ans.Duplicate || ans.Acked != jr.NextSeq || ans.Health != string(fleet.HealthFailed) {
			t.Fatalf("the re-joined agent's first report, with an XID 79: %+v, %v; want it applied, failed", ans, err)
		}
	})
}
