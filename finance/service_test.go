package finance_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/agents"
	"github.com/neocloud/neocloud/billing"
	"github.com/neocloud/neocloud/finance"
	"github.com/neocloud/neocloud/fleet"
	"github.com/neocloud/neocloud/internal/testdb"
	"github.com/neocloud/neocloud/placement"
	"github.com/neocloud/neocloud/power"
	"github.com/neocloud/neocloud/sales"
	"github.com/neocloud/neocloud/sqlstore"
	"github.com/neocloud/neocloud/tenant"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// books is billing as finance reads it: contracts, final invoices and the
// open months' drafts, as a scenario states them.
type books struct {
	works  []billing.ContractWork
	finals []billing.Invoice
	drafts []billing.Invoice
}

func (b *books) ContractWorks(context.Context) ([]billing.ContractWork, error) { return b.works, nil }
func (b *books) FinalInvoices(context.Context) ([]billing.Invoice, error)      { return b.finals, nil }
func (b *books) OpenDrafts(context.Context, time.Time, time.Time) ([]billing.Invoice, error) {
	return b.drafts, nil
}

// meters is the power report as finance reads it: a 40 kW facility
// load, all hours, on a 400 g/kWh grid.
type meters struct{}

func (meters) Report(_ context.Context, _ neocloud.Principal, site, _, period string) (power.Report, error) {
	from, to, err := neocloud.ParsePeriod(period)
	if err != nil {
		return power.Report{}, err
	}
	wh := int64(to.Sub(from)/time.Hour) * 40_000
	return power.Report{SiteID: site, Period: period, Share: power.Share{Party: "site", ITWh: wh * 4 / 5, FacilityWh: wh, Scope2G: float64(wh) * 0.4}}, nil
}

var (
	jan = time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	feb = jan.AddDate(0, 1, 0)
	mar = jan.AddDate(0, 2, 0)
	apr = jan.AddDate(0, 3, 0)
	jul = jan.AddDate(0, 6, 0)
)

