package finance

import (
	"context"
	"math/big"
	"strconv"
	"sync"
	"time"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/billing"
	"github.com/neocloud/neocloud/fleet"
	"github.com/neocloud/neocloud/placement"
	"github.com/neocloud/neocloud/pricing"
	"github.com/neocloud/neocloud/sales"
	"github.com/neocloud/neocloud/tenant"
)

// Allocation is an allocation with its reservation's class.
type Allocation struct {
	sales.Allocation
	Class string
}

// Store is what finance reads.
type Store interface {
	SiteAllocations(ctx context.Context, siteID string, from, to time.Time) ([]Allocation, error)
	// DownSpans: repair tickets and sanitize records by node.
	DownSpans(ctx context.Context, siteID string, from, to time.Time) (map[string][]Interval, error)
	// HealthLog returns the nodes' health changes in [from, to) and each
	// one's last change before from.
	HealthLog(ctx context.Context, nodeIDs []string, from, to time.Time) ([]fleet.HealthChange, error)
	Maintenances(ctx context.Context, siteID string) ([]sales.Maintenance, error)
	// CommittedUntil: when the site's committed work (lease, reserved)
	// running or scheduled after t ends (zero: none).
	CommittedUntil(ctx context.Context, siteID string, t time.Time) (time.Time, error)
	// NodeHourUtilization: the nodes' reported GPU utilization by hour
	// (kept as long as node-minutes are).
	NodeHourUtilization(ctx context.Context, siteID string, from, to time.Time) ([]NodeHour, error)
}

// NodeHour is a node's reports in one hour: the minutes with reports and
// the sum of each minute's mean GPU utilization (percent).
type NodeHour struct {
	NodeID     string
	Hour       time.Time
	Minutes    int64
	UtilPctSum float64
}

// Busy is how busy committed GPU-hours were, where telemetry covers them.
type Busy struct {
	// TelemetryGPUHours: committed (lease, reserved) GPU-hours with GPU
	// reports; BusyGPUHours: those × the GPUs' mean utilization.
	TelemetryGPUHours string `json:"telemetry_gpu_hours"`
	BusyGPUHours      string `json:"busy_gpu_hours"`
	Percent           string `json:"percent"`
}

// Service reports finance from the store and the fleet.
type Service struct {
	Store   Store
	Billing Billing
	Power   Power
	Fleet   *fleet.Snapshot
	Now     func() time.Time
	// Resolve finds a tenant by name or id; Prices reads the price book.
	Resolve func(ctx context.Context, p neocloud.Principal, ref string) (tenant.Tenant, error)
	Prices  func(ctx context.Context) ([]pricing.Price, error)
}

// NewService returns a service over a store and the fleet.
func NewService(st Store, fl *fleet.Snapshot) *Service {
	return &Service{Store: st, Fleet: fl, Now: time.Now}
}

func (s *Service) now() time.Time { return s.Now().UTC() }

// CategoryTotal is one category's GPU-hours over a period.
type CategoryTotal struct {
	Category   string `json:"category"`
	GPUSeconds int64  `json:"gpu_seconds"`
	GPUHours   string `json:"gpu_hours" doc:"Decimal, three places."`
	Percent    string `json:"percent" doc:"Of the fleet's GPU-hours, two places."`
}

// Utilization is a site's GPU-hours by category over a period.
type Utilization struct {
	SiteID   string    `json:"site_id"`
	SiteName string    `json:"site_name"`
	Period   string    `json:"period"`
	From     time.Time `json:"from"`
	To       time.Time `json:"to" doc:"The period's end, or now while it runs."`
	GPUs     int       `json:"gpus" doc:"GPUs in the fleet at the end."`
	// FleetGPUSeconds: every GPU in the fleet, every second; the
	// categories sum to it, and so does each hour's series.
	FleetGPUSeconds int64           `json:"fleet_gpu_seconds"`
	Categories      []CategoryTotal `json:"categories"`
	// SoldPercent: external tenants' share (lease, reserved, on-demand,
	// spot) of the fleet's GPU-hours.
	SoldPercent string `json:"sold_percent"`
	// Hours and Series: GPU-seconds by category (in Categories' order)
	// hour by hour, for charts.
	Hours  []time.Time        `json:"hours"`
	Series map[string][]int64 `json:"series"`
	// CommittedBusy: how busy the committed GPU-hours were, from the GPUs'
	// utilization reports (absent without any).
	CommittedBusy *Busy  `json:"committed_busy,omitempty"`
	Method        string `json:"method"`
}

