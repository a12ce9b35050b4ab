package power

import (
	"context"
	"fmt"
	"math/big"
	"sort"
	"strings"
	"time"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/fleet"
)

// CommittedWork is committed work's GPUs at a site over an interval (a
// reservation of lease, reserved or on-demand work not ended); with a
// node, that reservation's GPUs on the node (0: all of them).
type CommittedWork struct {
	SKU        string
	GPUs       int
	Start, End time.Time
	NodeID     string
}

// Admit refuses committed work the site's power cannot carry: the peak of
// committed work's planning load over [start, end) plus the request's,
// at planning power (each GPU's share of its node's nameplate, capped
// for a power-capped SKU) × the
// PUE, must stay within firm capacity; and, given the nodes placement
// chose (node → GPUs), within each limited power domain they are in (the
// spec's domain limits). The error (no_capacity,
// state power) names the site or domain, its headroom and by how much
// the request exceeds it; where a domain refuses, avoid lists its nodes
// (a placement elsewhere may fit). A site with no power model has no
// power limit.
func (s *Service) Admit(ctx context.Context, siteID, sku string, gpus int, start, end time.Time, nodes map[string]int) (avoid []string, err error) {
	site, ok := s.Fleet.Site(siteID)
	if !ok || site.Power == nil {
		return nil, nil
	}
	m := NewModel(site.Power)
	// The site's committed work is read, and the work admitted written,
	// before another admission at the site reads it (servers sharing a
	// database, reservations of other SKUs).
	if l, ok := s.Store.(interface {
		LockSitePower(ctx context.Context, siteID string) error
	}); ok {
		if err := l.LockSitePower(ctx, siteID); err != nil {
			return nil, err
		}
	}
	st, ok := s.Store.(interface {
		CommittedWork(ctx context.Context, siteID string, from, to time.Time) ([]CommittedWork, error)
		CommittedNodeWork(ctx context.Context, siteID string, from, to time.Time) ([]CommittedWork, error)
	})
	if !ok {
		return nil, nil
	}
	skus, err := s.Store.SKUs(ctx)
	if err != nil {
		return nil, err
	}
	perGPU, perNode := map[string]float64{}, map[string]int{}
	for _, k := range skus {
		perGPU[k.Name] = float64(k.PlanningNodeW()) / float64(max(1, k.GPUsPerNode))
		perNode[k.Name] = k.GPUsPerNode
	}
	pue, _ := m.PUE(start).Float64()
	refuse := func(what string, capW int64, peakW, needW float64) error {
		headroom := float64(capW) - peakW
		return &neocloud.Error{Kind: neocloud.KindNoCapacity, Field: "body.gpus", State: "power",
			Message: fmt.Sprintf("power: %s; committed work peaks at %s MW in the window, leaving %s MW of headroom; %d GPUs need %s MW at planning power × PUE %s, %s MW over",
				what, mwString(peakW), mwString(max(0, headroom)), gpus, mwString(needW), m.PUE(start).FloatString(2), mwString(needW-max(0, headroom)))}
	}
	if m.FirmW() > 0 {
		work, err := st.CommittedWork(ctx, siteID, start, end)
		if err != nil {
			return nil, err
		}
		var ws []window
		for _, w := range work {
			ws = append(ws, window{w.Start, w.End, float64(w.GPUs) * perGPU[w.SKU]})
		}
		peakW := peak(ws, start, end) * pue
		if need := float64(gpus) * perGPU[sku] * pue; need > float64(m.FirmW())-peakW {
			return nil, refuse(fmt.Sprintf("site %s has %s MW firm (grid %s MW + generation %s MW within its permit)",
				site.Name, mwString(float64(m.FirmW())), mwString(float64(m.GridW())), mwString(float64(m.GenerationW()))), m.FirmW(), peakW, need)
		}
	}
	limits := m.DomainLimits()
	if len(nodes) == 0 || len(limits) == 0 {
		return nil, nil
	}
	// The limited domains the request's nodes are in, and its load there.
	need := map[string]float64{}
	for id, g := range nodes {
		if n, ok := s.Fleet.Node(id); ok {
			for _, d := range domainsOf(n.Hierarchies["power"], limits) {
				need[d] += float64(g) * perGPU[sku]
			}
		}
	}
	if len(need) == 0 {
		return nil, nil
	}
	work, err := st.CommittedNodeWork(ctx, siteID, start, end)
	if err != nil {
		return nil, err
	}
	in := map[string][]window{}
	for _, w := range work {
		n, ok := s.Fleet.Node(w.NodeID)
		if !ok {
			continue
		}
		g := w.GPUs
		if g == 0 {
			g = perNode[w.SKU]
		}
		for _, d := range domainsOf(n.Hierarchies["power"], limits) {
			if _, ok := need[d]; ok {
				in[d] = append(in[d], window{w.Start, w.End, float64(g) * perGPU[w.SKU]})
			}
		}
	}
	paths := make([]string, 0, len(need))
	for d := range need {
		paths = append(paths, d)
	}
	sort.Strings(paths) // the outermost domain over its limit is named
	for _, d := range paths {
		peakW := peak(in[d], start, end) * pue
		if n := need[d] * pue; n > float64(limits[d])-peakW {
			s.Fleet.Each(fleet.NodeFilter{SiteID: siteID}, func(n *fleet.Node) {
				if p := n.Hierarchies["power"]; p == d || strings.HasPrefix(p, d+"/") {
					avoid = append(avoid, n.ID)
				}
			})
			return avoid, refuse(fmt.Sprintf("power domain %s of site %s is limited to %s MW", d, site.Name, mwString(float64(limits[d]))), limits[d], peakW, n)
		}
	}
	return nil, nil
}

// domainsOf lists the limited domains a power path is in (itself and
// its ancestors).
func domainsOf(path string, limits map[string]int64) []string {
	var out []string
	for i := 0; i <= len(path); i++ {
		if i == len(path) || path[i] == '/' {
			if _, ok := limits[path[:i]]; ok && i > 0 {
				out = append(out, path[:i])
			}
		}
	}
	return out
}

// window is load over [start, end).
type window struct {
	start, end time.Time
	w          float64
}

// peak is the most load the windows hold at once within [start, end): a
// sweep over their starts and ends.
func peak(ws []window, start, end time.Time) float64 {
	type edge struct {
		at time.Time
		w  float64
	}
	edges := make([]edge, 0, 2*len(ws))
	for _, w := range ws {
		s, e := maxT(w.start, start), minT(w.end, end)
		if !s.Before(e) {
			continue
		}
		edges = append(edges, edge{s, w.w}, edge{e, -w.w})
	}
	sort.Slice(edges, func(i, j int) bool {
		if !edges[i].at.Equal(edges[j].at) {
			return edges[i].at.Before(edges[j].at)
		}
		return edges[i].w < edges[j].w // an end before a start at the same instant
	})
	var cur, top float64
	for _, e := range edges {
		cur += e.w
		top = max(top, cur)
	}
	return top
}

func mwString(w float64) string { return new(big.Float).SetFloat64(w/1e6).Text('f', 3) }

func maxT(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minT(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
