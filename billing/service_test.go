package billing_test

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/agents"
	"github.com/neocloud/neocloud/billing"
	"github.com/neocloud/neocloud/fleet"
	"github.com/neocloud/neocloud/internal/testdb"
	"github.com/neocloud/neocloud/placement"
	"github.com/neocloud/neocloud/sales"
	"github.com/neocloud/neocloud/sqlstore"
	"github.com/neocloud/neocloud/tenant"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

// world: a 32-node site, tenants acme and beta, the price book, selling
// and billing on one settable clock.
type world struct {
	t          *testing.T
	db         *sqlstore.DB
	clock      *clock
	fleet      *fleet.Service
	tenants    *tenant.Service
	sales      *sales.Service
	billing    *billing.Service
	op         neocloud.Principal
	acme, beta neocloud.Principal
}

func newWorld(t *testing.T, db *sqlstore.DB, start time.Time) *world {
	t.Helper()
	ctx := context.Background()
	w := &world{t: t, db: db, clock: &clock{t: start}}
	w.fleet = fleet.NewService(db, db)
	w.fleet.Now = w.clock.Now
	if err := w.fleet.Load(ctx); err != nil {
		t.Fatal(err)
	}
	sku, _ := fleet.CatalogSKU("h100-sxm5-80gb")
	var b bytes.Buffer
	o := fleet.ColossusOptions(sku, 256)
	o.Fanout = []int{2, 2, 2, 4}
	if _, err := fleet.Generate(&b, o); err != nil {
		t.Fatal(err)
	}
	spec, err := fleet.ParseSpec(b.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	spec.Site.Power = &fleet.Power{PUE: 1.25, EnergyPrice: "0.085"}
	if _, err := w.fleet.Apply(ctx, spec); err != nil {
		t.Fatal(err)
	}
	w.tenants = tenant.NewService(db)
	w.op = neocloud.Principal{TokenID: "tok_op", Role: neocloud.RoleOperatorAdmin}
	for _, name := range []string{"acme", "beta"} {
		tn, err := w.tenants.Create(ctx, tenant.CreateInput{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		p := neocloud.Principal{TokenID: "tok_" + name, Role: neocloud.RoleTenantAdmin, TenantID: tn.ID}
		if name == "acme" {
			w.acme = p
		} else {
			w.beta = p
		}
	}
	w.sales = sales.NewService(db, db, w.fleet, w.tenants)
	w.sales.Now = w.clock.Now
	for _, p := range []sales.PriceInput{
		{SKU: "h100-sxm5-80gb", Class: placement.ClassReserved, List: "2.50"},
		{SKU: "h100-sxm5-80gb", Class: placement.ClassOnDemand, List: "3.20"},
	} {
		if _, err := w.sales.SetPrice(ctx, w.op, p); err != nil {
			t.Fatal(err)
		}
	}
	w.billing = billing.NewService(db, db)
	w.billing.Now, w.billing.Resolve = w.clock.Now, w.tenants.Resolve
	return w
}

// run steps the lifecycle until nothing is due.
func (w *world) run() {
	w.t.Helper()
	for i := 0; i < 1000; i++ {
		n, err := w.sales.Step(context.Background())
		if err != nil {
			w.t.Fatal(err)
		}
		if n == 0 {
			return
		}
	}
	w.t.Fatal("the lifecycle does not settle")
}

func (w *world) at(t time.Time) { w.clock.Set(t); w.run() }

// readings records every GPU of a node at t with the same counter.
func (w *world) readings(node string, t time.Time, j uint64) {
	w.t.Helper()
	var rs []agents.EnergyReading
	for g := 0; g < 8; g++ {
		rs = append(rs, agents.EnergyReading{NodeID: node, GPU: g, At: t, EnergyJ: j, Reason: "hourly"})
	}
	if err := w.db.PutEnergyReadings(context.Background(), rs); err != nil {
		w.t.Fatal(err)
	}
}

func kind(err error) neocloud.Kind { return neocloud.ErrorKind(err) }

// A month of selling closed into numbered invoices; closing again, early
// or out of order refused; a late reading of a closed month billed as an
// adjustment on the next; a credit note; tenants see only their own;
// finalized invoices never change.
func TestCloseNumbersInvoicesAndLateUsageBecomesAdjustment(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		w := newWorld(t, db, time.Date(2027, 1, 4, 0, 0, 0, 0, time.UTC))
		if _, err := w.billing.SetSeller(ctx, billing.Seller{Party: billing.Party{Name: "Colossus Compute LLC", Address: "Memphis, TN"},
			InvoicePrefix: "INV-", CreditPrefix: "CN-", PaymentTermsD: 30, CloseAfterS: 3600}); err != nil {
			t.Fatal(err)
		}
		if _, err := w.billing.SetProfile(ctx, w.op, "acme", billing.Profile{LegalName: "Acme AI, Inc.", TaxRate: "8.25"}); err != nil {
			t.Fatal(err)
		}
		if _, err := w.billing.SetProfile(ctx, w.op, "acme", billing.Profile{TaxRate: "-1"}); kind(err) != neocloud.KindInvalid || !strings.Contains(err.Error(), "tax_rate_percent") {
			t.Fatalf("a negative tax rate: %v", err)
		}

		// Beta leases a pod from January 10th with power pass-through; acme
		// runs 8 on-demand GPUs for a day and a half.
		var pod string
		w.fleet.Snapshot.Each(fleet.NodeFilter{}, func(n *fleet.Node) {
			if pod == "" {
				parts := strings.Split(n.Domain, "/")
				pod = strings.Join(parts[:2], "/")
			}
		})
		lease, err := w.sales.CreateLease(ctx, w.op, sales.LeaseInput{Tenant: "beta", Site: "colossus-1", Domain: pod, Start: time.Date(2027, 1, 10, 0, 0, 0, 0, time.UTC),
			DurationS: 365 * 86400, Rate: "2.00", PowerPassThrough: true})
		if err != nil {
			t.Fatal(err)
		}
		od, err := w.sales.Reserve(ctx, w.acme, sales.ReserveInput{ShapeInput: sales.ShapeInput{SKU: "h100-sxm5-80gb", GPUs: 8, Class: placement.ClassOnDemand}})
		if err != nil {
			t.Fatal(err)
		}
		w.run()
		w.at(time.Date(2027, 1, 5, 12, 0, 0, 0, time.UTC))
		if _, err := w.sales.Cancel(ctx, w.acme, od.ID); err != nil {
			t.Fatal(err)
		}
		w.run()
		w.at(time.Date(2027, 1, 10, 0, 0, 0, 0, time.UTC))
		w.run()
		rsvs, err := db.ContractReservations(ctx, lease.ID)
		if err != nil || len(rsvs) != 1 || rsvs[0].State != sales.ReservationActive {
			t.Fatalf("the lease: %v %+v", err, rsvs)
		}
		node := rsvs[0].Nodes[0].NodeID
		as, _ := db.Allocations(ctx, rsvs[0].ID)
		var metered sales.Allocation
		for _, a := range as {
			if a.NodeID == node {
				metered = a
			}
		}
		// One leased node's energy: 5 MJ an hour per GPU over January's last
		// two hours (readings just after each hour).
		w.readings(node, metered.ReadyAt.Add(time.Millisecond), 100_000_000)
		w.readings(node, time.Date(2027, 1, 31, 22, 0, 0, 1000, time.UTC), 200_000_000)
		w.readings(node, time.Date(2027, 1, 31, 23, 0, 0, 1000, time.UTC), 205_000_000)
		w.readings(node, time.Date(2027, 2, 1, 0, 0, 0, 1000, time.UTC), 210_000_000)

		// Closing January before it ends, a quarter, or nonsense: refused.
		for _, bad := range []string{"2027-01", "2027-Q1", "2027-13", ""} {
			if _, _, err := w.billing.Close(ctx, w.op, bad); kind(err) != neocloud.KindInvalid || !strings.Contains(err.Error(), "body.period") {
				t.Fatalf("close %q early: %v", bad, err)
			}
		}
		w.at(time.Date(2027, 2, 1, 0, 30, 0, 0, time.UTC))
		if _, err := w.billing.Meter(ctx, w.clock.Now()); err != nil {
			t.Fatal(err)
		}
		// Drafts for the open month: not numbered; a tenant's own only.
		drafts, err := w.billing.Draft(ctx, w.acme, w.acme.TenantID, "2027-01")
		if err != nil || len(drafts) != 1 || drafts[0].Number != "" || drafts[0].State != "draft" {
			t.Fatalf("acme's draft: %v %+v", err, drafts)
		}
		if _, err := w.billing.Draft(ctx, w.acme, "beta", "2027-01"); kind(err) != neocloud.KindNotFound {
			t.Fatalf("acme drafts beta's invoice: %v", err)
		}

		p, invs, err := w.billing.Close(ctx, w.op, "2027-01")
		if err != nil {
			t.Fatal(err)
		}
		if p.Invoices != 2 || len(invs) != 2 || invs[0].TenantName != "acme" || invs[0].Number != "INV-000001" || invs[1].Number != "INV-000002" {
			t.Fatalf("closed: %+v %+v", p, invs)
		}
		acmeJan, betaJan := invs[0], invs[1]
		// Acme: 36 h × 8 GPUs on demand at 3.20 = 921.60, plus 8.25% tax.
		if len(acmeJan.Lines) != 1 || acmeJan.Lines[0].GPUSeconds != 36*3600*8 || acmeJan.SubtotalMicros != 921_600_000 || acmeJan.TaxMicros != 76_032_000 {
			t.Fatalf("acme's January: %+v", acmeJan)
		}
		// Beta: January's commitment (22 days) and February's in advance,
		// GPU-hours delivered, and the energy passed through.
		var energy billing.Line
		for _, l := range betaJan.Lines {
			if l.Kind == billing.LineEnergy {
				energy = l
			}
		}
		gpus := 0
		for _, r := range rsvs {
			gpus += r.Shape.GPUs
		}
		if betaJan.Lines[0].AmountMicros != int64(gpus)*22*24*2_000_000 || betaJan.Lines[1].ChargeKey != "commit:"+lease.ID+":2027-02" {
			t.Fatalf("beta's commitments: %+v", betaJan.Lines[:2])
		}
		wantJ := int64(8 * 110_000_000 * 100 / 55) // GPU energy ÷ 0.55
		if energy.EnergyJ < wantJ-2 || energy.EnergyJ > wantJ+2 || energy.EnergySource != billing.SourceEstimated {
			t.Fatalf("beta's energy: %+v, want %d J", energy, wantJ)
		}

		// The energy line's lineage sums back to it.
		if src, err := w.billing.Sources(ctx, w.beta, betaJan.Number, energy.N); err != nil || src.EnergyJ != energy.EnergyJ || src.RecordsTotal != energy.Records ||
			len(src.Records) != min(energy.Records, billing.LineRecordLimit) || len(src.Allocations) == 0 || src.AllocationsTotal < len(src.Allocations) {
			t.Fatalf("energy line %+v: sources %v %d J in %d records (%d listed)", energy, err, src.EnergyJ, src.RecordsTotal, len(src.Records))
		}

		// Closed once only; months close in order.
		if _, _, err := w.billing.Close(ctx, w.op, "2027-01"); kind(err) != neocloud.KindConflict {
			t.Fatalf("closing January again: %v", err)
		}
		if _, _, err := w.billing.Close(ctx, w.op, "2026-12"); kind(err) != neocloud.KindConflict {
			t.Fatalf("closing December after January: %v", err)
		}
		// The meter, run again, changes nothing.
		if res, err := w.billing.Rederive(ctx, w.op, time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2027, 2, 1, 0, 0, 0, 0, time.UTC)); err != nil || res.Inserted+res.Updated != 0 || res.Unchanged == 0 {
			t.Fatalf("re-deriving unchanged January: %+v %v", res, err)
		}
		// Finalized invoices and invoiced records never change.
		janEnd := time.Date(2027, 2, 1, 0, 0, 0, 0, time.UTC).UnixMicro()
		for _, q := range []string{`UPDATE invoices SET total_micros = 0`, `DELETE FROM invoices`,
			fmt.Sprintf(`UPDATE usage_records SET gpu_seconds = 0 WHERE hour < %d`, janEnd), fmt.Sprintf(`DELETE FROM usage_records WHERE hour < %d`, janEnd),
			fmt.Sprintf(`UPDATE usage_spans SET gpu_seconds = 0 WHERE month < %d`, janEnd), fmt.Sprintf(`DELETE FROM usage_spans WHERE month < %d`, janEnd),
			fmt.Sprintf(`INSERT INTO usage_spans SELECT allocation_id, 0, tenant_id, reservation_id, contract_id, class, sku, site_id, node_id, gpus, start_at, end_at,
				gpu_seconds, gpu_energy_j, energy_j, 1, 1 FROM usage_records WHERE hour < %d`, janEnd)} {
			if _, err := db.RawDB().ExecContext(ctx, q); err == nil {
				t.Fatalf("%s succeeded", q)
			}
		}

		// A late reading of January (the agent's spool): GPU counters reset
		// at 22:30 to 1 MJ. Deriving January again corrects the invoiced
		// records with new revisions, billed on February's invoice.
		w.readings(node, time.Date(2027, 1, 31, 22, 30, 0, 0, time.UTC), 1_000_000)
		res, err := w.billing.Rederive(ctx, w.op, time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2027, 2, 1, 0, 0, 0, 0, time.UTC))
		if err != nil || res.Inserted != 1 {
			t.Fatalf("re-deriving after a late reading: %+v %v", res, err)
		}
		if _, err := w.billing.Rederive(ctx, w.acme, time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2027, 2, 1, 0, 0, 0, 0, time.UTC)); kind(err) != neocloud.KindForbidden {
			t.Fatalf("a tenant re-derives: %v", err)
		}
		if _, _, err := w.billing.Close(ctx, w.op, "2027-03"); kind(err) != neocloud.KindInvalid {
			t.Fatalf("closing March in February: %v", err)
		}
		w.at(time.Date(2027, 3, 1, 2, 0, 0, 0, time.UTC))
		if _, _, err := w.billing.Close(ctx, w.op, "2027-03"); kind(err) != neocloud.KindInvalid {
			t.Fatalf("closing March before it ends: %v", err)
		}
		closed, err := w.billing.AutoClose(ctx)
		if err != nil || len(closed) != 1 || closed[0].Period != "2027-02" {
			t.Fatalf("automatic close of February: %+v %v", closed, err)
		}
		feb, err := w.billing.Invoices(ctx, w.op, "beta", billing.InvoiceFilter{Period: "2027-02"}, neocloud.Page{})
		if err != nil || len(feb) != 1 || feb[0].Number != "INV-000003" {
			t.Fatalf("beta's February: %v %+v", err, feb)
		}
		var adj *billing.Line
		for i, l := range feb[0].Lines {
			if l.Kind == billing.LineAdjustment && l.Unit == "kWh" {
				adj = &feb[0].Lines[i]
			}
			if l.ChargeKey == "commit:"+lease.ID+":2027-02" {
				t.Fatal("February's commitment billed twice")
			}
		}
		// The hour 22:00 of January 31 had 5 MJ per GPU; with the reset it
		// has the 1 MJ counted since the reset and 204 MJ after: +200 MJ.
		if adj == nil || adj.EnergyJ <= 0 || !strings.Contains(adj.Description, "2027-01") {
			t.Fatalf("no energy adjustment for January on February's invoice: %+v", feb[0].Lines)
		}
		wantAdj := int64(8 * (1_000_000 + 204_000_000 - 5_000_000) * 100 / 55)
		if adj.EnergyJ < wantAdj-2 || adj.EnergyJ > wantAdj+2 {
			t.Fatalf("adjustment %d J, want %d", adj.EnergyJ, wantAdj)
		}

		// A credit note against acme's January invoice.
		if _, err := w.billing.CreditNote(ctx, w.op, "INV-000001", billing.CreditInput{Amount: "1000", Reason: "too much"}); kind(err) != neocloud.KindInvalid {
			t.Fatalf("crediting more than the invoice: %v", err)
		}
		if _, err := w.billing.CreditNote(ctx, w.op, "INV-000001", billing.CreditInput{Amount: "5"}); kind(err) != neocloud.KindInvalid {
			t.Fatalf("a credit note without a reason: %v", err)
		}
		cn, err := w.billing.CreditNote(ctx, w.op, "INV-000001", billing.CreditInput{Amount: "21.60", Reason: "six GPU-hours lost to a slow provisioning"})
		if err != nil || cn.Number != "CN-000001" || cn.RefersTo != acmeJan.ID || cn.SubtotalMicros != -21_600_000 || cn.TaxMicros != -1_782_000 {
			t.Fatalf("credit note: %v %+v", err, cn)
		}
		if _, err := w.billing.CreditNote(ctx, w.op, cn.Number, billing.CreditInput{Reason: "x"}); kind(err) != neocloud.KindConflict {
			t.Fatalf("crediting a credit note: %v", err)
		}
		got, err := w.billing.Invoice(ctx, w.acme, acmeJan.ID)
		if err != nil || got.CreditedMicros != -21_600_000 || got.TotalMicros != acmeJan.TotalMicros {
			t.Fatalf("acme's January after the credit: %v %+v", err, got)
		}
		// Beta cannot see acme's invoices: 404 as for a missing one.
		if _, err := w.billing.Invoice(ctx, w.beta, acmeJan.ID); kind(err) != neocloud.KindNotFound {
			t.Fatalf("beta reads acme's invoice: %v", err)
		}
		if _, err := w.billing.Usage(ctx, w.beta, "acme", "2027-01", "day"); kind(err) != neocloud.KindNotFound {
			t.Fatalf("beta reads acme's usage: %v", err)
		}
		mine, err := w.billing.Invoices(ctx, w.beta, "", billing.InvoiceFilter{}, neocloud.Page{})
		if err != nil || len(mine) != 2 {
			t.Fatalf("beta's invoices: %v %d", err, len(mine))
		}
		// Numbers have no gaps, per series.
		all, err := w.billing.Invoices(ctx, w.op, "", billing.InvoiceFilter{}, neocloud.Page{})
		if err != nil {
			t.Fatal(err)
		}
		var nums []string
		for _, inv := range all {
			nums = append(nums, inv.Number)
		}
		if strings.Join(nums, ",") != "CN-000001,INV-000001,INV-000002,INV-000003" {
			t.Fatalf("numbers: %v", nums)
		}
		// Usage by day: acme's 36 hours, by reservation one row.
		rows, err := w.billing.Usage(ctx, w.acme, "", "2027-01", "reservation")
		if err != nil || len(rows) != 1 || rows[0].GPUSeconds != 36*3600*8 || rows[0].ReservationID != od.ID {
			t.Fatalf("acme's usage: %v %+v", err, rows)
		}
		if _, err := w.billing.Usage(ctx, w.acme, "", "2027-01", "week"); kind(err) != neocloud.KindInvalid {
			t.Fatalf("usage by week: %v", err)
		}
	})
}

