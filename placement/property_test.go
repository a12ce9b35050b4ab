package placement

import (
	"fmt"
	"math/bits"
	"math/rand/v2"
	"os"
	"reflect"
	"slices"
	"strconv"
	"testing"

	"github.com/neocloud/neocloud/fleet"
)

// seeds returns the seeds to run: NEOCLOUD_SEED pins one (to replay a failure).
func seeds(n int) []uint64 {
	if v := os.Getenv("NEOCLOUD_SEED"); v != "" {
		s, _ := strconv.ParseUint(v, 10, 64)
		return []uint64{s}
	}
	out := make([]uint64, n)
	for i := range out {
		out[i] = uint64(i + 1)
	}
	return out
}

func randomFleet(t *testing.T, rng *rand.Rand) *Snapshot {
	sku, _ := fleet.CatalogSKU("h100-sxm5-80gb")
	fan := []int{1 + rng.IntN(3), 1 + rng.IntN(4), 1 + rng.IntN(4), 2 + rng.IntN(7)}
	halls := 1 + rng.IntN(2)
	nodes := halls * fan[0] * fan[1] * fan[2] * fan[3]
	o := fleet.GenerateOptions{Site: "prop", Region: "lab", Timezone: "UTC", SKU: sku, GPUs: nodes * 8,
		Levels: []string{"hall", "pod", "su", "rack"}, Fanout: fan}
	if rng.IntN(2) == 0 {
		o.SpareLevel, o.Spares = "rack", 1
	}
	site, ns := testFleet(t, o)
	for i := range ns {
		if rng.IntN(20) == 0 {
			ns[i].Health = fleet.HealthFailed
		}
		if rng.IntN(30) == 0 {
			ns[i].Cordoned = true
		}
	}
	return NewSnapshot(Build(site, sku, ns))
}

// lexLess compares (pods, sus, racks) spanned.
func lexCmp(a, b []int) int {
	for i := range a {
		if a[i] != b[i] {
			if a[i] < b[i] {
				return -1
			}
			return 1
		}
	}
	return 0
}

func spans(s *Snapshot, p *Plan) []int {
	return []int{s.count(p, 1), s.count(p, 2), s.count(p, 3)}
}

// TestPlacementProperties runs random request streams over random fleets:
// no GPU is ever in two committed plans, constraints always hold, and no
// unconstrained gang spans more pods, then sus, then racks than first-fit
// placing the same request on the same snapshot.
func TestPlacementProperties(t *testing.T) {
	for _, seed := range seeds(300) {
		rng := rand.New(rand.NewPCG(seed, 7))
		s := randomFleet(t, rng)
		owner := map[[2]int]int{} // (node, gpu) → plan number
		var live []*Plan
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("seed %d (replay: NEOCLOUD_SEED=%d go test -run Properties ./placement): %s", seed, seed, fmt.Sprintf(format, args...))
		}
		for step := 0; step < 60; step++ {
			if len(live) > 0 && rng.IntN(4) == 0 {
				j := rng.IntN(len(live))
				s.Release(live[j])
				for _, a := range live[j].Nodes {
					for _, g := range a.GPUs {
						delete(owner, [2]int{a.index, g})
					}
				}
				live = append(live[:j], live[j+1:]...)
				continue
			}
			var r Request
			switch rng.IntN(5) {
			case 0:
				r.GPUs = []int{1, 2, 4}[rng.IntN(3)]
			default:
				r.GPUs = 8 * (1 + rng.IntN(max(1, s.T.Nodes()/3)))
			}
			switch rng.IntN(4) {
			case 0:
				r.Within = []string{"hall", "pod", "su", "rack"}[rng.IntN(4)]
			case 1:
				r.MaxDomains = map[string]int{[]string{"pod", "su"}[rng.IntN(2)]: 1 + rng.IntN(3)}
			}
			if rng.IntN(6) == 0 {
				r.Class = ClassSpot
			}
			if rng.IntN(5) == 0 {
				r.Exclude = []string{s.T.NodeID(rng.IntN(s.T.Nodes())), s.T.NodeID(rng.IntN(s.T.Nodes()))}
			}
			var ff *Plan
			if r.Within == "" && r.MaxDomains == nil && r.GPUs >= 8 && r.Class != ClassSpot && r.Exclude == nil {
				ff = s.FirstFit(r.GPUs)
			}
			res, err := s.Place(r)
			if err != nil {
				fail("step %d %+v: %v", step, r, err)
			}
			// Deterministic: the same snapshot and request give the same answer.
			if again, _ := s.Place(r); !reflect.DeepEqual(res, again) {
				fail("step %d %+v: two answers for one request on one snapshot", step, r)
			}
			if res.Plan == nil {
				if ff != nil {
					fail("step %d %+v: refused (%s) but first-fit placed it", step, r, res.Refusal.Message)
				}
				continue
			}
			p := res.Plan
			if p.GPUs != r.GPUs {
				fail("step %d: plan has %d GPUs, asked %d", step, p.GPUs, r.GPUs)
			}
			if r.Within != "" && s.count(p, s.T.level(r.Within)) != 1 {
				fail("step %d: within=%s but the plan uses %d", step, r.Within, s.count(p, s.T.level(r.Within)))
			}
			for lvl, n := range r.MaxDomains {
				if got := s.count(p, s.T.level(lvl)); got > n {
					fail("step %d: max_domains=%s:%d but %d used", step, lvl, n, got)
				}
			}
			if ff != nil && lexCmp(spans(s, p), spans(s, ff)) > 0 {
				fail("step %d: %d GPUs span (pods, sus, racks) %v, first-fit %v", step, r.GPUs, spans(s, p), spans(s, ff))
			}
			for _, a := range p.Nodes {
				n := s.T.nodes[a.index]
				for _, x := range r.Exclude {
					if x == n.id {
						fail("step %d: plan uses excluded node %s", step, n.host)
					}
				}
				if s.why[a.index] != "" || (n.spare && !r.Class.Preemptible()) {
					fail("step %d: plan uses node %s (blocked %q, spare %v)", step, n.host, s.why[a.index], n.spare)
				}
				if r.GPUs < 8 && (len(a.GPUs) != r.GPUs || a.GPUs[0]%r.GPUs != 0) {
					fail("step %d: partition %v of %d GPUs is not an aligned block", step, a.GPUs, r.GPUs)
				}
				for _, g := range a.GPUs {
					key := [2]int{a.index, g}
					if _, taken := owner[key]; taken {
						fail("step %d: GPU %d of %s is in two plans", step, g, n.host)
					}
					owner[key] = len(live)
				}
			}
			s.Commit(p)
			live = append(live, p)
		}
	}
}

