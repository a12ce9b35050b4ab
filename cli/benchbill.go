package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/agents"
	"github.com/neocloud/neocloud/billing"
	"github.com/neocloud/neocloud/fleet"
	"github.com/neocloud/neocloud/placement"
	"github.com/neocloud/neocloud/pricing"
	"github.com/neocloud/neocloud/sales"
	"github.com/neocloud/neocloud/sqlstore"
	"github.com/neocloud/neocloud/tenant"
)

// BillingBench sizes `neocloud bench billing`.
type BillingBench struct {
	DatabaseURL string // PostgreSQL (an empty database); empty: SQLite in a temporary directory
	GPUs        int    // site size
	Allocations int    // allocations in the month
	Failures    int    // committed nodes failed and replaced during the month
	Tenants     int
	Seed        uint64
	Progress    io.Writer
	// CloseProfile, when set, is where a CPU profile of the close alone
	// is written.
	CloseProfile string
	// Save, when set, keeps a copy of the built month (SQLite) at this
	// path; From closes a copy of such a month instead of building one.
	Save, From string
}

// RunBillingBench builds a month of a site's history in a store — a
// hall leased whole with power pass-through, reserved clusters, on-demand
// and spot work filling the rest with short allocations, failures replaced
// on committed work, the usage records the meter derived hour by hour, the
// price book and the spot series — leaving the month's last hour to meter
// from its energy readings, then times the month's close: metering that
// hour, SLA credits, rating every tenant, numbering and storing the
// invoices. It prints the wall time and the peak RSS of the close.
func RunBillingBench(ctx context.Context, w io.Writer, o BillingBench) error {
	say := func(format string, args ...any) {
		if o.Progress != nil {
			fmt.Fprintf(o.Progress, format+"\n", args...)
		}
	}
	target := o.DatabaseURL
	if target == "" {
		dir, err := os.MkdirTemp("", "neocloud-bench-billing-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		target = filepath.Join(dir, "neocloud.db")
		if o.From != "" {
			if err := copyFile(o.From, target); err != nil {
				return err
			}
		}
	} else if o.From != "" {
		return fmt.Errorf("bench billing: --from closes a saved SQLite month, not a PostgreSQL one")
	}
	db, err := sqlstore.Open(ctx, target)
	if err != nil {
		return err
	}
	defer db.Close()
	store := "sqlite"
	if db.Dialect == sqlstore.Postgres {
		store = "postgres"
	}
	month, end := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2027, 2, 1, 0, 0, 0, 0, time.UTC)
	now := end.Add(30 * time.Minute)
	clock := func() time.Time { return now }
	var m billingMonth
	if o.From != "" {
		b, err := os.ReadFile(o.From + ".json")
		if err != nil {
			return fmt.Errorf("bench billing: %s has no summary beside it: %w", o.From, err)
		}
		if err := json.Unmarshal(b, &m); err != nil {
			return err
		}
		say("month: a copy of %s (%d allocations, %d usage records)", o.From, m.Allocations, m.Records)
	} else {
		if m, err = buildBillingMonth(ctx, db, o, month, end, clock, say); err != nil {
			return err
		}
	}
	if o.Save != "" {
		if err := saveBillingMonth(ctx, db, o.Save, m); err != nil {
			return err
		}
		say("month: saved to %s", o.Save)
	}
	runtime.GC()

	// The close.
	bl := billing.NewService(db, db)
	bl.Now = clock
	bl.Lookback = 0 // the records before the last hour are as the meter left them
	bl.Resolve = func(ctx context.Context, p neocloud.Principal, ref string) (tenant.Tenant, error) {
		return db.Tenant(ctx, ref)
	}
	resetPeakRSS()
	before := readRSS()
	say("closing 2027-01…")
	c0 := time.Now()
	var p billing.Period
	var invs []billing.Invoice
	err = profiled(o.CloseProfile, func() error {
		var err error
		p, invs, err = bl.Close(ctx, neocloud.Principal{TokenID: "bench", Role: neocloud.RoleOperatorAdmin}, "2027-01")
		return err
	})
	if err != nil {
		return err
	}
	took := time.Since(c0)
	lines, credits := 0, 0
	var total int64
	for _, inv := range invs {
		lines += len(inv.Lines)
		total += inv.TotalMicros
		for _, l := range inv.Lines {
			if l.Kind == billing.LineCredit {
				credits++
			}
		}
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "store\t%s\n", store)
	fmt.Fprintf(tw, "site\t%d GPUs (%d nodes)\n", m.Nodes*8, m.Nodes)
	fmt.Fprintf(tw, "month\t%d allocations (%d failures replaced), %d usage records, %d tenants\n", m.Allocations, m.Failures, m.Records, m.Tenants)
	fmt.Fprintf(tw, "close\t%v wall (metering the last hour, SLA credits, rating, %d invoices with %d lines, %d credit lines)\n", took.Round(time.Millisecond), p.Invoices, lines, credits)
	fmt.Fprintf(tw, "peak RSS of the close\t%d MiB (%d MiB before it)\n", peakRSSKiB()/1024, before/1024)
	fmt.Fprintf(tw, "invoiced\t%s USD\n", pricing.FormatMicros(total))
	return tw.Flush()
}

