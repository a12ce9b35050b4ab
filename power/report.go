package power

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/fleet"
)

// Method says how a report attributes energy and emissions.
const Method = "IT energy: each tenant's usage records (energy of record); the operator's internal work, idle and spare nodes " +
	"(node energy no record claims) and shared IT load; unallocated: records beyond what the nodes metered. " +
	"Facility = IT × PUE. Dispatch (estimated): grid first up to the feeds' capacity, on-site generation for the rest within the permit. " +
	"Scope 2 (location-based): grid energy of each hour × the feeds' intensity of that hour, shared by facility energy; " +
	"Scope 1: generation's emissions, shared the same way. Water = IT kWh × WUE. " +
	"Reconciliation: supply meters (feeds, generation units) over the hours they reported − the facility energy accounted for them = unallocated."

// Report is a site's (or one tenant's share of a site's) energy, water
// and emissions over a period.
type Report struct {
	SiteID     string    `json:"site_id"`
	SiteName   string    `json:"site_name"`
	Period     string    `json:"period"`
	From       time.Time `json:"from"`
	To         time.Time `json:"to"`
	TenantID   string    `json:"tenant_id,omitempty"`
	TenantName string    `json:"tenant_name,omitempty"`
	// Share is the tenant's, or the whole site's.
	Share        Share         `json:"totals"`
	Parties      []Share       `json:"parties,omitempty" doc:"Site reports: tenants, operator, unallocated; they sum to the totals."`
	GridWh       int64         `json:"grid_wh,omitempty"`
	GenerationWh int64         `json:"generation_wh,omitempty"`
	UnservedWh   int64         `json:"unserved_wh,omitempty"`
	Units        []UnitUse     `json:"units,omitempty"`
	Permit       *PermitStatus `json:"permit,omitempty"`
	// Reservations: tenant reports, the tenant's share by reservation.
	Reservations []ReservationFootprint `json:"reservations,omitempty"`
	// Reconciliation: site reports, where supply meters reported hours.
	Reconciliation *Reconciliation `json:"reconciliation,omitempty"`
	Hours          []HourAccount   `json:"hours,omitempty"`
	HoursMetered   int             `json:"hours_metered" doc:"Hours of the period with node energy metered."`
	Estimated      bool            `json:"estimated" doc:"Figures from the dispatch model (and GPU-estimated node energy) are estimates."`
	Method         string          `json:"method"`
}

// ReservationFootprint is one reservation's part of its tenant's share: its
// IT energy of record (its usage records), and the tenant's facility
// energy, water and emissions in proportion to it.
type ReservationFootprint struct {
	ReservationID string  `json:"reservation_id"`
	ITWh          int64   `json:"it_wh"`
	FacilityWh    int64   `json:"facility_wh"`
	WaterL        float64 `json:"water_l"`
	Scope2G       float64 `json:"scope2_g_co2e"`
	Scope1CO2G    float64 `json:"scope1_g_co2"`
}

// PermitStatus is on-site generation's use of its air permit in the
// permit year (calendar year) up to the report's end.
type PermitStatus struct {
	Year                 int              `json:"year"`
	RunningHours         int              `json:"running_hours" doc:"Hours any unit ran."`
	RunningHoursLimit    float64          `json:"running_hours_limit,omitempty"`
	Tons                 fleet.Pollutants `json:"tons"`
	TonsLimit            fleet.Pollutants `json:"tons_limit"`
	ForecastRunningHours float64          `json:"forecast_running_hours" doc:"At the year-to-date rate, by the year's end."`
	ForecastTons         fleet.Pollutants `json:"forecast_tons"`
	Exceeded             []string         `json:"exceeded,omitempty" doc:"Limits already crossed."`
	ForecastToExceed     []string         `json:"forecast_to_exceed,omitempty" doc:"Limits the forecast crosses by the year's end."`
	// Warnings: limits crossed, or crossed within the site's warning
	// days at the current draw (the last 7 days' rate).
	Warnings []PermitWarning `json:"warnings,omitempty"`
}

