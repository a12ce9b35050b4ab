package placement

import (
	"cmp"
	"fmt"
	"slices"
	"sort"
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

// option is one way to free nodes inside a domain.
// holderRun is a run of one holder's reclaim nodes inside one domain:
// c.runNodes[lo:hi].
type holderRun struct {
	cm     *Reservation
	lo, hi int
}

type option struct {
	cm     *Reservation
	shrink bool
	nodes  []int
	hours  float64
	key    uint64 // the order before hours: shrink, class, size
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
	// never overlaps other work, so a node mostly has one holder; more go to
	// extra. reclaim marks the whole-free non-spare nodes that only such
	// work keeps busy.
	if c.holder == nil {
		c.holder = make([]*Reservation, len(c.T.nodes))
		c.reclaim = newBitset(len(c.T.nodes))
	}
	held := c.holder
	k := r.GPUs / c.T.SKU.GPUsPerNode
	level := -1
	if r.Within != "" {
		level = c.T.level(r.Within)
	}
	// Held nodes are marked busy in the snapshot only where needed: a
	// whole-node gang within one domain is simulated inside its candidate
	// domain alone (lazy); any other request marks them all, as does the
	// check whether r fits without preemption when some domain might. The
	// lazy path also gathers, in the same pass, each holder's reclaim nodes
	// per domain of the level (runs: a holder's nodes ascend, and domains
	// are index ranges) and the reclaim counts per domain of every level.
	lazy := !c.eager && level >= 0 && k > 0 && r.Whole == "" && len(r.MaxDomains) == 0 && len(r.Exclude) == 0
	heldFree := c.clearHeldFree()
	L := len(c.T.Levels)
	extra := c.gather(s, e, level, lazy)
	defer func() {
		for _, i := range c.heldNodes {
			held[i] = nil
		}
	}()
	defer clear(c.reclaim)
	c.T.sumUp(heldFree)

	// 2. Lazy or eager.
	markAll := func() {
		for _, i := range c.heldNodes {
			if c.scratch.mask[i] != 0 {
				c.scratch.setMask(i, 0)
				out = append(out, i)
			}
		}
	}
	if lazy {
		mayFit := false
		for d := range c.T.dom[level] {
			if int(c.scratch.free[level][d]-heldFree[level][d]) >= k {
				mayFit = true
				break
			}
		}
		if mayFit {
			lazy = false
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
	type cand struct {
		d      int32 // index at level (−1: the site)
		lo, hi int32
		cost   [4]float64 // spot evictions, internal evictions, shrinks, GPU-hours
		pick   []option
	}
	var cands []cand
	// An evicted reservation loses the rest of its time (to the preemptor's
	// end if it has none); a shrunk one loses its step while r runs.
	// In whole seconds, as the calendar keeps times, less now's fraction.
	forever, frac := unix(Forever), time.Duration(now.Nanosecond())
	hoursLeft := func(cm *Reservation, shrink bool) float64 {
		stop := cm.e
		if (shrink || stop >= forever) && e < stop {
			stop = e
		}
		return max(0, (time.Duration(stop-s)*time.Second - frac).Hours())
	}
	g := float64(c.T.SKU.GPUsPerNode)
	domains := []domain{{lo: 0, hi: int32(len(c.T.nodes))}}
	if level >= 0 {
		domains = c.T.dom[level]
	}
	// Per domain, the reclaimable nodes are grouped by holder without maps:
	// a holder's slot is valid while its mark is this domain's generation.
	type group struct {
		cm    *Reservation
		n, at int // nodes, and where they start in flat
	}
	var groups []group
	var flat []int
	var opts []option
	freeNode := func(i int32) bool {
		return held[i] == nil && c.scratch.mask[i] == c.scratch.full && c.scratch.usable(int(i)) && !c.T.spare[i]
	}
	var order []uint64 // bucket key << 32 | the option's index
	// takesWhole says whether the greedy pass, having got nodes, takes
	// every option of a bucket (their gains fall short of need together).
	takesWhole := func(bucket []uint64, got, need int) bool {
		for _, ox := range bucket {
			if o := &opts[uint32(ox)]; o.shrink {
				got += len(o.nodes)
			} else if !o.cm.evicted {
				got += max(0, len(o.nodes)-int(o.cm.taken))
			}
		}
		return got < need
	}
	// evaluate picks the cheapest victims freeing k nodes in domain d; with
	// keep, the pick is the caller's (else it lives in reused buffers).
	var pickBuf []option
	evaluate := func(di int, d domain, keep bool) (cost [4]float64, pick []option, ok bool) {
		free := 0
		c.gen++
		groups = groups[:0]
		add := func(cm *Reservation, n int) {
			if cm.mark != c.gen {
				cm.mark, cm.slot, cm.taken, cm.evicted = c.gen, int32(len(groups)), 0, false
				groups = append(groups, group{cm: cm})
			}
			groups[cm.slot].n += n
		}
		if lazy {
			// The domain's free nodes, and its holders from the runs.
			free = int(c.scratch.free[level][di] - heldFree[level][di])
			for _, run := range c.runs[di] {
				add(run.cm, run.hi-run.lo)
			}
		} else {
			for i := d.lo; i < d.hi; i++ {
				if freeNode(i) {
					free++
					continue
				}
				if held[i] != nil && c.reclaim.has(int(i)) {
					add(held[i], 1)
					for _, cm := range extra[int(i)] {
						add(cm, 1)
					}
				}
			}
		}
		need := k - free
		if need <= 0 || len(groups) == 0 {
			return cost, nil, false // free enough here (the constraint below failed), or nothing to reclaim
		}
		// Lay the groups' nodes out in one slice, in ascending order.
		total := 0
		for x := range groups {
			groups[x].at, total = total, total+groups[x].n
			groups[x].n = 0
		}
		flat = slices.Grow(flat[:0], total)[:total]
		put := func(cm *Reservation, i int) {
			gr := &groups[cm.slot]
			flat[gr.at+gr.n] = i
			gr.n++
		}
		if lazy {
			for _, run := range c.runs[di] {
				for _, i := range c.runNodes[run.lo:run.hi] {
					put(run.cm, i)
				}
			}
			for _, gr := range groups {
				// A holder re-chosen onto a node out of order has runs out of
				// order; shrink steps need its nodes ascending.
				if nodes := flat[gr.at : gr.at+gr.n]; !slices.IsSorted(nodes) {
					slices.Sort(nodes)
				}
			}
		} else {
			for i := d.lo; i < d.hi; i++ {
				if held[i] != nil && c.reclaim.has(int(i)) && !freeNode(i) {
					put(held[i], int(i))
					for _, cm := range extra[int(i)] {
						put(cm, int(i))
					}
				}
			}
		}
		// Options: whole shrink steps of elastic work, then evictions.
		opts = opts[:0]
		for _, gr := range groups {
			cm, nodes := gr.cm, flat[gr.at:gr.at+gr.n:gr.at+gr.n]
			if cm.MinNodes > 0 && cm.ShrinkLevel != "" {
				if sl := c.T.level(cm.ShrinkLevel); sl >= 0 {
					anc := func(i int) int32 { return c.T.flat[i*L+sl] }
					// nodes ascend and domains are index ranges: a shrink step
					// (its nodes in one domain of the shrink level) is a run.
					spare := len(cm.Nodes) - cm.MinNodes
					for a := 0; a < len(nodes); {
						b := a + 1
						for b < len(nodes) && anc(nodes[b]) == anc(nodes[a]) {
							b++
						}
						if st := nodes[a:b:b]; len(st) <= spare {
							opts = append(opts, option{cm: cm, shrink: true, nodes: st, hours: float64(len(st)) * g * hoursLeft(cm, true)})
							spare -= len(st)
						}
						a = b
					}
				}
			}
			opts = append(opts, option{cm: cm, nodes: nodes, hours: float64(len(cm.Nodes)) * g * hoursLeft(cm, false)})
		}
		// Order: shrinks first, then internal before spot, then larger
		// first (a bucket per such key), then within a bucket fewer
		// GPU-hours lost, then the lowest first node (the option's place in
		// the domain). A bucket the greedy pass takes whole needs no order
		// inside unless the caller keeps the pick.
		order = order[:0]
		for x := range opts {
			o := &opts[x]
			sk := uint64(d.hi-d.lo) - uint64(len(o.nodes)) // < 1<<30: larger first
			if !o.shrink {
				sk |= 1 << 31
			}
			sk |= uint64(classRank(o.cm.Class)) << 30
			order = append(order, sk<<32|uint64(x))
		}
		slices.Sort(order)
		got := 0
		pick = pickBuf[:0]
		for a := 0; a < len(order) && got < need; {
			b := a + 1
			for b < len(order) && order[b]>>32 == order[a]>>32 {
				b++
			}
			bucket := order[a:b]
			a = b
			if keep || !takesWhole(bucket, got, need) {
				slices.SortFunc(bucket, func(x, y uint64) int {
					ox, oy := &opts[uint32(x)], &opts[uint32(y)]
					if ox.hours != oy.hours {
						return cmp.Compare(ox.hours, oy.hours)
					}
					return cmp.Or(cmp.Compare(ox.nodes[0], oy.nodes[0]), cmp.Compare(uint32(x), uint32(y)))
				})
			}
			for _, ox := range bucket {
				o := opts[uint32(ox)]
				if got >= need {
					break
				}
				if o.cm.evicted {
					continue
				}
				if !o.shrink {
					// Evicting after shrinking: count only what the shrinks left.
					already := int(o.cm.taken)
					if already >= len(o.nodes) {
						continue
					}
					got -= already
					o.cm.evicted = true
					if o.cm.Class == ClassSpot {
						cost[0]++
					} else {
						cost[1]++
					}
				} else {
					o.cm.taken += int32(len(o.nodes))
					cost[2]++
				}
				pick = append(pick, o)
				got += len(o.nodes)
				cost[3] += o.hours
			}
		}
		pickBuf = pick
		if got < need {
			return cost, nil, false
		}
		if keep {
			pick = slices.Clone(pick)
			for x := range pick {
				pick[x].nodes = slices.Clone(pick[x].nodes)
			}
		}
		return cost, pick, true
	}
	for di, d := range domains {
		if cost, _, ok := evaluate(di, d, false); ok {
			idx := int32(di)
			if level < 0 {
				idx = -1
			}
			cands = append(cands, cand{d: idx, lo: d.lo, hi: d.hi, cost: cost})
		}
	}
	sort.SliceStable(cands, func(a, b int) bool {
		for i := range cands[a].cost {
			if cands[a].cost[i] != cands[b].cost[i] {
				return cands[a].cost[i] < cands[b].cost[i]
			}
		}
		return cands[a].lo < cands[b].lo
	})
	// 4. Simulate in order of cost; the first that places is the answer.
	for _, cd := range cands {
		dom := domain{lo: cd.lo, hi: cd.hi}
		_, pick, _ := evaluate(int(max(cd.d, 0)), dom, true)
		cd.pick = pick
		var plan *Plan
		if lazy {
			plan = c.simulateIn(r, level, cd.d, cd.lo, cd.hi, cd.pick, heldFree)
		} else {
			freed := c.victimNodes(cd.pick)
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
		return Preemption{Plan: plan, Victims: c.victims(cd.pick, now, notice)}, nil
	}
	return Preemption{Refusal: "no set of spot or internal work frees a valid placement"}, nil
}

// gather marks each node's holder among the spot and internal work
// running over [s, e) (a node's further holders go to extra), the reclaim
// nodes and their count per domain of the last level, and in lazy mode each
// holder's runs of reclaim nodes per domain of level. It keeps its working
// slices in locals.
func (c *Calendar) gather(s, e int64, level int, lazy bool) (extra map[int][]*Reservation) {
	held, reclaim, spare := c.holder, c.reclaim, c.T.spare
	mask, full := c.scratch.mask, c.scratch.full
	flat, L, count := c.T.flat, len(c.T.Levels), c.heldFreeAll
	heldNodes, runNodes, runs := c.heldNodes[:0], c.runNodes[:0], c.runs
	lvlOff := int32(0)
	if lazy {
		if len(runs) != len(c.T.dom[level]) {
			runs = make([][]holderRun, len(c.T.dom[level]))
		}
		for d := range runs {
			runs[d] = runs[d][:0]
		}
		lvlOff = c.T.levelOff[level]
	}
	c.byTime.each(s, e, func(cm *Reservation) {
		if cm.committed() {
			return
		}
		cur, from := int32(-1), 0
		for _, i := range cm.idx {
			if held[i] == nil {
				held[i] = cm
				heldNodes = append(heldNodes, i)
			} else {
				if extra == nil {
					extra = map[int][]*Reservation{}
				}
				extra[i] = append(extra[i], cm)
			}
			if !reclaim.has(i) && mask[i] == full && !spare[i] {
				reclaim.set(i)         // only preemptible work keeps it busy
				count[flat[i*L+L-1]]++ // the levels above sum below
			}
			if lazy && reclaim.has(i) {
				if d := flat[i*L+level] - lvlOff; d != cur {
					if cur >= 0 {
						runs[cur] = append(runs[cur], holderRun{cm: cm, lo: from, hi: len(runNodes)})
					}
					cur, from = d, len(runNodes)
				}
				runNodes = append(runNodes, i)
			}
		}
		if cur >= 0 {
			runs[cur] = append(runs[cur], holderRun{cm: cm, lo: from, hi: len(runNodes)})
		}
	})
	c.heldNodes, c.runNodes, c.runs = heldNodes, runNodes, runs
	return extra
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
func (c *Calendar) simulateIn(r Request, level int, d, lo, hi int32, pick []option, heldFree [][]int32) *Plan {
	sn := c.scratch
	freed := c.freedSet(pick)
	var marked []int
	for i := lo; i < hi; i++ {
		if c.holder[i] != nil && !freed[int(i)] && sn.mask[i] != 0 {
			marked = append(marked, int(i))
		}
	}
	saved := make([]uint64, len(marked))
	for j, i := range marked {
		saved[j] = sn.mask[i]
		sn.setMask(i, 0)
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
	adj := make([][]int32, len(c.T.Levels))
	for l := range adj {
		adj[l] = slices.Clone(sn.free[l])
		for x := range adj[l] {
			adj[l][x] -= heldFree[l][x]
		}
	}
	dn := &c.T.nodes[lo]
	for l := range adj {
		if l <= level {
			adj[l][dn.anc[l]] += heldFree[level][d] // d's own are accounted for in sn
		} else {
			for x := range adj[l] {
				if c.T.dom[l][x].lo >= lo && c.T.dom[l][x].hi <= hi {
					adj[l][x] += heldFree[l][x]
				}
			}
		}
	}
	for i := range freed {
		if (int32(i) < lo || int32(i) >= hi) && c.reclaim.has(i) {
			for l, a := range c.T.nodes[i].anc {
				adj[l][a]++
			}
		}
	}
	sn.scoreWith(p, adj)
	return p
}

// freedSet is the set of nodes the picked options free.
func (c *Calendar) freedSet(pick []option) map[int]bool {
	out := map[int]bool{}
	for _, o := range pick {
		nodes := o.nodes
		if !o.shrink {
			nodes = o.cm.idx
		}
		for _, i := range nodes {
			out[i] = true
		}
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
		nodes := o.nodes
		if !o.shrink {
			nodes = o.cm.idx
		}
		for _, i := range nodes {
			if !seen[i] && c.reclaim.has(i) && c.scratch.mask[i] == 0 {
				seen[i] = true
				out = append(out, i)
			}
		}
	}
	return out
}

func (c *Calendar) victims(pick []option, now time.Time, notice map[Class]time.Duration) []Victim {
	byCm := map[*Reservation]*Victim{}
	var order []*Reservation
	for _, o := range pick {
		v, ok := byCm[o.cm]
		if !ok {
			v = &Victim{Reservation: o.cm.ID, Class: o.cm.Class, Action: "shrink", OffBy: now.Add(notice[o.cm.Class] + c.Turnaround)}
			byCm[o.cm] = v
			order = append(order, o.cm)
		}
		if !o.shrink {
			v.Action = "evict"
			v.Nodes = append([]string(nil), o.cm.Nodes...)
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