// UtilizationMethod says how GPU-hours are counted.
const UtilizationMethod = "Each GPU, each second, counts in the first category that holds it: down (failed; in repair, burn-in or sanitizing) > " +
	"maintenance (a planned window) > external tenants by class (lease, reserved, on-demand, spot: from an allocation's binding to its release) > " +
	"internal > spare (a spare node's GPUs) > idle (sellable, unsold). A node counts from when it joined the fleet. " +
	"Unreachable without out-of-band evidence is not down: the work on the node keeps its category."

// site resolves a site (the only one by default).
func (s *Service) site(ref string) (fleet.Site, error) {
	if ref == "" {
		sites := s.Fleet.Sites()
		if len(sites) == 1 {
			return sites[0], nil
		}
		return fleet.Site{}, neocloud.Invalid("query.site", "name the site (%d sites)", len(sites))
	}
	st, ok := s.Fleet.Site(ref)
	if !ok {
		return fleet.Site{}, neocloud.NotFound("site", ref)
	}
	return st, nil
}

// period parses a period and ends it at now while it runs.
func (s *Service) period(p string) (time.Time, time.Time, error) {
	from, to, err := neocloud.ParsePeriod(p)
	if err != nil {
		return from, to, neocloud.Invalid("query.period", "%v", err)
	}
	if now := s.now().Truncate(time.Second); now.Before(to) {
		to = now
	}
	if !from.Before(to) {
		return from, to, neocloud.Invalid("query.period", "%s has not begun", p)
	}
	return from, to, nil
}

// Utilization counts a site's GPU-hours by category over a period.
func (s *Service) Utilization(ctx context.Context, siteRef, period string) (Utilization, error) {
	site, err := s.site(siteRef)
	if err != nil {
		return Utilization{}, err
	}
	from, to, err := s.period(period)
	if err != nil {
		return Utilization{}, err
	}
	nodes, err := s.nodeTimes(ctx, site, from, to)
	if err != nil {
		return Utilization{}, err
	}
	h := Account(nodes, from, to)
	u := Utilization{SiteID: site.ID, SiteName: site.Name, Period: period, From: from, To: to, Hours: h.Hours, Series: map[string][]int64{}, Method: UtilizationMethod}
	for _, n := range nodes {
		if n.Since.Before(to) {
			u.GPUs += n.GPUs
		}
	}
	totals := make([]int64, len(Categories))
	for c, name := range Categories {
		u.Series[name] = h.Series[c]
		for _, v := range h.Series[c] {
			totals[c] += v
		}
		u.FleetGPUSeconds += totals[c]
	}
	var sold int64
	for c, name := range Categories {
		u.Categories = append(u.Categories, CategoryTotal{Category: name, GPUSeconds: totals[c], GPUHours: hours(totals[c]), Percent: percent(totals[c], u.FleetGPUSeconds)})
		if name == Lease || name == Reserved || name == OnDemand || name == Spot {
			sold += totals[c]
		}
	}
	u.SoldPercent = percent(sold, u.FleetGPUSeconds)
	nh, err := s.Store.NodeHourUtilization(ctx, site.ID, from, to)
	if err != nil {
		return Utilization{}, err
	}
	u.CommittedBusy = committedBusy(nodes, nh)
	return u, nil
}

// committedBusy weighs each node-hour's reported utilization by the
// committed GPUs the node held at the hour's middle (none while down).
func committedBusy(nodes []NodeTime, hours []NodeHour) *Busy {
	index := map[string]*NodeTime{}
	for i := range nodes {
		index[nodes[i].NodeID] = &nodes[i]
	}
	var tel, busy float64 // GPU-minutes
	for _, h := range hours {
		n := index[h.NodeID]
		if n == nil || h.Minutes <= 0 {
			continue
		}
		mid := h.Hour.Add(30 * time.Minute)
		in := func(a, b time.Time) bool { return !mid.Before(a) && mid.Before(b) }
		down := false
		for _, d := range n.Down {
			down = down || in(d.From, d.To)
		}
		if down {
			continue
		}
		g := 0
		for _, w := range n.Work {
			if (w.Class == Lease || w.Class == Reserved) && in(w.From, w.To) {
				g += w.GPUs
			}
		}
		g = min(g, n.GPUs)
		if g == 0 {
			continue
		}
		tel += float64(g) * float64(h.Minutes)
		busy += float64(g) * h.UtilPctSum / 100
	}
	if tel == 0 {
		return nil
	}
	f := func(gpuMin float64) string { return new(big.Float).SetFloat64(gpuMin/60).Text('f', 3) }
	return &Busy{TelemetryGPUHours: f(tel), BusyGPUHours: f(busy), Percent: new(big.Float).SetFloat64(100*busy/tel).Text('f', 2)}
}

