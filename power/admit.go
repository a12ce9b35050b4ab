package power

import (
	"context"
	"fmt"
	"math/big"
	"sort"
	"time"

	"github.com/neocloud/neocloud"
)

// CommittedWork is committed work's GPUs at a site over an interval (a
// reservation of lease, reserved or on-demand work not ended).
type CommittedWork struct {
	SKU        string
	GPUs       int
	Start, End time.Time
}

// Admit refuses committed work the site's power cannot carry: the peak of
// committed work's planning load over [start, end) plus the request's,
// at planning power (each GPU's share of its node's nameplate) × the
// PUE, must stay within firm capacity. The error (no_capacity) names the
// headroom and by how much the request exceeds it. A site with no power
// model has no power limit.
func (s *Service) Admit(ctx context.Context, siteID, sku string, gpus int, start, end time.Time) error {
	site, ok := s.Fleet.Site(siteID)
	if !ok || site.Power == nil {
		return nil
	}
	m := NewModel(site.Power)
	if m.FirmW() <= 0 {
		return nil
	}
	st, ok := s.Store.(interface {
		CommittedWork(ctx context.Context, siteID string, from, to time.Time) ([]CommittedWork, error)
	})
	if !ok {
		return nil
	}
	skus, err := s.Store.SKUs(ctx)
	if err != nil {
		return err
	}
	perGPU := map[string]float64{}
	for _, k := range skus {
		perGPU[k.Name] = float64(k.NodeMaxPowerW) / float64(max(1, k.GPUsPerNode))
	}
	work, err := st.CommittedWork(ctx, siteID, start, end)
	if err != nil {
		return err
	}
	// The peak of committed planning load over the window: a sweep over
	// the work's starts and ends.
	type edge struct {
		at time.Time
		w  float64
	}
	var edges []edge
	for _, w := range work {
		e := float64(w.GPUs) * perGPU[w.SKU]
		edges = append(edges, edge{maxT(w.Start, start), e}, edge{minT(w.End, end), -e})
	}
	sort.Slice(edges, func(i, j int) bool {
		if !edges[i].at.Equal(edges[j].at) {
			return edges[i].at.Before(edges[j].at)
		}
		return edges[i].w < edges[j].w // an end before a start at the same instant
	})
	var cur, peak float64
	for _, e := range edges {
		cur += e.w
		peak = max(peak, cur)
	}
	pue, _ := m.PUE(start).Float64()
	need := float64(gpus) * perGPU[sku] * pue
	peakW := peak * pue
	headroom := float64(m.FirmW()) - peakW
	if need <= headroom {
		return nil
	}
	return &neocloud.Error{Kind: neocloud.KindNoCapacity, Field: "body.gpus", State: "power",
		Message: fmt.Sprintf("power: site %s has %s MW firm (grid %s MW + generation %s MW within its permit); committed work peaks at %s MW in the window, leaving %s MW of headroom; %d GPUs need %s MW at planning power × PUE %s, %s MW over",
			site.Name, mwString(float64(m.FirmW())), mwString(float64(m.GridW())), mwString(float64(m.GenerationW())), mwString(peakW), mwString(max(0, headroom)),
			gpus, mwString(need), m.PUE(start).FloatString(2), mwString(need-max(0, headroom)))}
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