// The spot series keeps a point only where the rate changes.
func TestSpotSeriesRecordsChanges(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		clk := &clock{t: time.Date(2027, 1, 3, 10, 0, 0, 0, time.UTC)}
		bl := billing.NewService(db, db)
		bl.Now = clk.Now
		rates := []int64{1_000_000, 1_000_000, 1_400_000, 1_400_000, 900_000}
		i := 0
		bl.SpotRates = func(context.Context) ([]billing.SpotPoint, error) {
			return []billing.SpotPoint{{SiteID: "sit_1", SKU: "h100", At: clk.Now(), RateMicros: rates[i]}}, nil
		}
		for i = range rates {
			if err := bl.RecordSpot(ctx); err != nil {
				t.Fatal(err)
			}
			clk.Set(clk.Now().Add(10 * time.Minute))
		}
		pts, err := db.SpotPoints(ctx, time.Unix(0, 0), clk.Now())
		if err != nil {
			t.Fatal(err)
		}
		var got []int64
		for _, p := range pts {
			got = append(got, p.RateMicros)
		}
		if len(got) != 3 || got[0] != 1_000_000 || got[1] != 1_400_000 || got[2] != 900_000 || !pts[1].At.Equal(time.Date(2027, 1, 3, 10, 20, 0, 0, time.UTC)) {
			t.Fatalf("spot series: %+v", pts)
		}
	})
}

