package placement

import (
	"cmp"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"sort"
	"time"
)

// Forever is the end of an open interval (on-demand work until it ends).
var Forever = time.Unix(math.MaxInt64/2, 0).UTC()

// Reservation is work on concrete nodes over [Start, End): a reservation's
// allocation, present or future. End is Forever for on-demand work that has
// not ended. Elastic work (internal, optionally spot) may shrink down to
// MinNodes in whole domains of ShrinkLevel, as held or as SetElastic last
// set them. MaxOut caps how many of its nodes rolling maintenance may take
// at once (0: one at a time).
type Reservation struct {
	ID         string
	Tenant     string
	Class      Class
	Start, End time.Time
	Request    Request // the shape it was admitted with, kept for re-choosing
	Nodes      []string
	// GPUs, when set, lists per node (parallel to Nodes) the GPU indices a
	// partition holds; a nil entry, or no GPUs at all, means the whole node.
	GPUs        [][]int
	MinNodes    int
	ShrinkLevel string
	MaxOut      int

	idx   []int    // node indexes, kept in step with Nodes by the calendar
	masks []uint64 // the GPUs held on each of those nodes
	s, e  int64    // Start and End in Unix seconds
	rec   int32    // its record in the calendar's held work + 1 (0: none; committed work has none)
}

// committed reports whether c blocks admission (lease, reserved, on-demand).
func (c *Reservation) committed() bool { return !c.Class.Preemptible() }

// Window is planned maintenance of some nodes over [Start, End).
type Window struct {
	ID         string
	Start, End time.Time
	Nodes      []string

	idx []int
}

// entry is one busy interval of one node, in Unix seconds: a reservation's
// (rsv set) or maintenance (rsv nil). committed and tenant copy the
// reservation's, so the hot loops read no other memory; entries are kept
// small for the same reason.
type entry struct {
	start, end int64
	mask       uint64 // the GPUs it holds
	rsv        *Reservation
	tenant     int32 // the calendar's number for the tenant
	committed  bool
}

// maintenance reports whether e is a maintenance window.
func (e *entry) maintenance() bool { return e.rsv == nil }

// maskOf returns the GPUs a reservation holds on its j-th node.
func (c *Calendar) maskOf(cm *Reservation, j int) uint64 {
	if j >= len(cm.GPUs) || cm.GPUs[j] == nil {
		return c.scratch.full
	}
	var m uint64
	for _, g := range cm.GPUs[j] {
		m |= 1 << g
	}
	return m
}

func (c *Calendar) reservationEntry(cm *Reservation, j int) entry {
	return entry{start: cm.s, end: cm.e, mask: cm.masks[j], committed: cm.committed(), tenant: c.tenantNumber(cm.Tenant, true), rsv: cm}
}

