package sqlstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/neocloud/neocloud/agents"
	"github.com/neocloud/neocloud/fleet"
	"github.com/neocloud/neocloud/internal/testdb"
	"github.com/neocloud/neocloud/sqlstore"
)

// TestPurgeTelemetry deletes samples and minute rollups older than the
// cutoff, on nodes on both sides of a purge transaction's boundary, and
// keeps the rest. A sample taken before the cutoff that follows a newer one
// (the node's clock set back) stays on SQLite, which purges in sequence
// order, and goes on PostgreSQL.
func TestPurgeTelemetry(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		rackOfNodes(t, db, "purge", 70)
		// Node 3 reports every 10 s for 100 s; node 5 three times early;
		// node 66 with its clock set back once (seq 3).
		at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
		var ss []agents.Sample
		for seq := 1; seq <= 10; seq++ {
			ss = append(ss, agents.Sample{NodeID: "node_purge03", Seq: int64(seq), At: at(10 * seq), EnergyJ: uint64(seq), PowerW: 1})
		}
		for seq := 1; seq <= 3; seq++ {
			ss = append(ss, agents.Sample{NodeID: "node_purge05", Seq: int64(seq), At: at(seq), EnergyJ: uint64(seq), PowerW: 1})
		}
		for seq, s := range []int{10, 70, 20, 80} {
			ss = append(ss, agents.Sample{NodeID: "node_purge66", Seq: int64(seq + 1), At: at(s), EnergyJ: uint64(seq), PowerW: 1})
		}
		if _, err := db.PutSamples(ctx, ss); err != nil {
			t.Fatal(err)
		}
		var ms []agents.Minute
		for _, n := range []string{"node_purge03", "node_purge66"} {
			for m := range 3 {
				ms = append(ms, agents.Minute{NodeID: n, Minute: t0.Add(time.Duration(m) * time.Minute), Samples: 1, PowerSumW: 1, PowerMaxW: 1})
			}
		}
		if err := db.PutMinutes(ctx, ms); err != nil {
			t.Fatal(err)
		}
		seqs := func(node string) []int64 {
			got, err := db.Samples(ctx, node, 0, 100)
			if err != nil {
				t.Fatal(err)
			}
			var out []int64
			for _, s := range got {
				out = append(out, s.Seq)
			}
			return out
		}
		minutes := func(node string) int {
			got, err := db.Minutes(ctx, node, t0.Add(-time.Hour), t0.Add(time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			return len(got)
		}
		if got := len(seqs("node_purge03")); got != 10 {
			t.Fatalf("before the purge node 3 has %d samples, want 10", got)
		}

		n, err := db.PurgeTelemetry(ctx, at(55))
		if err != nil {
			t.Fatal(err)
		}
		want66, wantN := []int64{2, 3, 4}, int64(5+3+1+2) // samples, and a minute of each node
		if db.Dialect == sqlstore.Postgres {
			want66, wantN = []int64{2, 4}, wantN+1
		}
		for node, want := range map[string][]int64{"node_purge03": {6, 7, 8, 9, 10}, "node_purge05": nil, "node_purge66": want66} {
			if diff := cmp.Diff(want, seqs(node)); diff != "" {
				t.Errorf("samples of %s after the purge (-want +got):\n%s", node, diff)
			}
		}
		for _, node := range []string{"node_purge03", "node_purge66"} {
			if got := minutes(node); got != 2 {
				t.Errorf("%s has %d minutes after the purge, want 2", node, got)
			}
		}
		if n != wantN {
			t.Errorf("purge says it deleted %d rows, want %d", n, wantN)
		}
	})
}

// rackOfNodes stores a site of one rack, named name, with n available
// nodes node_<name>00, node_<name>01, …
func rackOfNodes(t *testing.T, db *sqlstore.DB, name string, n int) []fleet.Node {
	t.Helper()
	ctx := context.Background()
	if err := db.PutSKUs(ctx, fleet.Catalog); err != nil {
		t.Fatal(err)
	}
	site := fleet.Site{ID: "site_" + name, Name: name, Levels: []string{"rack"}, CreatedAt: t0, UpdatedAt: t0}
	if err := db.PutSite(ctx, site); err != nil {
		t.Fatal(err)
	}
	var ns []fleet.Node
	for i := range n {
		id := fmt.Sprintf("node_%s%02d", name, i)
		ns = append(ns, fleet.Node{ID: id, Hostname: id, SiteID: site.ID, SKU: fleet.Catalog[0].Name, Domain: "r1",
			Lifecycle: fleet.LifecycleAvailable, Health: fleet.HealthOK, Version: 1, CreatedAt: t0, UpdatedAt: t0})
	}
	if err := db.InsertNodes(ctx, ns); err != nil {
		t.Fatal(err)
	}
	return ns
}
