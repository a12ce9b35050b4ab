package power

import (
	"context"
	"sort"
	"strings"

	"github.com/neocloud/neocloud/fleet"
)

// Domain is one power domain's (a feed, a hall on it, a busway) load.
type Domain struct {
	Path  string `json:"path" doc:"e.g. feed-1/h1/b3."`
	Level string `json:"level"`
	Nodes int    `json:"nodes"`
	// CapacityW is the domain's limit where the spec declares one (feeds:
	// their capacity; halls, busways: site.power.domains; 0: none).
	CapacityW int64 `json:"capacity_w,omitempty"`
	// PlanningW: every node at its planning power (nameplate; a
	// power-capped SKU's capped) × PUE.
	PlanningW int64 `json:"planning_w"`
	// CommittedW: nodes of committed work (lease, reserved, on-demand) at
	// planning power × PUE, what admission holds the domain to.
	CommittedW int64 `json:"committed_w"`
	// MeasuredW: the nodes' latest draw (their GPUs' reported power ÷
	// the SKU's GPU share of node power) × PUE.
	MeasuredW int64 `json:"measured_w"`
	// HeadroomW: capacity − committed (where there is a capacity).
	HeadroomW int64 `json:"headroom_w,omitempty"`
}

// SitePower is a site's capacity and load now.
type SitePower struct {
	SiteID      string   `json:"site_id"`
	SiteName    string   `json:"site_name"`
	Modelled    bool     `json:"modelled" doc:"false: the site declares no power model and has no power limit."`
	GridW       int64    `json:"grid_w"`
	GenerationW int64    `json:"generation_w" doc:"On-site generation within the permit."`
	FirmW       int64    `json:"firm_w"`
	PUE         string   `json:"pue"`
	CommittedW  int64    `json:"committed_w" doc:"Committed nodes at planning power × PUE."`
	AllocatedW  int64    `json:"allocated_w" doc:"Every allocated node (spot and internal too) at planning power × PUE."`
	MeasuredW   int64    `json:"measured_w" doc:"The nodes' latest reported draw × PUE."`
	HeadroomW   int64    `json:"headroom_w" doc:"Firm capacity − committed."`
	Domains     []Domain `json:"domains"`
}

// NodeLoad is what site power needs of a node now: its live work's class
// ("" when idle) and its GPUs' latest reported draw.
type NodeLoad struct {
	Class     string
	GPUPowerW float64
}

// Committed reports whether a class's load admission must hold capacity
// for (spot and internal work are shed first).
func Committed(class string) bool {
	return class == "lease" || class == "reserved" || class == "on_demand"
}

// SitePower sums a site's nodes into its power domains.
func (s *Service) SitePower(ctx context.Context, siteRef string, load func(ctx context.Context, siteID string) (map[string]NodeLoad, error)) (SitePower, error) {
	site, err := s.site(siteRef)
	if err != nil {
		return SitePower{}, err
	}
	skus, err := s.Store.SKUs(ctx)
	if err != nil {
		return SitePower{}, err
	}
	nameplate, share := map[string]int64{}, map[string]float64{}
	for _, k := range skus {
		nameplate[k.Name] = int64(k.PlanningNodeW())
		share[k.Name] = k.GPUPowerShare
		if share[k.Name] <= 0 {
			share[k.Name] = 0.55
		}
	}
	loads, err := load(ctx, site.ID)
	if err != nil {
		return SitePower{}, err
	}
	m := NewModel(site.Power)
	out := SitePower{SiteID: site.ID, SiteName: site.Name, Modelled: m != nil}
	if m == nil {
		m = NewModel(&fleet.Power{})
	}
	pue := m.PUE(s.now())
	out.PUE = pue.FloatString(3)
	fac := func(w float64) int64 { f, _ := pue.Float64(); return int64(w*f + 0.5) }
	out.GridW, out.GenerationW, out.FirmW = m.GridW(), m.GenerationW(), m.FirmW()
	levels := []string{"feed", "hall", "busway"}
	if site.Hierarchies != nil && len(site.Hierarchies["power"]) > 0 {
		levels = site.Hierarchies["power"]
	}
	limits := m.DomainLimits()
	for _, f := range m.Feeds {
		if _, ok := limits[f.Name]; !ok {
			limits[f.Name] = f.CapacityW // shown beside the feed's load
		}
	}
	doms := map[string]*Domain{}
	var committed, allocated, measured float64
	s.Fleet.Each(fleet.NodeFilter{SiteID: site.ID}, func(n *fleet.Node) {
		w := float64(nameplate[n.SKU])
		l := loads[n.ID]
		if Committed(l.Class) {
			committed += w
		}
		if l.Class != "" {
			allocated += w
		}
		drawW := l.GPUPowerW / share[n.SKU]
		measured += drawW
		path := n.Hierarchies["power"]
		if path == "" {
			return
		}
		parts := strings.Split(path, "/")
		for i := range parts {
			p := strings.Join(parts[:i+1], "/")
			d := doms[p]
			if d == nil {
				lv := ""
				if i < len(levels) {
					lv = levels[i]
				}
				d = &Domain{Path: p, Level: lv, CapacityW: limits[p]}
				doms[p] = d
			}
			d.Nodes++
			d.PlanningW += int64(w)
			if Committed(l.Class) {
				d.CommittedW += int64(w)
			}
			d.MeasuredW += int64(drawW)
		}
	})
	out.CommittedW, out.AllocatedW, out.MeasuredW = fac(committed), fac(allocated), fac(measured)
	out.HeadroomW = out.FirmW - out.CommittedW
	if !out.Modelled {
		out.HeadroomW = 0
	}
	for _, d := range doms {
		d.PlanningW, d.CommittedW, d.MeasuredW = fac(float64(d.PlanningW)), fac(float64(d.CommittedW)), fac(float64(d.MeasuredW))
		if d.CapacityW > 0 {
			d.HeadroomW = d.CapacityW - d.CommittedW
		}
		out.Domains = append(out.Domains, *d)
	}
	sort.Slice(out.Domains, func(i, j int) bool { return out.Domains[i].Path < out.Domains[j].Path })
	return out, nil
}
