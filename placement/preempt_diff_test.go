package placement

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/neocloud/neocloud/fleet"
)

// TestLazyPreemptionMatchesEager plans preemptions on random calendars of
// spot and internal work (elastic or not) and committed work, once with
// held nodes marked only inside the candidate domain and once with all of
// them marked: plans, scores and victims must be the same. The lazy plans
// gather and evaluate on three workers, the eager ones on one.
func TestLazyPreemptionMatchesEager(t *testing.T) {
	epoch := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	for seed := uint64(1); seed <= 40; seed++ {
		rng := rand.New(rand.NewPCG(seed, 5))
		c := preemptCalendar(t, seed, rng, epoch)
		notice := map[Class]time.Duration{ClassSpot: 2 * time.Minute, ClassInternal: 30 * time.Minute}
		planned := 0
		defer func() {
			if seed == 40 && planned == 0 {
				t.Error("no query needed a plan: the test does not exercise preemption")
			}
		}()
		for q := 0; q < 10; q++ {
			r := Request{GPUs: 8 * (1 + rng.IntN(16)), Class: ClassReserved, Within: []string{"rack", "su", "pod", "hall"}[rng.IntN(4)]}
			now := epoch.Add(time.Duration(rng.IntN(72)) * time.Hour)
			end := now.Add(time.Duration(1+rng.IntN(48)) * time.Hour)
			c.eager, c.workers = false, 3
			lazy, err1 := c.PlanPreemption(r, "acme", now, end, notice)
			c.eager, c.workers = true, 1
			eager, err2 := c.PlanPreemption(r, "acme", now, end, notice)
			c.eager, c.workers = false, 0
			if fmt.Sprint(err1) != fmt.Sprint(err2) {
				t.Fatalf("seed %d: errors differ: %v vs %v", seed, err1, err2)
			}
			checkCounters(t, c.scratch, fmt.Sprintf("seed %d query %d", seed, q))
			if diff := cmp.Diff(eager, lazy, cmpopts.IgnoreUnexported(Assignment{})); diff != "" {
				t.Fatalf("seed %d query %d (%+v): lazy differs from eager (-eager +lazy):\n%s", seed, q, r, diff)
			}
			// The plan never takes a node committed work holds then.
			if lazy.Plan != nil {
				for _, a := range lazy.Plan.Nodes {
					i, _ := c.T.NodeIndex(a.NodeID)
					if c.freeMask(i, unix(now), unix(end), "acme", nil, false) != c.scratch.full {
						t.Fatalf("seed %d query %d: the plan takes %s, busy with committed work", seed, q, a.NodeID)
					}
				}
				planned++
			}
		}
	}
}

// preemptCalendar builds a random calendar of spot and internal work
// (either elastic or not) and committed work over two days from epoch. Odd seeds
// use a fleet of 256 nodes, where gathering splits the nodes among three
// workers (at multiples of 64); every third seed's fleet has a spare per
// rack.
func preemptCalendar(t *testing.T, seed uint64, rng *rand.Rand, epoch time.Time) *Calendar {
	t.Helper()
	sku, _ := fleet.CatalogSKU("h100-sxm5-80gb")
	gpus, rsvs := 512, 30
	if seed%2 == 1 {
		gpus, rsvs = 2048, 120
	}
	o := fleet.GenerateOptions{Site: "test", Region: "lab", Timezone: "UTC", SKU: sku, GPUs: gpus,
		Levels: []string{"hall", "pod", "su", "rack"}, Fanout: []int{2, 2, 2, 4}}
	if seed%3 == 0 {
		o.SpareLevel, o.Spares = "rack", 1
	}
	site, nodes := testFleet(t, o)
	c := NewCalendar(Build(site, sku, nodes))
	if cuts := c.T.cuts(3, c.T.level("su")); seed%2 == 1 && (len(cuts) != 4 || cuts[1] == 0 || cuts[2] == cuts[1] || cuts[3] == cuts[2]) {
		t.Fatalf("cuts %v: the 256-node fleet is not split among 3 workers", cuts)
	}
	for i := 0; i < rsvs; i++ {
		r := Request{GPUs: 8 * (1 + rng.IntN(6)), Class: []Class{ClassSpot, ClassInternal, ClassReserved}[rng.IntN(3)], Within: []string{"", "rack", "su"}[rng.IntN(3)]}
		st := epoch.Add(time.Duration(rng.IntN(48)) * time.Hour)
		id := fmt.Sprintf("w%d", i)
		res, _ := c.Admit(id, r, []string{"a", "b"}[rng.IntN(2)], st, st.Add(time.Duration(1+rng.IntN(96))*time.Hour))
		if res.Plan != nil && r.Class.Preemptible() && rng.IntN(2) == 0 {
			if err := c.SetElastic(id, max(1, len(res.Plan.Nodes)/2), "rack"); err != nil {
				t.Fatal(err)
			}
		}
	}
	return c
}

