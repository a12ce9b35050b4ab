package placement

import (
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"
)

// Victim is lower-class work a preemption plan reclaims: a whole
// reservation evicted, or an elastic one shrunk by whole steps. OffBy is
// when its nodes must be free: now plus its class's notice plus turnaround.
type Victim struct {
	Reservation string    `json:"reservation"`
	Class       Class     `json:"class"`
	Action      string    `json:"action" enum:"evict,shrink"`
	Nodes       []string  `json:"nodes"`
	GPUHours    float64   `json:"gpu_hours_lost"`
	OffBy       time.Time `json:"off_by"`
}

// Preemption is the answer of PlanPreemption: a plan that holds only once
// the victims are off, or a refusal when nothing helps.
type Preemption struct {
	Plan    *Plan    `json:"plan,omitempty"`
	Victims []Victim `json:"victims,omitempty"`
	Refusal string   `json:"refusal,omitempty"`
}

// classRank orders preemptible classes: internal work goes first.
func classRank(c Class) int {
	if c == ClassSpot {
		return 1
	}
	return 0
}

// option is one way to free nodes inside a domain: evicting holder h (of
// class rank rank), or shrinking it by a step.
type option struct {
	h      int32
	rank   int8
	shrink bool
	nodes  []int32 // the reclaim nodes it frees in the domain
	hours  float64
}

// frees calls fn for each node o frees: all of an evicted reservation's,
// a shrink step's own.
func (c *Calendar) frees(o *option, fn func(i int)) {
	if !o.shrink {
		for _, i := range c.work.nodes(&c.work.recs[o.h]) {
			fn(int(i))
		}
		return
	}
	for _, i := range o.nodes {
		fn(int(i))
	}
}

// PlanPreemption plans r (a committed class) over [now, end) for tenant
// when it does not fit: it picks whole spot and internal reservations (or
// whole shrink steps of elastic ones) whose removal yields a valid
// placement, minimizing first the victims' class, then their number, then
// the GPU-hours they lose, preferring shrinking to evicting. It simulates
// the placement before answering, and answers no victims when nothing helps
// or r fits as it is.
func (c *Calendar) PlanPreemption(r Request, tenant string, now, end time.Time, notice map[Class]time.Duration) (Preemption, error) {
	if r.Class.Preemptible() {
		return Preemption{}, fmt.Errorf("class %s cannot preempt", r.Class)
	}
	if len(c.T.nodes) >= 1<<30 {
		return Preemption{}, fmt.Errorf("preemption plans sites of fewer than %d nodes", 1<<30) // an option's bucket key holds a size
	}
	s, e := unix(now), unix(end)
	out := c.prepare(s, e, tenant, nil)
	defer func() { c.restore(out) }()
	// 1. Running spot and internal work occupies its nodes too. Such work
	// never overlaps other work, so a node mostly has one holder. reclaim
	// marks the whole-free non-spare nodes that only such work keeps busy.
	if c.held == nil {
		c.held = newBitset(len(c.T.nodes))
		c.reclaim = newBitset(len(c.T.nodes))
	}
	held := c.held
	k := r.GPUs / c.T.SKU.GPUsPerNode
	level := -1
	if r.Within != "" {
		level = c.T.level(r.Within)
	}
	// Held nodes are marked busy in the snapshot only where needed: a
	// whole-node gang within one domain is simulated inside its candidate
	// domain alone (lazy); any other request marks them all, as does the
	// check whether r fits without preemption when some domain might.
	// Either way the reclaim nodes are counted per domain of every level.
	lazy := !c.eager && level >= 0 && k > 0 && r.Whole == "" && len(r.MaxDomains) == 0 && len(r.Exclude) == 0
	unmark := func() {
		for _, i := range c.heldNodes {
			held.clear(i)
		}
		c.heldNodes = c.heldNodes[:0]
		clear(c.reclaim)
	}
	defer unmark()
	heldFree := c.clearHeldFree()
	if lazy {
		// The lazy path reads holders by runs; it falls back to the eager
		// one when some domain might fit r as it is.
		c.gatherRuns(s, e, level)
		c.T.sumUp(heldFree)
		for d := range c.T.dom[level] {
			if int(c.scratch.free[level][d]-heldFree[level][d]) >= k {
				lazy = false
				unmark()
				heldFree = c.clearHeldFree()
				break
			}
		}
	}
	if !lazy {
		c.gather(s, e, level)
		c.T.sumUp(heldFree)
	}

	// 2. Lazy or eager.
	markAll := func() {
		for _, i := range c.heldNodes {
			if c.scratch.mask[i] != 0 {
				c.scratch.setMask(i, 0)
				out = append(out, i)
			}
		}
	}
	if !lazy {
		markAll()
		res, err := c.scratch.place(r, false)
		if err != nil {
			return Preemption{}, err
		}
		if res.Plan != nil {
			return Preemption{Plan: res.Plan}, nil
		}
	} else if _, err := c.scratch.limits(r); err != nil {
		return Preemption{}, err
	}
	if r.Whole != "" || k == 0 {
		return Preemption{Refusal: "preemption plans whole-node gangs only"}, nil
	}

	// 3. Per domain of the constraint's level, the cheapest set of victims.
	domains := []domain{{lo: 0, hi: int32(len(c.T.nodes))}}
	if level >= 0 {
		domains = c.T.dom[level]
	}
	next := c.candidates(domains, &job{c: c, k: k, level: level, lazy: lazy, heldFree: heldFree, s: s, e: e, frac: time.Duration(now.Nanosecond())})
	// 4. Simulate in order of cost; the first that places is the answer.
	for cd, ok := next(); ok; cd, ok = next() {
		_, pick, _ := c.evals[0].evaluate(int(max(cd.d, 0)), domain{lo: cd.lo, hi: cd.hi}, true)
		var plan *Plan
		if lazy {
			plan = c.simulateIn(r, level, cd.d, cd.lo, cd.hi, pick, heldFree, s, e)
		} else {
			freed := c.victimNodes(pick)
			for _, i := range freed {
				c.scratch.setMask(i, c.scratch.full)
			}
			res, err := c.scratch.place(r, false)
			for _, i := range freed {
				c.scratch.setMask(i, 0)
			}
			if err != nil {
				return Preemption{}, err
			}
			plan = res.Plan
		}
		if plan == nil {
			continue
		}
		return Preemption{Plan: plan, Victims: c.victims(pick, now, notice)}, nil
	}
	return Preemption{Refusal: "no set of spot or internal work frees a valid placement"}, nil
}

