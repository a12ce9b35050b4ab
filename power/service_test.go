package power_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/agents"
	"github.com/neocloud/neocloud/billing"
	"github.com/neocloud/neocloud/fleet"
	"github.com/neocloud/neocloud/internal/testdb"
	"github.com/neocloud/neocloud/placement"
	"github.com/neocloud/neocloud/power"
	"github.com/neocloud/neocloud/sales"
	"github.com/neocloud/neocloud/sqlstore"
	"github.com/neocloud/neocloud/tenant"
)

// site loads a fleet service and a generated one-rack site spec of n
// H100 nodes (not yet applied: the test gives it a power model).
func site(t *testing.T, db *sqlstore.DB, n int) (*fleet.Service, *fleet.Spec) {
	t.Helper()
	fl := fleet.NewService(db, db)
	if err := fl.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	sku, _ := fleet.CatalogSKU("h100-sxm5-80gb")
	var b bytes.Buffer
	o := fleet.ColossusOptions(sku, 8*n)
	o.Fanout = []int{1, 1, 1, n}
	if _, err := fleet.Generate(&b, o); err != nil {
		t.Fatal(err)
	}
	spec, err := fleet.ParseSpec(b.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return fl, spec
}

// The SKUs of firmSite.
const (
	fullSKU   = "h100-sxm5-80gb"
	cappedSKU = "h100-sxm5-80gb-500w" // the same, capped at 500 W per GPU
)

// firmSite applies a site of 8 nodes with 30 kW of firm capacity (one
// 0.03 MW feed, PUE 1.25) and two SKUs, fullSKU and cappedSKU.
func firmSite(t *testing.T, db *sqlstore.DB) (*fleet.Service, fleet.ApplyResult) {
	t.Helper()
	sku, _ := fleet.CatalogSKU(fullSKU)
	fl, spec := site(t, db, 8)
	spec.Site.Power = &fleet.Power{PUE: 1.25, Feeds: []fleet.Feed{{Name: "feed-1", CapacityMW: 0.03}}}
	capped := sku
	capped.Name, capped.PowerCapW = cappedSKU, 500
	spec.SKUs = append(spec.SKUs, capped)
	applied, err := fl.Apply(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	return fl, applied
}

// The power meter derives a site's node energy from the hourly readings;
// the report attributes it to tenants (their records), the operator
// (internal work, idle nodes, shared IT) and unallocated, to the
// watt-hour; a tenant sees its own share only.
func TestMeterAndReport(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		sku, _ := fleet.CatalogSKU("h100-sxm5-80gb")
		fl, spec := site(t, db, 4)
		spec.Site.Power = &fleet.Power{PUE: 1.25, WUELPerKWh: 0.5, SharedITKW: 2, CarbonIntensityGPerKWh: 400,
			Feeds:      []fleet.Feed{{Name: "feed-1", CapacityMW: 0.02}},
			Generation: []fleet.Generation{{Name: "t1", CapacityMW: 0.1, KgPerMWh: fleet.Pollutants{CO2: 550, NOx: 0.4}}},
			Permit:     &fleet.Permit{MW: 0.1, RunningHoursPerYear: 2, TonsPerYear: fleet.Pollutants{NOx: 1}}}
		if _, err := fl.Apply(ctx, spec); err != nil {
			t.Fatal(err)
		}
		nodes := fl.Snapshot.Nodes(fleet.NodeFilter{}, neocloud.Page{Limit: 10})
		if len(nodes) != 4 {
			t.Fatalf("%d nodes", len(nodes))
		}
		ts := tenant.NewService(db)
		acme, _ := ts.Create(ctx, tenant.CreateInput{Name: "acme"})
		beta, _ := ts.Create(ctx, tenant.CreateInput{Name: "beta"})

		// Four hours of January 5th: every GPU draws 1.1 MJ an hour
		// (estimated node energy: 2 MJ per GPU-hour).
		h0 := time.Date(2027, 1, 5, 10, 0, 0, 0, time.UTC)
		var rs []agents.EnergyReading
		for _, n := range nodes {
			for g := range 8 {
				for h := range 5 {
					rs = append(rs, agents.EnergyReading{NodeID: n.ID, GPU: g, At: h0.Add(time.Duration(h)*time.Hour + time.Second), EnergyJ: uint64(h) * 1_100_000, Reason: "hourly"})
				}
			}
		}
		if err := db.PutEnergyReadings(ctx, rs); err != nil {
			t.Fatal(err)
		}
		// Acme's allocation on node 0 for the four hours (its energy of
		// record as the meter would derive it); internal work on node 1.
		var recs []billing.UsageRecord
		for h := range 4 {
			hour := h0.Add(time.Duration(h) * time.Hour)
			for i, who := range []struct{ tenant, class string }{{acme.ID, "lease"}, {beta.ID, "internal"}} {
				recs = append(recs, billing.UsageRecord{ID: billing.RecordID("alc_"+who.class, hour, 0), AllocationID: "alc_" + who.class, Hour: hour, ReservationID: "rsv",
					ContractID: "ctr", TenantID: who.tenant, Class: who.class, SKU: sku.Name, SiteID: nodes[i].SiteID, NodeID: nodes[i].ID, Start: hour, End: hour.Add(time.Hour),
					GPUs: 8, GPUSeconds: 8 * 3600, GPUEnergyJ: 8 * 1_100_000, EnergyJ: 8 * 2_000_000, EnergySource: billing.SourceEstimated})
			}
		}
		if err := db.InTx(ctx, func(ctx context.Context) error { return db.InsertUsageRecords(ctx, recs) }); err != nil {
			t.Fatal(err)
		}

		// An hour no node reading covers: acme's record still counts, and
		// no idle or unallocated energy is made up for it.
		late := recs[0]
		late.Hour, late.Start, late.End = h0.Add(6*time.Hour), h0.Add(6*time.Hour), h0.Add(7*time.Hour)
		late.AllocationID, late.ReservationID = "alc_late", "rsv-late"
		late.ID = billing.RecordID(late.AllocationID, late.Hour, 0)
		if err := db.InTx(ctx, func(ctx context.Context) error { return db.InsertUsageRecords(ctx, []billing.UsageRecord{late}) }); err != nil {
			t.Fatal(err)
		}
		pw := power.NewService(db, db, fl.Snapshot)
		pw.Resolve = ts.Resolve
		if _, err := pw.Meter(ctx, h0.Add(4*time.Hour)); err != nil {
			t.Fatal(err)
		}
		// A pass with nothing new to meter changes nothing.
		if n, err := pw.Meter(ctx, h0.Add(2*time.Hour)); err != nil || n != 0 {
			t.Fatalf("metering earlier hours again: %d %v", n, err)
		}
		if mark, err := db.PowerMeterThrough(ctx); err != nil || !mark.Equal(h0.Add(4*time.Hour)) {
			t.Fatalf("the power meter's mark: %s %v", mark, err)
		}
		hs, err := db.SiteEnergy(ctx, nodes[0].SiteID, h0, h0.Add(4*time.Hour))
		if err != nil || len(hs) != 4 {
			t.Fatalf("site energy: %v %+v", err, hs)
		}
		for _, h := range hs {
			if h.NodeEnergyJ != 4*8*2_000_000 || h.Nodes != 4 || h.EstimatedNodes != 4 {
				t.Fatalf("%s: %d J from %d nodes; want 4 nodes × 8 GPUs × 1.1 MJ ÷ 0.55", h.Hour, h.NodeEnergyJ, h.Nodes)
			}
		}

		op := neocloud.Principal{TokenID: "tok_op", Role: neocloud.RoleOperatorAdmin}
		site, err := pw.Report(ctx, op, "colossus-1", "", "2027-01")
		if err != nil {
			t.Fatal(err)
		}
		// 4 h × (4 nodes × 16 MJ = 17,777.8 Wh + 2 kW shared), and the
		// unmetered hour's record with the shared load.
		if site.Share.ITWh != 4*(17_778+2_000)+4_444+2_000 || site.HoursMetered != 4 {
			t.Fatalf("site IT %d Wh over %d hours", site.Share.ITWh, site.HoursMetered)
		}
		by := map[string]power.Share{}
		var sum int64
		for _, p := range site.Parties {
			by[p.Party] = p
			sum += p.ITWh
		}
		if sum != site.Share.ITWh || by[acme.ID].ITWh != 5*4_444 || by[power.Operator].ITWh != site.Share.ITWh-5*4_444 || len(site.Parties) != 2 {
			t.Fatalf("parties %+v against the site's %d Wh", site.Parties, site.Share.ITWh)
		}
		// 24.7 kW facility on a 20 kW feed: the turbine ran every hour, and
		// a 2-hour permit is forecast to be exceeded.
		if site.GenerationWh == 0 || site.Permit == nil || site.Permit.RunningHours != 4 || len(site.Permit.Exceeded) != 1 {
			t.Fatalf("generation %d Wh, permit %+v", site.GenerationWh, site.Permit)
		}

		// A tenant: its own share only; another's answers not found.
		acmeP := neocloud.Principal{TokenID: "tok_acme", Role: neocloud.RoleTenantMember, TenantID: acme.ID}
		mine, err := pw.Report(ctx, acmeP, "", "", "2027-01")
		if err != nil || mine.Share.ITWh != by[acme.ID].ITWh || mine.Parties != nil || mine.Permit != nil || mine.Hours != nil {
			t.Fatalf("acme's report: %v %+v", err, mine)
		}
		// By reservation: each its own records' energy; together the tenant's.
		if rs := mine.Reservations; len(rs) != 2 || rs[0].ReservationID != "rsv" || rs[1].ReservationID != "rsv-late" || rs[0].ITWh != 4*rs[1].ITWh ||
			rs[0].ITWh+rs[1].ITWh != mine.Share.ITWh || rs[0].FacilityWh+rs[1].FacilityWh != mine.Share.FacilityWh {
			t.Fatalf("acme's reservations %+v against its %+v", mine.Reservations, mine.Share)
		}
		if _, err := pw.Report(ctx, acmeP, "", "beta", "2027-01"); neocloud.ErrorKind(err) != neocloud.KindNotFound {
			t.Fatalf("acme reads beta's report: %v", err)
		}
		if _, err := pw.Report(ctx, op, "", "", "2027-13"); neocloud.ErrorKind(err) != neocloud.KindInvalid {
			t.Fatalf("a bad period: %v", err)
		}
		for _, f := range []string{"json", "csv", "pdf"} {
			b, _, err := power.Export(site, f)
			if err != nil || len(b) < 200 {
				t.Fatalf("%s export: %v (%d bytes)", f, err, len(b))
			}
		}

		// Supply meters: a bad reading refuses them all, naming its field;
		// good ones reconcile against the facility energy accounted for
		// their hours, and a corrected hour replaces the first reading.
		pw.Now = func() time.Time { return h0.Add(30 * 24 * time.Hour) }
		reading := func(feed string, h int, wh int64) power.FeedReading {
			return power.FeedReading{Feed: feed, Hour: h0.Add(time.Duration(h) * time.Hour), Wh: wh}
		}
		for field, bad := range map[string]power.FeedReading{
			"body.readings[1].feed": reading("feed-9", 0, 1),
			"body.readings[1].hour": {Feed: "t1", Hour: h0.Add(time.Minute), Wh: 1},
			"body.readings[1].wh":   reading("t1", 0, -1),
		} {
			_, err := pw.PutFeedReadings(ctx, "colossus-1", power.FeedReadingsInput{Readings: []power.FeedReading{reading("feed-1", 0, 5), bad}})
			if ne, ok := err.(*neocloud.Error); !ok || ne.Kind != neocloud.KindInvalid || ne.Field != field {
				t.Fatalf("a bad reading (%s): %v", field, err)
			}
		}
		if r, err := pw.Report(ctx, op, "colossus-1", "", "2027-01"); err != nil || r.Reconciliation != nil {
			t.Fatalf("refused readings were stored: %v %+v", err, r.Reconciliation)
		}
		var frs []power.FeedReading
		for h := range 4 {
			frs = append(frs, reading("feed-1", h, 20_000), reading("t1", h, 5_000))
		}
		frs[0].Wh = 1 // corrected below
		if n, err := pw.PutFeedReadings(ctx, "colossus-1", power.FeedReadingsInput{Readings: frs}); err != nil || n != 8 {
			t.Fatalf("readings: %d %v", n, err)
		}
		if _, err := pw.PutFeedReadings(ctx, "colossus-1", power.FeedReadingsInput{Readings: []power.FeedReading{reading("feed-1", 0, 20_000)}}); err != nil {
			t.Fatal(err)
		}
		rep, err := pw.Report(ctx, op, "colossus-1", "", "2027-01")
		if err != nil {
			t.Fatal(err)
		}
		var accounted int64
		for _, h := range rep.Hours {
			if h.Hour.Before(h0.Add(4 * time.Hour)) {
				accounted += h.FacilityWh
			}
		}
		if rc := rep.Reconciliation; rc == nil || rc.Hours != 4 || rc.MeteredWh != 100_000 || rc.Meters["t1"] != 20_000 || rc.AccountedWh != accounted ||
			rc.UnallocatedWh != 100_000-accounted || accounted == 0 {
			t.Fatalf("reconciliation %+v, want 100,000 Wh metered against %d accounted", rep.Reconciliation, accounted)
		}

		// Permit warnings up to the meter's mark (January 5th, 14:00): the
		// 2-hour limit is crossed (one warning, one operator event, not
		// raised again); NOx at the rate since January 1st (4.7 kWh of
		// generation an hour for 4 hours at 0.4 kg/MWh: 7.6 g in 4.58
		// days) warns only when it crosses within 30 days: a 30 g limit
		// in about 14 days, a 100 g one in about 58 does not.
		warned := func(want ...string) []power.PermitWarning {
			t.Helper()
			ws, err := pw.CheckPermits(ctx)
			var got []string
			for _, w := range ws {
				got = append(got, w.Limit)
			}
			if err != nil || strings.Join(got, ",") != strings.Join(want, ",") {
				t.Fatalf("permit warnings %v (%v), want %v", got, err, want)
			}
			return ws
		}
		if ws := warned("running_hours"); !ws[0].Exceeded || ws[0].Used != 4 || ws[0].Max != 2 {
			t.Fatalf("running hours: %+v", ws[0])
		}
		warned()
		evs, err := db.Events(ctx, "", 0, 100)
		n := 0
		for _, e := range evs {
			if e.Kind == "power.permit_warning" && e.Subject == nodes[0].SiteID && e.TenantID == "" {
				n++
			}
		}
		if err != nil || n != 1 {
			t.Fatalf("%d permit events (%v)", n, err)
		}
		for _, c := range []struct {
			tons float64
			want []string
		}{{1e-4, nil}, {3e-5, []string{"nox"}}} {
			spec.Site.Power.Permit.TonsPerYear.NOx = c.tons
			if _, err := fl.Apply(ctx, spec); err != nil {
				t.Fatal(err)
			}
			ws := warned(c.want...)
			if len(ws) == 1 {
				mark := h0.Add(4 * time.Hour)
				if w := ws[0]; w.Exceeded || w.CrossesAt == nil || !w.CrossesAt.After(mark.Add(10*24*time.Hour)) || !w.CrossesAt.Before(mark.Add(20*24*time.Hour)) {
					t.Fatalf("NOx at %g t: %+v", c.tons, w)
				}
			}
		}
	})
}

