package finance

import (
	"context"
	"fmt"
	"time"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/fleet"
	"github.com/neocloud/neocloud/power"
	"github.com/neocloud/neocloud/pricing"
)

// Power is what finance reads of the power service.
type Power interface {
	Report(ctx context.Context, p neocloud.Principal, siteRef, tenantRef, period string) (power.Report, error)
}

var reader = neocloud.Principal{TokenID: "finance", Role: neocloud.RoleOperatorViewer}

// Economics is a site's unit economics over a period.
func (s *Service) Economics(ctx context.Context, siteRef, period string) (UnitEconomics, error) {
	site, err := s.site(siteRef)
	if err != nil {
		return UnitEconomics{}, err
	}
	u, err := s.Utilization(ctx, site.ID, period)
	if err != nil {
		return UnitEconomics{}, err
	}
	in, rev, err := s.costInputs(ctx, site, u)
	if err != nil {
		return UnitEconomics{}, err
	}
	e := ComputeEconomics(in)
	e.SiteID, e.SiteName, e.Period, e.Currency = site.ID, site.Name, period, rev.Currency
	return e, nil
}

// costInputs gathers a period's revenue and energy beside its
// utilization.
func (s *Service) costInputs(ctx context.Context, site fleet.Site, u Utilization) (CostInputs, Revenue, error) {
	period := u.Period
	currency := "USD"
	if site.Economics != nil && site.Economics.Currency != "" {
		currency = site.Economics.Currency
	}
	rev, err := s.revenue(ctx, u, currency)
	if err != nil {
		return CostInputs{}, rev, err
	}
	in := CostInputs{Economics: site.Economics, From: rev.From, To: rev.To, RecognizedMicros: rev.Recognized.Micros, GPUSeconds: map[string]int64{}, FleetGPUSeconds: u.FleetGPUSeconds}
	for _, c := range u.Categories {
		in.GPUSeconds[c.Category] = c.GPUSeconds
	}
	for _, r := range rev.ByClass {
		switch r.Key {
		case Lease, Reserved, OnDemand, Spot:
			in.SoldRevenueMicros += r.Recognized.Micros
		}
		switch r.Key {
		case Spot:
			in.SpotRevenueMicros = r.Recognized.Micros
		case OnDemand:
			in.OnDemandRevMicros = r.Recognized.Micros
		}
	}
	s.Fleet.Each(fleet.NodeFilter{SiteID: site.ID}, func(n *fleet.Node) {
		if n.Lifecycle != fleet.LifecycleRetired {
			in.Nodes++
		}
	})
	if m := power.NewModel(site.Power); m != nil {
		in.FirmMW = float64(m.FirmW()) / 1e6
		in.EnergyPriceMicros = micros(site.Power.EnergyPrice)
	}
	if s.Power != nil && site.Power != nil {
		r, err := s.Power.Report(ctx, reader, site.ID, "", period)
		if err != nil {
			return in, rev, err
		}
		in.FacilityWh = r.Share.FacilityWh
	}
	return in, rev, nil
}

// Summary is a site's headline figures for a period.
type Summary struct {
	SiteID      string          `json:"site_id"`
	SiteName    string          `json:"site_name"`
	Period      string          `json:"period"`
	Currency    string          `json:"currency"`
	GPUs        int             `json:"gpus"`
	Utilization []CategoryTotal `json:"utilization"`
	SoldPercent string          `json:"sold_percent"`
	// CommittedBusy: how busy committed GPU-hours were, where GPUs
	// reported ("" without reports).
	CommittedBusy string `json:"committed_busy_percent,omitempty"`
	Recognized    Money  `json:"recognized"`
	Invoiced      Money  `json:"invoiced"`
	Deferred      Money  `json:"deferred" doc:"At the period's end."`
	Unbilled      Money  `json:"unbilled" doc:"At the period's end."`
	Backlog       Money  `json:"backlog" doc:"At the period's end."`
	Top1Revenue   string `json:"top1_revenue_percent"`
	Cost          Money  `json:"cost"`
	GrossMargin   string `json:"gross_margin_percent"`
	CostPerGPUH   string `json:"cost_per_delivered_gpu_hour"`
	RentOrTrain   string `json:"rent_or_train,omitempty"`
	Estimated     bool   `json:"estimated"`
}