// nodeTimes gathers every node's spans over [from, to).
func (s *Service) nodeTimes(ctx context.Context, site fleet.Site, from, to time.Time) ([]NodeTime, error) {
	var nodes []NodeTime
	index := map[string]int{}
	var ids []string
	s.Fleet.Each(fleet.NodeFilter{SiteID: site.ID}, func(n *fleet.Node) {
		if n.Lifecycle == fleet.LifecycleRetired {
			return
		}
		index[n.ID] = len(nodes)
		ids = append(ids, n.ID)
		nodes = append(nodes, NodeTime{NodeID: n.ID, GPUs: len(n.GPUs), Spare: n.Spare, Since: n.CreatedAt})
	})
	allocs, err := s.Store.SiteAllocations(ctx, site.ID, from, to)
	if err != nil {
		return nil, err
	}
	for _, a := range allocs {
		i, ok := index[a.NodeID]
		if !ok {
			continue
		}
		end := to
		for _, t := range []*time.Time{a.ReleasedAt, a.EndedAt} {
			if t != nil && t.Before(end) {
				end = *t
			}
		}
		g := len(a.GPUs)
		if g == 0 {
			g = nodes[i].GPUs
		}
		nodes[i].Work = append(nodes[i].Work, Work{From: a.BoundAt, To: end, GPUs: g, Class: a.Class})
	}
	down, err := s.Store.DownSpans(ctx, site.ID, from, to)
	if err != nil {
		return nil, err
	}
	for id, spans := range down {
		if i, ok := index[id]; ok {
			nodes[i].Down = append(nodes[i].Down, spans...)
		}
	}
	log, err := s.Store.HealthLog(ctx, ids, from, to)
	if err != nil {
		return nil, err
	}
	for k, h := range log {
		i, ok := index[h.NodeID]
		if !ok || h.Health != fleet.HealthFailed {
			continue
		}
		end := to
		if k+1 < len(log) && log[k+1].NodeID == h.NodeID {
			end = log[k+1].At
		}
		nodes[i].Down = append(nodes[i].Down, Interval{From: h.At, To: end})
	}
	ms, err := s.Store.Maintenances(ctx, site.ID)
	if err != nil {
		return nil, err
	}
	for _, m := range ms {
		if m.State == "cancelled" {
			continue
		}
		for _, b := range m.Batches {
			for _, id := range b.Nodes {
				if i, ok := index[id]; ok {
					nodes[i].Maintenance = append(nodes[i].Maintenance, Interval{From: b.Start, To: b.End})
				}
			}
		}
	}
	return nodes, nil
}

// hours formats GPU-seconds as GPU-hours with three places.
func hours(sec int64) string { return new(big.Rat).SetFrac64(sec, 3600).FloatString(3) }

// percent formats a share with two places.
func percent(part, whole int64) string {
	if whole == 0 {
		return "0.00"
	}
	return mulDiv(part, 100, whole).FloatString(2)
}

// Billing is what finance reads of billing.
type Billing interface {
	ContractWorks(ctx context.Context) ([]billing.ContractWork, error)
	FinalInvoices(ctx context.Context) ([]billing.Invoice, error)
	OpenDrafts(ctx context.Context, from, to time.Time) ([]billing.Invoice, error)
}

// charges gathers a site's obligations in one currency as of asOf: every
// final invoice's lines; every month of every committed contract's
// take-or-pay schedule not yet invoiced; and what the open months'
// drafts say has been earned (usage as delivered up to asOf). A charge
// whose site is not known from its line, reservation or contract is the
// only site's.
func (s *Service) charges(ctx context.Context, site fleet.Site, currency string, from, asOf time.Time) ([]Charge, error) {
	if s.Billing == nil {
		return nil, nil
	}
	m, _ := ctx.Value(memoKey{}).(*memo)
	key := memoEntry{site.ID, currency, from}
	if m != nil {
		m.mu.Lock()
		defer m.mu.Unlock()
		if cs, ok := m.charges[key]; ok {
			return cs, nil
		}
	}
	cs, err := s.readCharges(ctx, site, currency, from, asOf)
	if m != nil && err == nil {
		m.charges[key] = cs
	}
	return cs, err
}

// memo keeps the books read for one request: a summary, a page of
// figures, reads them once.
type memo struct {
	mu      sync.Mutex
	charges map[memoEntry][]Charge
}

type memoKey struct{}

type memoEntry struct {
	site, currency string
	from           time.Time
}

