package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/agents"
	"github.com/neocloud/neocloud/fleet"
	"github.com/neocloud/neocloud/internal/testdb"
	"github.com/neocloud/neocloud/sales"
	"github.com/neocloud/neocloud/sqlstore"
	"github.com/neocloud/neocloud/wire"
)

// TestAgentJoinAndHeartbeats: a join token lets a site's agents join up to
// its uses, each getting its node's own credential; a known node needs a
// re-key; heartbeats apply once per sequence number and set the node's
// health by the rule table; a node's credential acts for no other node and
// reads nothing else.
func TestAgentJoinAndHeartbeats(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sqlstore.DB) {
		e := newEnv(t, db)
		op := e.secrets["operator-admin"]
		r := e.do("POST", "/v1/sites/lab/join-tokens", op, map[string]any{"max_uses": 2, "ttl_s": 3600})
		if r.status != 201 {
			t.Fatalf("join token: %d %s", r.status, r.body)
		}
		var jt struct{ Secret string }
		json.Unmarshal(r.body, &jt)
		join := func(host, secret string) resp {
			n, _ := e.fleet.Snapshot.Node(host)
			return e.do("POST", "/v1/agent/join", secret, wire.JoinRequest{Version: wire.Version, Hostname: host, Serial: n.Serial, AgentVersion: "test"})
		}
		if n, _ := e.fleet.Snapshot.Node(e.hosts[5]); n.Serial != "" {
			r := e.do("POST", "/v1/agent/join", jt.Secret, wire.JoinRequest{Version: wire.Version, Hostname: e.hosts[5], Serial: "not-" + n.Serial})
			if r.status != 422 || !strings.Contains(string(r.body), "body.serial") {
				t.Fatalf("a wrong serial: %d %s", r.status, r.body)
			}
		}
		if r := join(e.hosts[5], "nct_wrong"); r.status != 401 {
			t.Fatalf("a bad join token: %d %s", r.status, r.body)
		}
		if r := join("no-such-host", jt.Secret); r.status != 422 || !strings.Contains(string(r.body), "body.hostname") {
			t.Fatalf("an unknown host: %d %s", r.status, r.body)
		}
		before := e.auditCount()
		r = join(e.hosts[5], jt.Secret)
		if r.status != 201 {
			t.Fatalf("join: %d %s", r.status, r.body)
		}
		if d := e.auditCount() - before; d != 1 {
			t.Fatalf("a join left %d audit records, want 1", d)
		}
		var jr wire.JoinResponse
		json.Unmarshal(r.body, &jr)
		node, _ := e.fleet.Snapshot.Node(e.hosts[5])
		if jr.NodeID != node.ID || !strings.HasPrefix(jr.Credential, "nct_") || jr.HeartbeatS != 10 {
			t.Fatalf("join answer: %+v", jr)
		}
		// Joining again needs a re-key (a refused join uses nothing up: its
		// transaction rolls back).
		before = e.auditCount()
		if r := join(e.hosts[5], jt.Secret); r.status != 409 || !strings.Contains(string(r.body), "rekey") {
			t.Fatalf("a second join: %d %s", r.status, r.body)
		}
		if d := e.auditCount() - before; d != 1 {
			t.Fatalf("a refused join left %d audit records, want 1", d)
		}
		if r := join(e.hosts[6], jt.Secret); r.status != 201 {
			t.Fatalf("the second use: %d %s", r.status, r.body)
		}
		if r := join(e.hosts[7], jt.Secret); r.status != 401 || !strings.Contains(string(r.body), "limit") {
			t.Fatalf("past its uses: %d %s", r.status, r.body)
		}

		// Heartbeats: applied once per sequence number.
		beat := func(seq int64, gpus ...wire.GPUSample) resp {
			return e.do("POST", "/v1/agent/heartbeat", jr.Credential, wire.Heartbeat{Version: wire.Version, Seq: seq, At: time.Now().UTC(), GPUs: gpus})
		}
		before = e.auditCount()
		if r := beat(1, wire.GPUSample{Index: 0, PowerW: 650, TempC: 61}); r.status != 200 || !strings.Contains(string(r.body), `"health":"ok"`) {
			t.Fatalf("first beat: %d %s", r.status, r.body)
		}
		// Malformed reports are refused, naming the body, and change nothing.
		for _, bad := range []string{`{"version":2,"seq":`, "{\"version\":2,\"seq\":9,\"gpus\":[],\"checks\":[{\"name\":\"\xff\"}]}"} {
			if r := e.do("POST", "/v1/agent/heartbeat", jr.Credential, bad); r.status != 400 || !strings.Contains(string(r.body), `"body`) {
				t.Fatalf("a malformed report %q: %d %s", bad, r.status, r.body)
			}
		}
		// XID 94 (contained ECC): degraded, with the reason.
		r = beat(2, wire.GPUSample{Index: 3, XIDs: []wire.XID{{Code: 94, At: time.Now()}}})
		if !strings.Contains(string(r.body), `"health":"degraded"`) {
			t.Fatalf("XID 94: %s", r.body)
		}
		if n, _ := e.fleet.Snapshot.Node(node.ID); n.Health != fleet.HealthDegraded || len(n.HealthReasons) != 1 || !strings.Contains(n.HealthReasons[0], "XID 94") {
			t.Fatalf("node after XID 94: %v %v", n.Health, n.HealthReasons)
		}
		// A replay of seq 2, and an old seq 1 arriving late, change nothing.
		for _, seq := range []int64{2, 1} {
			r = beat(seq, wire.GPUSample{Index: 0, XIDs: []wire.XID{{Code: 79, At: time.Now()}}})
			if r.status != 200 || !strings.Contains(string(r.body), `"duplicate":true`) || !strings.Contains(string(r.body), `"acked":2`) {
				t.Fatalf("replay of %d: %s", seq, r.body)
			}
		}
		if n, _ := e.fleet.Snapshot.Node(node.ID); n.Health != fleet.HealthDegraded {
			t.Fatalf("a replay changed the node: %v", n.Health)
		}
		// XID 79 (off the bus) fails the node, and the failure stays with
		// later reports (an application XID 13 among them) until the node
		// is remediated.
		if r := beat(3, wire.GPUSample{Index: 1, XIDs: []wire.XID{{Code: 79, At: time.Now()}}}); !strings.Contains(string(r.body), `"health":"failed"`) {
			t.Fatalf("XID 79: %s", r.body)
		}
		if r := beat(4, wire.GPUSample{Index: 1, XIDs: []wire.XID{{Code: 13, At: time.Now()}}}); !strings.Contains(string(r.body), `"health":"failed"`) {
			t.Fatalf("after XID 79, XID 13: %s", r.body)
		}
		if d := e.auditCount() - before; d != 0 {
			t.Fatalf("heartbeats left %d audit records", d)
		}
		r = e.do("GET", "/v1/nodes/"+e.hosts[5]+"/agent", op, nil)
		var st agents.State
		json.Unmarshal(r.body, &st)
		if r.status != 200 || st.Seq != 4 {
			t.Fatalf("node agent state: %d %s", r.status, r.body)
		}
		// The credential is this node's only: it reads no fleet, no tenants.
		for _, path := range []string{"/v1/nodes", "/v1/tenants", "/v1/reservations", "/v1/nodes/" + e.hosts[6] + "/agent"} {
			if r := e.do("GET", path, jr.Credential, nil); r.status != 403 {
				t.Fatalf("an agent reading %s: %d", path, r.status)
			}
		}
		// Re-keyed, the node may join again; the old credential is dead.
		if r := e.do("POST", "/v1/nodes/"+e.hosts[5]+"/rekey", op, nil); r.status != 200 {
			t.Fatalf("rekey: %d %s", r.status, r.body)
		}
		if r := beat(5); r.status != 401 {
			t.Fatalf("the old credential after a re-key: %d", r.status)
		}
		r = e.do("POST", "/v1/sites/lab/join-tokens", op, map[string]any{"max_uses": 1, "ttl_s": 60})
		json.Unmarshal(r.body, &jt)
		if r := join(e.hosts[5], jt.Secret); r.status != 201 {
			t.Fatalf("join after the re-key: %d %s", r.status, r.body)
		}
	})
}