// Calendar holds, per node, the committed intervals and maintenance windows
// of one topology, and admits requests into the future. Turnaround (the
// SKU's) separates the work of two tenants on a node. Spot and internal
// work is held too but never blocks admission: it is planned around and
// reclaimed. The calendar is pure (times are given, never read) and not safe
// for concurrent use.
type Calendar struct {
	T           *Topology
	Turnaround  time.Duration
	byNode      [][]entry // sorted by start
	rsvs        map[string]*Reservation
	tenants     map[string]int32 // numbers of the tenants in entries
	list        []*Reservation   // reservations in the order they were held
	held        bitset           // scratch of preemption planning: nodes a holder holds
	work        heldWork         // spot and internal work, as preemption planning reads it
	evals       []*evaluator     // scratch: preemption planning's workers
	parts       []*gathered      // scratch: what gather's workers found
	heldNodes   []int            // scratch: nodes with a holder
	groups      []group          // scratch: the holders' reclaim nodes by domain of the level planned for
	groupAt     []int32          // scratch: where each domain's groups start
	clean       []bool           // scratch: domains whose every node is whole-free, usable and no spare
	bounded     []cand           // scratch: domains with lower bounds on their cost
	sizes       [2][]int32       // scratch: holders' node counts in a domain, spot and internal
	count       []int32          // scratch: fewest's counts by size
	heldFree    [][]int32        // scratch: reclaim nodes per level and domain
	heldFreeAll []int32          // backs heldFree (flat counter indexes)
	adj         [][]int32        // scratch: free nodes per level and domain as a simulated plan is scored
	adjAll      []int32          // backs adj
	eager       bool             // tests: preemption marks every held node (no lazy path)
	workers     int              // tests: preemption's workers, gathering and evaluating (0: by the work)
	reclaim     bitset           // nodes only preemptible work keeps busy
	freed       bitset           // scratch: nodes a preemption plan's victims free
	saved       counters         // the scratch snapshot's counters before a window that changes many nodes
	windows     map[string]*Window
	scratch     *Snapshot
	// Reservations by time, for fast window queries: committed work and
	// preemptible work apart, as most queries want one of them.
	committedByTime   timeIndex
	preemptibleByTime timeIndex
	busy              []uint64 // per node scratch: GPUs busy in the queried window
	touched           bitset   // nodes with busy GPUs in the queried window
	out               []int    // scratch: the nodes prepare changed
	evs               []int64  // scratch: sweep events (eventKey)
	bad               [][2]int64
}

// NewCalendar returns an empty calendar over t.
func NewCalendar(t *Topology) *Calendar {
	return &Calendar{T: t, Turnaround: time.Duration(t.SKU.TurnaroundS) * time.Second,
		byNode: make([][]entry, len(t.nodes)), rsvs: map[string]*Reservation{}, tenants: map[string]int32{}, windows: map[string]*Window{}, scratch: NewSnapshot(t)}
}

func unix(t time.Time) int64 { return t.Unix() }

// tenantNumber returns the calendar's number for a tenant, adding it when
// add is set; an unknown tenant is -1, unlike every known one.
func (c *Calendar) tenantNumber(tenant string, add bool) int32 {
	n, ok := c.tenants[tenant]
	if !ok {
		if !add {
			return -1
		}
		n = int32(len(c.tenants))
		c.tenants[tenant] = n
	}
	return n
}

func (c *Calendar) insert(i int, e entry) {
	es := c.byNode[i]
	j := sort.Search(len(es), func(j int) bool { return es[j].start > e.start })
	es = append(es, entry{})
	copy(es[j+1:], es[j:])
	es[j] = e
	c.byNode[i] = es
}

func (c *Calendar) remove(i int, pred func(entry) bool) {
	es := c.byNode[i][:0]
	for _, e := range c.byNode[i] {
		if !pred(e) {
			es = append(es, e)
		}
	}
	c.byNode[i] = es
}

func (c *Calendar) index(refs []string) ([]int, error) {
	out := make([]int, len(refs))
	for j, r := range refs {
		i, ok := c.T.NodeIndex(r)
		if !ok {
			return nil, fmt.Errorf("node %q is not in this calendar", r)
		}
		out[j] = i
	}
	return out, nil
}

// Hold records a reservation as it is (loading the calendar, or spot and
// internal work started elsewhere). It checks nothing.
func (c *Calendar) Hold(cm *Reservation) error {
	idx, err := c.index(cm.Nodes)
	if err != nil {
		return err
	}
	if old, ok := c.rsvs[cm.ID]; ok {
		c.Drop(old.ID)
	}
	cm.idx, cm.s, cm.e = idx, unix(cm.Start), unix(cm.End)
	cm.masks = make([]uint64, len(idx))
	for j := range idx {
		cm.masks[j] = c.maskOf(cm, j)
	}
	c.list = append(c.list, cm)
	c.rsvs[cm.ID] = cm
	c.timeIndex(cm).add(cm)
	if !cm.committed() {
		c.work.add(c.T, c.byNode, cm)
	}
	for j, i := range idx {
		c.insert(i, c.reservationEntry(cm, j))
	}
	return nil
}

