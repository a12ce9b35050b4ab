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
	for seed := uint64(1); seed <= 40; seed++ {
		rng := rand.New(rand.NewPCG(seed, 5))
		sku, _ := fleet.CatalogSKU("h100-sxm5-80gb")
		// Odd seeds use a fleet of 256 nodes, where gathering splits the
		// nodes among its workers (at multiples of 64).
		gpus, rsvs := 512, 30
		if seed%2 == 1 {
			gpus, rsvs = 2048, 120
		}
		site, nodes := testFleet(t, fleet.GenerateOptions{Site: "test", Region: "lab", Timezone: "UTC", SKU: sku, GPUs: gpus,
			Levels: []string{"hall", "pod", "su", "rack"}, Fanout: []int{2, 2, 2, 4}})
		c := NewCalendar(Build(site, sku, nodes))
		if cuts := c.T.cuts(3); seed%2 == 1 && (len(cuts) != 4 || cuts[1] == 0 || cuts[2] == cuts[1] || cuts[3] == cuts[2]) {
			t.Fatalf("cuts %v: the 256-node fleet is not split among 3 workers", cuts)
		}
		epoch := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
		for i := 0; i < rsvs; i++ {
			r := Request{GPUs: 8 * (1 + rng.IntN(6)), Class: []Class{ClassSpot, ClassInternal, ClassReserved}[rng.IntN(3)], Within: []string{"", "rack", "su"}[rng.IntN(3)]}
			st := epoch.Add(time.Duration(rng.IntN(48)) * time.Hour)
			id := fmt.Sprintf("w%d", i)
			res, _ := c.Admit(id, r, []string{"a", "b"}[rng.IntN(2)], st, st.Add(time.Duration(1+rng.IntN(96))*time.Hour))
			if res.Plan != nil && r.Class == ClassInternal && rng.IntN(2) == 0 {
				if err := c.SetElastic(id, max(1, len(res.Plan.Nodes)/2), "rack"); err != nil {
					t.Fatal(err)
				}
			}
		}
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

// TestSortOptions checks the counting sort of preemption options against a
// plain sort of their keys, with sizes few (counted) and spread (sorted).
func TestSortOptions(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	spot, internal := &Reservation{Class: ClassSpot}, &Reservation{Class: ClassInternal}
	nodes := make([]int, 600)
	for trial := 0; trial < 300; trial++ {
		v := &evaluator{}
		d := domain{lo: 0, hi: 4096}
		spread := []int{8, 16, 600}[trial%3]
		for n := rng.IntN(80); n >= 0; n-- {
			cm := spot
			if rng.IntN(2) == 0 {
				cm = internal
			}
			v.opts = append(v.opts, option{cm: cm, shrink: rng.IntN(3) == 0, nodes: nodes[:1+rng.IntN(spread)]})
		}
		v.sortOptions(d)
		got := slices.Clone(v.order)
		slices.Sort(v.order)
		if !slices.Equal(got, v.order) {
			t.Fatalf("trial %d (%d options, sizes to %d): counting sort differs from sorting", trial, len(v.opts), spread)
		}
	}
}
