package placement

import (
	"fmt"
	"slices"
)

// heldWork keeps the spot and internal work of a calendar in the dense
// form preemption planning reads: a record per reservation, the node
// indexes of all of them in one arena (each record's ascending), and in
// another each record's runs of nodes per domain of every level. A plan
// then reads a few sequential arrays instead of following thousands of
// reservations across the heap, and most of it reads runs, not nodes.
// The calendar keeps it in step as work is held, dropped, re-chosen and
// made elastic.
type heldWork struct {
	recs  []holder
	arena []int32
	runs  []run
	dead  int     // arena entries no record uses
	deadR int     // runs no record uses
	count []int32 // per node: the records holding it
	// per record, levels+1 entries: where its runs of each level start
	// (from its first run), and its run count
	lv     []int32
	levels int
}

// run is n of a record's nodes from its at-th, all in domain d of the
// level its place among the record's runs says.
type run struct {
	d, at, n int32
}

// holder is one reservation of held work.
type holder struct {
	cm     *Reservation
	s      int64 // its start, in Unix seconds
	at     int32 // its nodes: arena[at : at+nodes]
	ra, rn int32 // its runs: runs[ra : ra+rn], by level, then in node order
	shared int32 // its nodes other records hold too
	lo, hi int32 // its lowest and highest node
	holding
}

// holding is what evaluating a domain reads of a holder, copied with each
// of its groups so that the evaluation reads them in sequence.
type holding struct {
	e      int64 // its end, in Unix seconds
	nodes  int32 // its node count
	min    int32 // the fewest nodes it shrinks to (0: not elastic)
	shrink int8  // the level of its shrink step (−1: none)
	rank   int8  // classRank
}

// nodes returns h's node indexes.
func (w *heldWork) nodes(h *holder) []int32 { return w.arena[h.at : h.at+h.nodes : h.at+h.nodes] }

// add records cm, whose idx is set; byNode does not hold it yet.
func (w *heldWork) add(t *Topology, byNode [][]entry, cm *Reservation) {
	if w.count == nil {
		w.count, w.levels = make([]int32, len(t.nodes)), len(t.Levels)
	}
	w.recs = append(w.recs, holder{cm: cm, s: cm.s, at: int32(len(w.arena)), holding: holding{e: cm.e, nodes: int32(len(cm.idx)), rank: int8(classRank(cm.Class))}})
	w.lv = append(w.lv, make([]int32, w.levels+1)...)
	r := len(w.recs) - 1
	h := &w.recs[r]
	for _, i := range cm.idx {
		w.arena = append(w.arena, int32(i))
	}
	slices.Sort(w.nodes(h))
	w.span(h)
	w.cut(t, r)
	w.elastic(t, h)
	cm.rec = int32(r + 1)
	for _, i := range cm.idx {
		w.hold(byNode, cm, i, 1)
	}
}

// hold counts record cm on node i (by = 1) or no longer (by = −1), and
// keeps the shared counts of cm and of the node's other holder in step.
// byNode lists the node's other work.
func (w *heldWork) hold(byNode [][]entry, cm *Reservation, i int, by int32) {
	before := w.count[i]
	w.count[i] += by
	after := w.count[i]
	if max(before, after) < 2 {
		return // no other record holds it
	}
	h := &w.recs[cm.rec-1]
	h.shared += by
	if min(before, after) == 1 { // one other record holds it: now shared, or no longer
		for _, en := range byNode[i] {
			if o := en.rsv; o != nil && o != cm && o.rec != 0 {
				w.recs[o.rec-1].shared += by
			}
		}
	}
}

// cut lays record r's runs out anew at the end of the runs.
func (w *heldWork) cut(t *Topology, r int) {
	h, L := &w.recs[r], len(t.Levels)
	ns, lv := w.nodes(h), w.lv[r*(L+1):(r+1)*(L+1)]
	h.ra = int32(len(w.runs))
	for l := range L {
		lv[l] = int32(len(w.runs)) - h.ra
		for a := 0; a < len(ns); {
			d := t.flat[int(ns[a])*L+l]
			b := a + 1
			for b < len(ns) && t.flat[int(ns[b])*L+l] == d {
				b++
			}
			w.runs = append(w.runs, run{d: d - t.levelOff[l], at: int32(a), n: int32(b - a)})
			a = b
		}
	}
	h.rn = int32(len(w.runs)) - h.ra
	lv[L] = h.rn
}

// runsOf returns h's runs.
func (w *heldWork) runsOf(h *holder) []run { return w.runs[h.ra : h.ra+h.rn : h.ra+h.rn] }

