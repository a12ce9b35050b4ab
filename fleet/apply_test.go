package fleet_test

import (
	"bytes"
	"context"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/fleet"
	"github.com/neocloud/neocloud/internal/testdb"
	"github.com/neocloud/neocloud/sqlstore"
)

func spec(t testing.TB, gpus int) []byte {
	t.Helper()
	sku, _ := fleet.CatalogSKU("h100-sxm5-80gb")
	var b bytes.Buffer
	if _, err := fleet.Generate(&b, fleet.ColossusOptions(sku, gpus)); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func parse(t testing.TB, b []byte) *fleet.Spec {
	t.Helper()
	s, err := fleet.ParseSpec(b)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newService(t testing.TB, db *sqlstore.DB) *fleet.Service {
	t.Helper()
	s := fleet.NewService(db, db)
	if err := s.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

// dropLines removes the node lines whose hostname contains any of hosts.
func dropLines(b []byte, hosts ...string) []byte {
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		keep := true
		for _, h := range hosts {
			if strings.Contains(l, "hostname: "+h+",") {
				keep = false
			}
		}
		if keep {
			out = append(out, l)
		}
	}
	return []byte(strings.Join(out, "\n"))
}

func TestApplyIsIdempotentAndAppliesTheDifference(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		svc := newService(t, db)
		full := spec(t, 4096) // one pod: 512 nodes
		res, err := svc.Apply(ctx, parse(t, full))
		if err != nil {
			t.Fatal(err)
		}
		if !res.SiteCreated || res.Added != 512 || res.Changed+res.Retired != 0 || res.GPUs != 4096 {
			t.Fatalf("first apply: %+v", res)
		}
		res, err = svc.Apply(ctx, parse(t, full))
		if err != nil || res.Added+res.Changed+res.Retired != 0 || res.Unchanged != 512 || res.SiteChanged {
			t.Fatalf("second apply: %+v %v; want 0 added, 0 changed, 0 retired", res, err)
		}

		// Drop two nodes, change one's spare flag.
		const a, b, c = "colossus-1-h1-p01-su01-r1-n1", "colossus-1-h1-p01-su01-r1-n2", "colossus-1-h1-p01-su01-r1-n3"
		changed := dropLines(full, a, b)
		changed = bytes.Replace(changed, []byte("hostname: "+c+", "), []byte("hostname: "+c+", spare: true, "), 1)
		res, err = svc.Apply(ctx, parse(t, changed))
		if err != nil || res.Added != 0 || res.Changed != 1 || res.Retired != 2 {
			t.Fatalf("changed apply: %+v %v; want 0 added, 1 changed, 2 retired", res, err)
		}
		for host, want := range map[string]fleet.Lifecycle{a: fleet.LifecycleRetired, b: fleet.LifecycleRetired, c: fleet.LifecycleAvailable} {
			n, ok := svc.Snapshot.Node(host)
			if !ok || n.Lifecycle != want {
				t.Errorf("%s: %v %s, want %s", host, ok, n.Lifecycle, want)
			}
		}
		if n, _ := svc.Snapshot.Node(c); !n.Spare {
			t.Error("spare flag not applied")
		}
		// The original spec re-admits the retired nodes.
		res, err = svc.Apply(ctx, parse(t, full))
		if err != nil || res.Added != 2 || res.Changed != 1 || res.Retired != 0 {
			t.Fatalf("re-admitting apply: %+v %v", res, err)
		}

		// The snapshot equals what a reload from the store builds.
		fresh := newService(t, db)
		pg := neocloud.Page{Limit: 1000}
		got, want := svc.Snapshot.Nodes(fleet.NodeFilter{}, pg), fresh.Snapshot.Nodes(fleet.NodeFilter{}, pg)
		if len(got) != 512 || len(got) != len(want) {
			t.Fatalf("snapshot %d nodes, reload %d", len(got), len(want))
		}
		for i := range got {
			if got[i].ID != want[i].ID || got[i].Lifecycle != want[i].Lifecycle || got[i].Version != want[i].Version || len(got[i].GPUs) != 8 || len(want[i].GPUs) != 8 {
				t.Fatalf("node %d: snapshot %+v, reload %+v", i, got[i], want[i])
			}
		}
	})
}