// gather finds the spot and internal work running over [s, e) (the
// holders, numbered as the calendar's held work), marks the nodes they
// hold, marks the reclaim nodes and counts them per domain of the last
// level, and lists per domain of level (the site when level < 0) each
// holder's reclaim nodes there, in holder order. Workers each take a range
// of nodes, cut at whole domains of level and whole words of the reclaim
// set, and visit the nodes in their range of the holders that reach into
// it.
func (c *Calendar) gather(s, e int64, level int) {
	nodes := 0
	for x := range c.work.recs {
		if h := &c.work.recs[x]; h.s < e && h.e > s {
			nodes += int(h.nodes)
		}
	}
	cuts := c.T.cuts(c.workersFor(nodes, 8192), level)
	for len(c.parts) < len(cuts)-1 {
		c.parts = append(c.parts, &gathered{})
	}
	parts := c.parts[:len(cuts)-1]
	var wg sync.WaitGroup
	for w, p := range parts[1:] {
		wg.Go(func() { c.gatherRange(s, e, level, cuts[w+1], cuts[w+2], p) })
	}
	c.gatherRange(s, e, level, cuts[0], cuts[1], parts[0])
	wg.Wait()
	for x, p := range parts {
		for g := range p.groups {
			p.groups[g].part = int32(x)
		}
	}
	c.byDomain(parts, level)
}

// byDomain lists the groups the parts found by domain of level. Each
// domain lies in one part (gatherRuns has one): its groups are that
// part's, in holder order, and a stable counting sort by domain keeps the
// order.
func (c *Calendar) byDomain(parts []*gathered, level int) {
	doms := 1
	if level >= 0 {
		doms = len(c.T.dom[level])
	}
	c.groupAt = slices.Grow(c.groupAt[:0], doms+1)[:doms+1]
	clear(c.groupAt)
	c.heldNodes = c.heldNodes[:0]
	for _, p := range parts {
		c.heldNodes = append(c.heldNodes, p.heldNodes...)
		for _, g := range p.groups {
			c.groupAt[g.d+1]++
		}
	}
	for d := 1; d <= doms; d++ {
		c.groupAt[d] += c.groupAt[d-1]
	}
	c.groups = slices.Grow(c.groups[:0], int(c.groupAt[doms]))[:c.groupAt[doms]]
	for _, p := range parts {
		for _, g := range p.groups {
			c.groups[c.groupAt[g.d]] = g
			c.groupAt[g.d]++
		}
	}
	copy(c.groupAt[1:], c.groupAt[:doms]) // each now ends where the next starts
	c.groupAt[0] = 0
}