// billingMonth is what the report says of a built month.
type billingMonth struct {
	Nodes, Allocations, Failures, Records, Tenants int
}

// buildBillingMonth writes the month's history into db (see
// RunBillingBench).
func buildBillingMonth(ctx context.Context, db *sqlstore.DB, o BillingBench, month, end time.Time, clock func() time.Time, say func(string, ...any)) (billingMonth, error) {
	var m billingMonth
	rng := rand.New(rand.NewPCG(o.Seed, 11))
	t0 := time.Now()

	// The site.
	sku, _ := fleet.CatalogSKU("h100-sxm5-80gb")
	var spec bytes.Buffer
	gen := fleet.ColossusOptions(sku, o.GPUs)
	if _, err := fleet.Generate(&spec, gen); err != nil {
		return m, err
	}
	parsed, err := fleet.ParseSpec(spec.Bytes())
	if err != nil {
		return m, err
	}
	parsed.Site.Power = &fleet.Power{PUE: 1.25, EnergyPrice: "0.085"}
	fl := fleet.NewService(db, db)
	fl.Now = clock
	if err := fl.Load(ctx); err != nil {
		return m, err
	}
	applied, err := fl.Apply(ctx, parsed)
	if err != nil {
		return m, err
	}
	nodes := fl.Snapshot.Nodes(fleet.NodeFilter{SiteID: applied.SiteID}, neocloud.Page{Limit: 1 << 30})
	say("site: %d nodes applied in %v", len(nodes), time.Since(t0).Round(time.Second))

	// Tenants, prices, the spot series.
	var tenants []tenant.Tenant
	for i := range max(o.Tenants, 22) {
		tn := tenant.Tenant{ID: neocloud.NewID(neocloud.PrefixTenant), Name: fmt.Sprintf("t%03d", i), CreatedAt: month.AddDate(0, -2, 0)}
		if err := db.CreateTenant(ctx, tn); err != nil {
			return m, err
		}
		if err := db.PutProfile(ctx, billing.Profile{TenantID: tn.ID, TaxRate: []string{"0", "8.25", "19"}[i%3]}); err != nil {
			return m, err
		}
		tenants = append(tenants, tn)
	}
	for _, p := range []pricing.Price{
		{ID: neocloud.NewID(sales.PrefixPrice), SKU: sku.Name, Class: "on_demand", EffectiveAt: month.AddDate(0, -1, 0), ListMicros: 3_200_000, Currency: "USD"},
		{ID: neocloud.NewID(sales.PrefixPrice), SKU: sku.Name, Class: "on_demand", EffectiveAt: month.Add(14 * 24 * time.Hour), ListMicros: 2_900_000, Currency: "USD"},
	} {
		if err := db.InsertPrice(ctx, p); err != nil {
			return m, err
		}
	}
	if err := db.InTx(ctx, func(ctx context.Context) error {
		for t := month; t.Before(end); t = t.Add(5 * time.Minute) {
			if err := db.PutSpotPoint(ctx, billing.SpotPoint{SiteID: applied.SiteID, SKU: sku.Name, At: t, RateMicros: 800_000 + rng.Int64N(1_600_000)}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return m, err
	}

	// Contracts and reservations: the first quarter of the nodes leased by
	// tenant 0; 20 reserved clusters of 32 nodes; the rest on-demand (and
	// every third job spot) for tenants 21 on.
	var contracts []sales.Contract
	var rsvs []sales.Reservation
	contract := func(tn tenant.Tenant, kind placement.Class, rate int64, start time.Time, stop *time.Time) sales.Contract {
		c := sales.Contract{ID: neocloud.NewID(sales.PrefixContract), TenantID: tn.ID, Kind: kind, SKU: sku.Name, Start: start, End: stop, CreatedAt: start,
			Terms: sales.Terms{RateMicros: rate, Currency: "USD", BillingSchedule: "monthly_in_advance"}}
		if kind == placement.ClassLease || kind == placement.ClassReserved {
			c.Terms.SLA = sales.SLA{CreditTiers: []sales.CreditTier{{Below: 99.9, Percent: 10}, {Below: 99, Percent: 25}, {Below: 95, Percent: 100}}, CreditCapPercent: 50}
		} else {
			c.Terms.BillingSchedule = "monthly_in_arrears"
		}
		contracts = append(contracts, c)
		return c
	}
	reservation := func(c sales.Contract, gpus int, start time.Time, stop *time.Time) sales.Reservation {
		r := sales.Reservation{ID: neocloud.NewID(sales.PrefixReservation), TenantID: c.TenantID, ContractID: c.ID, State: sales.ReservationEnded,
			Shape:   sales.Shape{Site: applied.SiteID, SKU: sku.Name, GPUs: gpus, Class: c.Kind, Delivery: sales.DeliveryManaged, Start: start, End: stop},
			Version: 1, CreatedAt: start, UpdatedAt: start}
		rsvs = append(rsvs, r)
		return r
	}
	var allocs []sales.Allocation
	alloc := func(r sales.Reservation, n fleet.Node, ready, released time.Time) *sales.Allocation {
		a := sales.Allocation{ID: neocloud.NewID(sales.PrefixAllocation), ReservationID: r.ID, TenantID: r.TenantID, NodeID: n.ID, Hostname: n.Hostname,
			GPUs: []int{0, 1, 2, 3, 4, 5, 6, 7}, State: sales.AllocationEnded, BoundAt: ready, ReadyAt: &ready, ReleasedAt: &released, EndedAt: &released,
			Version: 1, CreatedAt: ready, UpdatedAt: released, DueAt: released}
		allocs = append(allocs, a)
		return &allocs[len(allocs)-1]
	}
	perm := rng.Perm(len(nodes))
	leased := len(nodes) / 4
	leaseEnd := month.AddDate(3, 0, 0)
	lc := contract(tenants[0], placement.ClassLease, 1_850_000, month, &leaseEnd)
	lc.Terms.PowerPassThrough = true
	contracts[len(contracts)-1] = lc
	lr := reservation(lc, leased*8, month, &leaseEnd)
	committed := map[string]sales.Reservation{}
	var committedNodes []int
	for _, i := range perm[:leased] {
		committed[nodes[i].ID] = lr
		committedNodes = append(committedNodes, i)
	}
	next := leased
	for t := 1; t <= 20 && next+32 <= len(nodes)*3/4; t++ {
		stop := end.AddDate(0, 0, 10)
		c := contract(tenants[t], placement.ClassReserved, 2_500_000, month.AddDate(0, 0, -10), &stop)
		r := reservation(c, 256, c.Start, &stop)
		for _, i := range perm[next : next+32] {
			committed[nodes[i].ID] = r
			committedNodes = append(committedNodes, i)
		}
		next += 32
	}
	// Spares: a node in 64 (replacements take turns on them).
	spares := perm[next : next+min(len(perm)-next, max(1, len(nodes)/64))]
	free := perm[next+len(spares):]
	// Committed nodes serve all month; some fail and are replaced from
	// spares after one to four hours.
	failing := map[int]bool{}
	for len(failing) < min(o.Failures, len(committedNodes)) {
		failing[committedNodes[rng.IntN(len(committedNodes))]] = true
	}
	s := 0
	for _, i := range committedNodes {
		r := committed[nodes[i].ID]
		if !failing[i] {
			alloc(r, nodes[i], month, end)
			continue
		}
		at := month.Add(time.Duration(rng.Int64N(int64(end.Sub(month)-6*time.Hour))) + time.Hour)
		alloc(r, nodes[i], month, at)
		first := allocs[len(allocs)-1].ID
		ready := at.Add(time.Duration(1+rng.IntN(3))*time.Hour + time.Duration(rng.IntN(3600))*time.Second)
		sp := nodes[spares[s%len(spares)]]
		s++
		a := alloc(r, sp, ready, end)
		a.Replaces, a.FailedAt = first, &at
	}
	// On-demand and spot jobs fill the free nodes: back to back on each,
	// one to twenty-three hours each, with idle gaps.
	jobs := max(0, o.Allocations-len(allocs))
	var od, spot []sales.Contract
	for _, tn := range tenants[21:] {
		od = append(od, contract(tn, placement.ClassOnDemand, 3_200_000, month.AddDate(0, -2, 0), nil))
		spot = append(spot, contract(tn, placement.ClassSpot, 1_000_000, month.AddDate(0, -2, 0), nil))
	}
	perNode := max(1, (jobs+len(free)-1)/max(1, len(free)))
	span := end.Sub(month) / time.Duration(perNode)
	for j, made := 0, 0; made < jobs && len(free) > 0; j++ {
		n := nodes[free[j%len(free)]]
		slot := j / len(free)
		from := month.Add(time.Duration(slot) * span).Add(time.Duration(rng.Int64N(int64(span / 8))))
		to := from.Add(time.Duration(rng.Int64N(int64(span*7/8-time.Minute))) + time.Minute)
		if !to.Before(end.Add(-time.Second)) {
			to = end.Add(-time.Second)
		}
		c := od[rng.IntN(len(od))]
		if j%3 == 2 {
			c = spot[rng.IntN(len(spot))]
		}
		r := reservation(c, 8, from, &to)
		alloc(r, n, from, to)
		made++
	}
	say("history: %d contracts, %d reservations, %d allocations (%d failures replaced) in %v", len(contracts), len(rsvs), len(allocs), len(failing), time.Since(t0).Round(time.Second))
	for i := range contracts {
		if err := db.InsertContract(ctx, contracts[i]); err != nil {
			return m, err
		}
	}
	for i := 0; i < len(rsvs); i += 20000 {
		if err := db.InsertReservations(ctx, rsvs[i:min(len(rsvs), i+20000)]); err != nil {
			return m, err
		}
	}
	for i := 0; i < len(allocs); i += 20000 {
		if err := db.InsertEndedAllocations(ctx, allocs[i:min(len(allocs), i+20000)]); err != nil {
			return m, err
		}
	}

	// The usage records the meter derived hour by hour, up to the month's
	// last hour, and the energy readings that hour needs.
	last := end.Add(-time.Hour)
	rsvOf := map[string]sales.Reservation{}
	for _, r := range rsvs {
		rsvOf[r.ID] = r
	}
	var batch []billing.UsageRecord
	records := 0
	flush := func() error {
		err := db.InTx(ctx, func(ctx context.Context) error { return db.InsertUsageRecords(ctx, batch) })
		records += len(batch)
		batch = batch[:0]
		return err
	}
	for ai, a := range allocs {
		r := rsvOf[a.ReservationID]
		for h := a.ReadyAt.Truncate(time.Hour); h.Before(minTime(*a.ReleasedAt, last)); h = h.Add(time.Hour) {
			// As the meter does: instants truncated to the second first.
			st, en := maxTime(a.ReadyAt.Truncate(time.Second), h), minTime(a.ReleasedAt.Truncate(time.Second), h.Add(time.Hour))
			secs := int64(en.Sub(st) / time.Second)
			gpuJ := secs * 8 * 560
			batch = append(batch, billing.UsageRecord{ID: billing.RecordID(a.ID, h, 0), AllocationID: a.ID, Hour: h, ReservationID: r.ID, ContractID: r.ContractID,
				TenantID: r.TenantID, Class: string(r.Shape.Class), SKU: sku.Name, SiteID: applied.SiteID, NodeID: a.NodeID, Start: st, End: en,
				GPUs: 8, ReservationGPUs: r.Shape.GPUs, GPUSeconds: secs * 8, GPUEnergyJ: gpuJ, EnergyJ: gpuJ * 100 / 55, EnergySource: billing.SourceEstimated, DerivedAt: h.Add(time.Hour + 5*time.Minute)})
			if len(batch) == 50000 {
				if err := flush(); err != nil {
					return m, err
				}
			}
		}
		if (ai+1)%200000 == 0 {
			say("usage records: %d allocations, %d records (%v)", ai+1, records+len(batch), time.Since(t0).Round(time.Second))
		}
	}
	if err := flush(); err != nil {
		return m, err
	}
	var rs []agents.EnergyReading
	for i, n := range nodes {
		for g := range 8 {
			base := uint64(i*8+g) * 1_000_000
			rs = append(rs, agents.EnergyReading{NodeID: n.ID, GPU: g, At: last.Add(100 * time.Millisecond), EnergyJ: base, Reason: "hourly"},
				agents.EnergyReading{NodeID: n.ID, GPU: g, At: end.Add(100 * time.Millisecond), EnergyJ: base + 2_000_000, Reason: "hourly"})
		}
	}
	for i := 0; i < len(rs); i += 20000 {
		if err := db.PutEnergyReadings(ctx, rs[i:min(len(rs), i+20000)]); err != nil {
			return m, err
		}
	}
	if err := db.InTx(ctx, func(ctx context.Context) error { return db.SetMeterThrough(ctx, last) }); err != nil {
		return m, err
	}
	say("store: %d usage records, %d energy readings for the last hour, in %v", records, len(rs), time.Since(t0).Round(time.Second))

	m = billingMonth{Nodes: len(nodes), Allocations: o.Allocations, Failures: len(failing), Records: records, Tenants: len(tenants)}
	return m, nil
}

// saveBillingMonth writes a copy of a built month's SQLite store to path,
// with its summary beside it (path.json), for --from.
func saveBillingMonth(ctx context.Context, db *sqlstore.DB, path string, m billingMonth) error {
	if db.Dialect != sqlstore.SQLite {
		return fmt.Errorf("bench billing: --save keeps SQLite stores only")
	}
	os.Remove(path)
	if _, err := db.RawDB().ExecContext(ctx, "VACUUM INTO ?", path); err != nil {
		return err
	}
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return os.WriteFile(path+".json", b, 0o644)
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	// Synced, so that writing the copy back does not run beside the close.
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// resetPeakRSS resets the kernel's peak-RSS mark of this process (Linux),
// so that the next reading is the peak since now.
func resetPeakRSS() { os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

func peakRSSKiB() int { return statusKiB("VmHWM:") }
func readRSS() int    { return statusKiB("VmRSS:") }

func statusKiB(field string) int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, field); ok {
			var kib int
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), &kib)
			return kib
		}
	}
	return 0
}