// TestGatherGroups checks what gather lists per domain against a plain
// reading of the calendar: per domain of the level, in holder order, each
// holder running in the window with its whole-free non-spare nodes there;
// and the reclaim nodes counted per leaf domain once each. Node by node on
// one worker and on three, and by runs.
func TestGatherGroups(t *testing.T) {
	epoch := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	for seed := uint64(1); seed <= 20; seed++ {
		rng := rand.New(rand.NewPCG(seed, 9))
		c := preemptCalendar(t, seed, rng, epoch)
		// Spot work across each place the workers' ranges may meet, over
		// other work there: holders in two ranges, nodes with two holders.
		for l := range c.T.Levels {
			for _, cut := range c.T.cuts(3, l) {
				if cut < 2 || cut+1 >= len(c.T.nodes) {
					continue
				}
				id := fmt.Sprintf("across-%d-%d", l, cut)
				cm := &Reservation{ID: id, Tenant: "owner", Class: ClassSpot, Start: epoch, End: epoch.Add(72 * time.Hour),
					Nodes: []string{c.T.nodes[cut].id, c.T.nodes[cut-2].id, c.T.nodes[cut+1].id}}
				if err := c.Hold(cm); err != nil {
					t.Fatal(err)
				}
			}
		}
		for q := 0; q < 8; q++ {
			s := unix(epoch.Add(time.Duration(rng.IntN(72)) * time.Hour))
			e := s + int64(1+rng.IntN(48))*3600
			level := rng.IntN(len(c.T.Levels)+1) - 1
			out := c.prepare(s, e, "acme", nil)
			if c.held == nil {
				c.held, c.reclaim = newBitset(len(c.T.nodes)), newBitset(len(c.T.nodes))
			}
			doms := []domain{{lo: 0, hi: int32(len(c.T.nodes))}}
			if level >= 0 {
				doms = c.T.dom[level]
			}
			// The plain reading.
			var want []string
			leaf := make([]int32, len(c.T.dom[len(c.T.Levels)-1]))
			seen := map[int32]bool{}
			for di, d := range doms {
				for h := range c.work.recs {
					hd := &c.work.recs[h]
					if hd.s >= e || hd.e <= s {
						continue
					}
					var ns []int32
					for _, i := range hd.cm.idx {
						if int32(i) >= d.lo && int32(i) < d.hi && c.scratch.mask[i] == c.scratch.full && !c.T.spare[i] {
							ns = append(ns, int32(i))
							if !seen[int32(i)] {
								seen[int32(i)] = true
								leaf[c.T.nodes[i].anc[len(c.T.Levels)-1]]++
							}
						}
					}
					if len(ns) > 0 {
						slices.Sort(ns)
						want = append(want, fmt.Sprintf("domain %d: %s %v", di, hd.cm.ID, ns))
					}
				}
			}
			for _, workers := range []int{1, 3, 0} {
				c.workers = workers
				heldFree := c.clearHeldFree()
				if workers > 0 {
					c.gather(s, e, level)
				} else if level >= 0 {
					c.gatherRuns(s, e, level)
				} else {
					continue // runs are for a level
				}
				var got []string
				for di := range doms {
					for _, g := range c.groups[c.groupAt[di]:c.groupAt[di+1]] {
						got = append(got, fmt.Sprintf("domain %d: %s %v", di, c.work.recs[g.h].cm.ID, c.nodes(g)))
					}
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Fatalf("seed %d query %d (level %d, %d workers, 0: runs): groups differ (-want +got):\n%s", seed, q, level, workers, diff)
				}
				if !slices.Equal(leaf, heldFree[len(c.T.Levels)-1]) {
					t.Fatalf("seed %d query %d (%d workers, 0: runs): reclaim nodes per leaf %v, want %v", seed, q, workers, heldFree[len(c.T.Levels)-1], leaf)
				}
				for _, i := range c.heldNodes {
					c.held.clear(i)
				}
				clear(c.reclaim)
			}
			c.workers = 0
			c.restore(out)
		}
	}
}

