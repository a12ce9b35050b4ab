package sqlstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/agents"
	"github.com/neocloud/neocloud/fleet"
	"github.com/neocloud/neocloud/internal/testdb"
	"github.com/neocloud/neocloud/placement"
	"github.com/neocloud/neocloud/sales"
	"github.com/neocloud/neocloud/sqlstore"
	"github.com/neocloud/neocloud/tenant"
)

// TestOneLiveAllocationPerGPU checks invariant 1 in the database itself: a
// GPU in a live allocation cannot enter another, whether through the store
// or through raw SQL; once the first ends, it can.
func TestOneLiveAllocationPerGPU(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		tn := tenant.Tenant{ID: neocloud.NewID(neocloud.PrefixTenant), Name: "acme", CreatedAt: t0}
		if err := db.CreateTenant(ctx, tn); err != nil {
			t.Fatal(err)
		}
		sku, _ := fleet.CatalogSKU(fleet.Catalog[0].Name)
		if err := db.PutSKUs(ctx, fleet.Catalog); err != nil {
			t.Fatal(err)
		}
		site := fleet.Site{ID: neocloud.NewID(fleet.PrefixSite), Name: "lab", Levels: []string{"rack"}, CreatedAt: t0, UpdatedAt: t0}
		if err := db.PutSite(ctx, site); err != nil {
			t.Fatal(err)
		}
		node := fleet.Node{ID: neocloud.NewID(fleet.PrefixNode), Hostname: "n1", SiteID: site.ID, SKU: sku.Name, Domain: "r1", Lifecycle: fleet.LifecycleAvailable, Health: fleet.HealthOK, Version: 1, CreatedAt: t0, UpdatedAt: t0}
		if err := db.InsertNodes(ctx, []fleet.Node{node}); err != nil {
			t.Fatal(err)
		}
		c := sales.Contract{ID: neocloud.NewID(sales.PrefixContract), TenantID: tn.ID, Kind: placement.ClassOnDemand, SKU: sku.Name, Start: t0, CreatedAt: t0}
		if err := db.InsertContract(ctx, c); err != nil {
			t.Fatal(err)
		}
		rsv := func() sales.Reservation {
			r := sales.Reservation{ID: neocloud.NewID(sales.PrefixReservation), TenantID: tn.ID, ContractID: c.ID, State: sales.ReservationScheduled,
				Shape: sales.Shape{Site: site.ID, SKU: sku.Name, GPUs: 4, Class: placement.ClassOnDemand, Start: t0}, DueAt: t0, Version: 1, CreatedAt: t0, UpdatedAt: t0}
			if err := db.InsertReservation(ctx, r); err != nil {
				t.Fatal(err)
			}
			return r
		}
		alloc := func(r sales.Reservation, gpus ...int) sales.Allocation {
			return sales.Allocation{ID: neocloud.NewID(sales.PrefixAllocation), ReservationID: r.ID, TenantID: tn.ID, NodeID: node.ID, Hostname: "n1", GPUs: gpus,
				State: sales.AllocationBound, DueAt: t0, BoundAt: t0, Version: 1, CreatedAt: t0, UpdatedAt: t0}
		}
		r1, r2 := rsv(), rsv()
		a1 := alloc(r1, 0, 1, 2, 3)
		if err := db.InsertAllocation(ctx, a1); err != nil {
			t.Fatal(err)
		}
		if err := db.InsertAllocation(ctx, alloc(r2, 3, 4)); neocloud.ErrorKind(err) != neocloud.KindConflict {
			t.Fatalf("GPU 3 in two live allocations: %v", err)
		}
		if err := db.InsertAllocation(ctx, alloc(r2, 4, 5, 6, 7)); err != nil {
			t.Fatalf("other GPUs of the node: %v", err)
		}
		// Raw SQL cannot get around it either.
		a3 := alloc(r2, 0)
		if _, err := db.RawDB().Exec(`INSERT INTO allocations (id, reservation_id, tenant_id, node_id, gpus, state, body, due_at, version, created_at, updated_at) VALUES ('` + a3.ID + `', '` + r2.ID + `', '` + tn.ID + `', '` + node.ID + `', '[0]', 'bound', '{}', 0, 1, 0, 0)`); err != nil {
			t.Fatal(err)
		}
		if _, err := db.RawDB().Exec(`INSERT INTO allocation_gpus (allocation_id, node_id, idx, live) VALUES ('` + a3.ID + `', '` + node.ID + `', 0, TRUE)`); err == nil {
			t.Fatal("raw SQL put GPU 0 into a second live allocation")
		}
		// Once the first ends, its GPUs are free.
		a1.State, a1.Version = sales.AllocationEnded, 2
		end := t0.Add(time.Hour)
		a1.EndedAt = &end
		if err := db.UpdateAllocation(ctx, a1); err != nil {
			t.Fatal(err)
		}
		if err := db.InsertAllocation(ctx, alloc(r2, 0, 1, 2, 3)); err != nil {
			t.Fatalf("GPUs of an ended allocation: %v", err)
		}
		// A stale version is refused.
		a1.Version = 2
		if err := db.UpdateAllocation(ctx, a1); neocloud.ErrorKind(err) != neocloud.KindConflict {
			t.Fatalf("stale allocation update: %v", err)
		}
	})
}

// TestSamplesOnce: a report's sample is kept once per (node, seq), also
// when the same one comes twice in one batch; the answer says which were
// new.
func TestSamplesOnce(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		if err := db.PutSKUs(ctx, fleet.Catalog); err != nil {
			t.Fatal(err)
		}
		site := fleet.Site{ID: neocloud.NewID(fleet.PrefixSite), Name: "lab", Levels: []string{"rack"}, CreatedAt: t0, UpdatedAt: t0}
		if err := db.PutSite(ctx, site); err != nil {
			t.Fatal(err)
		}
		node := fleet.Node{ID: neocloud.NewID(fleet.PrefixNode), Hostname: "n1", SiteID: site.ID, SKU: fleet.Catalog[0].Name, Domain: "r1", Lifecycle: fleet.LifecycleAvailable, Health: fleet.HealthOK, Version: 1, CreatedAt: t0, UpdatedAt: t0}
		if err := db.InsertNodes(ctx, []fleet.Node{node}); err != nil {
			t.Fatal(err)
		}
		s := func(seq int64) agents.Sample {
			return agents.Sample{NodeID: node.ID, Seq: seq, At: t0.Add(time.Duration(seq) * time.Second), EnergyJ: uint64(100 * seq), PowerW: 500}
		}
		put := func(ss ...agents.Sample) []bool {
			var fresh []bool
			if err := db.InTx(ctx, func(ctx context.Context) error {
				var err error
				fresh, err = db.PutSamples(ctx, ss)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			return fresh
		}
		if got := put(s(1), s(1), s(2)); fmt.Sprint(got) != "[true false true]" {
			t.Fatalf("first batch: %v", got)
		}
		if got := put(s(2), s(3)); fmt.Sprint(got) != "[false true]" {
			t.Fatalf("second batch: %v", got)
		}
		got, err := db.Samples(ctx, node.ID, 1, 10)
		if err != nil || len(got) != 3 || got[2].EnergyJ != 300 {
			t.Fatalf("samples: %+v %v", got, err)
		}
	})
}