// timeIndex is the index by time that holds cm: committed or preemptible
// work's.
func (c *Calendar) timeIndex(cm *Reservation) *timeIndex {
	if cm.committed() {
		return &c.committedByTime
	}
	return &c.preemptibleByTime
}

// Drop removes a reservation (ended, cancelled or evicted).
func (c *Calendar) Drop(id string) {
	cm, ok := c.rsvs[id]
	if !ok {
		return
	}
	for _, i := range cm.idx {
		c.remove(i, func(e entry) bool { return e.rsv == cm })
	}
	delete(c.rsvs, id)
	c.timeIndex(cm).remove(cm)
	c.work.remove(c.byNode, cm)
	for j, x := range c.list {
		if x == cm {
			c.list = append(c.list[:j], c.list[j+1:]...)
			break
		}
	}
}

// Reservation returns a held reservation.
func (c *Calendar) Reservation(id string) (*Reservation, bool) {
	cm, ok := c.rsvs[id]
	return cm, ok
}

// gap is the time node work of tenant a needs before or after work of b.
func (c *Calendar) gap(a, b string) int64 {
	if a == b {
		return 0
	}
	return int64(c.Turnaround / time.Second)
}

// prepare sets the scratch snapshot to the GPUs free over [s, e) for
// tenant (ignoring skip's hold; with all set, spot and internal work counts
// too); it returns the nodes it changed. Only the reservations and windows
// overlapping the range (widened by the turnaround) are visited.
func (c *Calendar) prepare(s, e int64, tenant string, skip *Reservation, all ...bool) []int {
	every := len(all) > 0 && all[0]
	maxGap := int64(c.Turnaround / time.Second)
	if c.busy == nil {
		c.busy = make([]uint64, len(c.T.nodes))
		c.touched = newBitset(len(c.T.nodes))
	}
	mark := func(i int, m uint64) {
		c.busy[i] |= m
		c.touched.set(i)
	}
	visit := func(r *Reservation) {
		if r == skip {
			return
		}
		if g := c.gap(r.Tenant, tenant); r.s < e+g && r.e+g > s {
			for j, i := range r.idx {
				mark(i, r.masks[j])
			}
		}
	}
	c.committedByTime.each(s-maxGap, e+maxGap, visit)
	if every {
		c.preemptibleByTime.each(s-maxGap, e+maxGap, visit)
	}
	for _, w := range c.windows {
		if unix(w.Start) < e && unix(w.End) > s {
			for _, i := range w.idx {
				mark(i, c.scratch.full)
			}
		}
	}
	// Where many nodes change, the counters are saved first, for restore
	// to put back at once rather than node by node.
	touched := 0
	for _, word := range c.touched {
		touched += bits.OnesCount64(word)
	}
	if touched > len(c.T.nodes)/16 {
		c.saved.save(c.scratch)
	}
	// Visit the marked nodes in index order: the snapshot's arrays are
	// then read and written in sequence.
	out := c.out[:0]
	for wi, word := range c.touched {
		if word == 0 {
			continue
		}
		c.touched[wi] = 0
		for ; word != 0; word &= word - 1 {
			i := wi*64 + bits.TrailingZeros64(word)
			if c.scratch.why[i] == "" {
				c.scratch.setMask(i, c.scratch.full&^c.busy[i])
				out = append(out, i)
			}
			c.busy[i] = 0
		}
	}
	c.out = out
	return out
}

// restore makes the nodes prepare changed (and those the caller changed
// since, listed with them) wholly free again, as they were before it.
func (c *Calendar) restore(out []int) {
	if c.saved.valid {
		// Only these nodes changed since the counters were saved, and they
		// were wholly free then.
		for _, i := range out {
			c.scratch.mask[i] = c.scratch.full
		}
		c.saved.restore(c.scratch)
		return
	}
	for _, i := range out {
		c.scratch.setMask(i, c.scratch.full)
	}
}