// SLA credits from the control plane's own data: a failed node until its
// replacement is ready, a confirmed tenant report from when it was made,
// a node degraded by a condition the contract names; a bare-metal node
// whose agent fell silent without evidence earns nothing. The credit is a
// line of the month's invoice, and every line's lineage sums back to it.
func TestSLACreditsAndLineage(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		w := newWorld(t, db, time.Date(2027, 1, 4, 0, 0, 0, 0, time.UTC))
		start, end := time.Date(2027, 1, 5, 0, 0, 0, 0, time.UTC), time.Date(2027, 2, 5, 0, 0, 0, 0, time.UTC)
		days := int64(end.Sub(start) / time.Second)
		acme, err := w.sales.Reserve(ctx, w.acme, sales.ReserveInput{ShapeInput: sales.ShapeInput{SKU: "h100-sxm5-80gb", GPUs: 16, Class: placement.ClassReserved, Start: &start, DurationS: days}})
		if err != nil {
			t.Fatal(err)
		}
		beta, err := w.sales.Reserve(ctx, w.beta, sales.ReserveInput{ShapeInput: sales.ShapeInput{SKU: "h100-sxm5-80gb", GPUs: 8, Class: placement.ClassReserved, Start: &start, DurationS: days, Delivery: sales.DeliveryBareMetal}})
		if err != nil {
			t.Fatal(err)
		}
		w.at(start)
		w.sales.Provisioner = &sales.SimStage{Duration: 2 * time.Hour}
		nodeOf := func(r sales.Reservation, i int) string {
			r, _ = db.Reservation(ctx, r.ID)
			return r.Nodes[i].NodeID
		}
		// January 10th, noon: a node of acme's fails; its replacement takes
		// two hours to provision.
		w.at(time.Date(2027, 1, 10, 12, 0, 0, 0, time.UTC))
		first := nodeOf(acme, 0)
		if n, err := w.sales.NodeFailed(ctx, first, "gpu 3: XID 79 GPU has fallen off the bus", true); err != nil || n != 1 {
			t.Fatalf("node failed: %d %v", n, err)
		}
		for m := 0; m <= 130; m += 5 {
			w.at(time.Date(2027, 1, 10, 12, m, 0, 0, time.UTC))
		}
		// January 20th: acme reports its other node at midnight; an operator
		// confirms at one; the replacement is ready two hours later.
		w.at(time.Date(2027, 1, 20, 0, 0, 0, 0, time.UTC))
		second := nodeOf(acme, 1)
		if second == first {
			second = nodeOf(acme, 0)
		}
		b, err := w.sales.NodeBreakFix(ctx, w.acme, second, sales.BreakFixReport, sales.BreakFixInput{Reason: "NCCL all-reduce hangs"})
		if err != nil {
			t.Fatal(err)
		}
		w.at(time.Date(2027, 1, 20, 1, 0, 0, 0, time.UTC))
		if _, err := w.sales.ConfirmReport(ctx, w.op, b.ID); err != nil {
			t.Fatal(err)
		}
		for m := 0; m <= 130; m += 5 {
			w.at(time.Date(2027, 1, 20, 1, m, 0, 0, time.UTC))
		}
		// January 25th: a node of acme's degraded by an NVLink error for
		// half an hour (the standard SLA names it).
		w.at(time.Date(2027, 1, 25, 0, 0, 0, 0, time.UTC))
		third := nodeOf(acme, 0)
		if err := w.fleet.SetHealth(ctx, third, fleet.HealthDegraded, []string{"gpu 1: XID 74 NVLink error"}); err != nil {
			t.Fatal(err)
		}
		w.at(time.Date(2027, 1, 25, 0, 30, 0, 0, time.UTC))
		if err := w.fleet.SetHealth(ctx, third, fleet.HealthOK, nil); err != nil {
			t.Fatal(err)
		}
		// The history read from mid-degradation starts with the change in
		// force then.
		hist, err := db.HealthLog(ctx, []string{third, first}, time.Date(2027, 1, 25, 0, 10, 0, 0, time.UTC), time.Date(2027, 2, 1, 0, 0, 0, 0, time.UTC))
		if err != nil || len(hist) != 2 || hist[0].Health != fleet.HealthDegraded || hist[1].Health != fleet.HealthOK || hist[1].NodeID != third {
			t.Fatalf("health history: %v %+v", err, hist)
		}
		// Beta's bare-metal node falls silent without evidence: not a failure.
		if n, err := w.sales.NodeFailed(ctx, nodeOf(beta, 0), "no heartbeat for 10m (no out-of-band evidence)", false); err != nil || n != 0 {
			t.Fatalf("bare metal without evidence: %d %v", n, err)
		}

		w.at(time.Date(2027, 2, 1, 1, 0, 0, 0, time.UTC))
		credits, err := w.billing.Credits(ctx, w.acme, "", "2027-01")
		if err != nil || len(credits) != 1 {
			t.Fatalf("acme's credits: %v %+v", err, credits)
		}
		c := credits[0]
		causes := map[string]int{}
		for _, d := range c.Down {
			causes[d.Cause]++
		}
		// Failed: 12:00 → ready about 14:00; reported: 00:00 → 01:00 and the
		// failure at 01:00 → ready about 03:00; degraded: 30 minutes.
		if causes[billing.DownFailed] != 2 || causes[billing.DownReported] != 1 || causes[billing.DownDegraded] != 1 {
			t.Fatalf("down intervals: %+v", c.Down)
		}
		promised := int64(27*24*60) * 16
		if c.GPUMinutes != promised || c.DownGPUMinutes < 8*(120+180+30) || c.DownGPUMinutes > 8*(120+180+30+20) {
			t.Fatalf("GPU-minutes %d of %d down", c.DownGPUMinutes, c.GPUMinutes)
		}
		charge := int64(16*27*24) * 2_500_000
		if c.Tier != "below 99.9%" || c.Percent != "10.00" || c.ChargeMicros != charge || c.CreditMicros != charge/10 || c.Charge != "25920.00" || c.Credit != "2592.00" {
			t.Fatalf("credit: %+v", c)
		}
		t.Logf("acme: %d of %d GPU-minutes down, %s%%, %s → %s%%; %d intervals", c.DownGPUMinutes, c.GPUMinutes, c.Availability, c.Tier, c.Percent, len(c.Down))
		bc, err := w.billing.Credits(ctx, w.beta, "", "2027-01")
		if err != nil || len(bc) != 1 || bc[0].DownGPUMinutes != 0 || bc[0].CreditMicros != 0 {
			t.Fatalf("beta's bare-metal silence: %v %+v", err, bc)
		}

		// The credit is a line of January's invoice; every line explains
		// itself and sums back.
		_, invs, err := w.billing.Close(ctx, w.op, "2027-01")
		if err != nil {
			t.Fatal(err)
		}
		var inv billing.Invoice
		for _, i := range invs {
			if i.TenantID == w.acme.TenantID {
				inv = i
			}
		}
		found := false
		for _, l := range inv.Lines {
			src, err := w.billing.Sources(ctx, w.acme, inv.Number, l.N)
			if err != nil {
				t.Fatal(err)
			}
			switch l.Kind {
			case billing.LineCredit:
				found = true
				if l.AmountMicros != -c.CreditMicros || src.Credit == nil || src.Credit.DownGPUMinutes != c.DownGPUMinutes || len(src.Credit.Down) != len(c.Down) {
					t.Fatalf("credit line %+v, sources %+v", l, src.Credit)
				}
			case billing.LineCommitment:
				if src.GPUSeconds != l.GPUSeconds || len(src.Reservations) != 1 {
					t.Fatalf("commitment line %+v, sources %+v", l, src)
				}
			case billing.LineUsage:
				if src.GPUSeconds != l.GPUSeconds || src.RecordsTotal != l.Records || len(src.Records) != min(l.Records, billing.LineRecordLimit) || src.AllocationsTotal < 3 {
					t.Fatalf("usage line %+v: records sum to %d (%d records, %d allocations)", l, src.GPUSeconds, src.RecordsTotal, src.AllocationsTotal)
				}
			}
		}
		if !found {
			t.Fatalf("no credit line: %+v", inv.Lines)
		}
		if _, err := w.billing.Sources(ctx, w.beta, inv.Number, 1); neocloud.ErrorKind(err) != neocloud.KindNotFound {
			t.Fatalf("beta explains acme's invoice: %v", err)
		}
		if _, err := w.billing.Sources(ctx, w.acme, inv.Number, len(inv.Lines)+1); neocloud.ErrorKind(err) != neocloud.KindNotFound {
			t.Fatalf("a line past the last: %v", err)
		}
	})
}

