package placement

import (
	"cmp"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// evaluator picks, domain by domain, the cheapest victims that free k
// nodes. Workers evaluate disjoint domains at once, each with its own
// evaluator: its scratch is indexed by holder number, and what it reads of
// the calendar stays unchanged while they run.
type evaluator struct {
	*job

	// per holder number, set for the holders of the domain evaluated:
	// nodes taken by shrinks, and whether it is evicted
	take    []int32
	evicted []bool

	// buffers reused domain after domain
	opts   []option
	order  []uint64 // bucket key << 32 | the option's index
	sorted []uint64 // sortOptions' other buffer
	count  []int    // sortOptions' bucket counts
	pick   []option
}

// job is what the evaluators of one plan share, read only.
type job struct {
	c        *Calendar
	k, level int
	lazy     bool
	heldFree [][]int32
	s, e     int64         // the preemptor's interval, in Unix seconds
	frac     time.Duration // now's fraction of a second
}

// evaluators readies n evaluators for one plan; they are kept between
// plans for their scratch.
func (c *Calendar) evaluators(n int, j *job) []*evaluator {
	for len(c.evals) < n {
		c.evals = append(c.evals, &evaluator{})
	}
	holders := len(c.work.recs)
	for _, v := range c.evals[:n] {
		v.job = j
		if len(v.take) < holders {
			v.take, v.evicted = make([]int32, holders), make([]bool, holders)
		}
	}
	return c.evals[:n]
}

// evaluateAll evaluates every domain and answers the candidates in domain
// order. Several workers each take the next domain not yet taken (domains
// differ in work); one goes through them in turn.
func (c *Calendar) evaluateAll(domains []domain, j *job) []cand {
	workers := min(c.workersFor(len(c.heldNodes), 4096), len(domains))
	evs := c.evaluators(workers, j)
	found := make([]cand, len(domains))
	if workers == 1 {
		for di, d := range domains {
			found[di] = evs[0].candidate(di, d)
		}
	} else {
		var next atomic.Int32
		run := func(v *evaluator) {
			for di := int(next.Add(1) - 1); di < len(domains); di = int(next.Add(1) - 1) {
				found[di] = v.candidate(di, domains[di])
			}
		}
		var wg sync.WaitGroup
		for _, v := range evs[1:] {
			wg.Go(func() { run(v) })
		}
		run(evs[0])
		wg.Wait()
	}
	return slices.DeleteFunc(found, func(cd cand) bool { return !cd.ok })
}

// candidates returns the domains whose victims would free enough nodes, one
// by one in order of cost (then of place). The eager path evaluates every
// domain first. The lazy one orders the domains by a lower bound on their
// cost and evaluates one only while the best found so far is not better
// than its bound: the order is the same, and a domain that cannot come
// first is never evaluated.
func (c *Calendar) candidates(domains []domain, j *job) func() (cand, bool) {
	if !j.lazy {
		cands := c.evaluateAll(domains, j)
		slices.SortFunc(cands, compareCands)
		return func() (cand, bool) {
			if len(cands) == 0 {
				return cand{}, false
			}
			cd := cands[0]
			cands = cands[1:]
			return cd, true
		}
	}
	bounds := c.bounds(domains, j)
	slices.SortFunc(bounds, compareCands)
	v := c.evaluators(1, j)[0]
	var found []cand // evaluated, best first
	return func() (cand, bool) {
		for len(bounds) > 0 && (len(found) == 0 || compareCands(found[0], bounds[0]) > 0) {
			b := bounds[0]
			bounds = bounds[1:]
			if cd := v.candidate(int(b.d), domains[b.d]); cd.ok {
				at, _ := slices.BinarySearchFunc(found, cd, compareCands)
				found = slices.Insert(found, at, cd)
			}
		}
		if len(found) == 0 {
			return cand{}, false
		}
		cd := found[0]
		found = found[1:]
		return cd, true
	}
}

// compareCands orders candidates by cost, then by place.
func compareCands(a, b cand) int {
	for i := range a.cost {
		if a.cost[i] != b.cost[i] {
			return cmp.Compare(a.cost[i], b.cost[i])
		}
	}
	return cmp.Compare(a.lo, b.lo) // domains differ in lo: no ties left
}

// bounds gives each domain where evaluate might find victims (lazy path:
// its free nodes are counted) a lower bound on the cost it would find.
// Before evaluate evicts spot work, shrinks and internal evictions have
// freed at most the internal holders' nodes there and what the spot
// holders' shrink steps can; each spot eviction frees at most its
// holder's nodes there, so it needs at least as many as the largest of
// them take to cover the rest. Internal evictions likewise, after every
// shrink; and were evaluate to go on to spot work, it would have evicted
// every internal holder that shrinks cannot take whole. Shrinks and
// GPU-hours are bounded by 0.
func (c *Calendar) bounds(domains []domain, j *job) []cand {
	out := c.bounded[:0]
	spot, internal := c.sizes[0][:0], c.sizes[1][:0]
	for di, d := range domains {
		groups := c.groups[c.groupAt[di]:c.groupAt[di+1]]
		need := j.k - int(c.scratch.free[j.level][di]-j.heldFree[j.level][di])
		if need <= 0 || len(groups) == 0 {
			continue // evaluate finds nothing here
		}
		total, in, shrinks, spotShrinks, stuck := 0, 0, 0, 0, 0
		spot, internal = spot[:0], internal[:0]
		for x := range groups {
			g := &groups[x]
			n, most := int(g.n), 0
			if g.shrink >= 0 {
				most = min(int(g.n), int(g.nodes-g.min))
			}
			total, shrinks = total+n, shrinks+most
			if int(g.rank) == classRank(ClassSpot) {
				spot, spotShrinks = append(spot, g.n), spotShrinks+most
			} else {
				internal, in = append(internal, g.n), in+n
				if n > most {
					stuck++
				}
			}
		}
		if total < need {
			continue // not enough to free here
		}
		cd := cand{d: int32(di), lo: d.lo, hi: d.hi, ok: true}
		if rest := need - in - spotShrinks; rest > 0 {
			cd.cost[0] = float64(fewest(spot, rest, &c.count))
		}
		if rest := need - shrinks; rest > 0 {
			cd.cost[1] = float64(min(fewest(internal, rest, &c.count), stuck))
		}
		out = append(out, cd)
	}
	c.bounded, c.sizes[0], c.sizes[1] = out, spot, internal
	return out
}

// fewest is how few of sizes, largest first, sum to at least n (one more
// than there are when all of them fall short). Sizes are mostly small:
// it counts them by size in count, unless they spread wider than they
// are many, when it sorts them.
func fewest(sizes []int32, n int, count *[]int32) int {
	total, top := 0, int32(0)
	for _, s := range sizes {
		total, top = total+int(s), max(top, s)
	}
	switch {
	case total < n:
		return len(sizes) + 1
	case int(top) > 4*len(sizes)+64:
		slices.Sort(sizes)
		x := len(sizes) - 1
		for ; x > 0 && n > int(sizes[x]); x-- {
			n -= int(sizes[x])
		}
		return len(sizes) - x // the sizes sum to n or more
	}
	cnt := slices.Grow((*count)[:0], int(top)+1)[:top+1]
	clear(cnt)
	for _, s := range sizes {
		cnt[s]++
	}
	*count = cnt
	taken := 0
	for s := int(top); s > 0; s-- {
		c := int(cnt[s])
		if c*s >= n {
			return taken + (n+s-1)/s
		}
		taken, n = taken+c, n-c*s
	}
	return taken // not reached: the sizes sum to n or more
}

// workersFor is how many workers preemption planning puts on work of n
// items: one per per items, as many as there are cores at most (the
// calendar's own count in tests).
func (c *Calendar) workersFor(n, per int) int {
	if c.workers > 0 {
		return c.workers
	}
	return min(runtime.GOMAXPROCS(0), 1+n/per)
}

// candidate evaluates domain d (index di at the level).
func (v *evaluator) candidate(di int, d domain) cand {
	cost, _, ok := v.evaluate(di, d, false)
	cd := cand{d: int32(di), lo: d.lo, hi: d.hi, cost: cost, ok: ok}
	if v.level < 0 {
		cd.d = -1
	}
	return cd
}

// cand is a domain whose victims would free enough nodes, and their cost.
type cand struct {
	d      int32 // index at level (−1: the site)
	lo, hi int32
	cost   [4]float64 // spot evictions, internal evictions, shrinks, GPU-hours
	ok     bool       // the domain's victims free enough nodes
}

// hoursLeft is what a victim loses: an evicted reservation the rest of its
// time (to the preemptor's end if it has none), a shrunk one its step
// while the preemptor runs. In whole seconds, as the calendar keeps times,
// less now's fraction.
func (v *evaluator) hoursLeft(h *holding, shrink bool) float64 {
	stop := h.e
	if (shrink || stop >= unix(Forever)) && v.e < stop {
		stop = v.e
	}
	return max(0, (time.Duration(stop-v.s)*time.Second - v.frac).Hours())
}

// freeNode reports whether node i is free for the preemptor as it is
// (eager path).
func (v *evaluator) freeNode(i int32) bool {
	c := v.c
	return !c.held.has(int(i)) && c.scratch.mask[i] == c.scratch.full && c.scratch.usable(int(i)) && !c.T.spare[i]
}

// sortOptions orders the options into v.order by bucket key (shrinks
// first, then internal before spot, then larger first), then by index.
// Option sizes are few: a counting sort over the keys present does it in
// one pass, unless the sizes spread wider than the options are many.
func (v *evaluator) sortOptions(d domain) {
	opts := v.opts
	v.order = slices.Grow(v.order[:0], len(opts))[:len(opts)]
	top := 0 // the largest option
	for x := range opts {
		o := &opts[x]
		top = max(top, len(o.nodes))
		sk := uint64(d.hi-d.lo) - uint64(len(o.nodes)) // < 1<<30: larger first
		if !o.shrink {
			sk |= 1 << 31
		}
		sk |= uint64(o.rank) << 30
		v.order[x] = sk<<32 | uint64(x)
	}
	buckets := 4 * (top + 1)
	if buckets > 4*len(opts)+64 {
		slices.Sort(v.order)
		return
	}
	v.count = slices.Grow(v.count[:0], buckets+1)[:buckets+1]
	clear(v.count)
	for _, ox := range v.order {
		v.count[v.bucketOf(ox>>32, d, top)+1]++
	}
	for b := 1; b <= buckets; b++ {
		v.count[b] += v.count[b-1]
	}
	v.sorted = slices.Grow(v.sorted[:0], len(opts))[:len(opts)]
	for _, ox := range v.order { // ascending index: each bucket keeps it
		b := v.bucketOf(ox>>32, d, top)
		v.sorted[v.count[b]] = ox
		v.count[b]++
	}
	v.order, v.sorted = v.sorted, v.order
}

// bucketOf maps a bucket key to its place among 4 × (top+1) buckets.
func (v *evaluator) bucketOf(sk uint64, d domain, top int) int {
	size := int(d.hi-d.lo) - int(sk&(1<<30-1))
	return int(sk>>30)*(top+1) + top - size
}

// takesWhole says whether the greedy pass, having got nodes, takes every
// option of a bucket (their gains fall short of need together).
func (v *evaluator) takesWhole(bucket []uint64, got, need int) bool {
	for _, ox := range bucket {
		if o := &v.opts[uint32(ox)]; o.shrink {
			got += len(o.nodes)
		} else if h := o.h; !v.evicted[h] {
			got += max(0, len(o.nodes)-int(v.take[h]))
		}
	}
	return got < need
}

// evaluate picks the cheapest victims freeing k nodes in domain d (index
// di at the level); with keep, the pick is the caller's (else it lives in
// the evaluator's buffers).
func (v *evaluator) evaluate(di int, d domain, keep bool) (cost [4]float64, pick []option, ok bool) {
	c := v.c
	// The domain's holders, in holder order, with their reclaim nodes; the
	// free nodes counted, or in lazy mode known from the counts.
	groups := c.groups[c.groupAt[di]:c.groupAt[di+1]]
	free := 0
	if v.lazy {
		free = int(c.scratch.free[v.level][di] - v.heldFree[v.level][di])
	} else {
		for i := d.lo; i < d.hi; i++ {
			if v.freeNode(i) {
				free++
			}
		}
	}
	need := v.k - free
	if need <= 0 || len(groups) == 0 {
		return cost, nil, false // free enough here (the constraint below failed), or nothing to reclaim
	}
	for _, gr := range groups {
		v.take[gr.h], v.evicted[gr.h] = 0, false
	}
	// Options: whole shrink steps of elastic work, then evictions.
	g, L := float64(c.T.SKU.GPUsPerNode), len(c.T.Levels)
	v.opts = v.opts[:0]
	for x := range groups {
		gr := &groups[x]
		hd, nodes := &gr.holding, c.nodes(*gr)
		if sl := int(hd.shrink); sl >= 0 {
			anc := func(i int32) int32 { return c.T.flat[int(i)*L+sl] }
			// nodes ascend and domains are index ranges: a shrink step
			// (its nodes in one domain of the shrink level) is a run.
			spare := int(hd.nodes - hd.min)
			for a := 0; a < len(nodes); {
				b := a + 1
				for b < len(nodes) && anc(nodes[b]) == anc(nodes[a]) {
					b++
				}
				if st := nodes[a:b:b]; len(st) <= spare {
					v.opts = append(v.opts, option{h: gr.h, rank: hd.rank, shrink: true, nodes: st, hours: float64(len(st)) * g * v.hoursLeft(hd, true)})
					spare -= len(st)
				}
				a = b
			}
		}
		v.opts = append(v.opts, option{h: gr.h, rank: hd.rank, nodes: nodes, hours: float64(hd.nodes) * g * v.hoursLeft(hd, false)})
	}
	// Order: shrinks first, then internal before spot, then larger first
	// (a bucket per such key), then within a bucket fewer GPU-hours lost,
	// then the lowest first node (the option's place in the domain). A
	// bucket the greedy pass takes whole needs no order inside unless the
	// caller keeps the pick.
	opts := v.opts
	v.sortOptions(d)
	got := 0
	pick = v.pick[:0]
	for a := 0; a < len(v.order) && got < need; {
		b := a + 1
		for b < len(v.order) && v.order[b]>>32 == v.order[a]>>32 {
			b++
		}
		bucket := v.order[a:b]
		a = b
		if keep || !v.takesWhole(bucket, got, need) {
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
			h := o.h
			if v.evicted[h] {
				continue
			}
			if !o.shrink {
				// Evicting after shrinking: count only what the shrinks left.
				already := int(v.take[h])
				if already >= len(o.nodes) {
					continue
				}
				got -= already
				v.evicted[h] = true
				if int(o.rank) == classRank(ClassSpot) {
					cost[0]++
				} else {
					cost[1]++
				}
			} else {
				v.take[h] += int32(len(o.nodes))
				cost[2]++
			}
			pick = append(pick, o)
			got += len(o.nodes)
			cost[3] += o.hours
		}
	}
	v.pick = pick
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