// WithMemo returns a context in which finance reads the books once for
// every figure asked of it (for one request or one page).
func WithMemo(ctx context.Context) context.Context {
	if _, ok := ctx.Value(memoKey{}).(*memo); ok {
		return ctx
	}
	return context.WithValue(ctx, memoKey{}, &memo{charges: map[memoEntry][]Charge{}})
}

// readCharges is charges without the memo.
func (s *Service) readCharges(ctx context.Context, site fleet.Site, currency string, from, asOf time.Time) ([]Charge, error) {
	works, err := s.Billing.ContractWorks(ctx)
	if err != nil {
		return nil, err
	}
	contractSite, signed, rsvSite := map[string]string{}, map[string]time.Time{}, map[string]string{}
	for _, w := range works {
		signed[w.ID] = w.CreatedAt
		for _, r := range w.Reservations {
			rsvSite[r.ID] = r.Shape.Site
			if contractSite[w.ID] == "" {
				contractSite[w.ID] = r.Shape.Site
			}
		}
	}
	only := len(s.Fleet.Sites()) == 1
	siteOf := func(l billing.Line) string {
		switch {
		case l.SiteID != "":
			return l.SiteID
		case rsvSite[l.ReservationID] != "":
			return rsvSite[l.ReservationID]
		case contractSite[l.ContractID] != "":
			return contractSite[l.ContractID]
		case only:
			return site.ID
		}
		return ""
	}
	byContract := map[string]billing.ContractWork{}
	for _, w := range works {
		byContract[w.ID] = w
	}
	var out []Charge
	add := func(tenantID, key string, l billing.Line, issued *time.Time) {
		if l.AmountMicros == 0 || siteOf(l) != site.ID {
			return
		}
		c := Charge{Key: key, TenantID: tenantID, ContractID: l.ContractID, Class: l.Class, Kind: l.Kind, SiteID: site.ID,
			AmountMicros: l.AmountMicros, ServiceStart: l.ServiceStart, ServiceEnd: l.ServiceEnd, IssuedAt: issued, Signed: signed[l.ContractID]}
		if l.Kind == billing.LineCommitment {
			out = append(out, byCapacity(c, byContract[l.ContractID])...)
			return
		}
		out = append(out, c)
	}
	invs, err := s.Billing.FinalInvoices(ctx)
	if err != nil {
		return nil, err
	}
	billed := map[string]bool{}
	for _, inv := range invs {
		if inv.Currency != currency {
			continue
		}
		issued := inv.IssuedAt
		for _, l := range inv.Lines {
			key := inv.ID + "#" + strconv.Itoa(l.N)
			if l.ChargeKey != "" {
				key = l.ChargeKey
				billed[key] = true
			}
			add(inv.TenantID, key, l, &issued)
		}
	}
	for _, w := range works {
		if w.Terms.Currency != "" && w.Terms.Currency != currency {
			continue
		}
		if w.Kind != placement.ClassLease && w.Kind != placement.ClassReserved {
			continue
		}
		for _, l := range billing.CommitmentSchedule(w) {
			if !billed[l.ChargeKey] {
				add(w.TenantID, l.ChargeKey, l, nil)
			}
		}
	}
	drafts, err := s.Billing.OpenDrafts(ctx, from, asOf)
	if err != nil {
		return nil, err
	}
	for _, inv := range drafts {
		if inv.Currency != currency {
			continue
		}
		for _, l := range inv.Lines {
			if l.Kind == billing.LineCommitment {
				continue // the contract's schedule has it
			}
			if l.Kind != billing.LineCredit && l.ServiceEnd.After(asOf) {
				l.ServiceEnd = asOf // delivered up to now
			}
			add(inv.TenantID, "draft:"+inv.TenantID+":"+inv.Period+"#"+strconv.Itoa(l.N), l, nil)
		}
	}
	return out, nil
}

// Revenue is a site's revenue for a period in one currency (USD by
// default).
func (s *Service) Revenue(ctx context.Context, siteRef, period, currency string) (Revenue, error) {
	u, err := s.Utilization(ctx, siteRef, period)
	if err != nil {
		return Revenue{}, err
	}
	return s.revenue(ctx, u, currency)
}