// counters is a copy of a snapshot's counters, kept while a prepared
// window changes many nodes.
type counters struct {
	valid       bool
	free, spare []int32
	partial     []bitset
	freeGPUs    int
}

// save copies s's counters.
func (k *counters) save(s *Snapshot) {
	k.free, k.spare = append(k.free[:0], s.freeAll...), append(k.spare[:0], s.spareAll...)
	for len(k.partial) < len(s.partial) {
		k.partial = append(k.partial, nil)
	}
	for c, b := range s.partial {
		k.partial[c] = append(k.partial[c][:0], b...)
	}
	k.freeGPUs, k.valid = s.freeGPUs, true
}

// restore puts the saved counters back into s.
func (k *counters) restore(s *Snapshot) {
	copy(s.freeAll, k.free)
	copy(s.spareAll, k.spare)
	for c, b := range s.partial {
		copy(b, k.partial[c])
	}
	s.freeGPUs, k.valid = k.freeGPUs, false
}

// Admission is the answer to EarliestStart: a plan and its start, or a
// refusal.
type Admission struct {
	Result
	Start, End time.Time
}

// LooserStart is a looser constraint and the earliest start it allows.
type LooserStart struct {
	Constraint string    `json:"constraint"`
	Start      time.Time `json:"start"`
}

// Plan answers whether r fits over [start, end) for tenant, without
// holding anything.
func (c *Calendar) Plan(r Request, tenant string, start, end time.Time) (Result, error) {
	if !end.After(start) {
		return Result{}, fmt.Errorf("end %v is not after start %v", end, start)
	}
	out := c.prepare(unix(start), unix(end), tenant, nil, r.Class.Preemptible())
	defer c.restore(out)
	return c.scratch.Place(r)
}

// Admit places r over [start, end) for tenant and holds it as reservation id
// on concrete nodes, so the promise is real. It fits only if nodes are free
// over the whole window (turnaround kept between tenants, maintenance and
// spares avoided, other reservations untouched).
func (c *Calendar) Admit(id string, r Request, tenant string, start, end time.Time) (Result, error) {
	return c.admit(id, r, tenant, start, end, r.Class.Preemptible())
}

// AdmitFree is Admit on capacity free of all work, spot and internal work
// included: for work bound at once, which must not land on nodes that
// running preemptible work has not yet left.
func (c *Calendar) AdmitFree(id string, r Request, tenant string, start, end time.Time) (Result, error) {
	return c.admit(id, r, tenant, start, end, true)
}

func (c *Calendar) admit(id string, r Request, tenant string, start, end time.Time, all bool) (Result, error) {
	if !end.After(start) {
		return Result{}, fmt.Errorf("end %v is not after start %v", end, start)
	}
	out := c.prepare(unix(start), unix(end), tenant, nil, all)
	res, err := c.scratch.Place(r)
	c.restore(out)
	if err != nil || res.Plan == nil {
		return res, err
	}
	cm := &Reservation{ID: id, Tenant: tenant, Class: r.Class, Start: start, End: end, Request: r}
	for _, a := range res.Plan.Nodes {
		cm.Nodes = append(cm.Nodes, a.NodeID)
		if len(a.GPUs) < c.T.SKU.GPUsPerNode {
			cm.GPUs = append(cm.GPUs, append([]int(nil), a.GPUs...))
		} else if cm.GPUs != nil {
			cm.GPUs = append(cm.GPUs, nil)
		}
	}
	return res, c.Hold(cm)
}

// EarliestStart finds the earliest start at or after start at which r fits
// for duration d. For each domain of the constraint's level (the site when
// there is none) it sweeps, over time, how many of its nodes could host a
// window of length d starting then — a node cannot where its committed work
// (a turnaround apart for another tenant) or maintenance would overlap — and
// takes the first instant with enough of them; each candidate is then
// verified by a real placement. At most limit candidates are verified.
func (c *Calendar) EarliestStart(r Request, tenant string, start time.Time, d time.Duration, limit int) (Admission, error) {
	return c.earliest(r, tenant, start, d, limit)
}