// TestSnapshotsShareTopologyReadOnly: a failure blocked in one snapshot is
// not seen by another snapshot of the same topology.
func TestSnapshotsShareTopologyReadOnly(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	a := randomFleet(t, rng)
	b := NewSnapshot(a.T)
	i := 0
	for a.Blocked(i) != "" {
		i++
	}
	a.Block(i, ReasonHealth)
	if b.Blocked(i) != "" || b.FreeGPUs(i) != b.full {
		t.Errorf("node %d blocked in one snapshot is blocked (%q) or busy in another", i, b.Blocked(i))
	}
	if c := NewSnapshot(a.T); c.Blocked(i) != "" {
		t.Error("a new snapshot inherits another's failure")
	}
}

// checkCounters counts a snapshot's counters afresh from its masks and
// compares them with those it keeps: whole-free nodes per domain (spares
// apart), nodes partly free, and free GPUs.
func checkCounters(t *testing.T, s *Snapshot, where string) {
	t.Helper()
	L := len(s.T.Levels)
	free, spare := make([][]int32, L), make([][]int32, L)
	for l := range L {
		free[l], spare[l] = make([]int32, len(s.T.dom[l])), make([]int32, len(s.T.dom[l]))
	}
	gpus := 0
	for i, m := range s.mask {
		c := bits.OnesCount64(m)
		gpus += c
		whole := m == s.full && s.full != 0
		for l, a := range s.T.nodes[i].anc {
			switch {
			case whole && s.T.spare[i]:
				spare[l][a]++
			case whole:
				free[l][a]++
			}
		}
		partly := !s.T.spare[i] && c > 0 && c < len(s.partial)
		for k := range s.partial {
			if s.partial[k].has(i) != (partly && k == c) {
				t.Fatalf("%s: node %d (%d free GPUs) is wrongly marked with %d free", where, i, c, k)
			}
		}
	}
	for l := range L {
		if !slices.Equal(free[l], s.free[l]) || !slices.Equal(spare[l], s.spareFree[l]) {
			t.Fatalf("%s: level %d: whole-free nodes %v and spares %v, counted %v and %v", where, l, s.free[l], s.spareFree[l], free[l], spare[l])
		}
	}
	if gpus != s.freeGPUs {
		t.Fatalf("%s: %d free GPUs kept, %d counted", where, s.freeGPUs, gpus)
	}
}
