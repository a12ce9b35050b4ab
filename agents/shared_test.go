package agents_test

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/agents"
	"github.com/neocloud/neocloud/fleet"
	"github.com/neocloud/neocloud/internal/testdb"
	"github.com/neocloud/neocloud/sqlstore"
	"github.com/neocloud/neocloud/tenant"
	"github.com/neocloud/neocloud/wire"
)

// TestJoinThroughAnotherServer: with two servers on one PostgreSQL
// database, a site applied through one a moment ago takes a join token
// and its agents' joins through the other, before that one's periodic
// sync has run. A lone server (no sharing) reads nothing again: there the
// same join is refused.
func TestJoinThroughAnotherServer(t *testing.T) {
	url := testdb.PostgresURL(t)
	ctx := context.Background()
	applier, applied := serverOn(t, url, 10*time.Second)
	_, other := serverOn(t, url, 10*time.Second)
	_, another := serverOn(t, url, 10*time.Second)
	_, lone := serverOn(t, url, 0)

	sku, _ := fleet.CatalogSKU("h100-sxm5-80gb")
	var spec bytes.Buffer
	if _, err := fleet.Generate(&spec, fleet.GenerateOptions{Site: "lab", Region: "lab", Timezone: "UTC", SKU: sku, GPUs: 2 * 8,
		Levels: []string{"rack"}, Fanout: []int{1}}); err != nil {
		t.Fatal(err)
	}
	parsed, err := fleet.ParseSpec(spec.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := applier.Apply(ctx, parsed); err != nil {
		t.Fatal(err)
	}
	op := neocloud.Principal{TokenID: "tok_op", Role: neocloud.RoleOperatorAdmin}
	if _, _, err := lone.CreateJoinToken(ctx, op, agents.JoinTokenInput{Site: "lab", MaxUses: 2, TTLS: 3600}); neocloud.ErrorKind(err) != neocloud.KindInvalid {
		t.Fatalf("a lone server's join token for a site it never loaded: %v, want invalid", err)
	}
	if _, _, err := another.CreateJoinToken(ctx, op, agents.JoinTokenInput{Site: "lab", MaxUses: 2, TTLS: 3600}); err != nil {
		t.Fatalf("a join token through another server: %v", err)
	}
	_, secret, err := applied.CreateJoinToken(ctx, op, agents.JoinTokenInput{Site: "lab", MaxUses: 2, TTLS: 3600})
	if err != nil {
		t.Fatal(err)
	}
	n := parsed.Nodes[0]
	join := wire.JoinRequest{Version: wire.Version, Hostname: n.Hostname, Serial: n.Serial}
	if _, err := lone.Join(ctx, secret, join); neocloud.ErrorKind(err) != neocloud.KindInvalid {
		t.Fatalf("a join through a lone server that never loaded the node: %v, want invalid", err)
	}
	res, err := other.Join(ctx, secret, join)
	if err != nil || res.NodeID == "" {
		t.Fatalf("a join through the other server: %+v, %v", res, err)
	}
}

// TestPowerHeardThroughOtherServers: servers sharing a PostgreSQL database
// each hear some agents; every one of them reports every node's draw (the
// site's power page and load shedding read it), not only its own agents'.
// A report older than three heartbeat intervals is not read back.
func TestPowerHeardThroughOtherServers(t *testing.T) {
	ctx := context.Background()
	l, one, two := labOnTwoServers(t)
	now := time.Now().UTC()
	beat := func(ag *agents.Service, n fleet.Node, seq int64, at time.Time, watts float64) {
		t.Helper()
		p := neocloud.Principal{TokenID: "tok_" + n.ID, Role: neocloud.RoleAgent, NodeID: n.ID}
		hb := wire.Heartbeat{Version: wire.Version, Seq: seq, At: at, GPUs: []wire.GPUSample{{Index: 0, PowerW: watts}, {Index: 1, PowerW: watts}}}
		if _, err := ag.Heartbeat(ctx, p, hb); err != nil {
			t.Fatal(err)
		}
	}
	a, b, old := l.nodes[0], l.nodes[1], l.nodes[2]
	beat(one, a, 1, now, 500)
	beat(two, b, 1, now, 300)
	beat(two, old, 1, now.Add(-time.Hour), 700)
	for name, ag := range map[string]*agents.Service{"one": one, "two": two} {
		draw, err := ag.GPUPower(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if draw[a.ID] != 1000 || draw[b.ID] != 600 {
			t.Errorf("server %s: draw %v W and %v W, want 1000 and 600", name, draw[a.ID], draw[b.ID])
		}
		if w, ok := draw[old.ID]; ok && name == "one" {
			t.Errorf("server one read back a report an hour old: %v W", w)
		}
	}
	// A lone server (no sharing) reads nothing back.
	one.SharedTTL = 0
	if draw, _ := one.GPUPower(ctx); draw[b.ID] != 0 || draw[a.ID] != 1000 {
		t.Errorf("a lone server's draw: %v", draw)
	}
}

// TestLatestPower: each node's latest stored report since a time, on both
// stores.
func TestLatestPower(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		l := newLab(t, db)
		now := time.Now().UTC().Truncate(time.Second)
		for i, n := range l.nodes[:3] {
			at := now.Add(-time.Duration(i) * time.Hour)
			p := neocloud.Principal{TokenID: "tok_" + n.ID, Role: neocloud.RoleAgent, NodeID: n.ID}
			if _, err := l.ag.Heartbeat(ctx, p, wire.Heartbeat{Version: wire.Version, Seq: 1, At: at, GPUs: []wire.GPUSample{{PowerW: 100 * float64(i+1)}, {Index: 1, PowerW: 1}}}); err != nil {
				t.Fatal(err)
			}
		}
		got, err := db.LatestPower(ctx, now.Add(-90*time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]float64{l.nodes[0].ID: 101, l.nodes[1].ID: 201}
		if len(got) != len(want) || got[l.nodes[0].ID] != 101 || got[l.nodes[1].ID] != 201 {
			t.Errorf("LatestPower = %v, want %v", got, want)
		}
	})
}

// labOnTwoServers is a lab on a fresh PostgreSQL database (or a skip) and
// two more servers' agents services on it, sharing it.
func labOnTwoServers(t *testing.T) (*lab, *agents.Service, *agents.Service) {
	t.Helper()
	url := testdb.PostgresURL(t)
	l := newLab(t, openAt(t, url))
	_, one := serverOn(t, url, 10*time.Second)
	_, two := serverOn(t, url, 10*time.Second)
	return l, one, two
}

// serverOn starts another server's fleet and agents services on the
// database at url (connections, fleet snapshot and memory of its own),
// shared for SharedTTL shared (0: as if it were alone).
func serverOn(t *testing.T, url string, shared time.Duration) (*fleet.Service, *agents.Service) {
	t.Helper()
	db := openAt(t, url)
	fl := fleet.NewService(db, db)
	if err := fl.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	fl.Shared = shared > 0
	ag := agents.NewService(db, db, fl, tenant.NewService(db))
	ag.SharedTTL = shared
	return fl, ag
}

func openAt(t *testing.T, url string) *sqlstore.DB {
	t.Helper()
	db, err := sqlstore.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestStateAcrossServers: an agent whose reports go now to one server, now
// to another (its connection moved), keeps one state. An XID 79 heard by
// one server stays on the node (it needs a repair) when the next report,
// clean, goes to the other, which had heard the node before the XID; and
// what each server shows of the node is the latest report, wherever it
// went.
func TestStateAcrossServers(t *testing.T) {
	ctx := context.Background()
	l, one, two := labOnTwoServers(t)
	n := l.nodes[0]
	p := neocloud.Principal{TokenID: "tok_" + n.ID, Role: neocloud.RoleAgent, NodeID: n.ID}
	now := time.Now().UTC()
	beat := func(ag *agents.Service, seq int64, xids ...wire.XID) wire.HeartbeatAnswer {
		t.Helper()
		ans, err := ag.Heartbeat(ctx, p, wire.Heartbeat{Version: wire.Version, Seq: seq, At: now.Add(time.Duration(seq) * time.Second),
			GPUs: []wire.GPUSample{{Index: 0, PowerW: 400, XIDs: xids}}})
		if err != nil {
			t.Fatal(err)
		}
		return ans
	}
	if ans := beat(one, 1); ans.Health != string(fleet.HealthOK) {
		t.Fatalf("first report: health %s", ans.Health)
	}
	if ans := beat(two, 2, wire.XID{Code: 79, At: now}); ans.Health != string(fleet.HealthFailed) {
		t.Fatalf("XID 79 through the second server: health %s, want failed", ans.Health)
	}
	if ans := beat(one, 3); ans.Health != string(fleet.HealthFailed) {
		t.Errorf("a clean report through the first server after an XID 79 through the second: health %s, want still failed", ans.Health)
	}
	// Another XID changes the node's conditions: report 4 is stored. The
	// second server last heard report 2: within SharedTTL it shows that;
	// once what it holds is older, the stored one.
	beat(one, 4, wire.XID{Code: 48, At: now})
	if st, err := two.Latest(ctx, n.ID); err != nil || st.Seq != 2 {
		t.Fatalf("the second server's view within SharedTTL: seq %d, %v; want 2 (what it heard)", st.Seq, err)
	}
	two.SharedTTL = time.Nanosecond
	if st, err := two.Latest(ctx, n.ID); err != nil || st.Seq != 4 || len(st.Conditions) != 2 {
		t.Errorf("the second server's view after SharedTTL: seq %d, conditions %+v, %v; want 4 with both XIDs", st.Seq, st.Conditions, err)
	}
}

// TestJoinOnceUnderConcurrentJoins: agents joining as the same node at
// once, through two servers, get one credential between them; the others
// are told the node has joined.
func TestJoinOnceUnderConcurrentJoins(t *testing.T) {
	ctx := context.Background()
	l, one, two := labOnTwoServers(t)
	servers := []*agents.Service{one, two}
	op := neocloud.Principal{TokenID: "tok_op", Role: neocloud.RoleOperatorAdmin}
	// Each agent has a join token of its own (joins with one token take
	// turns at its count of uses).
	const joins = 8
	secrets := make([]string, joins)
	for i := range secrets {
		var err error
		if _, secrets[i], err = servers[0].CreateJoinToken(ctx, op, agents.JoinTokenInput{Site: "lab", MaxUses: 1, TTLS: 3600}); err != nil {
			t.Fatal(err)
		}
	}
	// The lab's nodes have credentials already; one is re-keyed for this.
	n := l.nodes[5]
	if _, err := servers[0].Rekey(ctx, op, n.ID); err != nil {
		t.Fatal(err)
	}
	errs := make([]error, joins)
	var wg sync.WaitGroup
	for i := range joins {
		wg.Go(func() {
			_, errs[i] = servers[i%2].Join(ctx, secrets[i], wire.JoinRequest{Version: wire.Version, Hostname: n.Hostname, Serial: n.Serial})
		})
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case neocloud.ErrorKind(err) != neocloud.KindConflict || !strings.Contains(err.Error(), "joined already"):
			t.Errorf("a join refused for another reason: %v", err)
		}
	}
	if ok != 1 {
		t.Errorf("%d of %d concurrent joins as one node got a credential, want 1", ok, joins)
	}
}