// Committed work beyond firm capacity is refused with the headroom and
// the excess named; spot work and work outside the window do not count.
func TestAdmissionHoldsFirmCapacity(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		// 30 kW firm; a GPU plans at 10.2 kW / 8 × PUE 1.25 = 1.59375 kW.
		fl, applied := firmSite(t, db)
		ts := tenant.NewService(db)
		acme, _ := ts.Create(ctx, tenant.CreateInput{Name: "acme"})
		t0 := time.Date(2027, 3, 1, 0, 0, 0, 0, time.UTC)
		end := t0.Add(10 * time.Hour)
		var rsvs []sales.Reservation
		for i, c := range []placement.Class{placement.ClassReserved, placement.ClassSpot} {
			ct := sales.Contract{ID: neocloud.NewID(sales.PrefixContract), TenantID: acme.ID, Kind: c, SKU: fullSKU, Start: t0, CreatedAt: t0}
			if err := db.InsertContract(ctx, ct); err != nil {
				t.Fatal(err)
			}
			rsvs = append(rsvs, sales.Reservation{ID: neocloud.NewID(sales.PrefixReservation), TenantID: acme.ID, ContractID: ct.ID, State: sales.ReservationScheduled,
				Shape: sales.Shape{Site: applied.SiteID, SKU: fullSKU, GPUs: 8 * (i + 1), Class: c, Start: t0, End: &end}, Version: 1, CreatedAt: t0, UpdatedAt: t0})
		}
		if err := db.InsertReservations(ctx, rsvs); err != nil {
			t.Fatal(err)
		}
		pw := power.NewService(db, db, fl.Snapshot)
		// 8 committed GPUs hold 12.75 kW: 8 more fit (25.5 kW), 16 do not.
		if _, err := pw.Admit(ctx, applied.SiteID, fullSKU, 8, t0.Add(time.Hour), end, nil); err != nil {
			t.Fatalf("8 GPUs beside 8: %v", err)
		}
		_, err := pw.Admit(ctx, applied.SiteID, fullSKU, 16, t0.Add(time.Hour), end, nil)
		if neocloud.ErrorKind(err) != neocloud.KindNoCapacity || !strings.Contains(err.Error(), "power") ||
			!strings.Contains(err.Error(), "0.017 MW of headroom") || !strings.Contains(err.Error(), "0.008 MW over") {
			t.Fatalf("16 GPUs beside 8 on 30 kW: %v", err)
		}
		if _, err := pw.Admit(ctx, applied.SiteID, fullSKU, 16, end, end.Add(time.Hour), nil); err != nil {
			t.Fatalf("16 GPUs after the committed work ends: %v", err)
		}
		// 12 GPUs at 700 W need 19.1 kW; capped at 500 W (8.6 kW a node),
		// 16.1 kW: they fit in the 17.25 kW left.
		if _, err := pw.Admit(ctx, applied.SiteID, fullSKU, 12, t0.Add(time.Hour), end, nil); neocloud.ErrorKind(err) != neocloud.KindNoCapacity {
			t.Fatalf("12 GPUs at full power: %v", err)
		}
		if _, err := pw.Admit(ctx, applied.SiteID, cappedSKU, 12, t0.Add(time.Hour), end, nil); err != nil {
			t.Fatalf("12 power-capped GPUs: %v", err)
		}
	})
}