func TestXIDRuleTable(t *testing.T) {
	for _, c := range []struct {
		name   string
		gpu    wire.GPUSample
		health fleet.Health
		action agents.Action
	}{
		{"idle and cool", wire.GPUSample{TempC: 40}, fleet.HealthOK, agents.ActionNone},
		{"XID 13: the tenant's program", wire.GPUSample{XIDs: []wire.XID{{Code: 13}}}, fleet.HealthOK, agents.ActionNone},
		{"XID 92: watch", wire.GPUSample{XIDs: []wire.XID{{Code: 92}}}, fleet.HealthOK, agents.ActionWatch},
		{"XID 94: reset when idle", wire.GPUSample{XIDs: []wire.XID{{Code: 94}}}, fleet.HealthDegraded, agents.ActionReset},
		{"XID 119: reboot", wire.GPUSample{XIDs: []wire.XID{{Code: 119}}}, fleet.HealthDegraded, agents.ActionReboot},
		{"XID 79: repair", wire.GPUSample{XIDs: []wire.XID{{Code: 79}}}, fleet.HealthFailed, agents.ActionRepair},
		{"XID 95: repair", wire.GPUSample{XIDs: []wire.XID{{Code: 95}}}, fleet.HealthFailed, agents.ActionRepair},
		{"off the bus", wire.GPUSample{Lost: true}, fleet.HealthFailed, agents.ActionRepair},
		{"hot", wire.GPUSample{TempC: 91}, fleet.HealthDegraded, agents.ActionWatch},
		{"uncorrected ECC", wire.GPUSample{ECCUncorrected: 2}, fleet.HealthDegraded, agents.ActionReset},
		{"row remap pending", wire.GPUSample{RowRemapPending: true}, fleet.HealthDegraded, agents.ActionReset},
		{"row remap failed", wire.GPUSample{RowRemapPending: true, RowRemapFailed: true}, fleet.HealthFailed, agents.ActionRepair},
		{"power capped: as asked", wire.GPUSample{Throttle: []string{wire.ThrottlePowerCap}}, fleet.HealthOK, agents.ActionNone},
		{"hardware slowdown: watch", wire.GPUSample{Throttle: []string{wire.ThrottleHWSlowdown}}, fleet.HealthOK, agents.ActionWatch},
		{"worst wins", wire.GPUSample{TempC: 95, XIDs: []wire.XID{{Code: 92}, {Code: 79}}}, fleet.HealthFailed, agents.ActionRepair},
	} {
		h, a := agents.Worst(agents.Evaluate(wire.Heartbeat{GPUs: []wire.GPUSample{c.gpu}}))
		if h != c.health || a != c.action {
			t.Errorf("%s: %s/%q, want %s/%q", c.name, h, a, c.health, c.action)
		}
	}
	h, _ := agents.Worst(agents.Evaluate(wire.Heartbeat{NICs: []wire.NICSample{{Name: "ib0", Up: false}}}))
	if h != fleet.HealthDegraded {
		t.Errorf("a NIC down: %s", h)
	}
}