// group is holder h's reclaim nodes in domain d (of the level gathered
// for), ascending: n of them from at, in the buffer of part part of the
// gather, or (part −1) in the held work's arena. It holds no pointer, so
// that thousands are written and sorted cheaply.
type group struct {
	h, d, at, n int32
	part        int32
	holding     // what evaluation reads of the holder
}

// nodes returns g's nodes.
func (c *Calendar) nodes(g group) []int32 {
	if g.part < 0 {
		return c.work.arena[g.at : g.at+g.n : g.at+g.n]
	}
	return c.parts[g.part].nodes[g.at : g.at+g.n : g.at+g.n]
}

// gathered is what one worker of gather found in its range of nodes.
type gathered struct {
	heldNodes []int
	groups    []group
	nodes     []int32 // backs the groups' nodes
}

// gatherRange is gather's work on the nodes in [lo, hi), for the work
// running over [s, e), grouped by domain of level.
func (c *Calendar) gatherRange(s, e int64, level, lo, hi int, p *gathered) {
	held, reclaim, spare := c.held, c.reclaim, c.T.spare
	mask, full := c.scratch.mask, c.scratch.full
	flat, L, count := c.T.flat, len(c.T.Levels), c.heldFreeAll
	off := int32(0)
	if level >= 0 {
		off = c.T.levelOff[level]
	}
	heldNodes, groups, buf := p.heldNodes[:0], p.groups[:0], p.nodes[:0]
	for h := range c.work.recs {
		hd := &c.work.recs[h]
		if hd.s >= e || hd.e <= s || int(hd.hi) < lo || int(hd.lo) >= hi {
			continue
		}
		ns := c.work.nodes(hd) // ascending
		if int(ns[0]) < lo {
			ns = ns[sort.Search(len(ns), func(j int) bool { return int(ns[j]) >= lo }):]
		}
		cur := int32(-1)
		for _, i32 := range ns {
			i := int(i32)
			if i >= hi {
				break
			}
			first := !held.has(i)
			if first {
				held.set(i)
				heldNodes = append(heldNodes, i)
			}
			if mask[i] != full || spare[i] {
				continue // committed work holds it too, or a spare
			}
			if first {
				reclaim.set(i)         // only preemptible work keeps it busy
				count[flat[i*L+L-1]]++ // the levels above sum below
			}
			d := int32(0)
			if level >= 0 {
				d = flat[i*L+level] - off
			}
			if d != cur {
				groups = append(groups, group{h: int32(h), d: d, at: int32(len(buf)), holding: hd.holding})
				cur = d
			}
			buf = append(buf, i32)
			groups[len(groups)-1].n++
		}
	}
	p.heldNodes, p.groups, p.nodes = heldNodes, groups, buf
}