// A busway's limit holds committed work on its nodes: a quote whose
// every placement overloads a busway is not available, with the power
// domain and its headroom named; a reservation that fits goes through
// and the next one that would overload a busway is refused. The site's
// firm capacity is ample throughout.
func TestAdmissionHoldsPowerDomains(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		fl, _ := site(t, db, 8)
		// Two sus of four nodes, each on a busway of its own.
		var b bytes.Buffer
		sku, _ := fleet.CatalogSKU("h100-sxm5-80gb")
		o := fleet.ColossusOptions(sku, 64)
		o.Fanout = []int{1, 2, 1, 4}
		if _, err := fleet.Generate(&b, o); err != nil {
			t.Fatal(err)
		}
		spec, err := fleet.ParseSpec(b.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		busways := map[string]bool{}
		for _, n := range spec.Nodes {
			busways[n.Hierarchies["power"]] = true
		}
		if len(busways) != 2 {
			t.Fatalf("busways %v, want 2", busways)
		}
		// Each busway carries two nodes at nameplate (10.2 kW) × PUE 1.
		spec.Site.Power = &fleet.Power{PUE: 1, Feeds: []fleet.Feed{{Name: "feed-1", CapacityMW: 1}}}
		for p := range busways {
			spec.Site.Power.Domains = append(spec.Site.Power.Domains, fleet.PowerDomain{Path: p, CapacityKW: 25})
		}
		applied, err := fl.Apply(ctx, spec)
		if err != nil {
			t.Fatal(err)
		}
		ts := tenant.NewService(db)
		acme, _ := ts.Create(ctx, tenant.CreateInput{Name: "acme"})
		pw := power.NewService(db, db, fl.Snapshot)
		sv := sales.NewService(db, db, fl, ts)
		sv.PowerCheck = pw.Admit
		op := neocloud.Principal{TokenID: "tok_op", Role: neocloud.RoleOperatorAdmin}
		if _, err := sv.SetPrice(ctx, op, sales.PriceInput{SKU: sku.Name, Class: placement.ClassReserved, List: "2.50"}); err != nil {
			t.Fatal(err)
		}
		start := time.Now().Add(72 * time.Hour).Truncate(time.Hour)
		shape := func(gpus int, within string) sales.ShapeInput {
			return sales.ShapeInput{Tenant: acme.ID, SKU: sku.Name, GPUs: gpus, Class: placement.ClassReserved, Start: &start, DurationS: 86400, Within: within}
		}
		// Three nodes in one su put three on one busway: 30.6 kW > 25 kW.
		q, err := sv.CreateQuote(ctx, op, sales.QuoteInput{ShapeInput: shape(24, "su"), Hold: true})
		if err != nil || q.Offer.Available || q.Hold || !strings.Contains(q.Offer.Refusal, "power domain feed-1/") ||
			!strings.Contains(q.Offer.Refusal, "limited to 0.025 MW") || !strings.Contains(q.Offer.Refusal, "0.006 MW over") {
			t.Fatalf("24 GPUs within an su: %v %+v", err, q.Offer)
		}
		if q, err = sv.CreateQuote(ctx, op, sales.QuoteInput{ShapeInput: shape(16, "su")}); err != nil || !q.Offer.Available {
			t.Fatalf("16 GPUs within an su: %v %+v", err, q.Offer)
		}
		first, err := sv.Reserve(ctx, op, sales.ReserveInput{ShapeInput: shape(16, "su")})
		if err != nil {
			t.Fatalf("16 GPUs within an su: %v", err)
		}
		nd, _ := fl.Snapshot.Node(first.Nodes[0].NodeID)
		other := ""
		for p := range busways {
			if p != nd.Hierarchies["power"] {
				other = p
			}
		}
		// Two busways, one already at two nodes: three more nodes overload
		// one; two more are placed around the full busway.
		_, err = sv.Reserve(ctx, op, sales.ReserveInput{ShapeInput: shape(24, "")})
		if neocloud.ErrorKind(err) != neocloud.KindNoCapacity || !strings.Contains(err.Error(), "power domain feed-1/") {
			t.Fatalf("24 more GPUs: %v", err)
		}
		second, err := sv.Reserve(ctx, op, sales.ReserveInput{ShapeInput: shape(16, "")})
		if err != nil {
			t.Fatalf("16 more GPUs on the other busway: %v", err)
		}
		for _, n := range second.Nodes {
			nd, _ := fl.Snapshot.Node(n.NodeID)
			if nd.Hierarchies["power"] != other {
				t.Fatalf("the second reservation's node %s is on %s, want %s", nd.Hostname, nd.Hierarchies["power"], other)
			}
		}
		// Not placed yet (nodes nil): only the site's firm capacity counts.
		if _, err := pw.Admit(ctx, applied.SiteID, sku.Name, 24, start, start.Add(time.Hour), nil); err != nil {
			t.Fatalf("the site check: %v", err)
		}
		// After the window, the busways are free again.
		later := start.Add(48 * time.Hour)
		if _, err := sv.Reserve(ctx, op, sales.ReserveInput{ShapeInput: sales.ShapeInput{Tenant: acme.ID, SKU: sku.Name, GPUs: 16, Class: placement.ClassReserved, Start: &later, DurationS: 3600, Within: "su"}}); err != nil {
			t.Fatalf("after the window: %v", err)
		}
	})
}