// TestHeartbeatsGroupCommitted: many agents reporting at once are written
// together, each report once, each answered after its commit; a replay in
// the crowd changes nothing.
func TestHeartbeatsGroupCommitted(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sqlstore.DB) {
		e := newEnv(t, db)
		op := e.secrets["operator-admin"]
		const nodes, beats = 24, 12
		creds := e.joinAgents(32, nodes)
		errs := make(chan error, nodes)
		var wg sync.WaitGroup
		var idMu sync.Mutex
		ids := map[string]bool{} // X-Request-Id of every answer
		for i := range creds {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				for seq := int64(1); seq <= beats; seq++ {
					hb := wire.Heartbeat{Version: wire.Version, Seq: seq, At: time.Now().UTC(), GPUs: []wire.GPUSample{{Index: 0, EnergyJ: uint64(1000 * seq), PowerW: 100}}}
					r := e.do("POST", "/v1/agent/heartbeat", creds[i], hb)
					var ans wire.HeartbeatAnswer
					if json.Unmarshal(r.body, &ans); r.status != 200 || ans.Acked != seq || ans.Duplicate {
						errs <- fmt.Errorf("node %d seq %d: %d %s", i, seq, r.status, r.body)
						return
					}
					idMu.Lock()
					id := r.header.Get("X-Request-Id")
					again := ids[id]
					ids[id] = true
					idMu.Unlock()
					if again || !strings.HasPrefix(id, neocloud.PrefixRequest) {
						errs <- fmt.Errorf("node %d seq %d: request id %q again or malformed", i, seq, id)
						return
					}
					if seq == 2 && i%4 == 0 { // a report the server cannot read: refused, and counted so
						r := e.do("POST", "/v1/agent/heartbeat", creds[i], `{"version":`)
						if r.status != 400 {
							errs <- fmt.Errorf("node %d: a broken report answered %d %s", i, r.status, r.body)
							return
						}
					}
					if seq == beats/2 { // the answer was lost: the agent sends it again
						r := e.do("POST", "/v1/agent/heartbeat", creds[i], hb)
						if json.Unmarshal(r.body, &ans); r.status != 200 || !ans.Duplicate || ans.Acked != seq {
							errs <- fmt.Errorf("node %d replay of %d: %d %s", i, seq, r.status, r.body)
							return
						}
					}
				}
			}(i)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		for i := range creds {
			r := e.do("GET", fmt.Sprintf("/v1/nodes/%s/samples?to_seq=%d", e.hosts[32+i], beats+5), op, nil)
			var l struct{ Items []agents.Sample }
			json.Unmarshal(r.body, &l)
			if len(l.Items) != beats {
				t.Fatalf("node %d: %d samples stored, want %d", i, len(l.Items), beats)
			}
			for j, s := range l.Items {
				if s.Seq != int64(j+1) || s.EnergyJ != uint64(1000*(j+1)) {
					t.Fatalf("node %d sample %d: %+v", i, j, s)
				}
			}
			r = e.do("GET", "/v1/nodes/"+e.hosts[32+i]+"/minutes?from=2020-01-01T00:00:00Z&to=2100-01-01T00:00:00Z", op, nil)
			var ms struct{ Items []agents.Minute }
			json.Unmarshal(r.body, &ms)
			var n int64
			for _, m := range ms.Items {
				n += m.Samples
			}
			if n != beats {
				t.Fatalf("node %d: minute rollups count %d reports, want %d", i, n, beats)
			}
		}
		// Heartbeats are counted as their operation, every one.
		m := string(e.do("GET", "/metrics", "", nil).body)
		for _, want := range []string{
			fmt.Sprintf(`neocloud_http_requests_total{code="200",method="POST",operation="agent-heartbeat"} %d`, nodes*(beats+1)),
			fmt.Sprintf(`neocloud_http_requests_total{code="400",method="POST",operation="agent-heartbeat"} %d`, nodes/4),
		} {
			if !strings.Contains(m, want+"\n") {
				t.Errorf("/metrics does not say %s", want)
			}
		}
	})
}