// revenue is Revenue with the period's utilization already counted (for
// the realized prices).
func (s *Service) revenue(ctx context.Context, u Utilization, currency string) (Revenue, error) {
	site, err := s.site(u.SiteID)
	if err != nil {
		return Revenue{}, err
	}
	period, from, to := u.Period, u.From, u.To
	if currency == "" {
		currency = "USD"
	}
	cs, err := s.charges(ctx, site, currency, from, s.now())
	if err != nil {
		return Revenue{}, err
	}
	secs := map[string]int64{}
	for _, c := range u.Categories {
		secs[c.Category] = c.GPUSeconds
	}
	r := RecognizeRevenue(cs, from, to, secs)
	r.SiteID, r.SiteName, r.Period, r.Currency = site.ID, site.Name, period, currency
	_, end, _ := neocloud.ParsePeriod(period)
	r.Estimated = to.Before(end)
	for _, c := range cs {
		if c.IssuedAt == nil && c.Kind != billing.LineCommitment && c.ServiceStart.Before(to) {
			r.Estimated = true // drafted usage, not yet invoiced
		}
	}
	return r, nil
}

// Backlog is a site's backlog at the end of a period (now while it runs).
func (s *Service) Backlog(ctx context.Context, siteRef, period, currency string) (Backlog, error) {
	site, err := s.site(siteRef)
	if err != nil {
		return Backlog{}, err
	}
	from, to, err := s.period(period)
	if err != nil {
		return Backlog{}, err
	}
	if currency == "" {
		currency = "USD"
	}
	cs, err := s.charges(ctx, site, currency, from, s.now())
	if err != nil {
		return Backlog{}, err
	}
	b := ComputeBacklog(cs, to)
	b.SiteID, b.SiteName, b.Currency = site.ID, site.Name, currency
	return b, nil
}

// MonthRevenue is one month's recognized and invoiced revenue.
type MonthRevenue struct {
	Month      time.Time `json:"month"`
	Recognized int64     `json:"recognized_micros"`
	Invoiced   int64     `json:"invoiced_micros"`
	Deferred   int64     `json:"deferred_micros" doc:"At the month's end."`
	Unbilled   int64     `json:"unbilled_micros" doc:"At the month's end."`
}

// Monthly is a site's revenue month by month over the n months up to the
// current one, from one reading of the books.
func (s *Service) Monthly(ctx context.Context, siteRef, currency string, n int) ([]MonthRevenue, error) {
	site, err := s.site(siteRef)
	if err != nil {
		return nil, err
	}
	if currency == "" {
		currency = "USD"
	}
	now := s.now()
	first := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC).AddDate(0, 1-n, 0)
	cs, err := s.charges(ctx, site, currency, first, now)
	if err != nil {
		return nil, err
	}
	var out []MonthRevenue
	for m := first; m.Before(now); m = m.AddDate(0, 1, 0) {
		end := m.AddDate(0, 1, 0)
		if now.Before(end) {
			end = now
		}
		r := RecognizeRevenue(cs, m, end, nil)
		out = append(out, MonthRevenue{Month: m, Recognized: r.Recognized.Micros, Invoiced: r.Invoiced.Micros, Deferred: r.DeferredEnd.Micros, Unbilled: r.UnbilledEnd.Micros})
	}
	return out, nil
}

// byCapacity splits a month's take-or-pay charge over the spans its
// contract's capacity is committed in that month (a phased lease delivers
// its nodes over weeks), in proportion to GPU-seconds: each part is
// earned evenly over its own span, and the parts sum to the charge.
func byCapacity(c Charge, w billing.ContractWork) []Charge {
	type span struct {
		from, to time.Time
		gs       int64
	}
	var spans []span
	for _, r := range w.Reservations {
		if r.State == sales.ReservationCancelled || r.State == sales.ReservationFailed || r.Shape.End == nil {
			continue
		}
		a, b := r.Shape.Start, *r.Shape.End
		if a.Before(c.ServiceStart) {
			a = c.ServiceStart
		}
		if b.After(c.ServiceEnd) {
			b = c.ServiceEnd
		}
		if b.After(a) {
			spans = append(spans, span{a, b, int64(r.Shape.GPUs) * int64(b.Sub(a)/time.Second)})
		}
	}
	if len(spans) == 0 {
		return []Charge{c}
	}
	var total int64
	for _, sp := range spans {
		total += sp.gs
	}
	parts := make([]Charge, len(spans))
	var given int64
	for i, sp := range spans {
		p := c
		p.Key = c.Key + "#" + strconv.Itoa(i)
		p.ServiceStart, p.ServiceEnd = sp.from, sp.to
		p.AmountMicros = roundHalfEven(mulDiv(c.AmountMicros, sp.gs, total))
		given += p.AmountMicros
		parts[i] = p
	}
	parts[len(parts)-1].AmountMicros += c.AmountMicros - given // the parts sum to the charge
	return parts
}
