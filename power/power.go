// Package power is a site's power model: its firm capacity, how its load
// is dispatched between grid feeds and on-site generation, and the energy,
// water and emissions that follow, attributed to tenants and the operator.
//
// Units are in the names: W and Wh are integers (energy conserves to the
// watt-hour), grams of emissions are float64 (they follow from declared
// factors), MW only where the site spec declares capacity.
package power

import (
	"math"
	"math/big"
	"strconv"
	"time"

	"github.com/neocloud/neocloud/fleet"
)

// Model is a site's declared power model in watts.
type Model struct {
	Feeds []Feed
	Units []Unit
	// PermitW bounds on-site generation (0 with no permit: the units'
	// capacity).
	PermitW    int64
	Permit     *fleet.Permit
	pue        []*big.Rat // one, or twelve (by month)
	WUELPerKWh float64
	SharedITW  int64
	// Domains: limited power domains below the feeds (path → W).
	Domains map[string]int64
}

// Feed is a grid feed.
type Feed struct {
	Name      string
	CapacityW int64
	carbon    [24]float64 // gCO2e/kWh by UTC hour
}

// Unit is an on-site generation unit.
type Unit struct {
	Name                string
	CapacityW           int64
	HeatRateMMBtuPerMWh float64
	KgPerMWh            fleet.Pollutants
}

// NewModel reads a site's declared power model (nil: no model, no limit).
func NewModel(p *fleet.Power) *Model {
	if p == nil {
		return nil
	}
	m := &Model{Permit: p.Permit, WUELPerKWh: p.WUELPerKWh, SharedITW: int64(math.Round(p.SharedITKW * 1e3))}
	for _, f := range p.Feeds {
		fd := Feed{Name: f.Name, CapacityW: mw(f.CapacityMW)}
		for h := range 24 {
			switch {
			case len(f.CarbonProfile) == 24:
				fd.carbon[h] = f.CarbonProfile[h]
			case f.CarbonGPerKWh > 0:
				fd.carbon[h] = f.CarbonGPerKWh
			default:
				fd.carbon[h] = p.CarbonIntensityGPerKWh
			}
		}
		m.Feeds = append(m.Feeds, fd)
	}
	for _, d := range p.Domains {
		if m.Domains == nil {
			m.Domains = map[string]int64{}
		}
		m.Domains[d.Path] = int64(math.Round(d.CapacityKW * 1e3))
	}
	for _, g := range p.Generation {
		m.Units = append(m.Units, Unit{Name: g.Name, CapacityW: mw(g.CapacityMW), HeatRateMMBtuPerMWh: g.HeatRateMMBtuPerMWh, KgPerMWh: g.KgPerMWh})
	}
	if p.Permit != nil && p.Permit.MW > 0 {
		m.PermitW = mw(p.Permit.MW)
	}
	switch {
	case len(p.PUEMonthly) == 12:
		for _, v := range p.PUEMonthly {
			m.pue = append(m.pue, exact(v))
		}
	case p.PUE >= 1:
		m.pue = []*big.Rat{exact(p.PUE)}
	default:
		m.pue = []*big.Rat{big.NewRat(1, 1)}
	}
	return m
}

func mw(v float64) int64 { return int64(math.Round(v * 1e6)) }

// exact is the decimal a spec wrote (1.25 is 5/4, not its binary float).
func exact(v float64) *big.Rat {
	r, ok := new(big.Rat).SetString(strconv.FormatFloat(v, 'f', -1, 64))
	if !ok {
		return big.NewRat(1, 1)
	}
	return r
}

// PUE is the PUE in force at t.
func (m *Model) PUE(t time.Time) *big.Rat {
	if len(m.pue) == 12 {
		return m.pue[t.UTC().Month()-1]
	}
	return m.pue[0]
}

// GridW is the feeds' capacity.
func (m *Model) GridW() int64 {
	var w int64
	for _, f := range m.Feeds {
		w += f.CapacityW
	}
	return w
}

// GenerationW is on-site generation within the permit: the units'
// capacity, at most the permit's MW.
func (m *Model) GenerationW() int64 {
	var w int64
	for _, u := range m.Units {
		w += u.CapacityW
	}
	if m.PermitW > 0 {
		w = min(w, m.PermitW)
	}
	return w
}

// DomainLimits maps each limited power domain below the site (the spec's
// domains: halls, busways, a feed where declared) to its capacity in
// watts. A feed's capacity alone is no domain limit: on-site generation
// serves the site beside the feeds, and the site's firm capacity counts
// both.
func (m *Model) DomainLimits() map[string]int64 {
	out := map[string]int64{}
	for p, w := range m.Domains {
		out[p] = w
	}
	return out
}

// FirmW is the firm capacity: the grid plus generation within the permit.
func (m *Model) FirmW() int64 { return m.GridW() + m.GenerationW() }

// Dispatch is how a facility load is served.
type Dispatch struct {
	FeedW     []int64 // by feed, in the model's order
	UnitW     []int64 // by unit
	UnservedW int64   // load beyond firm capacity: to shed
}

// GridW is what the feeds carry.
func (d Dispatch) GridW() int64 { return sum(d.FeedW) }

// GenerationW is what the units generate.
func (d Dispatch) GenerationW() int64 { return sum(d.UnitW) }

// Dispatch serves a facility load by the one rule: the grid first, up to
// the feeds' capacity, shared by the feeds in proportion to their
// capacity; on-site generation covers the rest, up to the permit, shared
// by the units in proportion to theirs; what is left is unserved.
func (m *Model) Dispatch(loadW int64) Dispatch {
	d := Dispatch{FeedW: make([]int64, len(m.Feeds)), UnitW: make([]int64, len(m.Units))}
	grid := min(loadW, m.GridW())
	caps := make([]int64, len(m.Feeds))
	for i, f := range m.Feeds {
		caps[i] = f.CapacityW
	}
	split(grid, caps, d.FeedW)
	gen := min(loadW-grid, m.GenerationW())
	caps = make([]int64, len(m.Units))
	for i, u := range m.Units {
		caps[i] = u.CapacityW
	}
	split(gen, caps, d.UnitW)
	d.UnservedW = loadW - grid - gen
	return d
}

// split shares total among parts in proportion to weights, by largest
// remainder, so that the parts sum to total exactly.
func split(total int64, weights, out []int64) {
	var w int64
	for _, x := range weights {
		w += x
	}
	if w == 0 || total == 0 {
		return
	}
	type rem struct {
		i int
		r *big.Int
	}
	var given int64
	rems := make([]rem, len(weights))
	for i, x := range weights {
		q, r := new(big.Int).QuoRem(new(big.Int).Mul(big.NewInt(total), big.NewInt(x)), big.NewInt(w), new(big.Int))
		out[i] = q.Int64()
		given += out[i]
		rems[i] = rem{i, r}
	}
	for given < total {
		best := -1
		for k, r := range rems {
			if best < 0 || r.r.Cmp(rems[best].r) > 0 {
				best = k
			}
		}
		out[rems[best].i]++
		given++
		rems[best].r = big.NewInt(-1)
	}
}

func sum(xs []int64) int64 {
	var s int64
	for _, x := range xs {
		s += x
	}
	return s
}

// CarbonGPerKWh is a feed's intensity in the UTC hour of t.
func (f Feed) CarbonGPerKWh(t time.Time) float64 { return f.carbon[t.UTC().Hour()] }
