package fleet_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/fleet"
	"github.com/neocloud/neocloud/internal/testdb"
	"github.com/neocloud/neocloud/sqlstore"
)

// TestSyncAcrossServers: two servers on one PostgreSQL database, each with
// its own connections and snapshot. What one applies or changes, the
// other's Sync takes in (new nodes, a changed site, a node's health and
// cordon), once; with nothing changed it takes nothing.
func TestSyncAcrossServers(t *testing.T) {
	ctx := context.Background()
	open := servers(t)
	a, b := open(), open()
	sync := func(s *fleet.Service, want int) {
		t.Helper()
		took, err := s.Sync(ctx)
		if err != nil || took != want {
			t.Fatalf("Sync took %d, %v; want %d", took, err, want)
		}
	}

	full := spec(t, 64) // 8 nodes
	if _, err := a.Apply(ctx, parse(t, full)); err != nil {
		t.Fatal(err)
	}
	host := a.Snapshot.Nodes(fleet.NodeFilter{}, neocloud.Page{Limit: 100})[3].Hostname
	if _, ok := b.Snapshot.Node(host); ok {
		t.Fatal("b saw a's node before syncing")
	}
	sync(b, 1+8) // the site and its nodes
	n, ok := b.Snapshot.Node(host)
	if !ok || len(n.GPUs) != 8 {
		t.Fatalf("b after Sync: %+v, %v; want the node with its 8 GPUs", n, ok)
	}
	sync(b, 0)

	// b cordons the node and marks it failed; a learns both at its next Sync.
	if _, err := b.Act(ctx, host, fleet.ActionCordon); err != nil {
		t.Fatal(err)
	}
	if err := b.SetHealth(ctx, n.ID, fleet.HealthFailed, []string{"xid 79"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := a.Snapshot.Node(host); got.Cordoned || got.Health != fleet.HealthOK {
		t.Fatalf("a saw b's change before syncing: %+v", got)
	}
	sync(a, 1)
	if got, _ := a.Snapshot.Node(host); !got.Cordoned || got.Health != fleet.HealthFailed {
		t.Fatalf("a after Sync: cordoned %v, health %s; want true, failed", got.Cordoned, got.Health)
	}

	// a changes the site's region; b takes the site in again.
	changed := bytes.Replace(full, []byte("region: "), []byte("region: x"), 1)
	if _, err := a.Apply(ctx, parse(t, changed)); err != nil {
		t.Fatal(err)
	}
	before, _ := b.Snapshot.Site(n.SiteID)
	sync(b, 1)
	after, _ := b.Snapshot.Site(n.SiteID)
	if after.Region != "x"+before.Region {
		t.Errorf("b's site region after Sync: %q, want %q", after.Region, "x"+before.Region)
	}
}

// TestSnapshotKeepsNewerSite: a site read before a newer write (a Sync
// racing a local apply) does not undo it.
func TestSnapshotKeepsNewerSite(t *testing.T) {
	s := fleet.NewSnapshot()
	t0 := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	s.PutSite(fleet.Site{ID: "site_1", Name: "lab", Region: "new", UpdatedAt: t0.Add(time.Minute)})
	s.PutSite(fleet.Site{ID: "site_1", Name: "lab", Region: "old", UpdatedAt: t0})
	if got, _ := s.Site("site_1"); got.Region != "new" {
		t.Errorf("region %q after an older read, want new", got.Region)
	}
	s.PutSite(fleet.Site{ID: "site_1", Name: "lab", Region: "newer", UpdatedAt: t0.Add(2 * time.Minute)})
	if got, _ := s.Site("lab"); got.Region != "newer" {
		t.Errorf("region %q after a newer write, want newer", got.Region)
	}
}

// BenchmarkSync is what a server on PostgreSQL spends every FleetSyncEvery
// on a 196,608-GPU site (24,576 nodes) that no other server changed, and
// on one where another changed a node.
func BenchmarkSync(b *testing.B) {
	url := testdb.PostgresURL(b)
	ctx := context.Background()
	open := func() *fleet.Service {
		db, err := sqlstore.Open(ctx, url)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { db.Close() })
		return newService(b, db)
	}
	a := open()
	if _, err := a.Apply(ctx, parse(b, spec(b, 196608))); err != nil {
		b.Fatal(err)
	}
	other := open()
	if _, err := other.Sync(ctx); err != nil {
		b.Fatal(err)
	}
	b.Run("unchanged", func(b *testing.B) {
		for b.Loop() {
			if took, err := other.Sync(ctx); err != nil || took != 0 {
				b.Fatal(took, err)
			}
		}
	})
	host := a.Snapshot.Nodes(fleet.NodeFilter{}, neocloud.Page{Limit: 1})[0].Hostname
	b.Run("one node changed", func(b *testing.B) {
		cordon := true
		for b.Loop() {
			b.StopTimer()
			act := fleet.ActionUncordon
			if cordon {
				act = fleet.ActionCordon
			}
			cordon = !cordon
			if _, err := a.Act(ctx, host, act); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			if took, err := other.Sync(ctx); err != nil || took != 1 {
				b.Fatal(took, err)
			}
		}
	})
}

// TestLookupSyncsOnMiss: a server on a shared store asked for a site or
// node it does not hold (applied through another server a moment ago)
// syncs and finds it; misses within missSyncEvery of that answer from the
// snapshot; a server alone on its store never syncs for a miss.
func TestLookupSyncsOnMiss(t *testing.T) {
	ctx := context.Background()
	open := servers(t)
	a, b, lone := open(), open(), open()
	b.Shared = true
	if _, err := a.Apply(ctx, parse(t, spec(t, 64))); err != nil {
		t.Fatal(err)
	}
	n := a.Snapshot.Nodes(fleet.NodeFilter{}, neocloud.Page{Limit: 100})[5]
	if _, err := lone.Node(ctx, n.Hostname); neocloud.ErrorKind(err) != neocloud.KindNotFound {
		t.Fatalf("a lone server's lookup of a node it does not hold: %v, want not found", err)
	}
	if _, err := lone.Site(ctx, n.SiteID); neocloud.ErrorKind(err) != neocloud.KindNotFound {
		t.Fatalf("a lone server's lookup of a site it does not hold: %v, want not found", err)
	}
	got, err := b.Node(ctx, n.Hostname)
	if err != nil || got.ID != n.ID || len(got.GPUs) != 8 {
		t.Fatalf("b's lookup of a's node: %+v, %v", got, err)
	}
	if st, err := b.Site(ctx, n.SiteID); err != nil || st.ID != n.SiteID {
		t.Fatalf("b's lookup of a's site: %+v, %v", st, err)
	}
	if _, err := b.Node(ctx, "no-such-node"); neocloud.ErrorKind(err) != neocloud.KindNotFound {
		t.Fatalf("b's lookup of a node nowhere: %v, want not found", err)
	}
}

// servers returns a function that starts another server's fleet service
// (connections and snapshot of its own) on one fresh PostgreSQL database
// (or skips).
func servers(t *testing.T) func() *fleet.Service {
	url := testdb.PostgresURL(t)
	return func() *fleet.Service {
		db, err := sqlstore.Open(context.Background(), url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return newService(t, db)
	}
}