// LooserStarts returns, for a request with a within constraint, the same
// size within each level above and then anywhere, with the earliest start
// each allows, where that is sooner than the request's own (before, or the
// zero time if it never fits).
func (c *Calendar) LooserStarts(r Request, tenant string, start time.Time, d time.Duration, limit int, before time.Time) ([]LooserStart, error) {
	if r.Within == "" {
		return nil, nil
	}
	var out []LooserStart
	for l := c.T.level(r.Within) - 1; l >= -1; l-- {
		x := r
		x.Within = ""
		if l >= 0 {
			x.Within = c.T.Levels[l]
		}
		alt, err := c.earliest(x, tenant, start, d, limit)
		if err != nil {
			return nil, err
		}
		if alt.Plan != nil && (before.IsZero() || alt.Start.Before(before)) {
			out = append(out, LooserStart{Constraint: x.Constraint(), Start: alt.Start})
		}
	}
	return out, nil
}

func (c *Calendar) earliest(r Request, tenant string, start time.Time, d time.Duration, limit int) (Admission, error) {
	k := r.GPUs / c.T.SKU.GPUsPerNode
	if r.Whole != "" || k == 0 || r.Class.Preemptible() {
		res, err := c.Plan(r, tenant, start, start.Add(d))
		return Admission{Result: res, Start: start, End: start.Add(d)}, err
	}
	level := -1
	if r.Within != "" {
		if level = c.T.level(r.Within); level < 0 {
			return Admission{}, fmt.Errorf("within: no level %q", r.Within)
		}
	}
	domains := []domain{{lo: 0, hi: int32(len(c.T.nodes))}}
	if level >= 0 {
		domains = c.T.dom[level]
	}
	s0, dur := unix(start), int64(d/time.Second)
	// A first pass keeps only domains that could start no later than the
	// best found so far, which prunes most of the sweeping; should none of
	// its candidates verify, a second pass takes every domain.
	var last Result
	verified := 0
	for _, prune := range []bool{true, false} {
		var cands []int64
		bound := int64(math.MaxInt64)
		for _, dm := range domains {
			if t, ok := c.sweep(dm.lo, dm.hi, k, s0, dur, tenant, bound); ok {
				cands = append(cands, t)
				if prune {
					bound = min(bound, t)
				}
			}
		}
		slices.Sort(cands)
		for n, t := range cands {
			if verified >= limit || (prune && t > bound) || (n > 0 && t == cands[n-1]) {
				continue
			}
			verified++
			st := time.Unix(t, 0).UTC()
			res, err := c.Plan(r, tenant, st, st.Add(d))
			if err != nil {
				return Admission{}, err
			}
			if res.Plan != nil {
				return Admission{Result: res, Start: st, End: st.Add(d)}, nil
			}
			last = res
		}
	}
	if last.Refusal == nil {
		last.Refusal = &Refusal{Message: fmt.Sprintf("no %s ever has %d nodes free for %v", cmpStr(r.Within, "site"), k, d)}
	}
	return Admission{Result: last}, nil
}

func cmpStr(a, b string) string {
	if a == "" {
		return b
	}
	return a
}

