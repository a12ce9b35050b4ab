package billing_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/billing"
	"github.com/neocloud/neocloud/internal/testdb"
	"github.com/neocloud/neocloud/placement"
	"github.com/neocloud/neocloud/sales"
	"github.com/neocloud/neocloud/sqlstore"
)

// TestAutoCloseOnTwoServers: servers sharing a database each close due
// months on their own; when two close the same month at once, one closes
// it (one invoice a tenant) and the other takes it as closed, with no
// error to log.
func TestAutoCloseOnTwoServers(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		w := newWorld(t, db, time.Date(2027, 1, 5, 0, 0, 0, 0, time.UTC))
		if _, err := w.sales.Reserve(ctx, w.acme, sales.ReserveInput{ShapeInput: sales.ShapeInput{SKU: "h100-sxm5-80gb", GPUs: 8, Class: placement.ClassOnDemand}}); err != nil {
			t.Fatal(err)
		}
		w.run()
		w.at(time.Date(2027, 2, 1, 2, 0, 0, 0, time.UTC)) // January is due (an hour after its end)
		if _, err := w.billing.Meter(ctx, w.clock.Now()); err != nil {
			t.Fatal(err)
		}
		other := billing.NewService(db, db)
		other.Now, other.Resolve = w.clock.Now, w.tenants.Resolve
		for round := range 4 {
			var wg sync.WaitGroup
			closed := make([][]billing.Period, 2)
			errs := make([]error, 2)
			for i, s := range []*billing.Service{w.billing, other} {
				wg.Go(func() { closed[i], errs[i] = s.AutoClose(ctx) })
			}
			wg.Wait()
			if errs[0] != nil || errs[1] != nil {
				t.Fatalf("round %d: two servers closing at once: %v; %v", round, errs[0], errs[1])
			}
			if n := len(closed[0]) + len(closed[1]); round == 0 && n != 1 || round > 0 && n != 0 {
				t.Fatalf("round %d: closed %+v and %+v", round, closed[0], closed[1])
			}
		}
		invs, err := w.billing.Invoices(ctx, w.op, "acme", billing.InvoiceFilter{Period: "2027-01"}, neocloud.Page{})
		if err != nil || len(invs) != 1 {
			t.Fatalf("acme's January: %d invoices, %v", len(invs), err)
		}
	})
}