func TestApplyRefusesToRetireNodesInUse(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		svc := newService(t, db)
		full := spec(t, 4096)
		if _, err := svc.Apply(ctx, parse(t, full)); err != nil {
			t.Fatal(err)
		}
		busy, _ := svc.Snapshot.Node("colossus-1-h1-p01-su01-r1-n1")
		svc.InUse = func(_ context.Context, ids []string) (map[string]string, error) {
			for _, id := range ids {
				if id == busy.ID {
					return map[string]string{id: "allocation alc_x of reservation rsv_y"}, nil
				}
			}
			return nil, nil
		}
		_, err := svc.Apply(ctx, parse(t, dropLines(full, busy.Hostname, "colossus-1-h1-p01-su01-r1-n2")))
		var ne *neocloud.Error
		if e, ok := err.(*neocloud.Error); ok {
			ne = e
		}
		if ne == nil || ne.Kind != neocloud.KindConflict || !strings.Contains(ne.Details[0].Message, "rsv_y") || !strings.Contains(ne.Field, busy.Hostname) {
			t.Fatalf("err = %v, want a conflict naming %s and its reason", err, busy.Hostname)
		}
		// Nothing changed: not even the idle node was retired.
		if n, _ := svc.Snapshot.Node("colossus-1-h1-p01-su01-r1-n2"); n.Lifecycle != fleet.LifecycleAvailable {
			t.Errorf("idle node is %s after a refused apply", n.Lifecycle)
		}
		if n, _ := db.Node(ctx, busy.ID); n.Lifecycle != fleet.LifecycleAvailable {
			t.Errorf("stored busy node is %s after a refused apply", n.Lifecycle)
		}
		if _, err := svc.Act(ctx, busy.Hostname, fleet.ActionRetire); neocloud.ErrorKind(err) != neocloud.KindConflict {
			t.Errorf("retire a busy node: %v, want conflict", err)
		}
	})
}

func TestNodeActions(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		svc := newService(t, db)
		if _, err := svc.Apply(ctx, parse(t, spec(t, 4096))); err != nil {
			t.Fatal(err)
		}
		const h = "colossus-1-h1-p01-su02-r3-n4"
		steps := []struct {
			a         fleet.Action
			lifecycle fleet.Lifecycle
			cordoned  bool
			errKind   neocloud.Kind
		}{
			{fleet.ActionCordon, fleet.LifecycleAvailable, true, ""},
			{fleet.ActionCordon, fleet.LifecycleAvailable, true, ""}, // idempotent
			{fleet.ActionUncordon, fleet.LifecycleAvailable, false, ""},
			{fleet.ActionDrain, fleet.LifecycleMaintenance, true, ""},
			{fleet.ActionAvailable, fleet.LifecycleAvailable, true, ""},
			{fleet.ActionMaintenance, fleet.LifecycleMaintenance, true, ""},
			{fleet.ActionRetire, fleet.LifecycleRetired, true, ""},
			{fleet.ActionAvailable, fleet.LifecycleRetired, true, neocloud.KindConflict},
		}
		for i, st := range steps {
			n, err := svc.Act(ctx, h, st.a)
			if neocloud.ErrorKind(err) != st.errKind {
				t.Fatalf("step %d %s: err %v, want kind %q", i, st.a, err, st.errKind)
			}
			got, _ := svc.Snapshot.Node(h)
			stored, _ := db.Node(ctx, got.ID)
			if got.Lifecycle != st.lifecycle || got.Cordoned != st.cordoned || stored.Lifecycle != st.lifecycle || stored.Cordoned != st.cordoned {
				t.Fatalf("step %d %s: snapshot %s/%v, store %s/%v; want %s/%v (%v)", i, st.a, got.Lifecycle, got.Cordoned, stored.Lifecycle, stored.Cordoned, st.lifecycle, st.cordoned, n)
			}
		}
	})
}

// TestScaleApply generates and applies a 196,608-GPU Colossus spec, then
// applies it again. Opt-in with NEOCLOUD_SCALE=1 (.ci/run sets it).
func TestScaleApply(t *testing.T) {
	if os.Getenv("NEOCLOUD_SCALE") != "1" {
		t.Skip("set NEOCLOUD_SCALE=1 to apply a 196,608-GPU spec")
	}
	testdb.Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		t0 := time.Now()
		b := spec(t, 196608)
		s := parse(t, b)
		parsed := time.Since(t0)
		svc := newService(t, db)
		t1 := time.Now()
		res, err := svc.Apply(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		applied := time.Since(t1)
		if res.Added != 24576 || res.GPUs != 196608 {
			t.Fatalf("apply: %+v", res)
		}
		t2 := time.Now()
		res, err = svc.Apply(ctx, parse(t, b))
		if err != nil || res.Added+res.Changed+res.Retired != 0 {
			t.Fatalf("re-apply: %+v %v", res, err)
		}
		reapplied := time.Since(t2)
		t3 := time.Now()
		fresh := newService(t, db)
		loaded := time.Since(t3)
		if n := fresh.Snapshot.Count(fleet.NodeFilter{}); n != 24576 {
			t.Errorf("reload: %d nodes", n)
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		t.Logf("196,608 GPUs (%.1f MB spec): generate+parse %v, apply %v, re-apply %v, reload %v, Go heap in use %d MiB",
			float64(len(b))/1e6, parsed.Round(time.Millisecond), applied.Round(time.Millisecond), reapplied.Round(time.Millisecond), loaded.Round(time.Millisecond), ms.HeapInuse>>20)
	})
}