// Summary is a site's headline figures for a period.
func (s *Service) Summary(ctx context.Context, siteRef, period string) (Summary, error) {
	ctx = WithMemo(ctx)
	site, err := s.site(siteRef)
	if err != nil {
		return Summary{}, err
	}
	u, err := s.Utilization(ctx, site.ID, period)
	if err != nil {
		return Summary{}, err
	}
	in, rev, err := s.costInputs(ctx, site, u)
	if err != nil {
		return Summary{}, err
	}
	b, err := s.Backlog(ctx, site.ID, period, rev.Currency)
	if err != nil {
		return Summary{}, err
	}
	e := ComputeEconomics(in)
	busy := ""
	if u.CommittedBusy != nil {
		busy = u.CommittedBusy.Percent
	}
	return Summary{CommittedBusy: busy, SiteID: site.ID, SiteName: site.Name, Period: period, Currency: rev.Currency, GPUs: u.GPUs, Utilization: u.Categories, SoldPercent: u.SoldPercent,
		Recognized: rev.Recognized, Invoiced: rev.Invoiced, Deferred: rev.DeferredEnd, Unbilled: rev.UnbilledEnd, Backlog: b.Total, Top1Revenue: b.Top1Revenue.Percent,
		Cost: e.Cost, GrossMargin: e.GrossMarginPercent, CostPerGPUH: e.CostPerDeliveredGPUHr, RentOrTrain: e.RentOrTrain, Estimated: rev.Estimated}, nil
}

// WhatIfInput asks what leasing a whole site would change.
type WhatIfInput struct {
	Site        string `json:"site,omitempty"`
	LeaseTenant string `json:"lease_tenant" minLength:"1"`
	Rate        string `json:"rate_per_gpu_hour" doc:"The lease's price per GPU-hour, e.g. 1.85."`
	DurationS   int64  `json:"duration_s" minimum:"1" doc:"The horizon and the lease's term."`
	Baseline    string `json:"baseline,omitempty" doc:"The period the current mix is read from (default: the last full month)."`
}

// Scenario is one side of a what-if over the horizon.
type Scenario struct {
	Name           string `json:"name"`
	Revenue        Money  `json:"revenue"`
	Cost           Money  `json:"cost"`
	Margin         Money  `json:"margin"`
	MarginPercent  string `json:"margin_percent"`
	SoldPercent    string `json:"sold_percent" doc:"Sold share of the fleet's GPU-hours."`
	Backlog        Money  `json:"backlog" doc:"At the lease's start, with the lease signed."`
	TenantScope2Kg string `json:"tenant_scope2_kg_co2e" doc:"Location-based emissions the tenants carry over the horizon."`
	TenantScope1Kg string `json:"tenant_scope1_kg_co2" doc:"On-site generation's CO2 the tenants carry."`
}

// WhatIf compares the current mix with a whole-site lease.
type WhatIf struct {
	SiteID      string    `json:"site_id"`
	SiteName    string    `json:"site_name"`
	LeaseTenant string    `json:"lease_tenant"`
	Baseline    string    `json:"baseline"`
	Start       time.Time `json:"start" doc:"The earliest start: once the committed work there ends (the calendar)."`
	HorizonS    int64     `json:"horizon_s"`
	LeasedGPUs  int       `json:"leased_gpus" doc:"Every non-spare GPU of the site."`
	Rate        string    `json:"rate_per_gpu_hour"`
	ListRate    string    `json:"list_reserved_rate_per_gpu_hour,omitempty" doc:"The price book's reserved price, for comparison."`
	Discount    string    `json:"discount_percent,omitempty"`
	Current     Scenario  `json:"current"`
	Lease       Scenario  `json:"lease"`
	Method      string    `json:"method"`
}

// WhatIfMethod says how a what-if is made.
const WhatIfMethod = "The current mix runs on over the horizon at the baseline period's hourly rates (recognized revenue, cost, emissions) with its sold share; " +
	"its backlog is today's. The lease takes every non-spare GPU from the earliest start the calendar allows (when the site's committed work ends) " +
	"at the rate for the horizon: revenue rate × GPUs × hours; cost the baseline's fixed cost an hour plus energy at the baseline's energy per delivered " +
	"GPU-hour for every leased GPU; the tenant carries the site's emissions at the baseline's intensity per kWh."