// A tenant's report is confirmed by the node's own failure when that comes
// first (downtime from the report), counts nothing once an operator
// declines it, and, confirmed only after the node left the work another
// way (the tenant replaced it itself), counts until it left.
func TestReportsResolved(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		w := newWorld(t, db, time.Date(2027, 1, 4, 0, 0, 0, 0, time.UTC))
		start, end := time.Date(2027, 1, 5, 0, 0, 0, 0, time.UTC), time.Date(2027, 2, 5, 0, 0, 0, 0, time.UTC)
		r, err := w.sales.Reserve(ctx, w.acme, sales.ReserveInput{ShapeInput: sales.ShapeInput{SKU: "h100-sxm5-80gb", GPUs: 24, Class: placement.ClassReserved, Start: &start, DurationS: int64(end.Sub(start) / time.Second)}})
		if err != nil {
			t.Fatal(err)
		}
		w.at(start)
		w.sales.Provisioner = &sales.SimStage{Duration: time.Hour}
		r, _ = db.Reservation(ctx, r.ID)
		host := func(id string) string { n, _ := w.fleet.Snapshot.Node(id); return n.Hostname }
		x, y, z := r.Nodes[0].NodeID, r.Nodes[1].NodeID, r.Nodes[2].NodeID
		report := func(node string) sales.BreakFix {
			t.Helper()
			b, err := w.sales.NodeBreakFix(ctx, w.acme, node, sales.BreakFixReport, sales.BreakFixInput{Reason: "NCCL all-reduce hangs"})
			if err != nil || b.State != sales.BreakFixOpen {
				t.Fatalf("report: %v %+v", err, b)
			}
			return b
		}
		stored := func(b sales.BreakFix) sales.BreakFix {
			t.Helper()
			got, err := w.sales.BreakFixRequest(ctx, w.acme, b.ID)
			if err != nil {
				t.Fatal(err)
			}
			return got
		}
		until := func(at time.Time) {
			for ; !w.clock.Now().After(at); w.clock.Set(w.clock.Now().Add(5 * time.Minute)) {
				w.run()
			}
		}

		// January 10th: acme reports x at midnight; at three x fails on its
		// agent's evidence, which confirms the report.
		w.at(time.Date(2027, 1, 10, 0, 0, 0, 0, time.UTC))
		bx := report(x)
		failedAt := time.Date(2027, 1, 10, 3, 0, 0, 0, time.UTC)
		w.at(failedAt)
		if n, err := w.sales.NodeFailed(ctx, x, "gpu 3: XID 79 GPU has fallen off the bus", true); err != nil || n != 1 {
			t.Fatalf("x failed: %d %v", n, err)
		}
		if b := stored(bx); b.State != sales.BreakFixConfirmed || b.ConfirmedBy != sales.ConfirmedByHealth || !b.ConfirmedAt.Equal(failedAt) || !strings.Contains(b.Resolution, "XID 79") {
			t.Fatalf("x's report after x failed: %+v", b)
		}
		until(failedAt.Add(2 * time.Hour))

		// January 15th: y reported; an operator declines it an hour later.
		w.at(time.Date(2027, 1, 15, 0, 0, 0, 0, time.UTC))
		by := report(y)
		w.at(time.Date(2027, 1, 15, 1, 0, 0, 0, time.UTC))
		if _, err := w.sales.DeclineReport(ctx, w.op, by.ID, sales.DeclineInput{Reason: " "}); neocloud.ErrorKind(err) != neocloud.KindInvalid {
			t.Fatalf("a decline without a reason: %v", err)
		}
		if b := stored(by); b.State != sales.BreakFixOpen {
			t.Fatalf("a refused decline changed the report: %+v", b)
		}
		if b, err := w.sales.DeclineReport(ctx, w.op, by.ID, sales.DeclineInput{Reason: "the node passed a full diagnostic"}); err != nil || b.State != sales.BreakFixDeclined || b.DeclinedBy != w.op.TokenID {
			t.Fatalf("decline: %v %+v", err, b)
		}
		for _, again := range []func() error{
			func() error { _, err := w.sales.ConfirmReport(ctx, w.op, by.ID); return err },
			func() error {
				_, err := w.sales.DeclineReport(ctx, w.op, by.ID, sales.DeclineInput{Reason: "twice"})
				return err
			},
		} {
			if err := again(); neocloud.ErrorKind(err) != neocloud.KindConflict {
				t.Fatalf("a declined report resolved again: %v", err)
			}
		}
		if a, err := db.LastNodeAllocation(ctx, y); err != nil || a.State != sales.AllocationReady {
			t.Fatalf("y after the decline: %v %+v", err, a)
		}

		// January 20th: z reported at midnight; at one acme replaces z
		// itself, which confirms nothing; an operator confirms at five.
		reportedZ := time.Date(2027, 1, 20, 0, 0, 0, 0, time.UTC)
		w.at(reportedZ)
		bz := report(z)
		leftZ := reportedZ.Add(time.Hour)
		w.at(leftZ)
		if _, err := w.sales.NodeBreakFix(ctx, w.acme, z, sales.BreakFixReplace, sales.BreakFixInput{Reason: "slow"}); err != nil {
			t.Fatal(err)
		}
		if b := stored(bz); b.State != sales.BreakFixOpen {
			t.Fatalf("the tenant's own replacement resolved its report: %+v", b)
		}
		until(leftZ.Add(2 * time.Hour))
		w.at(reportedZ.Add(5 * time.Hour))
		if b, err := w.sales.ConfirmReport(ctx, w.op, bz.ID); err != nil || b.State != sales.BreakFixConfirmed || b.ConfirmedBy != w.op.TokenID || !strings.Contains(b.Resolution, "left the reservation's work") {
			t.Fatalf("confirm: %v %+v", err, b)
		}
		open, err := w.sales.BreakFixes(ctx, w.op, sales.BreakFixFilter{State: sales.BreakFixOpen}, neocloud.Page{Limit: 10})
		if err != nil || len(open) != 0 {
			t.Fatalf("open reports left: %v %+v", err, open)
		}
		for state, want := range map[string]int{sales.BreakFixOpen: 0, sales.BreakFixConfirmed: 2, sales.BreakFixDeclined: 1, sales.BreakFixDone: 1} {
			if n, err := w.sales.CountBreakFixes(ctx, w.acme, sales.BreakFixFilter{State: state}); err != nil || n != want {
				t.Errorf("%s requests counted: %d, want %d (%v)", state, n, want, err)
			}
		}
		if n, err := w.sales.CountBreakFixes(ctx, w.beta, sales.BreakFixFilter{}); err != nil || n != 0 {
			t.Errorf("beta counts acme's requests: %d %v", n, err)
		}

		w.at(time.Date(2027, 2, 1, 1, 0, 0, 0, time.UTC))
		credits, err := w.billing.Credits(ctx, w.acme, "", "2027-01")
		if err != nil || len(credits) != 1 {
			t.Fatalf("acme's credits: %v %+v", err, credits)
		}
		var reported []string
		for _, d := range credits[0].Down {
			if d.Node == host(y) {
				t.Errorf("a declined report counted: %+v", d)
			}
			if d.Cause == billing.DownReported {
				reported = append(reported, fmt.Sprintf("%s %s → %s", d.Node, d.From.Format(time.RFC3339), d.To.Format(time.RFC3339)))
			}
		}
		want := []string{
			host(x) + " 2027-01-10T00:00:00Z → 2027-01-10T03:00:00Z",
			host(z) + " 2027-01-20T00:00:00Z → 2027-01-20T01:00:00Z",
		}
		if !slices.Equal(reported, want) {
			t.Fatalf("reported downtime:\n%s\nwant:\n%s", strings.Join(reported, "\n"), strings.Join(want, "\n"))
		}
		var kinds []string
		evs, _ := db.RecentEvents(ctx, 100, "node.report_confirmed", "node.report_declined")
		for _, e := range evs {
			if e.TenantID == w.acme.TenantID {
				kinds = append(kinds, e.Kind+" "+e.Data["node"].(string))
			}
		}
		slices.Sort(kinds)
		if want := []string{"node.report_confirmed " + host(x), "node.report_confirmed " + host(z), "node.report_declined " + host(y)}; !slices.Equal(kinds, want) {
			t.Fatalf("acme's events: %v, want %v", kinds, want)
		}
	})
}

