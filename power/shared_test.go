package power_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/fleet"
	"github.com/neocloud/neocloud/internal/testdb"
	"github.com/neocloud/neocloud/placement"
	"github.com/neocloud/neocloud/power"
	"github.com/neocloud/neocloud/sales"
	"github.com/neocloud/neocloud/sqlstore"
	"github.com/neocloud/neocloud/tenant"
)

// TestAdmissionUnderConcurrentReservations: two servers sharing a
// PostgreSQL database admit work of two SKUs at one site at once, each
// writing its reservation in the admission's transaction: with room for
// one of them under the site's firm capacity, one is admitted.
func TestAdmissionUnderConcurrentReservations(t *testing.T) {
	url := testdb.PostgresURL(t)
	ctx := context.Background()
	open := func() *sqlstore.DB {
		db, err := sqlstore.Open(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	db := open()
	// 30 kW firm; 8 committed GPUs hold 12.75 kW. 8 more at 700 W (12.75
	// kW) fit, or 8 capped at 500 W (10.75 kW); not both.
	_, applied := firmSite(t, db)
	acme, err := tenant.NewService(db).Create(ctx, tenant.CreateInput{Name: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2027, 3, 1, 0, 0, 0, 0, time.UTC)
	end := t0.Add(10 * time.Hour)
	reservation := func(db *sqlstore.DB, sku string, gpus int) sales.Reservation {
		t.Helper()
		ct := sales.Contract{ID: neocloud.NewID(sales.PrefixContract), TenantID: acme.ID, Kind: placement.ClassReserved, SKU: sku, Start: t0, CreatedAt: t0}
		if err := db.InsertContract(ctx, ct); err != nil {
			t.Fatal(err)
		}
		return sales.Reservation{ID: neocloud.NewID(sales.PrefixReservation), TenantID: acme.ID, ContractID: ct.ID, State: sales.ReservationScheduled,
			Shape: sales.Shape{Site: applied.SiteID, SKU: sku, GPUs: gpus, Class: placement.ClassReserved, Start: t0, End: &end}, Version: 1, CreatedAt: t0, UpdatedAt: t0}
	}
	if err := db.InsertReservations(ctx, []sales.Reservation{reservation(db, fullSKU, 8)}); err != nil {
		t.Fatal(err)
	}
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i, name := range []string{fullSKU, cappedSKU} {
		sdb := open()
		sfl := fleet.NewService(sdb, sdb)
		if err := sfl.Load(ctx); err != nil {
			t.Fatal(err)
		}
		pw := power.NewService(sdb, sdb, sfl.Snapshot)
		r := reservation(sdb, name, 8)
		wg.Go(func() {
			errs[i] = sdb.InTx(ctx, func(ctx context.Context) error {
				if _, err := pw.Admit(ctx, applied.SiteID, name, 8, t0.Add(time.Hour), end, nil); err != nil {
					return err
				}
				time.Sleep(50 * time.Millisecond) // the other admission reads meanwhile
				return sdb.InsertReservations(ctx, []sales.Reservation{r})
			})
		})
	}
	wg.Wait()
	admitted := 0
	for i, err := range errs {
		switch {
		case err == nil:
			admitted++
		case neocloud.ErrorKind(err) != neocloud.KindNoCapacity:
			t.Errorf("admission %d refused for another reason: %v", i, err)
		}
	}
	if admitted != 1 {
		t.Errorf("%d of 2 concurrent admissions went through where one fits: %v", admitted, errs)
	}
}