// gatherRuns is gather for a whole-node gang within a domain of level
// (the lazy path), with the same groups and reclaim counts but without
// visiting node by node where it need not: it reads the runs the held work
// keeps (a holder's nodes in one domain). In a clean domain (every node
// whole-free and usable, so no spares) a run is the group as it is, and
// its leaf runs are the counts. Nodes are read one by one only in other
// domains, and for holders that share nodes with other holders (a shared
// node counts once: c.held marks it, and c.heldNodes lists it to clear).
// It marks nothing else.
func (c *Calendar) gatherRuns(s, e int64, level int) {
	t := c.T
	L := len(t.Levels)
	leafOff, doms := t.levelOff[L-1], t.dom[level]
	c.clean = slices.Grow(c.clean[:0], len(doms))[:len(doms)]
	for d, dm := range doms {
		c.clean[d] = c.scratch.free[level][d] == dm.hi-dm.lo // free counts no spares
	}
	mask, full, spare, count := c.scratch.mask, c.scratch.full, t.spare, c.heldFreeAll
	if len(c.parts) == 0 {
		c.parts = append(c.parts, &gathered{})
	}
	p := c.parts[0]
	heldNodes, groups, buf := p.heldNodes[:0], p.groups[:0], p.nodes[:0]
	for h := range c.work.recs {
		hd := &c.work.recs[h]
		if hd.s >= e || hd.e <= s {
			continue
		}
		// Both runs are in node order, and a leaf run lies within one
		// run of any level: one pass over the leaf runs serves them all.
		ns, leafRuns, lj := c.work.nodes(hd), c.work.runsAt(h, L-1), 0
		for _, r := range c.work.runsAt(h, level) {
			nodes := ns[r.at : r.at+r.n : r.at+r.n]
			for lj < len(leafRuns) && leafRuns[lj].at < r.at {
				lj++
			}
			if c.clean[r.d] && hd.shared == 0 {
				groups = append(groups, group{h: int32(h), d: r.d, at: hd.at + r.at, n: r.n, part: -1, holding: hd.holding})
				for ; lj < len(leafRuns) && leafRuns[lj].at < r.at+r.n; lj++ {
					count[leafOff+leafRuns[lj].d] += leafRuns[lj].n
				}
				continue
			}
			at := len(buf)
			for _, i32 := range nodes {
				i := int(i32)
				if mask[i] != full || spare[i] {
					continue // committed work holds it too, or a spare
				}
				buf = append(buf, i32)
				if c.work.count[i] > 1 {
					if c.held.has(i) {
						continue // counted with another holder
					}
					c.held.set(i)
					heldNodes = append(heldNodes, i)
				}
				count[t.flat[i*L+L-1]]++
			}
			if len(buf) > at {
				groups = append(groups, group{h: int32(h), d: r.d, at: int32(at), n: int32(len(buf) - at), holding: hd.holding})
			}
		}
	}
	p.heldNodes, p.groups, p.nodes = heldNodes, groups, buf
	c.byDomain(c.parts[:1], level)
}

// clearHeldFree zeroes the reclaim counts per level and domain (filled as
// reclaim nodes are found) and returns them by level.
func (c *Calendar) clearHeldFree() [][]int32 {
	if c.heldFree == nil {
		c.heldFreeAll = make([]int32, c.T.levelOff[len(c.T.Levels)])
		c.heldFree = make([][]int32, len(c.T.Levels))
		for l := range c.heldFree {
			lo, hi := c.T.levelOff[l], c.T.levelOff[l+1]
			c.heldFree[l] = c.heldFreeAll[lo:hi:hi]
		}
	}
	clear(c.heldFreeAll)
	return c.heldFree
}

// simulateIn places r (k whole nodes within one domain of level) inside
// domain d with the picked victims off: the held nodes of d that stay held
// are marked busy for the attempt. The plan is scored as if every held node
// outside d were busy too, but for those the victims free.
func (c *Calendar) simulateIn(r Request, level int, d, lo, hi int32, pick []option, heldFree [][]int32, s, e int64) *Plan {
	sn := c.scratch
	freed := c.freedSet(pick)
	defer func() {
		for _, i := range freed {
			c.freed.clear(i)
		}
	}()
	// The held nodes of d: the nodes in [lo, hi) of the holders that
	// reach into it (a node two hold is marked once).
	var marked []int
	var saved []uint64
	for x := range c.work.recs {
		hd := &c.work.recs[x]
		if hd.s >= e || hd.e <= s || hd.hi < lo || hd.lo >= hi {
			continue
		}
		for _, i32 := range c.work.nodes(hd) {
			if i := int(i32); i32 >= lo && i32 < hi && !c.freed.has(i) && sn.mask[i] != 0 {
				marked, saved = append(marked, i), append(saved, sn.mask[i])
				sn.setMask(i, 0)
			}
		}
	}
	defer func() {
		for j, i := range marked {
			sn.setMask(i, saved[j])
		}
	}()
	lim, _ := sn.limits(r)
	k := r.GPUs / c.T.SKU.GPUsPerNode
	if sn.freeAt(level, d, false) < k {
		return nil
	}
	var picked []int
	if why := sn.into(level, d, k, lim, false, &picked); why != "" {
		return nil
	}
	sort.Ints(picked)
	p := sn.wholeNodes(picked)
	// Score against the free capacity the full simulation would see: the
	// reclaim nodes outside d are busy unless a victim frees them.
	if c.adj == nil {
		c.adjAll = make([]int32, len(sn.freeAll))
		c.adj = make([][]int32, len(c.T.Levels))
		for l := range c.adj {
			lo, hi := c.T.levelOff[l], c.T.levelOff[l+1]
			c.adj[l] = c.adjAll[lo:hi:hi]
		}
	}
	adj := c.adj
	for x, f := range sn.freeAll {
		c.adjAll[x] = f - c.heldFreeAll[x] // heldFree's backing, in the same layout
	}
	first, last := &c.T.nodes[lo], &c.T.nodes[hi-1]
	for l := range adj {
		if l <= level {
			adj[l][first.anc[l]] += heldFree[level][d] // d's own are accounted for in sn
		} else {
			// The domains below d: those of d's first node to its last.
			for x := first.anc[l]; x <= last.anc[l]; x++ {
				adj[l][x] += heldFree[l][x]
			}
		}
	}
	for _, i := range freed {
		// A freed node is a victim's: a reclaim node unless committed
		// work holds it too, or it is a spare.
		if (int32(i) < lo || int32(i) >= hi) && sn.mask[i] == sn.full && !c.T.spare[i] {
			for l, a := range c.T.nodes[i].anc {
				adj[l][a]++
			}
		}
	}
	sn.scoreWith(p, adj)
	return p
}