// TestBreakFix: a tenant reports, reboots and replaces its own nodes; a
// replacement beyond the contract's monthly allowance is refused; an
// operator's confirmation of a report fails the node (its work replaced,
// its repair opened); another tenant's node is not there for it.
func TestBreakFix(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sqlstore.DB) {
		e := newEnv(t, db)
		ta, tb, op := e.secrets["a/tenant-admin"], e.secrets["b/tenant-admin"], e.secrets["operator-admin"]
		host := e.servedNode(t, e.a, false)
		// Another tenant: 404, and nothing recorded.
		for _, p := range []string{"report", "reboot", "gpu-reset", "replace"} {
			if r := e.do("POST", "/v1/nodes/"+host+"/"+p, tb, map[string]any{"reason": "x"}); r.status != 404 {
				t.Fatalf("tenant b %s on a's node: %d %s", p, r.status, r.body)
			}
		}
		// Its tenant sees the node's health and conditions; another does not.
		n0, _ := e.fleet.Snapshot.Node(host)
		if _, err := e.agents.Heartbeat(context.Background(), neocloud.Principal{TokenID: "tok_agent", Role: neocloud.RoleAgent, NodeID: n0.ID},
			wire.Heartbeat{Version: wire.Version, Seq: 1, At: time.Now().UTC(), GPUs: []wire.GPUSample{{Index: 4, XIDs: []wire.XID{{Code: 94, At: time.Now()}}}}}); err != nil {
			t.Fatal(err)
		}
		if r := e.do("GET", "/v1/nodes/"+host+"/agent", e.secrets["a/tenant-member"], nil); r.status != 200 || !strings.Contains(string(r.body), "XID 94") {
			t.Fatalf("its tenant reading the node's conditions: %d %s", r.status, r.body)
		}
		if r := e.do("GET", "/v1/nodes/"+host+"/agent", e.secrets["b/tenant-admin"], nil); r.status != 404 {
			t.Fatalf("another tenant reading them: %d %s", r.status, r.body)
		}
		// A reboot reaches the node's agent, fenced by the allocation.
		r := e.do("POST", "/v1/nodes/"+host+"/reboot", ta, map[string]any{})
		var b sales.BreakFix
		json.Unmarshal(r.body, &b)
		if r.status != 201 || b.CommandID == "" {
			t.Fatalf("reboot: %d %s", r.status, r.body)
		}
		n, _ := e.fleet.Snapshot.Node(host)
		cs, _ := db.Commands(context.Background(), n.ID, true)
		gen, _ := e.sales.NodeGeneration(context.Background(), n.ID)
		if len(cs) != 1 || cs[0].Kind != "reboot" || cs[0].Generation != gen || gen == 0 {
			t.Fatalf("the agent's commands: %+v (generation %d)", cs, gen)
		}
		// A report waits for an operator; confirmed, the node is failed.
		if r := e.do("POST", "/v1/nodes/"+host+"/report", e.secrets["a/tenant-member"], map[string]any{"reason": "x"}); r.status != 403 {
			t.Fatalf("a tenant-member reporting: %d %s", r.status, r.body)
		}
		r = e.do("POST", "/v1/nodes/"+host+"/report", ta, map[string]any{})
		if r.status != 422 || !strings.Contains(string(r.body), "body.reason") {
			t.Fatalf("a report without a reason: %d %s", r.status, r.body)
		}
		r = e.do("POST", "/v1/nodes/"+host+"/report", ta, map[string]any{"reason": "ECC errors in our logs"})
		json.Unmarshal(r.body, &b)
		if r.status != 201 {
			t.Fatalf("report: %d %s", r.status, r.body)
		}
		if n, _ := e.fleet.Snapshot.Node(host); n.Health != fleet.HealthDegraded || n.Lifecycle != fleet.LifecycleAvailable {
			t.Fatalf("an unconfirmed report changed the node: %s, %s", n.Health, n.Lifecycle)
		}
		// The operator's queue holds it; its tenant sees it, another does not.
		listed := func(secret, query string) []string {
			t.Helper()
			r := e.do("GET", "/v1/break-fix"+query, secret, nil)
			var page struct{ Items []sales.BreakFix }
			if err := json.Unmarshal(r.body, &page); r.status != 200 || err != nil {
				t.Fatalf("list %s: %d %s", query, r.status, r.body)
			}
			var ids []string
			for _, it := range page.Items {
				ids = append(ids, it.ID+" "+it.State)
			}
			return ids
		}
		if got := listed(op, "?state=open"); !slices.Equal(got, []string{b.ID + " open"}) {
			t.Fatalf("open reports for the operator: %v", got)
		}
		if got := listed(e.secrets["a/tenant-member"], "?node="+host+"&kind=report"); !slices.Equal(got, []string{b.ID + " open"}) {
			t.Fatalf("a's reports of its node: %v", got)
		}
		if got := listed(tb, ""); len(got) != 0 {
			t.Fatalf("tenant b sees: %v", got)
		}
		if r := e.do("GET", "/v1/break-fix?node=no-such-node", op, nil); r.status != 422 || !strings.Contains(string(r.body), "query.node") {
			t.Fatalf("an unknown node: %d %s", r.status, r.body)
		}
		// Declining takes a reason, and changes nothing without one.
		other := e.servedNode(t, e.a, false)
		r = e.do("POST", "/v1/nodes/"+other+"/report", ta, map[string]any{"reason": "slow all-gather"})
		var ob sales.BreakFix
		json.Unmarshal(r.body, &ob)
		if r := e.do("POST", "/v1/break-fix/"+ob.ID+"/decline", op, map[string]any{"reason": ""}); r.status != 422 || !strings.Contains(string(r.body), "body.reason") {
			t.Fatalf("a decline without a reason: %d %s", r.status, r.body)
		}
		if got := listed(op, "?state=open"); len(got) != 2 {
			t.Fatalf("open reports after a refused decline: %v", got)
		}
		// A decline retried with its Idempotency-Key answers as the first
		// did and tells the tenant once.
		declined := e.do("POST", "/v1/break-fix/"+ob.ID+"/decline", op, map[string]any{"reason": "all-gather within spec on our run"}, "Idempotency-Key", "decline-1")
		if declined.status != 200 || !strings.Contains(string(declined.body), `"state":"declined"`) {
			t.Fatalf("decline: %d %s", declined.status, declined.body)
		}
		if again := e.do("POST", "/v1/break-fix/"+ob.ID+"/decline", op, map[string]any{"reason": "all-gather within spec on our run"}, "Idempotency-Key", "decline-1"); again.status != 200 || string(again.body) != string(declined.body) {
			t.Fatalf("the decline retried: %d %s", again.status, again.body)
		}
		if evs, _ := db.RecentEvents(context.Background(), 100, "node.report_declined"); len(evs) != 1 {
			t.Fatalf("%d node.report_declined events after a retried decline", len(evs))
		}
		if r := e.do("POST", "/v1/break-fix/"+ob.ID+"/confirm", op, nil); r.status != 409 {
			t.Fatalf("confirming a declined report: %d %s", r.status, r.body)
		}
		if n, _ := e.fleet.Snapshot.Node(other); n.Lifecycle != fleet.LifecycleAvailable || n.Cordoned {
			t.Fatalf("a declined report's node: %s, cordoned %v", n.Lifecycle, n.Cordoned)
		}
		if r := e.do("POST", "/v1/break-fix/"+b.ID+"/confirm", op, nil); r.status != 200 {
			t.Fatalf("confirm: %d %s", r.status, r.body)
		}
		if got := listed(op, "?kind=report"); !slices.Equal(got, []string{b.ID + " confirmed", ob.ID + " declined"}) {
			t.Fatalf("reports after confirming one and declining the other: %v", got)
		}
		if n, _ := e.fleet.Snapshot.Node(host); n.Lifecycle != fleet.LifecycleRepair || !n.Cordoned {
			t.Fatalf("after a confirmed report: %s, cordoned %v", n.Lifecycle, n.Cordoned)
		}
		if ts, _ := db.Tickets(context.Background(), n.ID, true); len(ts) != 1 || !strings.Contains(ts[0].Reasons[0], "ECC errors in our logs") {
			t.Fatalf("repair tickets: %+v", ts)
		}
		// A report of a node that has left the work since (replaced here
		// by an operator) is confirmed without failing the node again.
		gone := e.servedNode(t, e.a, true)
		r = e.do("POST", "/v1/nodes/"+gone+"/report", ta, map[string]any{"reason": "link flaps"})
		var gb sales.BreakFix
		json.Unmarshal(r.body, &gb)
		if r := e.do("POST", "/v1/nodes/"+gone+"/replace", op, map[string]any{"reason": "bad cable"}); r.status != 201 {
			t.Fatalf("an operator's replacement: %d %s", r.status, r.body)
		}
		r = e.do("POST", "/v1/break-fix/"+gb.ID+"/confirm", op, nil)
		if r.status != 200 || !strings.Contains(string(r.body), "left the reservation's work") {
			t.Fatalf("confirming a report of a node gone from the work: %d %s", r.status, r.body)
		}
		gn, _ := e.fleet.Snapshot.Node(gone)
		if ts, _ := db.Tickets(context.Background(), gn.ID, true); len(ts) != 1 || len(ts[0].Reasons) != 1 || !strings.Contains(ts[0].Reasons[0], "bad cable") {
			t.Fatalf("the gone node's repair after the late confirmation: %+v", ts)
		}
		// Replacements: four a month on the standard SLA, then 409.
		for i := 0; i < 5; i++ {
			h := e.servedNode(t, e.a, true)
			r := e.do("POST", "/v1/nodes/"+h+"/replace", ta, map[string]any{"reason": "slow NVLink"})
			if i < 4 && r.status != 201 || i == 4 && (r.status != 409 || !strings.Contains(string(r.body), "4 replacements a month")) {
				t.Fatalf("replacement %d: %d %s", i+1, r.status, r.body)
			}
		}
		// The contract says how many it has had this month.
		r = e.do("GET", "/v1/contracts/"+b.ContractID, ta, nil)
		var cv sales.ContractView
		if err := json.Unmarshal(r.body, &cv); r.status != 200 || err != nil || cv.Delivery == nil || cv.Delivery.ReplacementsUsed != 4 || cv.Terms.SLA.ReplacementsPerMonth != 4 {
			t.Fatalf("the contract's replacements: %d %s", r.status, r.body)
		}
		// An operator fails a node of a's found broken: a reason is
		// required; retried with its Idempotency-Key, the failure answers
		// as the first did and replaces the node once.
		broken := e.servedNode(t, e.a, true)
		if r := e.do("POST", "/v1/nodes/"+broken+"/fail", op, map[string]any{"reason": " "}); r.status != 422 || !strings.Contains(string(r.body), "body.reason") {
			t.Fatalf("a failure without a reason: %d %s", r.status, r.body)
		}
		replaced := func() int { evs, _ := db.RecentEvents(context.Background(), 1000, "node.replaced"); return len(evs) }
		before := replaced()
		failed := e.do("POST", "/v1/nodes/"+broken+"/fail", op, map[string]any{"reason": "fans stopped"}, "Idempotency-Key", "fail-1")
		again := e.do("POST", "/v1/nodes/"+broken+"/fail", op, map[string]any{"reason": "fans stopped"}, "Idempotency-Key", "fail-1")
		if failed.status != 200 || !strings.Contains(string(failed.body), "failed by an operator: fans stopped") || again.status != 200 || string(again.body) != string(failed.body) {
			t.Fatalf("fail, then retried: %d %s / %d %s", failed.status, failed.body, again.status, again.body)
		}
		if n := replaced() - before; n != 1 {
			t.Fatalf("%d replacements of a node failed once", n)
		}
	})
}