// TestPreemptionBounds checks the lower bounds that order the lazy path's
// evaluation against what evaluate finds in every domain: a domain left
// out finds nothing, and no bound exceeds the cost found. Some bounds must
// be met exactly (else the check could not fail).
func TestPreemptionBounds(t *testing.T) {
	epoch := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	exact := [2]int{}
	for seed := uint64(1); seed <= 40; seed++ {
		rng := rand.New(rand.NewPCG(seed, 13))
		c := preemptCalendar(t, seed, rng, epoch)
		for q := 0; q < 10; q++ {
			level := 1 + rng.IntN(len(c.T.Levels)-1)
			doms := c.T.dom[level]
			k := 1 + rng.IntN(int(doms[0].hi-doms[0].lo))
			s := unix(epoch.Add(time.Duration(rng.IntN(72)) * time.Hour))
			e := s + int64(1+rng.IntN(48))*3600
			out := c.prepare(s, e, "acme", nil)
			if c.held == nil {
				c.held, c.reclaim = newBitset(len(c.T.nodes)), newBitset(len(c.T.nodes))
			}
			heldFree := c.clearHeldFree()
			c.gatherRuns(s, e, level)
			c.T.sumUp(heldFree)
			j := &job{c: c, k: k, level: level, lazy: true, heldFree: heldFree, s: s, e: e}
			bounds := map[int32]cand{}
			for _, b := range c.bounds(doms, j) {
				bounds[b.d] = b
			}
			v := c.evaluators(1, j)[0]
			for di, d := range doms {
				cd := v.candidate(di, d)
				b, bounded := bounds[int32(di)]
				if !cd.ok {
					continue
				}
				if !bounded {
					t.Fatalf("seed %d query %d: domain %d (k %d) finds %v but has no bound", seed, q, di, k, cd.cost)
				}
				for i := range b.cost {
					if b.cost[i] > cd.cost[i] {
						t.Fatalf("seed %d query %d: domain %d (k %d): bound %v exceeds the cost %v", seed, q, di, k, b.cost, cd.cost)
					}
				}
				for i := range exact {
					if b.cost[i] > 0 && b.cost[i] == cd.cost[i] {
						exact[i]++
					}
				}
			}
			for _, i := range c.heldNodes {
				c.held.clear(i)
			}
			c.restore(out)
		}
	}
	if exact[0] == 0 || exact[1] == 0 {
		t.Errorf("no bound above 0 met exactly (spot, internal: %v): the check cannot fail", exact)
	}
}

// TestFewest checks fewest against summing sorted sizes, with sizes few
// (counted) and spread (sorted).
func TestFewest(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	var count []int32
	for trial := 0; trial < 2000; trial++ {
		sizes := make([]int32, rng.IntN(40))
		spread := []int{8, 64, 5000}[trial%3]
		total := 0
		for x := range sizes {
			sizes[x] = int32(1 + rng.IntN(spread))
			total += int(sizes[x])
		}
		n := 1 + rng.IntN(total+10)
		want := len(sizes) + 1
		sorted := slices.Sorted(slices.Values(sizes))
		for x, sum := len(sorted)-1, 0; x >= 0; x-- {
			if sum += int(sorted[x]); sum >= n {
				want = len(sorted) - x
				break
			}
		}
		if got := fewest(slices.Clone(sizes), n, &count); got != want {
			t.Fatalf("trial %d: fewest(%v, %d) = %d, want %d", trial, sizes, n, got, want)
		}
	}
}

// TestSortOptions checks the counting sort of preemption options against a
// plain sort of their keys, with sizes few (counted) and spread (sorted).
func TestSortOptions(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	spot, internal := &Reservation{Class: ClassSpot}, &Reservation{Class: ClassInternal}
	nodes := make([]int32, 600)
	for trial := 0; trial < 300; trial++ {
		v := &evaluator{}
		d := domain{lo: 0, hi: 4096}
		spread := []int{8, 16, 600}[trial%3]
		for n := rng.IntN(80); n >= 0; n-- {
			cm := spot
			if rng.IntN(2) == 0 {
				cm = internal
			}
			v.opts = append(v.opts, option{rank: int8(classRank(cm.Class)), shrink: rng.IntN(3) == 0, nodes: nodes[:1+rng.IntN(spread)]})
		}
		v.sortOptions(d)
		got := slices.Clone(v.order)
		slices.Sort(v.order)
		if !slices.Equal(got, v.order) {
			t.Fatalf("trial %d (%d options, sizes to %d): counting sort differs from sorting", trial, len(v.opts), spread)
		}
	}
}