// A failed node whose replacement waits for the spot work reclaimed from
// its node is down while it waits: in the month it failed, even when that
// month is closed before the replacement is bound, and in the next one
// until the replacement is ready, counted once.
func TestWaitingReplacementIsDowntime(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		w := newWorld(t, db, time.Date(2027, 1, 4, 0, 0, 0, 0, time.UTC))
		start, end := time.Date(2027, 1, 5, 0, 0, 0, 0, time.UTC), time.Date(2027, 2, 5, 0, 0, 0, 0, time.UTC)
		acme, err := w.sales.Reserve(ctx, w.acme, sales.ReserveInput{ShapeInput: sales.ShapeInput{SKU: "h100-sxm5-80gb", GPUs: 16, Class: placement.ClassReserved,
			Start: &start, DurationS: int64(end.Sub(start) / time.Second), Within: "rack"}})
		if err != nil {
			t.Fatal(err)
		}
		w.at(start)
		// Spot work takes every other node, the rest of acme's rack too,
		// and is given two hours' notice when reclaimed.
		if _, err := w.sales.SetPrice(ctx, w.op, sales.PriceInput{SKU: "h100-sxm5-80gb", Class: placement.ClassSpot, SpotFloor: "0.80", SpotCeiling: "2.40"}); err != nil {
			t.Fatal(err)
		}
		w.sales.Policy.SpotNotice = 2 * time.Hour
		if _, err := w.sales.Reserve(ctx, w.beta, sales.ReserveInput{ShapeInput: sales.ShapeInput{SKU: "h100-sxm5-80gb", GPUs: 240, Class: placement.ClassSpot}}); err != nil {
			t.Fatal(err)
		}
		w.at(start.Add(10 * time.Minute))
		w.sales.Provisioner = &sales.SimStage{Duration: time.Hour}

		// January 31st, 23:00: a node of acme's fails; its replacement waits
		// for the spot work until one in the morning.
		failedAt := time.Date(2027, 1, 31, 23, 0, 0, 0, time.UTC)
		w.at(failedAt)
		// A month yet to come has nothing to measure, though acme's
		// reservation runs into it.
		if cs, err := w.billing.Credits(ctx, w.acme, "", "2027-02"); err != nil || len(cs) != 0 {
			t.Errorf("credits of a month yet to come: %v %+v", err, cs)
		}
		acme, _ = db.Reservation(ctx, acme.ID)
		if n, err := w.sales.NodeFailed(ctx, acme.Nodes[0].NodeID, "gpu 3: XID 79 GPU has fallen off the bus", true); err != nil || n != 1 {
			t.Fatalf("node failed: %d %v", n, err)
		}
		w.at(time.Date(2027, 2, 1, 0, 30, 0, 0, time.UTC))
		if r, _ := db.Reservation(ctx, acme.ID); len(r.Replacing) != 1 {
			t.Fatalf("the replacement does not wait: %+v", r)
		}
		failedDown := func(month string) (int64, []billing.DownInterval) {
			t.Helper()
			cs, err := w.billing.Credits(ctx, w.acme, "", month)
			if err != nil || len(cs) != 1 {
				t.Fatalf("%s credits: %v %+v", month, err, cs)
			}
			var gm int64
			var ds []billing.DownInterval
			for _, d := range cs[0].Down {
				if d.Cause == billing.DownFailed {
					gm += int64(d.GPUs) * int64(d.To.Sub(d.From)/time.Minute)
					ds = append(ds, d)
				}
			}
			if gm != cs[0].DownGPUMinutes {
				t.Fatalf("%s: %d GPU-minutes down, %d of them failed: %+v", month, cs[0].DownGPUMinutes, gm, cs[0].Down)
			}
			return gm, ds
		}
		// January, closed while the replacement waits: the last hour.
		waiting, _ := db.Reservation(ctx, acme.ID)
		replHost := ""
		for _, n := range waiting.Nodes {
			if n.NodeID == waiting.Replacing[0].NodeID {
				replHost = n.Hostname
			}
		}
		if gm, ds := failedDown("2027-01"); gm != 8*60 || !ds[0].From.Equal(failedAt) || replHost == "" || !strings.Contains(ds[0].Evidence, "its replacement "+replHost+" waits") {
			t.Fatalf("January while waiting: %d GPU-minutes, %+v", gm, ds)
		}
		// A month over is measured up to its end, the open one up to now.
		for month, want := range map[string]time.Time{"2027-01": time.Date(2027, 2, 1, 0, 0, 0, 0, time.UTC), "2027-02": w.clock.Now()} {
			if cs, err := w.billing.Credits(ctx, w.acme, "", month); err != nil || len(cs) != 1 || !cs[0].AsOf.Equal(want) {
				t.Errorf("%s credits: %v %+v, want them as of %s", month, err, cs, want)
			}
		}
		if _, _, err := w.billing.Close(ctx, w.op, "2027-01"); err != nil {
			t.Fatal(err)
		}
		// The spot work leaves at one; the replacement is ready about an
		// hour later.
		for at := w.clock.Now(); at.Before(time.Date(2027, 2, 1, 3, 0, 0, 0, time.UTC)); at = at.Add(5 * time.Minute) {
			w.at(at)
		}
		r, _ := db.Reservation(ctx, acme.ID)
		as, _ := db.Allocations(ctx, acme.ID)
		var repl sales.Allocation
		for _, a := range as {
			if a.Replaces != "" {
				repl = a
			}
		}
		if len(r.Replacing) != 0 || repl.ReadyAt == nil || !repl.FailedAt.Equal(failedAt) {
			t.Fatalf("the replacement: %+v, replacing %+v", repl, r.Replacing)
		}
		// January still counts its hour; February counts from midnight to
		// the replacement's ready.
		if gm, _ := failedDown("2027-01"); gm != 8*60 {
			t.Fatalf("January after: %d GPU-minutes", gm)
		}
		want := 8 * int64(repl.ReadyAt.Sub(time.Date(2027, 2, 1, 0, 0, 0, 0, time.UTC))/time.Minute)
		if gm, ds := failedDown("2027-02"); gm != want || len(ds) != 1 || want < 8*120 {
			t.Fatalf("February: %d GPU-minutes, want %d: %+v", gm, want, ds)
		}
	})
}