// A turbine trips: internal work is capped first, then spot, then
// on-demand; committed nodes only down to their contract's floor (a
// lease without one is never capped); then internal, then spot,
// reservations are preempted; every action is applied and recorded.
func TestTurbineTripShedsInClassOrder(t *testing.T) {
	db := testdb.SQLite(t)
	ctx := context.Background()
	fl, spec := site(t, db, 8)
	// 40 kW of grid, two 20 kW turbines: 80 kW firm, 60 kW after a trip.
	spec.Site.Power = &fleet.Power{PUE: 1.0, Feeds: []fleet.Feed{{Name: "feed-1", CapacityMW: 0.04}},
		Generation: []fleet.Generation{{Name: "t1", CapacityMW: 0.02}, {Name: "t2", CapacityMW: 0.02}}}
	if _, err := fl.Apply(ctx, spec); err != nil {
		t.Fatal(err)
	}
	// Eight nodes, GPUs at 5.5 kW a node (10 kW a node): 80 kW.
	work := []power.ShedNode{
		{NodeID: "n-lease-1", ReservationID: "r-lease", Class: "lease", GPUs: 8, GPUDrawW: 5_500},
		{NodeID: "n-lease-2", ReservationID: "r-lease", Class: "lease", GPUs: 8, GPUDrawW: 5_500},
		{NodeID: "n-res", ReservationID: "r-res", Class: "reserved", GPUs: 8, GPUDrawW: 5_500, CapFloorW: 600},
		{NodeID: "n-od", ReservationID: "r-od", Class: "on_demand", GPUs: 8, GPUDrawW: 5_500, CapFloorW: 350},
		{NodeID: "n-spot-1", ReservationID: "r-spot", Class: "spot", GPUs: 8, GPUDrawW: 5_500, CapFloorW: 350},
		{NodeID: "n-spot-2", ReservationID: "r-spot", Class: "spot", GPUs: 8, GPUDrawW: 5_500, CapFloorW: 350},
		{NodeID: "n-int-1", ReservationID: "r-int", Class: "internal", GPUs: 8, GPUDrawW: 5_500, CapFloorW: 350},
		{NodeID: "n-int-2", ReservationID: "r-int", Class: "internal", GPUs: 8, GPUDrawW: 5_500, CapFloorW: 350},
	}
	var capped []string
	var preempted []string
	var recorded []power.ShedPlan
	sh := power.Shedder{
		Nodes:   func(context.Context, string) ([]power.ShedNode, error) { return work, nil },
		Cap:     func(_ context.Context, n string, w int) error { capped = append(capped, n); return nil },
		Preempt: func(_ context.Context, r string) error { preempted = append(preempted, r); return nil },
		Record:  func(_ context.Context, p power.ShedPlan) error { recorded = append(recorded, p); return nil },
	}
	pw := power.NewService(db, db, fl.Snapshot)
	// Losing one turbine: 20 kW to shed; each cap to 350 W saves 2.7 kW.
	plan, err := pw.Shed(ctx, "colossus-1", power.ShedInput{Event: "turbine_trip", Name: "t1"}, sh)
	if err != nil {
		t.Fatal(err)
	}
	if plan.FirmW != 60_000 || int(plan.NeedW) != 20_000 || plan.ShortW != 0 || len(recorded) != 1 {
		t.Fatalf("plan: %s", plan)
	}
	want := "n-int-1,n-int-2,n-spot-1,n-spot-2,n-od,n-res"
	if got := strings.Join(capped, ","); got != want {
		t.Fatalf("capped %s, want %s (class order; the lease never)", got, want)
	}
	if strings.Join(preempted, ",") != "r-int,r-spot" {
		t.Fatalf("preempted %v, want internal then spot", preempted)
	}
	for _, a := range plan.Actions {
		if a.Kind == "cap" && a.Class == "reserved" && a.CapW != 600 {
			t.Fatalf("committed work capped below its contract's floor: %+v", a)
		}
		if a.Kind == "preempt" && (a.Class == "reserved" || a.Class == "lease" || a.Class == "on_demand") {
			t.Fatalf("committed work preempted: %+v", a)
		}
	}
	// A small cap: internal work's caps alone meet it.
	capped, preempted = nil, nil
	if plan, err = pw.Shed(ctx, "colossus-1", power.ShedInput{Event: "cap", CapMW: 0.075}, sh); err != nil || strings.Join(capped, ",") != "n-int-1,n-int-2" || preempted != nil {
		t.Fatalf("a 75 kW cap: %v %s capped %v preempted %v", err, plan, capped, preempted)
	}
	if _, err := pw.Shed(ctx, "colossus-1", power.ShedInput{Event: "turbine_trip", Name: "t9"}, sh); neocloud.ErrorKind(err) != neocloud.KindInvalid {
		t.Fatalf("an unknown turbine: %v", err)
	}
}
