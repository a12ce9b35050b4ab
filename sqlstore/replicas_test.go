package sqlstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/internal/testdb"
	"github.com/neocloud/neocloud/sqlstore"
)

// TestReplicas: each replica is listed with its state and the work it
// leads (the leases it holds) at the time asked; one that stops gives its leases up, so that
// another takes them at once; one not seen for a week is forgotten.
func TestReplicas(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		now := time.Now().UTC().Truncate(time.Microsecond)
		put := func(id string, started, seen time.Time) neocloud.Replica {
			t.Helper()
			r := neocloud.Replica{ID: id, Host: "ctl-" + id, Addr: "10.0.0.1:8080", PID: 42, Version: "v1", StartedAt: started, SeenAt: seen}
			if err := db.PutReplica(ctx, r); err != nil {
				t.Fatal(err)
			}
			return r
		}
		old := put("srv_a", now.Add(-9*24*time.Hour), now.Add(-8*24*time.Hour))
		a := put("srv_a", now.Add(-time.Hour), now.Add(-time.Minute)) // the same id again: seen later
		b := put("srv_b", now.Add(-30*time.Minute), now.Add(-2*time.Second))
		c := put("srv_c", now.Add(-20*time.Minute), now.Add(-time.Second))
		if old.StartedAt.Equal(a.StartedAt) {
			t.Fatal("the test wants a's record to keep its first start")
		}
		for _, l := range []struct{ name, holder string }{{"lifecycle", "srv_b"}, {"liveness", "srv_b"}} {
			if _, ok, err := db.TakeLease(ctx, l.name, l.holder, now, now.Add(10*time.Second)); err != nil || !ok {
				t.Fatalf("take %s: %v %v", l.name, ok, err)
			}
		}
		type row struct {
			ID, State string
			Leads     []string
			Started   time.Time
		}
		list := func(at time.Time) []row {
			t.Helper()
			rs, err := db.Replicas(ctx, at)
			if err != nil {
				t.Fatal(err)
			}
			var out []row
			for _, r := range rs {
				out = append(out, row{r.ID, r.State, r.Leads, r.StartedAt})
			}
			return out
		}
		want := []row{
			{"srv_c", "up", []string{}, c.StartedAt},
			{"srv_b", "up", []string{"lifecycle", "liveness"}, b.StartedAt},
			{"srv_a", "silent", []string{}, old.StartedAt},
		}
		if d := cmp.Diff(want, list(now)); d != "" {
			t.Fatalf("replicas (-want +got):\n%s", d)
		}
		// Past the leases' end they are held by no one.
		want[1].Leads = []string{}
		want[0].State, want[1].State = "silent", "silent"
		if d := cmp.Diff(want, list(now.Add(20*time.Second))); d != "" {
			t.Fatalf("replicas 20 s later (-want +got):\n%s", d)
		}

		// b stops: said stopped, and its leases are another's to take now.
		stopped := now.Add(time.Second)
		b.SeenAt, b.StoppedAt = stopped, &stopped
		if err := db.PutReplica(ctx, b); err != nil {
			t.Fatal(err)
		}
		if err := db.ReleaseLeases(ctx, "srv_b"); err != nil {
			t.Fatal(err)
		}
		rs, err := db.Replicas(ctx, now.Add(2*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if rs[1].ID != "srv_b" || rs[1].State != "stopped" || rs[1].StoppedAt == nil || !rs[1].StoppedAt.Equal(stopped) || len(rs[1].Leads) != 0 {
			t.Fatalf("b after it stopped: %+v", rs[1])
		}
		epoch, ok, err := db.TakeLease(ctx, "lifecycle", "srv_c", now.Add(2*time.Second), now.Add(12*time.Second))
		if err != nil || !ok || epoch != 2 {
			t.Fatalf("c takes the lifecycle lease b gave up: held %v epoch %d, %v; want held at epoch 2", ok, epoch, err)
		}
		if rs := list(now.Add(3 * time.Second)); len(rs[0].Leads) != 1 || rs[0].Leads[0] != "lifecycle" {
			t.Fatalf("c's leases: %v", rs[0].Leads)
		}

		// A week after a replica was last seen it is no longer listed: a
		// and c were seen last before now, b when it stopped after it.
		week := now.Add(sqlstore.ReplicaKept)
		put("srv_d", week, week)
		var ids []string
		for _, r := range list(week) {
			ids = append(ids, r.ID)
		}
		if d := cmp.Diff([]string{"srv_d", "srv_b"}, ids); d != "" {
			t.Fatalf("replicas a week on (-want +got):\n%s", d)
		}
	})
}