// TestPipelinedHeartbeats: agents' reports pipelined on one connection
// (as the heartbeat bench sends them) are each applied and answered, in
// order, a broken one among them refused on its own.
func TestPipelinedHeartbeats(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sqlstore.DB) {
		e := newEnv(t, db)
		const nodes = 8
		creds := e.joinAgents(32, nodes)
		c, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		var raw bytes.Buffer
		for i, cred := range creds {
			hb, _ := json.Marshal(wire.Heartbeat{Version: wire.Version, Seq: int64(10 + i), At: time.Now().UTC(), GPUs: []wire.GPUSample{{Index: 0, EnergyJ: uint64(1000 * i), PowerW: 100}}})
			if i == nodes/2 {
				hb = []byte(`{"version":`)
			}
			fmt.Fprintf(&raw, "POST /v1/agent/heartbeat HTTP/1.1\r\nHost: nc\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", cred, len(hb), hb)
		}
		if _, err := c.Write(raw.Bytes()); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		ids := map[string]bool{}
		for i := range creds {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("answer %d: %v", i, err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			ids[resp.Header.Get("X-Request-Id")] = true
			if i == nodes/2 {
				if resp.StatusCode != 400 {
					t.Errorf("answer %d, to a broken report: %d %s", i, resp.StatusCode, b)
				}
				continue
			}
			var ans wire.HeartbeatAnswer
			if json.Unmarshal(b, &ans); resp.StatusCode != 200 || ans.Acked != int64(10+i) || ans.Duplicate {
				t.Errorf("answer %d: %d %s, want seq %d acknowledged", i, resp.StatusCode, b, 10+i)
			}
		}
		if len(ids) != nodes {
			t.Errorf("%d distinct request ids in %d answers", len(ids), nodes)
		}
		for i := range creds {
			r := e.do("GET", fmt.Sprintf("/v1/nodes/%s/samples?to_seq=100", e.hosts[32+i]), e.secrets["operator-admin"], nil)
			var l struct{ Items []agents.Sample }
			json.Unmarshal(r.body, &l)
			want := 1
			if i == nodes/2 {
				want = 0
			}
			if len(l.Items) != want || want == 1 && (l.Items[0].Seq != int64(10+i) || l.Items[0].EnergyJ != uint64(1000*i)) {
				t.Errorf("node %d: samples %+v", i, l.Items)
			}
		}
	})
}