// scenario builds a quarter at a four-node site (the fourth a spare):
// acme reserves two nodes for January to June at 2.00 (billed monthly in
// arrears); beta runs on-demand on the third node in January and March;
// internal training fills the third node in February; the second node
// fails on February 10th and is in repair until the 12th; acme is
// credited 50.00 for January on its February invoice. Invoices for
// January to March are final; April is drafted to the 15th.
func scenario(t *testing.T, db *sqlstore.DB) (*finance.Service, map[string]string) {
	t.Helper()
	ctx := context.Background()
	fl := fleet.NewService(db, db)
	fl.Now = func() time.Time { return jan.AddDate(0, -1, 0) }
	if err := fl.Load(ctx); err != nil {
		t.Fatal(err)
	}
	sku, _ := fleet.CatalogSKU("h100-sxm5-80gb")
	var b bytes.Buffer
	o := fleet.ColossusOptions(sku, 32)
	o.Fanout = []int{1, 1, 1, 4}
	if _, err := fleet.Generate(&b, o); err != nil {
		t.Fatal(err)
	}
	spec, err := fleet.ParseSpec(b.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	spec.Nodes[3].Spare = true
	spec.Site.Power = &fleet.Power{PUE: 1.25, EnergyPrice: "0.10", CarbonIntensityGPerKWh: 400, Feeds: []fleet.Feed{{Name: "feed-1", CapacityMW: 0.2}}}
	spec.Site.Economics = &fleet.Economics{CapexPerNode: "300000", NodeLifeYears: 5, FacilityCapexPerMW: "10000000", FacilityLifeYears: 20,
		OpexPerMWMonth: "50000", TransferPricePerGPUHour: "1.50"}
	applied, err := fl.Apply(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	site := applied.SiteID
	var nodes []string
	for _, n := range spec.Nodes {
		nd, _ := fl.Snapshot.Node(n.Hostname)
		nodes = append(nodes, nd.ID)
	}
	ids := map[string]string{site: "SITE"}
	tenants := map[string]tenant.Tenant{}
	for _, name := range []string{"acme", "beta", "operator"} {
		tn := tenant.Tenant{ID: neocloud.NewID("ten_"), Name: name, Internal: name == "operator", CreatedAt: jan.AddDate(0, -1, 0)}
		if err := db.CreateTenant(ctx, tn); err != nil {
			t.Fatal(err)
		}
		tenants[name], ids[tn.ID] = tn, name
	}
	end := jul
	contract := func(id, who string, kind placement.Class, terms sales.Terms) sales.Contract {
		c := sales.Contract{ID: id, TenantID: tenants[who].ID, Kind: kind, SKU: sku.Name, Terms: terms, Start: jan, CreatedAt: jan.AddDate(0, 0, -10)}
		if kind == placement.ClassReserved {
			c.End = &end
		}
		if err := db.InsertContract(ctx, c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	reserved := contract("ctr_acme", "acme", placement.ClassReserved, sales.Terms{RateMicros: 2_000_000, Currency: "USD", BillingSchedule: "monthly_in_arrears"})
	contract("ctr_beta", "beta", placement.ClassOnDemand, sales.Terms{RateMicros: 3_000_000, Currency: "USD"})
	contract("ctr_ops", "operator", placement.ClassInternal, sales.Terms{Currency: "USD"})
	rsv := func(id, who, ctr string, class placement.Class, gpus int, from, to time.Time) sales.Reservation {
		return sales.Reservation{ID: id, TenantID: tenants[who].ID, ContractID: ctr, State: sales.ReservationActive, Version: 1, CreatedAt: from, UpdatedAt: from,
			Shape: sales.Shape{Site: site, SKU: sku.Name, GPUs: gpus, Class: class, Start: from, End: &to}}
	}
	rs := []sales.Reservation{
		rsv("rsv_acme", "acme", "ctr_acme", placement.ClassReserved, 16, jan, jul),
		rsv("rsv_beta1", "beta", "ctr_beta", placement.ClassOnDemand, 8, jan, jan.AddDate(0, 0, 20)),
		rsv("rsv_ops", "operator", "ctr_ops", placement.ClassInternal, 8, feb, mar),
		rsv("rsv_beta2", "beta", "ctr_beta", placement.ClassOnDemand, 8, mar, apr),
	}
	if err := db.InsertReservations(ctx, rs); err != nil {
		t.Fatal(err)
	}
	alloc := func(id string, r sales.Reservation, node string, from, to time.Time) sales.Allocation {
		return sales.Allocation{ID: id, ReservationID: r.ID, TenantID: r.TenantID, NodeID: node, State: sales.AllocationEnded, BoundAt: from, ReadyAt: &from,
			ReleasedAt: &to, EndedAt: &to, Version: 1, CreatedAt: from, UpdatedAt: to}
	}
	if err := db.InsertEndedAllocations(ctx, []sales.Allocation{
		alloc("alc_acme0", rs[0], nodes[0], jan, jul),
		alloc("alc_acme1", rs[0], nodes[1], jan, jul),
		alloc("alc_beta1", rs[1], nodes[2], jan, jan.AddDate(0, 0, 20)),
		alloc("alc_ops", rs[2], nodes[2], feb, mar),
		alloc("alc_beta2", rs[3], nodes[2], mar, apr),
	}); err != nil {
		t.Fatal(err)
	}
	// The second node fails on February 10th; its repair ends on the 12th.
	failed, closed := feb.AddDate(0, 0, 9), feb.AddDate(0, 0, 11)
	for _, h := range []fleet.HealthChange{{NodeID: nodes[1], At: failed, Health: fleet.HealthFailed, Reasons: []string{"xid 79"}},
		{NodeID: nodes[1], At: closed, Health: fleet.HealthOK}} {
		if err := db.LogHealth(ctx, h); err != nil {
			t.Fatal(err)
		}
	}
	// GPU reports: acme's first node 75% busy for an hour on March 3rd;
	// beta's on-demand node (not committed) flat out.
	var ms []agents.Minute
	for m := range 60 {
		at := mar.AddDate(0, 0, 2).Add(time.Duration(m) * time.Minute)
		ms = append(ms, agents.Minute{NodeID: nodes[0], Minute: at, Samples: 2, UtilSum: 150}, agents.Minute{NodeID: nodes[2], Minute: at, Samples: 1, UtilSum: 100})
	}
	if err := db.PutMinutes(ctx, ms); err != nil {
		t.Fatal(err)
	}
	// The books: acme's commitments as its contract schedules them, beta's
	// usage, a credit.
	works := []billing.ContractWork{{Contract: reserved, Reservations: rs[:1]}}
	sched := billing.CommitmentSchedule(works[0])
	if len(sched) != 6 {
		t.Fatalf("%d months of commitment", len(sched))
	}
	var finals []billing.Invoice
	inv := func(who string, month time.Time, lines ...billing.Line) {
		for i := range lines {
			lines[i].N = i + 1
		}
		finals = append(finals, billing.Invoice{ID: "inv_" + who + month.Format("0601"), Kind: "invoice", State: "final", TenantID: tenants[who].ID, Period: month.Format("2006-01"),
			PeriodStart: month, PeriodEnd: month.AddDate(0, 1, 0), Currency: "USD", Lines: lines, IssuedAt: month.AddDate(0, 1, 0)})
	}
	usage := func(month time.Time, amount int64) billing.Line {
		return billing.Line{Kind: billing.LineUsage, ContractID: "ctr_beta", Class: "on_demand", ServiceStart: month, ServiceEnd: month.AddDate(0, 1, 0), AmountMicros: amount}
	}
	credit := billing.Line{Kind: billing.LineCredit, ContractID: "ctr_acme", ReservationID: "rsv_acme", Class: "reserved", ServiceStart: jan, ServiceEnd: feb, AmountMicros: -50_000_000}
	inv("acme", jan, sched[0])
	inv("acme", feb, sched[1], credit)
	inv("acme", mar, sched[2])
	inv("beta", jan, usage(jan, 8*480*3_000_000))
	inv("beta", mar, usage(mar, 8*744*3_000_000))
	drafts := []billing.Invoice{{ID: "draft", State: "draft", TenantID: tenants["beta"].ID, Period: "2027-04", Currency: "USD",
		Lines: []billing.Line{{N: 1, Kind: billing.LineUsage, ContractID: "ctr_beta", Class: "on_demand", ServiceStart: apr, ServiceEnd: apr.AddDate(0, 1, 0), AmountMicros: 8 * 336 * 3_000_000}}}}
	fs := finance.NewService(db, fl.Snapshot)
	fs.Billing = &books{works: works, finals: finals, drafts: drafts}
	fs.Power = meters{}
	fs.Now = func() time.Time { return apr.AddDate(0, 0, 14) }
	fs.Resolve = func(ctx context.Context, p neocloud.Principal, ref string) (tenant.Tenant, error) {
		for _, tn := range tenants {
			if tn.Name == ref || tn.ID == ref {
				return tn, nil
			}
		}
		return tenant.Tenant{}, neocloud.NotFound("tenant", ref)
	}
	return fs, ids
}

// golden compares v, its ids replaced by names, with testdata/name.json.
func golden(t *testing.T, name string, v any, ids map[string]string) {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for id, n := range ids {
		s = strings.ReplaceAll(s, id, n)
	}
	path := filepath.Join("testdata", name+".json")
	if *update {
		if err := os.WriteFile(path, []byte(s+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update)", err)
	}
	if d := cmp.Diff(strings.TrimSpace(string(want)), s); d != "" {
		t.Fatalf("%s differs from its golden file (-want +got):\n%s", name, d)
	}
}

// Over the scenario quarter: the categories sum to the fleet every hour;
// the revenue identity holds to the micro-unit with each figure checked
// by hand; the backlog falls month by month by exactly the commitment
// recognized; summary, economics and the what-if match their golden
// files.
func TestScenarioQuarter(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		fs, ids := scenario(t, db)
		u, err := fs.Utilization(ctx, "", "2027-Q1")
		if err != nil {
			t.Fatal(err)
		}
		for h := range u.Hours {
			var sum int64
			for _, c := range finance.Categories {
				sum += u.Series[c][h]
			}
			if sum != 32*3600 {
				t.Fatalf("%s: categories sum to %d GPU-seconds, want 32 GPUs × 3600", u.Hours[h], sum)
			}
		}
		if b := u.CommittedBusy; b == nil || b.TelemetryGPUHours != "8.000" || b.BusyGPUHours != "6.000" || b.Percent != "75.00" {
			t.Errorf("committed busy: %+v, want 8 GPU-hours reported, 6 busy", u.CommittedBusy)
		}
		q1 := int64(apr.Sub(jan) / time.Second)
		by := map[string]int64{}
		for _, c := range u.Categories {
			by[c.Category] = c.GPUSeconds
		}
		down := int64(2 * 86400 * 8)
		want := map[string]int64{
			finance.Reserved: 16*q1 - down, finance.Down: down,
			finance.OnDemand: 8*20*86400 + 8*31*86400, finance.Internal: 8 * 28 * 86400,
			finance.Spare: 8 * q1, finance.Idle: 8*q1 - (8*20*86400 + 8*31*86400 + 8*28*86400),
		}
		for c, w := range want {
			if by[c] != w {
				t.Errorf("%s: %d GPU-seconds, want %d", c, by[c], w)
			}
		}

		rev, err := fs.Revenue(ctx, "", "2027-Q1", "")
		if err != nil {
			t.Fatal(err)
		}
		// Recognized: three months of commitment, beta's January and March,
		// the credit in January.
		commitQ1 := int64(16*q1) * 2_000_000 / 3600
		if rev.Recognized.Micros != commitQ1+8*480*3_000_000+8*744*3_000_000-50_000_000 {
			t.Errorf("recognized %d", rev.Recognized.Micros)
		}
		// Invoiced in Q1: January's invoices (issued February 1st) and
		// February's (March 1st); March's are issued April 1st.
		janCommit := int64(16*31*86400) * 2_000_000 / 3600
		febCommit := int64(16*28*86400) * 2_000_000 / 3600
		marCommit := int64(16*31*86400) * 2_000_000 / 3600
		if rev.Invoiced.Micros != janCommit+8*480*3_000_000+febCommit-50_000_000 {
			t.Errorf("invoiced %d", rev.Invoiced.Micros)
		}
		// Unbilled at the end: March, earned and invoiced on April 1st.
		if rev.DeferredStart.Micros != 0 || rev.DeferredEnd.Micros != 0 || rev.UnbilledStart.Micros != 0 || rev.UnbilledEnd.Micros != marCommit+8*744*3_000_000 {
			t.Errorf("deferred %d → %d, unbilled %d → %d", rev.DeferredStart.Micros, rev.DeferredEnd.Micros, rev.UnbilledStart.Micros, rev.UnbilledEnd.Micros)
		}
		if rev.Recognized.Micros+rev.DeferredEnd.Micros-rev.DeferredStart.Micros-(rev.UnbilledEnd.Micros-rev.UnbilledStart.Micros) != rev.Invoiced.Micros || rev.Identity != "holds" {
			t.Errorf("the identity fails: %+v", rev)
		}
		// The backlog falls by each month's commitment.
		var prev int64 = -1
		for i, p := range []string{"2027-01", "2027-02", "2027-03"} {
			b, err := fs.Backlog(ctx, "", p, "")
			if err != nil {
				t.Fatal(err)
			}
			if prev >= 0 {
				if month := []int64{janCommit, febCommit, marCommit}[i]; prev-b.Total.Micros != month {
					t.Errorf("%s: the backlog fell by %d, the month's commitment is %d", p, prev-b.Total.Micros, month)
				}
			}
			prev = b.Total.Micros
		}
		sum, err := fs.Summary(ctx, "", "2027-Q1")
		if err != nil {
			t.Fatal(err)
		}
		golden(t, "summary", sum, ids)
		econ, err := fs.Economics(ctx, "", "2027-Q1")
		if err != nil {
			t.Fatal(err)
		}
		golden(t, "economics", econ, ids)
		w, err := fs.WhatIf(ctx, finance.WhatIfInput{LeaseTenant: "acme", Rate: "1.85", DurationS: 3 * 365 * 86400, Baseline: "2027-03"})
		if err != nil {
			t.Fatal(err)
		}
		golden(t, "whatif", w, ids)
		if _, err := fs.WhatIf(ctx, finance.WhatIfInput{LeaseTenant: "acme", Rate: "-1", DurationS: 3600}); neocloud.ErrorKind(err) != neocloud.KindInvalid {
			t.Fatalf("a negative rate: %v", err)
		}
		if _, err := fs.Utilization(ctx, "", "2027-13"); neocloud.ErrorKind(err) != neocloud.KindInvalid {
			t.Fatalf("a bad period: %v", err)
		}
	})
}