// runsAt returns record r's runs at level l.
func (w *heldWork) runsAt(r, l int) []run {
	h, lv := &w.recs[r], w.lv[r*(w.levels+1):]
	return w.runs[h.ra+lv[l] : h.ra+lv[l+1] : h.ra+lv[l+1]]
}

// span sets h's lowest and highest node (none: an empty span).
func (w *heldWork) span(h *holder) {
	h.lo, h.hi = 1<<31-1, -1
	if ns := w.nodes(h); len(ns) > 0 {
		h.lo, h.hi = ns[0], ns[len(ns)-1]
	}
}

// elastic copies the reservation's shrink policy into h.
func (w *heldWork) elastic(t *Topology, h *holder) {
	h.min, h.shrink = 0, -1
	if cm := h.cm; cm.MinNodes > 0 && cm.ShrinkLevel != "" {
		if l := t.level(cm.ShrinkLevel); l >= 0 {
			h.min, h.shrink = int32(cm.MinNodes), int8(l)
		}
	}
}

// remove forgets cm, which byNode no longer holds: the last record takes
// its place.
func (w *heldWork) remove(byNode [][]entry, cm *Reservation) {
	r := int(cm.rec) - 1
	if r < 0 {
		return
	}
	for _, i := range w.nodes(&w.recs[r]) {
		w.hold(byNode, cm, int(i), -1)
	}
	w.dead, w.deadR = w.dead+int(w.recs[r].nodes), w.deadR+int(w.recs[r].rn)
	last, stride := len(w.recs)-1, w.levels+1
	w.recs[r] = w.recs[last]
	w.recs[r].cm.rec = int32(r + 1)
	w.recs[last] = holder{}
	w.recs = w.recs[:last]
	copy(w.lv[r*stride:(r+1)*stride], w.lv[last*stride:])
	w.lv = w.lv[:last*stride]
	cm.rec = 0
	w.tidy()
}

// tidy compacts when more than half the arena or the runs is dead.
func (w *heldWork) tidy() {
	if w.dead > 4096 && w.dead > len(w.arena)/2 || w.deadR > 4096 && w.deadR > len(w.runs)/2 {
		w.compact()
	}
}

// compact lays the live records' nodes and runs out anew, dropping the
// dead ones.
func (w *heldWork) compact() {
	arena, runs := make([]int32, 0, len(w.arena)-w.dead), make([]run, 0, len(w.runs)-w.deadR)
	for x := range w.recs {
		h := &w.recs[x]
		at, ra := int32(len(arena)), int32(len(runs))
		arena, runs = append(arena, w.nodes(h)...), append(runs, w.runsOf(h)...)
		h.at, h.ra = at, ra
	}
	w.arena, w.runs, w.dead, w.deadR = arena, runs, 0, 0
}

// moved notes that cm's node from is now node to (byNode holds cm on
// neither).
func (w *heldWork) moved(t *Topology, byNode [][]entry, cm *Reservation, from, to int) {
	if r := int(cm.rec) - 1; r >= 0 {
		h := &w.recs[r]
		ns := w.nodes(h)
		if j, ok := slices.BinarySearch(ns, int32(from)); ok {
			ns[j] = int32(to)
			slices.Sort(ns)
			w.span(h)
			w.deadR += int(h.rn)
			w.cut(t, r)
			w.hold(byNode, cm, from, -1)
			w.hold(byNode, cm, to, 1)
			w.tidy()
		}
	}
}

// SetElastic makes a held spot or internal reservation elastic: preemption
// may shrink it by whole domains of level, down to least nodes, rather
// than evict it. A least of 0 makes it inelastic again.
func (c *Calendar) SetElastic(id string, least int, level string) error {
	cm, ok := c.rsvs[id]
	if !ok {
		return fmt.Errorf("no reservation %q", id)
	}
	if cm.committed() {
		return fmt.Errorf("reservation %s is %s: only spot and internal work shrinks", id, cm.Class)
	}
	if least < 0 || least > len(cm.Nodes) {
		return fmt.Errorf("min %d is not between 0 and the reservation's %d nodes", least, len(cm.Nodes))
	}
	if least > 0 && c.T.level(level) < 0 {
		return fmt.Errorf("no level %q", level)
	}
	cm.MinNodes, cm.ShrinkLevel = least, level
	if least == 0 {
		cm.ShrinkLevel = ""
	}
	if r := int(cm.rec) - 1; r >= 0 {
		c.work.elastic(c.T, &c.work.recs[r])
	}
	return nil
}