// sweep returns the first instant t ≥ s0, and no later than bound, at
// which at least k nodes of [lo, hi) are free over [t, t+dur) for tenant.
// Busy intervals starting after bound cannot change the count before it, so
// they are left out.
func (c *Calendar) sweep(lo, hi int32, k int, s0, dur int64, tenant string, bound int64) (int64, bool) {
	usable := 0
	for i := lo; i < hi; i++ {
		if !c.T.nodes[i].spare && c.scratch.why[i] == "" {
			usable++
		}
	}
	if usable < k {
		return 0, false
	}
	evs, bad := c.evs[:0], c.bad[:0]
	tid, turnaround := c.tenantNumber(tenant, false), int64(c.Turnaround/time.Second)
	for i := lo; i < hi; i++ {
		n := &c.T.nodes[i]
		if n.spare || c.scratch.why[i] != "" {
			continue
		}
		// Bad starts of this node: [a - g - dur + 1, b + g) per busy
		// interval, merged so that the node counts once.
		bad = bad[:0]
		for x := range c.byNode[i] {
			en := &c.byNode[i][x]
			g := int64(0)
			switch {
			case en.maintenance():
			case !en.committed:
				continue
			case en.tenant != tid:
				g = turnaround
			}
			if a, b := max(en.start-g-dur+1, s0), en.end+g; b > s0 && b > a && a <= bound {
				bad = append(bad, [2]int64{a, b})
			}
		}
		if !slices.IsSortedFunc(bad, func(x, y [2]int64) int { return cmp.Compare(x[0], y[0]) }) {
			slices.SortFunc(bad, func(x, y [2]int64) int { return cmp.Compare(x[0], y[0]) })
		}
		for x := 0; x < len(bad); {
			a, b := bad[x][0], bad[x][1]
			for x++; x < len(bad) && bad[x][0] <= b; x++ {
				b = max(b, bad[x][1])
			}
			evs = append(evs, eventKey(a, +1), eventKey(b, -1))
		}
	}
	c.evs, c.bad = evs, bad
	// busy is the number of nodes that cannot host a window starting now;
	// at one instant, nodes freeing count before nodes taken.
	slices.Sort(evs)
	busy := 0
	allowed := usable - k
	j := 0
	for j < len(evs) && eventAt(evs[j]) <= s0 {
		busy += eventDelta(evs[j])
		j++
	}
	if busy <= allowed {
		return s0, true
	}
	for ; j < len(evs) && eventAt(evs[j]) <= bound; j++ {
		busy += eventDelta(evs[j])
		if t := eventAt(evs[j]); busy <= allowed && (j+1 == len(evs) || eventAt(evs[j+1]) > t) {
			return t, true
		}
	}
	return 0, false
}

// A sweep event is a change, at an instant, of how many nodes cannot host a
// window, packed in one integer that sorts by time, then -1 before +1.
func eventKey(t int64, d int) int64 {
	k := min(t, 1<<61) << 1
	if d > 0 {
		k |= 1
	}
	return k
}

func eventAt(k int64) int64 { return k >> 1 }

func eventDelta(k int64) int {
	if k&1 == 1 {
		return +1
	}
	return -1
}

// Rechoose replaces a node of a future reservation (failed, or going into
// maintenance) with another free over the reservation's window, within the
// same constraint. It changes the reservation only on success.
func (c *Calendar) Rechoose(id, node string) (Result, error) { return c.rechoose(id, node, false) }

// RechooseFree is Rechoose onto a node free of all work, spot and internal
// work included: for a node about to be bound.
func (c *Calendar) RechooseFree(id, node string) (Result, error) { return c.rechoose(id, node, true) }

func (c *Calendar) rechoose(id, node string, all bool) (Result, error) {
	cm, ok := c.rsvs[id]
	if !ok {
		return Result{}, fmt.Errorf("no reservation %q", id)
	}
	fi, ok := c.T.NodeIndex(node)
	if !ok {
		return Result{}, fmt.Errorf("node %q is not in this calendar", node)
	}
	j := -1
	for x, i := range cm.idx {
		if i == fi {
			j = x
		}
	}
	if j < 0 {
		return Result{}, fmt.Errorf("reservation %s does not use node %s", id, node)
	}
	out := c.prepare(unix(cm.Start), unix(cm.End), cm.Tenant, cm, all)
	// The reservation's other nodes stay its own; the failed one is out.
	for _, i := range cm.idx {
		if c.scratch.mask[i] != 0 {
			c.scratch.setMask(i, 0)
			out = append(out, i)
		}
	}
	var res Result
	var err error
	partial := j < len(cm.GPUs) && cm.GPUs[j] != nil
	if partial {
		res, err = c.scratch.Place(Request{GPUs: len(cm.GPUs[j]), Class: cm.Class})
	} else {
		res, err = c.scratch.Replace(c.T.nodes[fi].id, cm.Request.Within)
	}
	c.restore(out)
	if err != nil || res.Plan == nil {
		return res, err
	}
	a := res.Plan.Nodes[0]
	c.remove(fi, func(e entry) bool { return e.rsv == cm })
	ri, _ := c.T.NodeIndex(a.NodeID)
	cm.Nodes[j], cm.idx[j] = a.NodeID, ri
	c.work.moved(c.T, c.byNode, cm, fi, ri)
	if partial {
		cm.GPUs[j] = append([]int(nil), a.GPUs...)
	}
	cm.masks[j] = c.maskOf(cm, j)
	c.insert(ri, c.reservationEntry(cm, j))
	return res, nil
}

