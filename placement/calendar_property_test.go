package placement

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// TestCalendarProperties admits random requests of random tenants and
// classes over random windows, fails nodes and re-chooses, and checks on
// every GPU: committed work never overlaps, two tenants' committed work is
// always a turnaround apart, preemptible work is placed only where nothing
// else runs, and preemption victims are always of a lower class.
func TestCalendarProperties(t *testing.T) {
	epoch := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, seed := range seeds(40) {
		rng := rand.New(rand.NewPCG(seed, 11))
		s := randomFleet(t, rng)
		c := NewCalendar(s.T)
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("seed %d (replay: NEOCLOUD_SEED=%d go test -run CalendarProperties ./placement): %s", seed, seed, fmt.Sprintf(format, args...))
		}
		classes := []Class{ClassLease, ClassReserved, ClassOnDemand, ClassSpot, ClassInternal}
		tenants := []string{"acme", "beta", "gamma"}
		for step := 0; step < 80; step++ {
			// Every plan leaves the calendar's snapshot as it found it.
			checkCounters(t, c.scratch, fmt.Sprintf("seed %d step %d", seed, step))
			start := epoch.Add(time.Duration(rng.IntN(90*24)) * time.Hour)
			end := start.Add(time.Duration(1+rng.IntN(30*24)) * time.Hour)
			r := Request{GPUs: 8 * (1 + rng.IntN(max(1, s.T.Nodes()/4))), Class: classes[rng.IntN(len(classes))]}
			if rng.IntN(5) == 0 {
				r.GPUs = []int{1, 2, 4}[rng.IntN(3)] // a partition, reserved ahead too
			} else if rng.IntN(3) == 0 {
				r.Within = []string{"pod", "su", "rack"}[rng.IntN(3)]
			}
			tenant := tenants[rng.IntN(len(tenants))]
			switch rng.IntN(6) {
			case 0: // preemption planning for committed work
				if r.Class.Preemptible() {
					continue
				}
				pr, err := c.PlanPreemption(r, tenant, start, end, map[Class]time.Duration{ClassSpot: time.Minute})
				if err != nil {
					fail("step %d: %v", step, err)
				}
				for _, v := range pr.Victims {
					if !v.Class.Preemptible() {
						fail("step %d: victim %s is of class %s", step, v.Reservation, v.Class)
					}
				}
			case 1: // a node fails; future reservations on it are re-chosen
				i := rng.IntN(s.T.Nodes())
				c.Block(s.T.nodes[i].id)
				for _, en := range append([]entry(nil), c.byNode[i]...) {
					if en.rsv != nil && en.rsv.committed() {
						c.Rechoose(en.rsv.ID, s.T.nodes[i].id)
					}
				}
			default:
				id := fmt.Sprintf("c%d", step)
				res, err := c.Admit(id, r, tenant, start, end)
				if err != nil {
					fail("step %d: %v", step, err)
				}
				if res.Plan == nil || !r.Class.Preemptible() {
					break
				}
				// Preemptible work is placed only where nothing else runs.
				for _, a := range res.Plan.Nodes {
					var m uint64
					for _, g := range a.GPUs {
						m |= 1 << g
					}
					for _, en := range c.byNode[a.index] {
						if en.rsv != nil && en.rsv.ID != id && en.mask&m != 0 && en.start < unix(end) && en.end > unix(start) {
							fail("step %d: %s work %s placed over %s on %s", step, r.Class, id, en.rsv.ID, s.T.nodes[a.index].host)
						}
					}
				}
			}
		}
		// Earliest start is exact: it fits there and at no earlier hour.
		for q := 0; q < 3; q++ {
			r := Request{GPUs: 8 * (1 + rng.IntN(max(1, s.T.Nodes()/3))), Class: ClassReserved}
			if rng.IntN(2) == 0 {
				r.Within = []string{"pod", "su"}[rng.IntN(2)]
			}
			from := epoch.Add(time.Duration(rng.IntN(60*24)) * time.Hour)
			d := time.Duration(1+rng.IntN(10*24)) * time.Hour
			adm, err := c.EarliestStart(r, "acme", from, d, 1000)
			if err != nil {
				fail("earliest: %v", err)
			}
			horizon := from.Add(60 * 24 * time.Hour) // when none is found, check two months
			if adm.Plan != nil {
				horizon = adm.Start
				if res, _ := c.Plan(r, "acme", adm.Start, adm.End); res.Plan == nil {
					fail("earliest start %v for %+v does not fit", adm.Start, r)
				}
			}
			for t := from; t.Before(horizon); t = t.Add(time.Hour) {
				if res, _ := c.Plan(r, "acme", t, t.Add(d)); res.Plan != nil {
					fail("%+v fits at %v, before the earliest start %v (found: %v)", r, t, horizon, adm.Plan != nil)
				}
			}
		}
		// Check every node's intervals pairwise.
		gap := int64(c.Turnaround / time.Second)
		for i, es := range c.byNode {
			for a := range es {
				for b := a + 1; b < len(es); b++ {
					x, y := es[a], es[b]
					if x.rsv == nil || y.rsv == nil || x.mask&y.mask == 0 {
						continue // maintenance, or different GPUs of the node
					}
					// Committed work plans around spot and internal work (which is
					// reclaimed), so only committed pairs must keep apart.
					if !x.rsv.committed() || !y.rsv.committed() {
						continue
					}
					g := int64(0)
					if x.rsv.Tenant != y.rsv.Tenant {
						g = gap
					}
					if x.start < y.end+g && y.start < x.end+g {
						fail("node %s: %s (%s, %s) and %s (%s, %s) are closer than %ds", s.T.nodes[i].host,
							x.rsv.ID, x.rsv.Tenant, x.rsv.Class, y.rsv.ID, y.rsv.Tenant, y.rsv.Class, g)
					}
				}
			}
		}
	}
}
