package power

import (
	"math/big"
	"sort"
	"time"

	"github.com/neocloud/neocloud/billing"
	"github.com/neocloud/neocloud/fleet"
)

// Parties other than tenants.
const (
	// Operator: internal work, idle and spare nodes, and shared IT load
	// no node meters (network, storage, management).
	Operator = "operator"
	// Unallocated: what the records of tenants and internal work claim
	// beyond what the nodes metered (negative), the reconciliation line.
	Unallocated = "unallocated"
)

// HourIT is one hour of a site's IT energy, in joules: every node's input
// energy of record (metered at the node's input, or estimated from its
// GPUs), and the energy of record of each tenant's allocations and of
// internal work in that hour.
type HourIT struct {
	Hour      time.Time
	NodesJ    int64
	TenantsJ  map[string]int64
	InternalJ int64
	// Estimated: some node's energy was estimated from its GPUs.
	Estimated bool
}

// Share is one party's part of a site's energy, water and emissions.
type Share struct {
	Party      string  `json:"party" doc:"A tenant id, operator, or unallocated."`
	ITWh       int64   `json:"it_wh"`
	FacilityWh int64   `json:"facility_wh" doc:"IT energy × PUE."`
	WaterL     float64 `json:"water_l"`
	// Scope2G: location-based, the grid energy of its facility share ×
	// the feeds' hourly intensity (gCO2e).
	Scope2G float64 `json:"scope2_g_co2e"`
	// Scope1G: its share of on-site generation's emissions (grams).
	Scope1G fleet.Pollutants `json:"scope1_g"`
}

// UnitUse is one generation unit's running over a period.
type UnitUse struct {
	Name         string           `json:"name"`
	RunningHours int              `json:"running_hours"`
	GeneratedWh  int64            `json:"generated_wh"`
	FuelMMBtu    float64          `json:"fuel_mmbtu"`
	EmittedG     fleet.Pollutants `json:"emitted_g"`
}

// HourAccount is one hour of the site's dispatch, for charts.
type HourAccount struct {
	Hour         time.Time `json:"hour"`
	ITWh         int64     `json:"it_wh"`
	FacilityWh   int64     `json:"facility_wh"`
	GridWh       int64     `json:"grid_wh"`
	GenerationWh int64     `json:"generation_wh"`
	UnservedWh   int64     `json:"unserved_wh"`
	Scope2G      float64   `json:"scope2_g_co2e"`
}

// Account is a site's energy, water and emissions over hours, by party.
type Account struct {
	Site         Share         `json:"site"`
	Parties      []Share       `json:"parties"`
	GridWh       int64         `json:"grid_wh"`
	GenerationWh int64         `json:"generation_wh"`
	UnservedWh   int64         `json:"unserved_wh" doc:"Load beyond firm capacity in the dispatch model."`
	Units        []UnitUse     `json:"units,omitempty"`
	Hours        []HourAccount `json:"hours"`
	// Estimated: the grid/generation split and everything after it comes
	// from the dispatch model (and some node energy from GPU counters).
	Estimated bool `json:"estimated"`
}