// Block marks a node failed in the calendar's own snapshot, so that no
// admission uses it until the calendar is rebuilt.
func (c *Calendar) Block(node string) error {
	i, ok := c.T.NodeIndex(node)
	if !ok {
		return fmt.Errorf("node %q is not in this calendar", node)
	}
	c.scratch.Block(i, ReasonHealth)
	return nil
}

// AddWindow records maintenance and returns the reservations it touches,
// which must be notified (and, if future, may be re-chosen around it).
func (c *Calendar) AddWindow(w *Window) ([]string, error) {
	idx, err := c.index(w.Nodes)
	if err != nil {
		return nil, err
	}
	w.idx = idx
	c.windows[w.ID] = w
	touched := map[string]bool{}
	s, e := unix(w.Start), unix(w.End)
	for _, i := range idx {
		for _, en := range c.byNode[i] {
			if en.rsv != nil && en.start < e && en.end > s {
				touched[en.rsv.ID] = true
			}
		}
		c.insert(i, entry{start: s, end: e, mask: c.scratch.full, tenant: -1})
	}
	out := make([]string, 0, len(touched))
	for id := range touched {
		out = append(out, id)
	}
	sort.Strings(out)
	return out, nil
}

// Rolling plans maintenance of nodes, each for d, from start, as a series of
// windows: a node joins a batch only if no reservation it serves would then
// have more than its MaxOut nodes (at least one) out at once.
func (c *Calendar) Rolling(idPrefix string, nodes []string, start time.Time, d time.Duration) ([]*Window, error) {
	idx, err := c.index(nodes)
	if err != nil {
		return nil, err
	}
	var windows []*Window
	left := idx
	at := start
	for batch := 0; len(left) > 0; batch++ {
		out := map[*Reservation]int{}
		var take, rest []int
		for _, i := range left {
			ok := true
			var serves []*Reservation
			for _, en := range c.byNode[i] {
				if en.rsv != nil && en.rsv.committed() && en.start < unix(at.Add(d)) && en.end > unix(at) {
					serves = append(serves, en.rsv)
					if out[en.rsv] >= max(1, en.rsv.MaxOut) {
						ok = false
					}
				}
			}
			if !ok {
				rest = append(rest, i)
				continue
			}
			for _, cm := range serves {
				out[cm]++
			}
			take = append(take, i)
		}
		w := &Window{ID: fmt.Sprintf("%s-%d", idPrefix, batch+1), Start: at, End: at.Add(d)}
		for _, i := range take {
			w.Nodes = append(w.Nodes, c.T.nodes[i].id)
		}
		if _, err := c.AddWindow(w); err != nil {
			return nil, err
		}
		windows = append(windows, w)
		left, at = rest, at.Add(d)
	}
	return windows, nil
}

// OutAt returns how many nodes of a reservation are in maintenance at t.
func (c *Calendar) OutAt(id string, t time.Time) int {
	cm, ok := c.rsvs[id]
	if !ok {
		return 0
	}
	n := 0
	for _, i := range cm.idx {
		for _, en := range c.byNode[i] {
			if en.maintenance() && en.start <= unix(t) && unix(t) < en.end {
				n++
				break
			}
		}
	}
	return n
}
