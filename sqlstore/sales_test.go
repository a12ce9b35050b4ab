package sqlstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
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

// TestStoredJSONThatDoesNotDecode: a column stored as JSON that no longer
// decodes (edited by hand, say) is an error naming it, on both stores; it
// is never read as an empty value. A reservation read as empty would have
// counted no GPUs against its tenant's quota.
func TestStoredJSONThatDoesNotDecode(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		tn := tenant.Tenant{ID: neocloud.NewID(neocloud.PrefixTenant), Name: "acme", CreatedAt: t0}
		if err := db.CreateTenant(ctx, tn); err != nil {
			t.Fatal(err)
		}
		if err := db.PutSKUs(ctx, fleet.Catalog); err != nil {
			t.Fatal(err)
		}
		sku := fleet.Catalog[0].Name
		site := fleet.Site{ID: neocloud.NewID(fleet.PrefixSite), Name: "lab", Levels: []string{"rack"}, CreatedAt: t0, UpdatedAt: t0}
		if err := db.PutSite(ctx, site); err != nil {
			t.Fatal(err)
		}
		node := fleet.Node{ID: neocloud.NewID(fleet.PrefixNode), Hostname: "n1", SiteID: site.ID, SKU: sku, Domain: "r1", Lifecycle: fleet.LifecycleAvailable, Health: fleet.HealthOK, Version: 1, CreatedAt: t0, UpdatedAt: t0}
		if err := db.InsertNodes(ctx, []fleet.Node{node}); err != nil {
			t.Fatal(err)
		}
		c := sales.Contract{ID: neocloud.NewID(sales.PrefixContract), TenantID: tn.ID, Kind: placement.ClassReserved, SKU: sku, Start: t0, CreatedAt: t0}
		if err := db.InsertContract(ctx, c); err != nil {
			t.Fatal(err)
		}
		r := sales.Reservation{ID: neocloud.NewID(sales.PrefixReservation), TenantID: tn.ID, ContractID: c.ID, State: sales.ReservationScheduled,
			Shape: sales.Shape{Site: site.ID, SKU: sku, GPUs: 16, Class: placement.ClassReserved, Start: t0}, DueAt: t0, Version: 1, CreatedAt: t0, UpdatedAt: t0}
		if err := db.InsertReservation(ctx, r); err != nil {
			t.Fatal(err)
		}
		if _, err := db.AppendEvent(ctx, sales.Event{ID: neocloud.NewID(sales.PrefixEvent), TenantID: tn.ID, Kind: "reservation.scheduled", Subject: r.ID, Data: map[string]any{"gpus": 16}, At: t0}); err != nil {
			t.Fatal(err)
		}
		held := func() (int64, error) {
			return db.HeldGPUs(ctx, tn.ID, sku, placement.ClassReserved, t0, t0.Add(time.Hour), t0)
		}
		if n, err := held(); err != nil || n != 16 {
			t.Fatalf("HeldGPUs = %d, %v; want 16", n, err)
		}
		for _, tc := range []struct {
			table, column, key string
			read               func() error
		}{
			{"sites", "policy", site.ID, func() error { _, err := db.SiteByName(ctx, site.Name); return err }},
			{"sites", "economics", site.ID, func() error { _, err := db.Sites(ctx); return err }},
			{"nodes", "health_reasons", node.ID, func() error { _, err := db.Node(ctx, node.ID); return err }},
			{"reservations", "body", r.ID, func() error { _, err := held(); return err }},
			{"events", "data", tn.ID, func() error { _, err := db.Events(ctx, tn.ID, 0, 10); return err }},
		} {
			where := "id"
			if tc.table == "events" {
				where = "tenant_id"
			}
			raw := db.RawDB()
			var kept string
			if err := raw.QueryRow(`SELECT ` + tc.column + ` FROM ` + tc.table + ` WHERE ` + where + ` = '` + tc.key + `'`).Scan(&kept); err != nil {
				t.Fatal(err)
			}
			set := func(v string) {
				t.Helper()
				if _, err := raw.Exec(`UPDATE ` + tc.table + ` SET ` + tc.column + ` = '` + v + `' WHERE ` + where + ` = '` + tc.key + `'`); err != nil {
					t.Fatal(err)
				}
			}
			set(`{"cut off`)
			err := tc.read()
			if err == nil || !strings.Contains(err.Error(), tc.column) {
				t.Errorf("%s.%s that does not decode: read gave %v, want an error naming the column", tc.table, tc.column, err)
			}
			set(kept)
			if err := tc.read(); err != nil {
				t.Errorf("%s.%s restored: %v", tc.table, tc.column, err)
			}
		}
	})
}

// TestQuoteClosedOnce: closing an open quote (used, expired) is a
// compare-and-set: a quote closed already stays as it was, and the second
// close is a conflict naming its state.
func TestQuoteClosedOnce(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		tn := tenant.Tenant{ID: neocloud.NewID(neocloud.PrefixTenant), Name: "acme", CreatedAt: t0}
		if err := db.CreateTenant(ctx, tn); err != nil {
			t.Fatal(err)
		}
		q := sales.Quote{ID: neocloud.NewID(sales.PrefixQuote), TenantID: tn.ID, State: "open", ExpiresAt: t0.Add(time.Hour), CreatedAt: t0,
			Shape: sales.Shape{SKU: "h100-sxm5-80gb", GPUs: 8, Class: placement.ClassReserved, Start: t0}}
		if err := db.InsertQuote(ctx, q); err != nil {
			t.Fatal(err)
		}
		q.State = "used"
		if err := db.UpdateQuote(ctx, q); err != nil {
			t.Fatal(err)
		}
		q.State = "expired"
		var ne *neocloud.Error
		if err := db.UpdateQuote(ctx, q); !errors.As(err, &ne) || ne.Kind != neocloud.KindConflict || ne.State != "used" {
			t.Fatalf("expiring a used quote: %v, want a conflict in state used", err)
		}
		if got, err := db.Quote(ctx, q.ID); err != nil || got.State != "used" {
			t.Fatalf("the quote after: %s, %v; want used", got.State, err)
		}
		q.ID = "quo_missing"
		if err := db.UpdateQuote(ctx, q); neocloud.ErrorKind(err) != neocloud.KindNotFound {
			t.Fatalf("closing a quote that is not there: %v", err)
		}
	})
}