// Account attributes each hour by one key:
//
//   - a tenant: the energy of record of its allocations (usage records);
//   - the operator: internal work, the nodes' energy no record claims
//     (idle and spare nodes, a partly allocated node's other GPUs), and
//     shared IT load (the spec's shared_it_kw);
//   - unallocated: what records claim beyond what the nodes metered.
//
// so that tenants + operator + unallocated = the site's IT energy (nodes
// plus shared), to the watt-hour. Facility energy is each party's IT
// energy × the month's PUE; the site's facility load, hour by hour, is
// dispatched (Dispatch) and each party carries its facility share of the
// grid's emissions (Scope 2, location-based: hourly intensity × hourly
// energy) and of generation's (Scope 1). Water is IT kWh × WUE.
func (m *Model) Account(hours []HourIT) Account {
	out := Account{Estimated: true}
	parties := map[string]*Share{}
	party := func(name string) *Share {
		p := parties[name]
		if p == nil {
			p = &Share{Party: name}
			parties[name] = p
		}
		return p
	}
	units := make([]UnitUse, len(m.Units))
	for i, u := range m.Units {
		units[i].Name = u.Name
	}
	hs := append([]HourIT(nil), hours...)
	sort.Slice(hs, func(i, j int) bool { return hs[i].Hour.Before(hs[j].Hour) })
	for _, h := range hs {
		// IT energy by party, in Wh: each tenant's joules rounded once;
		// the operator's is what the site's rounded total leaves, so the
		// parties sum to it exactly.
		it := map[string]int64{}
		var claimed, tenants int64
		for t, j := range h.TenantsJ {
			it[t] += wh(j)
			tenants += it[t]
			claimed += j
		}
		claimed += h.InternalJ
		site := wh(h.NodesJ) + m.SharedITW
		if h.NodesJ >= claimed {
			it[Operator] = site - tenants
		} else {
			it[Operator] = wh(h.InternalJ) + m.SharedITW
			it[Unallocated] = site - tenants - it[Operator]
		}
		pue := m.PUE(h.Hour)
		// Facility energy: the site's rounded once, each tenant's and the
		// unallocated line's rounded once, the operator's what is left.
		fac := map[string]int64{}
		siteIT := site
		siteFac := roundHalfEven(new(big.Rat).Mul(big.NewRat(site, 1), pue))
		rest := siteFac
		for name, w := range it {
			if name != Operator {
				fac[name] = roundHalfEven(new(big.Rat).Mul(big.NewRat(w, 1), pue))
				rest -= fac[name]
			}
		}
		fac[Operator] = rest
		d := m.Dispatch(siteFac) // an hour's Wh is its average W
		var scope2 float64
		for i, f := range m.Feeds {
			scope2 += float64(d.FeedW[i]) / 1000 * f.CarbonGPerKWh(h.Hour)
		}
		var scope1 fleet.Pollutants
		for i, u := range m.Units {
			if d.UnitW[i] == 0 {
				continue
			}
			mwh := float64(d.UnitW[i]) / 1e6
			units[i].RunningHours++
			units[i].GeneratedWh += d.UnitW[i]
			units[i].FuelMMBtu += mwh * u.HeatRateMMBtuPerMWh
			e := scale(u.KgPerMWh, mwh*1000)
			units[i].EmittedG = add(units[i].EmittedG, e)
			scope1 = add(scope1, e)
		}
		out.GridWh += d.GridW()
		out.GenerationWh += d.GenerationW()
		out.UnservedWh += d.UnservedW
		out.Hours = append(out.Hours, HourAccount{Hour: h.Hour, ITWh: siteIT, FacilityWh: siteFac, GridWh: d.GridW(), GenerationWh: d.GenerationW(),
			UnservedWh: d.UnservedW, Scope2G: scope2})
		for name, w := range it {
			p := party(name)
			p.ITWh += w
			p.FacilityWh += fac[name]
			p.WaterL += float64(w) / 1000 * m.WUELPerKWh
			if siteFac > 0 {
				k := float64(fac[name]) / float64(siteFac)
				p.Scope2G += scope2 * k
				p.Scope1G = add(p.Scope1G, scale(scope1, k))
			}
		}
		out.Site.ITWh += siteIT
		out.Site.FacilityWh += siteFac
		out.Site.WaterL += float64(siteIT) / 1000 * m.WUELPerKWh
		out.Site.Scope2G += scope2
		out.Site.Scope1G = add(out.Site.Scope1G, scope1)
	}
	out.Site.Party = "site"
	for _, p := range parties {
		out.Parties = append(out.Parties, *p)
	}
	sort.Slice(out.Parties, func(i, j int) bool { return out.Parties[i].Party < out.Parties[j].Party })
	out.Units = units
	return out
}

// wh converts joules to watt-hours, half to even.
func wh(j int64) int64 { return roundHalfEven(big.NewRat(j, 3600)) }

func scale(p fleet.Pollutants, k float64) fleet.Pollutants {
	return fleet.Pollutants{CO2: p.CO2 * k, NOx: p.NOx * k, CO: p.CO * k, VOC: p.VOC * k, PM: p.PM * k, Formaldehyde: p.Formaldehyde * k}
}

func add(a, b fleet.Pollutants) fleet.Pollutants {
	return fleet.Pollutants{CO2: a.CO2 + b.CO2, NOx: a.NOx + b.NOx, CO: a.CO + b.CO, VOC: a.VOC + b.VOC, PM: a.PM + b.PM, Formaldehyde: a.Formaldehyde + b.Formaldehyde}
}

// roundHalfEven is billing's one rounding.
var roundHalfEven = billing.RoundHalfEven
