package placement

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// freeMask (the reference for prepare, by scanning one node's intervals)
// returns the GPUs of node i free for committed work of tenant
// over [s, e): no maintenance overlaps them, and every committed interval
// of another tenant on them ends a turnaround before s or starts a
// turnaround after e. Spot and internal work does not count unless all is
// set (for placing preemptible work, which must not overlap other work).
// skip is a reservation to ignore (the one being re-chosen).
func (c *Calendar) freeMask(i int, s, e int64, tenant string, skip *Reservation, all bool) uint64 {
	maxGap := int64(c.Turnaround / time.Second)
	free := c.scratch.full
	for _, en := range c.byNode[i] {
		if en.start >= e+maxGap {
			break
		}
		if en.end+maxGap <= s || (skip != nil && en.rsv == skip) {
			continue
		}
		if en.maintenance() {
			if en.start < e && en.end > s {
				return 0
			}
			continue
		}
		if !en.committed && !all {
			continue
		}
		g := c.gap(en.rsv.Tenant, tenant)
		if en.start < e+g && en.end+g > s {
			if free &^= en.mask; free == 0 {
				return 0
			}
		}
	}
	return free
}

// TestPrepareMatchesReference: the time-indexed prepare leaves exactly the
// GPUs free that scanning each node's intervals finds, for random windows,
// tenants and classes over random calendars.
func TestPrepareMatchesReference(t *testing.T) {
	epoch := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, seed := range seeds(30) {
		rng := rand.New(rand.NewPCG(seed, 13))
		s := randomFleet(t, rng)
		c := NewCalendar(s.T)
		classes := []Class{ClassReserved, ClassOnDemand, ClassSpot, ClassInternal}
		for step := 0; step < 60; step++ {
			start := epoch.Add(time.Duration(rng.IntN(60*24)) * time.Hour)
			r := Request{GPUs: 8 * (1 + rng.IntN(max(1, s.T.Nodes()/4))), Class: classes[rng.IntN(len(classes))]}
			if rng.IntN(4) == 0 {
				r.GPUs = []int{1, 2, 4}[rng.IntN(3)]
			}
			c.Admit(fmt.Sprintf("r%d", step), r, []string{"acme", "beta"}[rng.IntN(2)], start, start.Add(time.Duration(1+rng.IntN(20*24))*time.Hour))
			if step%20 == 0 {
				w := &Window{ID: fmt.Sprintf("w%d", step), Start: start, End: start.Add(4 * time.Hour), Nodes: []string{s.T.nodes[rng.IntN(s.T.Nodes())].id}}
				c.AddWindow(w)
			}
		}
		for q := 0; q < 30; q++ {
			st := epoch.Add(time.Duration(rng.IntN(70*24)) * time.Hour).Unix()
			en := st + int64(1+rng.IntN(15*24))*3600
			tenant := []string{"acme", "beta", "gamma"}[rng.IntN(3)]
			all := rng.IntN(2) == 0
			out := c.prepare(st, en, tenant, nil, all)
			for i := range s.T.nodes {
				want := c.freeMask(i, st, en, tenant, nil, all)
				if c.scratch.why[i] != "" {
					want = 0
				}
				if got := c.scratch.mask[i]; got != want {
					t.Fatalf("seed %d: node %s over [%d, %d) for %s (all %v): prepare leaves %08b free, the reference %08b", seed, s.T.nodes[i].host, st, en, tenant, all, got, want)
				}
			}
			c.restore(out)
		}
	}
}
