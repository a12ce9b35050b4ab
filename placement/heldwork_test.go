package placement

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// TestHeldWorkInStep holds, drops, re-chooses, extends, renames (changing
// class) and makes elastic random work, and compacts the held work, and
// checks after every step that it has exactly one record per spot and
// internal reservation, with its nodes, times, shrink policy, runs per
// level and shared nodes, and none for committed work.
func TestHeldWorkInStep(t *testing.T) {
	epoch := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, seed := range seeds(30) {
		rng := rand.New(rand.NewPCG(seed, 21))
		s := randomFleet(t, rng)
		c := NewCalendar(s.T)
		fail := func(step int, format string, args ...any) {
			t.Helper()
			t.Fatalf("seed %d step %d (replay: NEOCLOUD_SEED=%d go test -run HeldWorkInStep ./placement): %s", seed, step, seed, fmt.Sprintf(format, args...))
		}
		classes := []Class{ClassReserved, ClassOnDemand, ClassSpot, ClassInternal}
		var ids []string
		for step := 0; step < 150; step++ {
			pick := func() string {
				if len(ids) == 0 {
					return "none"
				}
				return ids[rng.IntN(len(ids))]
			}
			switch rng.IntN(8) {
			case 0:
				id := pick()
				c.Drop(id)
				ids = slices.DeleteFunc(ids, func(x string) bool { return x == id })
			case 1:
				if cm, ok := c.Reservation(pick()); ok {
					c.Rechoose(cm.ID, cm.Nodes[rng.IntN(len(cm.Nodes))])
				}
			case 2:
				if cm, ok := c.Reservation(pick()); ok {
					if err := c.SetEnd(cm.ID, cm.End.Add(time.Duration(rng.IntN(48)-24)*time.Hour)); err != nil {
						fail(step, "set end: %v", err)
					}
				}
			case 3:
				if cm, ok := c.Reservation(pick()); ok {
					id := fmt.Sprintf("r%d", step)
					if err := c.Rename(cm.ID, id, classes[rng.IntN(len(classes))]); err != nil {
						fail(step, "rename: %v", err)
					}
					ids = slices.DeleteFunc(ids, func(x string) bool { return x == cm.ID })
					ids = append(ids, id)
				}
			case 4:
				if cm, ok := c.Reservation(pick()); ok {
					err := c.SetElastic(cm.ID, rng.IntN(len(cm.Nodes)+1), []string{"rack", "su", "nowhere"}[rng.IntN(3)])
					if err == nil && cm.committed() {
						fail(step, "committed %s made elastic", cm.ID)
					}
				}
			case 5:
				c.work.compact()
			default:
				start := epoch.Add(time.Duration(rng.IntN(30*24)) * time.Hour)
				r := Request{GPUs: 8 * (1 + rng.IntN(max(1, s.T.Nodes()/4))), Class: classes[rng.IntN(len(classes))]}
				id := fmt.Sprintf("a%d", step)
				res, err := c.Admit(id, r, "acme", start, start.Add(time.Duration(1+rng.IntN(30*24))*time.Hour))
				if err != nil {
					fail(step, "admit: %v", err)
				}
				if res.Plan != nil {
					ids = append(ids, id)
				}
			}
			checkHeldWork(t, c, func(format string, args ...any) { fail(step, format, args...) })
		}
	}
}

// checkHeldWork compares the calendar's held work with its reservations.
func checkHeldWork(t *testing.T, c *Calendar, fail func(string, ...any)) {
	t.Helper()
	live := 0
	for _, cm := range c.rsvs {
		if cm.committed() {
			if cm.rec != 0 {
				fail("committed %s has a record", cm.ID)
			}
			continue
		}
		live++
		r := int(cm.rec) - 1
		if r < 0 || r >= len(c.work.recs) || c.work.recs[r].cm != cm {
			fail("%s has no record of its own (rec %d of %d)", cm.ID, cm.rec, len(c.work.recs))
		}
		h := &c.work.recs[r]
		var idx []int
		for _, i := range c.work.nodes(h) {
			idx = append(idx, int(i))
		}
		if want := slices.Sorted(slices.Values(cm.idx)); !slices.Equal(idx, want) || h.s != cm.s || h.e != cm.e {
			fail("%s: record has nodes %v over [%d, %d), the reservation %v over [%d, %d)", cm.ID, idx, h.s, h.e, want, cm.s, cm.e)
		}
		if h.lo != int32(slices.Min(cm.idx)) || h.hi != int32(slices.Max(cm.idx)) {
			fail("%s: record spans [%d, %d]", cm.ID, h.lo, h.hi)
		}
		if int(h.rank) != classRank(cm.Class) || int(h.nodes) != len(cm.idx) {
			fail("%s: record has class rank %d and %d nodes for %s and %d", cm.ID, h.rank, h.nodes, cm.Class, len(cm.idx))
		}
		wantMin, wantLevel := int32(0), int8(-1)
		if l := c.T.level(cm.ShrinkLevel); cm.MinNodes > 0 && l >= 0 {
			wantMin, wantLevel = int32(cm.MinNodes), int8(l)
		}
		if h.min != wantMin || h.shrink != wantLevel {
			fail("%s: record shrinks to %d by level %d, the reservation to %d by %q", cm.ID, h.min, h.shrink, cm.MinNodes, cm.ShrinkLevel)
		}
	}
	if live != len(c.work.recs) {
		fail("%d records for %d spot and internal reservations", len(c.work.recs), live)
	}
	used := 0
	count := make([]int32, len(c.T.nodes))
	for x := range c.work.recs {
		used += int(c.work.recs[x].nodes)
		for _, i := range c.work.nodes(&c.work.recs[x]) {
			count[i]++
		}
	}
	if c.work.count != nil && !slices.Equal(count, c.work.count) {
		fail("records per node %v, counted %v", c.work.count, count)
	}
	for x := range c.work.recs {
		h := &c.work.recs[x]
		shared := int32(0)
		for _, i := range c.work.nodes(h) {
			if count[i] > 1 {
				shared++
			}
		}
		if h.shared != shared {
			fail("%s: %d of its nodes shared, counted %d", h.cm.ID, shared, h.shared)
		}
	}
	if used != len(c.work.arena)-c.work.dead {
		fail("records use %d of the arena's %d entries, %d counted dead", used, len(c.work.arena), c.work.dead)
	}
	// Runs: per level, consecutive nodes in one domain of it.
	usedR := 0
	for x := range c.work.recs {
		h := &c.work.recs[x]
		ns := c.work.nodes(h)
		runs := 0
		for l := range c.T.Levels {
			var want []run
			for j, i := range ns {
				d := c.T.nodes[i].anc[l]
				if j > 0 && c.T.nodes[ns[j-1]].anc[l] == d {
					want[len(want)-1].n++
				} else {
					want = append(want, run{d: d, at: int32(j), n: 1})
				}
			}
			if got := c.work.runsAt(x, l); !slices.Equal(got, want) {
				fail("%s: runs at level %d %v, want %v", h.cm.ID, l, got, want)
			}
			runs += len(want)
		}
		if int(h.rn) != runs {
			fail("%s: %d runs, want %d", h.cm.ID, h.rn, runs)
		}
		usedR += int(h.rn)
	}
	if usedR != len(c.work.runs)-c.work.deadR {
		fail("records use %d of %d runs, %d counted dead", usedR, len(c.work.runs), c.work.deadR)
	}
}