// Report accounts a site's period (a month, quarter, half or year); with
// a tenant, only that tenant's share of it (the site mix it was served
// by, not the other parties).
func (s *Service) Report(ctx context.Context, p neocloud.Principal, siteRef, tenantRef, period string) (Report, error) {
	from, to, err := neocloud.ParsePeriod(period)
	if err != nil {
		return Report{}, neocloud.Invalid("query.period", "%v", err)
	}
	site, err := s.site(siteRef)
	if err != nil {
		return Report{}, err
	}
	var tid, tname string
	if p.TenantID != "" && tenantRef == "" {
		tenantRef = p.TenantID
	}
	if tenantRef != "" {
		t, err := s.Resolve(ctx, p, tenantRef)
		if err != nil {
			return Report{}, err
		}
		tid, tname = t.ID, t.Name
	}
	m := NewModel(site.Power)
	if m == nil {
		m = NewModel(&fleet.Power{})
	}
	acc, metered, err := s.account(ctx, m, site.ID, from, to)
	if err != nil {
		return Report{}, err
	}
	r := Report{SiteID: site.ID, SiteName: site.Name, Period: period, From: from, To: to, TenantID: tid, TenantName: tname,
		HoursMetered: metered, Estimated: acc.Estimated, Method: Method}
	if tid != "" {
		r.Share = Share{Party: tid}
		for _, sh := range acc.Parties {
			if sh.Party == tid {
				r.Share = sh
			}
		}
		byRsv, err := s.Store.ReservationEnergy(ctx, site.ID, tid, from, to)
		if err != nil {
			return Report{}, err
		}
		r.Reservations = reservationShares(r.Share, byRsv)
		return r, nil
	}
	r.Share, r.Parties, r.GridWh, r.GenerationWh, r.UnservedWh, r.Units, r.Hours = acc.Site, acc.Parties, acc.GridWh, acc.GenerationWh, acc.UnservedWh, acc.Units, acc.Hours
	rs, err := s.Store.FeedReadings(ctx, site.ID, from, to)
	if err != nil {
		return Report{}, err
	}
	r.Reconciliation = reconcile(rs, acc.Hours)
	if site.Power != nil && site.Power.Permit != nil && len(m.Units) > 0 {
		ps, err := s.permit(ctx, m, site, to)
		if err != nil {
			return Report{}, err
		}
		r.Permit = &ps
	}
	return r, nil
}

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

// account reads a site's hours in [from, to) and accounts them; metered
// is how many hours had node energy.
func (s *Service) account(ctx context.Context, m *Model, siteID string, from, to time.Time) (Account, int, error) {
	nodes, err := s.Store.SiteEnergy(ctx, siteID, from, to)
	if err != nil {
		return Account{}, 0, err
	}
	parties, err := s.Store.PartyEnergy(ctx, siteID, from, to)
	if err != nil {
		return Account{}, 0, err
	}
	byHour := map[int64]*HourIT{}
	hour := func(t time.Time) *HourIT {
		h := byHour[t.Unix()]
		if h == nil {
			h = &HourIT{Hour: t, TenantsJ: map[string]int64{}}
			byHour[t.Unix()] = h
		}
		return h
	}
	metered := 0
	nodeHours := map[int64]bool{}
	for _, n := range nodes {
		nodeHours[n.Hour.Unix()] = true
		h := hour(n.Hour)
		h.NodesJ += n.NodeEnergyJ
		h.Estimated = h.Estimated || n.EstimatedNodes > 0
		metered++
	}
	for _, p := range parties {
		h := hour(p.Hour)
		if p.Internal {
			h.InternalJ += p.EnergyJ
		} else {
			h.TenantsJ[p.TenantID] += p.EnergyJ
		}
	}
	hs := make([]HourIT, 0, len(byHour))
	for _, h := range byHour {
		if !nodeHours[h.Hour.Unix()] {
			// No node was metered that hour (before the power meter ran):
			// the nodes drew what the records claim, no idle or
			// unallocated energy is known.
			h.NodesJ = h.InternalJ
			for _, j := range h.TenantsJ {
				h.NodesJ += j
			}
		}
		hs = append(hs, *h)
	}
	return m.Account(hs), metered, nil
}