// freedSet marks in c.freed the nodes the picked options free and lists
// each once; the caller clears the marks.
func (c *Calendar) freedSet(pick []option) []int {
	if c.freed == nil {
		c.freed = newBitset(len(c.T.nodes))
	}
	var out []int
	for _, o := range pick {
		c.frees(&o, func(i int) {
			if !c.freed.has(i) {
				c.freed.set(i)
				out = append(out, i)
			}
		})
	}
	return out
}

// victimNodes lists the nodes the picked options free (evictions free all
// of a reservation's nodes, shrinks their step): those only preemptible
// work kept busy. A node committed work also holds stays busy.
func (c *Calendar) victimNodes(pick []option) []int {
	seen := map[int]bool{}
	var out []int
	for _, o := range pick {
		c.frees(&o, func(i int) {
			if !seen[i] && c.reclaim.has(i) && c.scratch.mask[i] == 0 {
				seen[i] = true
				out = append(out, i)
			}
		})
	}
	return out
}

func (c *Calendar) victims(pick []option, now time.Time, notice map[Class]time.Duration) []Victim {
	byCm := make(map[*Reservation]*Victim, len(pick))
	var order []*Reservation
	for _, o := range pick {
		cm := c.work.recs[o.h].cm
		v, ok := byCm[cm]
		if !ok {
			v = &Victim{Reservation: cm.ID, Class: cm.Class, Action: "shrink", OffBy: now.Add(notice[cm.Class] + c.Turnaround)}
			byCm[cm] = v
			order = append(order, cm)
		}
		if !o.shrink {
			v.Action = "evict"
			v.Nodes = append([]string(nil), cm.Nodes...)
			v.GPUHours = o.hours
			continue
		}
		if v.Action == "shrink" {
			for _, i := range o.nodes {
				v.Nodes = append(v.Nodes, c.T.nodes[i].id)
			}
			v.GPUHours += o.hours
		}
	}
	out := make([]Victim, 0, len(order))
	for _, cm := range order {
		out = append(out, *byCm[cm])
	}
	return out
}

// ChooseSpares picks concrete spare nodes by policy: in every domain of
// level, count nodes, or percent of its nodes rounded up (whichever is
// larger), taken from the end of the domain (the last nodes by path).
func (t *Topology) ChooseSpares(level string, count int, percent float64) ([]string, error) {
	l := t.level(level)
	if l < 0 {
		return nil, fmt.Errorf("spares: no level %q", level)
	}
	var out []string
	for _, d := range t.dom[l] {
		size := int(d.hi - d.lo)
		n := max(count, int(float64(size)*percent/100+0.999999))
		for i := d.hi - 1; i >= d.lo && n > 0; i-- {
			out = append(out, t.nodes[i].id)
			n--
		}
	}
	sort.Strings(out)
	return out, nil
}