// WhatIf compares the current mix with leasing the whole site.
func (s *Service) WhatIf(ctx context.Context, in WhatIfInput) (WhatIf, error) {
	ctx = WithMemo(ctx)
	site, err := s.site(in.Site)
	if err != nil {
		return WhatIf{}, err
	}
	rate, err := pricing.ParseMicros("query.rate_per_gpu_hour", in.Rate)
	if err != nil {
		return WhatIf{}, err
	}
	if rate <= 0 {
		return WhatIf{}, neocloud.Invalid("query.rate_per_gpu_hour", "must be positive")
	}
	if in.DurationS <= 0 {
		return WhatIf{}, neocloud.Invalid("query.duration_s", "must be positive")
	}
	if in.LeaseTenant == "" {
		return WhatIf{}, neocloud.Invalid("query.lease_tenant", "name the tenant the site would be leased to")
	}
	if s.Resolve != nil {
		t, err := s.Resolve(ctx, reader, in.LeaseTenant)
		if err != nil {
			return WhatIf{}, neocloud.Invalid("query.lease_tenant", "%v", err)
		}
		in.LeaseTenant = t.Name
	}
	now := s.now()
	if in.Baseline == "" {
		in.Baseline = now.AddDate(0, -1, 0).Format("2006-01")
	}
	if _, _, err := neocloud.ParsePeriod(in.Baseline); err != nil {
		return WhatIf{}, neocloud.Invalid("query.baseline", "%v", err)
	}
	bu, err := s.Utilization(ctx, site.ID, in.Baseline)
	if err != nil {
		return WhatIf{}, err
	}
	ci, rev, err := s.costInputs(ctx, site, bu)
	if err != nil {
		return WhatIf{}, err
	}
	cur := ComputeEconomics(ci)
	w := WhatIf{SiteID: site.ID, SiteName: site.Name, LeaseTenant: in.LeaseTenant, Baseline: in.Baseline, HorizonS: in.DurationS, Rate: pricing.FormatMicros(rate), Method: WhatIfMethod}
	var sku string
	s.Fleet.Each(fleet.NodeFilter{SiteID: site.ID}, func(n *fleet.Node) {
		if n.Lifecycle != fleet.LifecycleRetired && !n.Spare {
			w.LeasedGPUs += len(n.GPUs)
			sku = n.SKU
		}
	})
	w.Start = now.Truncate(time.Second)
	if end, err := s.Store.CommittedUntil(ctx, site.ID, now); err != nil {
		return WhatIf{}, err
	} else if end.After(w.Start) {
		w.Start = end
	}
	if s.Prices != nil {
		if book, err := s.Prices(ctx); err == nil {
			if p, ok := pricing.At(book, sku, Reserved, w.Start); ok && p.ListMicros > 0 {
				w.ListRate = pricing.FormatMicros(p.ListMicros)
				w.Discount = signedPercent(p.ListMicros-rate, p.ListMicros)
			}
		}
	}
	baseSecs := int64(rev.To.Sub(rev.From) / time.Second)
	if baseSecs <= 0 {
		return WhatIf{}, neocloud.Invalid("query.baseline", "the baseline has no time in it")
	}
	scale := func(v int64) int64 { return ratMicros(mulDiv(v, in.DurationS, baseSecs)) }
	// Emissions per kWh of the baseline, for both.
	var scope2G, scope1G float64
	if s.Power != nil && site.Power != nil {
		if r, err := s.Power.Report(ctx, reader, site.ID, "", in.Baseline); err == nil {
			scope2G, scope1G = r.Share.Scope2G, r.Share.Scope1G.CO2
		}
	}
	perSec := func(g float64) float64 { return g / float64(baseSecs) }
	g := ci.GPUSeconds
	sold := g[Lease] + g[Reserved] + g[OnDemand] + g[Spot]
	delivered := sold + g[Internal]
	tenantShare := 0.0
	if delivered > 0 {
		tenantShare = float64(sold) / float64(delivered)
	}
	curRev, curCost := scale(rev.Recognized.Micros), scale(cur.Cost.Micros)
	backlog, err := s.Backlog(ctx, site.ID, now.Format("2006-01"), rev.Currency)
	if err != nil {
		return WhatIf{}, err
	}
	w.Current = Scenario{Name: "current mix", Revenue: money(curRev), Cost: money(curCost), Margin: money(curRev - curCost), MarginPercent: signedPercent(curRev-curCost, curRev),
		SoldPercent: cur.SoldUtilization, Backlog: backlog.Total,
		TenantScope2Kg: kg(perSec(scope2G) * float64(in.DurationS) * tenantShare), TenantScope1Kg: kg(perSec(scope1G) * float64(in.DurationS) * tenantShare)}
	// The lease: every leased GPU busy; energy at the baseline's energy
	// per delivered GPU-hour.
	leaseRev := ratMicros(mulDiv(rate*int64(w.LeasedGPUs), in.DurationS, 3600))
	fixed := scale(cur.NodeDepreciation.Micros + cur.FacilityDepreciation.Micros + cur.Opex.Micros)
	var energy int64
	leasedSecs := int64(w.LeasedGPUs) * in.DurationS
	k := 0.0
	if delivered > 0 {
		energy = ratMicros(mulDiv(cur.Energy.Micros, leasedSecs, delivered))
		k = float64(leasedSecs) / float64(delivered)
	}
	leaseCost := fixed + energy
	w.Lease = Scenario{Name: "lease to " + in.LeaseTenant, Revenue: money(leaseRev), Cost: money(leaseCost), Margin: money(leaseRev - leaseCost),
		MarginPercent: signedPercent(leaseRev-leaseCost, leaseRev), Backlog: money(backlog.Total.Micros + leaseRev),
		TenantScope2Kg: kg(scope2G * k), TenantScope1Kg: kg(scope1G * k)}
	w.Lease.SoldPercent = "0.00"
	if ci.FleetGPUSeconds > 0 {
		w.Lease.SoldPercent = mulDiv(int64(w.LeasedGPUs)*baseSecs, 100, ci.FleetGPUSeconds).FloatString(2)
	}
	return w, nil
}

// kg formats grams as kilograms.
func kg(g float64) string { return fmt.Sprintf("%.1f", g/1000) }