// permit sums generation's running hours and emissions from the start of
// the calendar year to `to`, and forecasts the year at that rate.
func (s *Service) permit(ctx context.Context, m *Model, site fleet.Site, to time.Time) (PermitStatus, error) {
	year := to.Add(-time.Nanosecond).Year()
	ys, ye := time.Date(year, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(year+1, 1, 1, 0, 0, 0, 0, time.UTC)
	acc, _, err := s.account(ctx, m, site.ID, ys, to)
	if err != nil {
		return PermitStatus{}, err
	}
	pm := site.Power.Permit
	ps := PermitStatus{Year: year, RunningHoursLimit: pm.RunningHoursPerYear, TonsLimit: pm.TonsPerYear}
	for _, h := range acc.Hours {
		if h.GenerationWh > 0 {
			ps.RunningHours++
		}
	}
	for _, u := range acc.Units {
		ps.Tons = add(ps.Tons, scale(u.EmittedG, 1e-6)) // grams to tonnes
	}
	k := float64(ye.Sub(ys)) / float64(to.Sub(ys))
	ps.ForecastRunningHours = float64(ps.RunningHours) * k
	ps.ForecastTons = scale(ps.Tons, k)
	if pm.RunningHoursPerYear > 0 {
		if float64(ps.RunningHours) > pm.RunningHoursPerYear {
			ps.Exceeded = append(ps.Exceeded, "running_hours")
		} else if ps.ForecastRunningHours > pm.RunningHoursPerYear {
			ps.ForecastToExceed = append(ps.ForecastToExceed, "running_hours")
		}
	}
	lim, got, fc := pm.TonsPerYear.Named(), ps.Tons.Named(), ps.ForecastTons.Named()
	for i := range lim {
		if lim[i].Value <= 0 {
			continue
		}
		switch {
		case got[i].Value > lim[i].Value:
			ps.Exceeded = append(ps.Exceeded, lim[i].Name)
		case fc[i].Value > lim[i].Value:
			ps.ForecastToExceed = append(ps.ForecastToExceed, lim[i].Name)
		}
	}
	ps.Warnings = warnings(site, ps, acc.Hours, ys, ye, to)
	return ps, nil
}

// String is a report's one-line summary.
func (r Report) String() string {
	who := r.SiteName
	if r.TenantName != "" {
		who = r.TenantName + " at " + r.SiteName
	}
	return fmt.Sprintf("%s %s: %d Wh IT, %d Wh facility, %.0f g CO2e (scope 2), %.0f g CO2 (scope 1)", who, r.Period, r.Share.ITWh, r.Share.FacilityWh, r.Share.Scope2G, r.Share.Scope1G.CO2)
}

// reservationShares splits a tenant's share by its reservations' energy of
// record: IT watt-hours each from its own records, the rest in proportion
// (largest remainders keep the facility watt-hours summing to the
// tenant's).
func reservationShares(t Share, joules map[string]int64) []ReservationFootprint {
	var total int64
	ids := make([]string, 0, len(joules))
	for id, j := range joules {
		total += j
		ids = append(ids, id)
	}
	if total <= 0 {
		return nil
	}
	sort.Strings(ids)
	out := make([]ReservationFootprint, len(ids))
	j, wh, fac := make([]int64, len(ids)), make([]int64, len(ids)), make([]int64, len(ids))
	for i, id := range ids {
		j[i] = joules[id]
	}
	split(t.ITWh, j, wh)
	split(t.FacilityWh, j, fac)
	for i, id := range ids {
		k := 0.0
		if t.ITWh > 0 {
			k = float64(wh[i]) / float64(t.ITWh)
		}
		out[i] = ReservationFootprint{ReservationID: id, ITWh: wh[i], FacilityWh: fac[i], WaterL: t.WaterL * k, Scope2G: t.Scope2G * k, Scope1CO2G: t.Scope1G.CO2 * k}
	}
	return out
}
