package placement

import "fmt"

// heldWork keeps the spot and internal work of a calendar in the dense
// form preemption planning reads: a record per reservation, and the node
// indexes of all of them in one arena. A plan then reads a few sequential
// arrays instead of following thousands of reservations across the heap.
// The calendar keeps it in step as work is held, dropped, re-chosen and
// made elastic.
type heldWork struct {
	recs  []holder
	arena []int32
	dead  int // arena entries no record uses
}

// holder is one reservation of held work.
type holder struct {
	cm     *Reservation
	s, e   int64 // its start and end, in Unix seconds
	at, n  int32 // its nodes: arena[at : at+n]
	min    int32 // the fewest nodes it shrinks to (0: not elastic)
	shrink int8  // the level of its shrink step (−1: none)
	rank   int8  // classRank
	lo, hi int32 // its lowest and highest node
}

// nodes returns h's node indexes.
func (w *heldWork) nodes(h *holder) []int32 { return w.arena[h.at : h.at+h.n : h.at+h.n] }

// add records cm, whose idx is set.
func (w *heldWork) add(t *Topology, cm *Reservation) {
	h := holder{cm: cm, s: cm.s, e: cm.e, at: int32(len(w.arena)), n: int32(len(cm.idx)), rank: int8(classRank(cm.Class))}
	for _, i := range cm.idx {
		w.arena = append(w.arena, int32(i))
	}
	w.span(&h)
	w.elastic(t, &h)
	w.recs = append(w.recs, h)
	cm.rec = int32(len(w.recs))
}

// span sets h's lowest and highest node.
func (w *heldWork) span(h *holder) {
	h.lo, h.hi = 1<<31-1, -1
	for _, i := range w.nodes(h) {
		h.lo, h.hi = min(h.lo, i), max(h.hi, i)
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

// remove forgets cm: the last record takes its place.
func (w *heldWork) remove(cm *Reservation) {
	r := int(cm.rec) - 1
	if r < 0 {
		return
	}
	w.dead += int(w.recs[r].n)
	last := len(w.recs) - 1
	w.recs[r] = w.recs[last]
	w.recs[r].cm.rec = int32(r + 1)
	w.recs[last] = holder{}
	w.recs = w.recs[:last]
	cm.rec = 0
	if w.dead > 4096 && w.dead > len(w.arena)/2 {
		w.compact()
	}
}

// compact lays the live records' nodes out anew, dropping the dead ones.
func (w *heldWork) compact() {
	arena := make([]int32, 0, len(w.arena)-w.dead)
	for x := range w.recs {
		h := &w.recs[x]
		at := int32(len(arena))
		arena = append(arena, w.nodes(h)...)
		h.at = at
	}
	w.arena, w.dead = arena, 0
}

// moved notes that cm's j-th node is now node i.
func (w *heldWork) moved(cm *Reservation, j, i int) {
	if r := int(cm.rec) - 1; r >= 0 {
		h := &w.recs[r]
		w.nodes(h)[j] = int32(i)
		w.span(h)
	}
}

// SetElastic makes a held spot or internal reservation elastic: preemption
// may shrink it by whole domains of level, down to min nodes, rather than
// evict it. A min of 0 makes it inelastic again.
func (c *Calendar) SetElastic(id string, min int, level string) error {
	cm, ok := c.rsvs[id]
	if !ok {
		return fmt.Errorf("no reservation %q", id)
	}
	if cm.committed() {
		return fmt.Errorf("reservation %s is %s: only spot and internal work shrinks", id, cm.Class)
	}
	if min < 0 || min > len(cm.Nodes) {
		return fmt.Errorf("min %d is not between 0 and the reservation's %d nodes", min, len(cm.Nodes))
	}
	if min > 0 && c.T.level(level) < 0 {
		return fmt.Errorf("no level %q", level)
	}
	cm.MinNodes, cm.ShrinkLevel = min, level
	if min == 0 {
		cm.ShrinkLevel = ""
	}
	if r := int(cm.rec) - 1; r >= 0 {
		c.work.elastic(c.T, &c.work.recs[r])
	}
	return nil
}
