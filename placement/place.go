package placement

import (
	"fmt"
	"math/bits"
	"sort"
	"strconv"
	"strings"
)

// Class is a request's priority class, highest first.
type Class string

const (
	ClassLease    Class = "lease"
	ClassReserved Class = "reserved"
	ClassOnDemand Class = "on_demand"
	ClassSpot     Class = "spot"
	ClassInternal Class = "internal"
)

// Preemptible reports whether work of class c may be reclaimed; such work
// may also run on spares meanwhile.
func (c Class) Preemptible() bool { return c == ClassSpot || c == ClassInternal }

// Request asks for GPUs of the snapshot's SKU.
//
// GPUs is a multiple of the SKU's GPUs per node (whole nodes, a gang) or one
// of its partitions (inside one node). Within names a level whose single
// domain must hold every node; MaxDomains caps the domains used at a level;
// with neither, nodes are still packed into the fewest domains. Whole names a
// domain path ("h1", or "*" for the site) every non-spare node of which is
// asked for; GPUs is then ignored.
type Request struct {
	GPUs       int
	Class      Class
	Within     string
	MaxDomains map[string]int
	Exclude    []string // node ids or hostnames
	Whole      string
}

// Constraint renders the request's topology constraint.
func (r Request) Constraint() string {
	var parts []string
	if r.Within != "" {
		parts = append(parts, "within="+r.Within)
	}
	keys := make([]string, 0, len(r.MaxDomains))
	for k := range r.MaxDomains {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("max_domains=%s:%d", k, r.MaxDomains[k]))
	}
	if r.Whole != "" {
		parts = append(parts, "whole="+r.Whole)
	}
	if len(parts) == 0 {
		return "pack"
	}
	return strings.Join(parts, ",")
}

// Assignment is the GPUs of one node a plan uses.
type Assignment struct {
	NodeID string `json:"node_id"`
	Domain string `json:"domain"`
	GPUs   []int  `json:"gpus"` // may share its array with other assignments: read only
	index  int
}

// LevelScore compares the domains a plan uses at one level with the fewest
// possible: on an empty fleet, and on the free capacity it was planned on.
type LevelScore struct {
	Level      string `json:"level"`
	Used       int    `json:"used"`
	BoundEmpty int    `json:"bound_empty"`
	BoundFree  int    `json:"bound_free"`
}

// Plan is where a request goes.
type Plan struct {
	Nodes []Assignment `json:"nodes"`
	GPUs  int          `json:"gpus"`
	Score []LevelScore `json:"score"`
}

// Used returns the domains used at level name, or -1.
func (p *Plan) Used(level string) int {
	for _, s := range p.Score {
		if s.Level == level {
			return s.Used
		}
	}
	return -1
}

// Alternative is a looser request that fits, with its score.
type Alternative struct {
	Constraint string       `json:"constraint"`
	Score      []LevelScore `json:"score"`
}

// Refusal says why a request does not fit: candidate nodes rejected per
// reason, and the nearest looser requests that do fit.
type Refusal struct {
	Message      string         `json:"message"`
	Rejected     map[Reason]int `json:"rejected"`
	Alternatives []Alternative  `json:"alternatives,omitempty"`
}

// Result is a plan or a refusal; "does not fit" is a result, not an error.
type Result struct {
	Plan    *Plan    `json:"plan,omitempty"`
	Refusal *Refusal `json:"refusal,omitempty"`
}

// Place plans a request against the snapshot without changing it. Invalid
// requests (a GPU count the SKU does not sell, an unknown level) are errors.
func (s *Snapshot) Place(r Request) (Result, error) { return s.place(r, true) }

// place plans r; explain says whether a refusal carries its reasons and
// looser alternatives (planners that only need yes or no skip them).
func (s *Snapshot) place(r Request, explain bool) (Result, error) {
	limits, err := s.limits(r)
	if err != nil {
		return Result{}, err
	}
	g := s.T.SKU.GPUsPerNode
	if r.Whole == "" && (r.GPUs <= 0 || (r.GPUs%g != 0 && !s.T.SKU.Sellable(r.GPUs))) {
		return Result{}, fmt.Errorf("gpus: %s sells whole nodes of %d GPUs or partitions of %v, not %d", s.T.SKU.Name, g, s.T.SKU.Partitions, r.GPUs)
	}
	var ex []int
	for _, ref := range r.Exclude {
		if i, ok := s.T.NodeIndex(ref); ok && !s.excluded.has(i) {
			ex = append(ex, i)
		}
	}
	saved := s.exclude(ex)
	defer s.unexclude(ex, saved)

	var plan *Plan
	var why string
	switch {
	case r.Whole != "":
		plan, why = s.placeWhole(r.Whole)
	case r.GPUs < g:
		plan, why = s.placePartition(r.GPUs, r.Class.Preemptible())
	default:
		plan, why = s.placeGang(r.GPUs/g, limits, r.Class.Preemptible())
	}
	if plan != nil {
		s.score(plan)
		return Result{Plan: plan}, nil
	}
	if !explain {
		return Result{Refusal: &Refusal{Message: why}}, nil
	}
	ref := &Refusal{Message: why, Rejected: s.rejected(r, why, len(ex))}
	if r.Whole == "" && r.GPUs >= g {
		ref.Alternatives = s.alternatives(r)
	}
	return Result{Refusal: ref}, nil
}

// limits turns the constraint into a cap per level (0: none).
func (s *Snapshot) limits(r Request) ([]int, error) {
	lim := make([]int, len(s.T.Levels))
	if r.Within != "" {
		l := s.T.level(r.Within)
		if l < 0 {
			return nil, fmt.Errorf("within: no level %q (levels: %s)", r.Within, strings.Join(s.T.Levels, ", "))
		}
		for i := 0; i <= l; i++ {
			lim[i] = 1
		}
	}
	for name, n := range r.MaxDomains {
		l := s.T.level(name)
		if l < 0 || n < 1 {
			return nil, fmt.Errorf("max_domains: %q:%d is not a level and a count ≥ 1", name, n)
		}
		if lim[l] == 0 || n < lim[l] {
			lim[l] = n
		}
	}
	return lim, nil
}

func (s *Snapshot) exclude(ex []int) []uint64 {
	saved := make([]uint64, len(ex))
	for j, i := range ex {
		saved[j] = s.mask[i]
		s.setMask(i, 0)
		s.excluded.set(i)
	}
	return saved
}

func (s *Snapshot) unexclude(ex []int, saved []uint64) {
	for j, i := range ex {
		s.excluded.clear(i)
		s.setMask(i, saved[j])
	}
}

// freeAt is the whole-free nodes of a domain a request may use.
func (s *Snapshot) freeAt(l int, d int32, spares bool) int {
	f := int(s.free[l][d])
	if spares {
		f += int(s.spareFree[l][d])
	}
	return f
}

// placeGang plans k whole nodes: top down, at each level either one domain
// that holds them all (the one needing the fewest domains below, then the
// smallest: best fit) or, when none can, the fewest domains (largest first,
// the last one the smallest that completes the count).
func (s *Snapshot) placeGang(k int, lim []int, spares bool) (*Plan, string) {
	if len(s.T.dom) == 0 {
		return nil, "no nodes of this SKU"
	}
	total := 0
	for d := range s.T.dom[0] {
		total += s.freeAt(0, int32(d), spares)
	}
	if total < k {
		return nil, fmt.Sprintf("%d whole nodes free, %d asked", total, k)
	}
	top := make([]int32, len(s.T.dom[0]))
	for i := range top {
		top[i] = int32(i)
	}
	var picked []int
	start, cands := 0, top
	if len(s.T.Levels) >= 3 && lim[0] == 0 {
		// The top level (halls) is compared last: a gang no single domain
		// of the next level can hold chooses those domains site-wide.
		fits := false
		for d := range s.T.dom[1] {
			if s.freeAt(1, int32(d), spares) >= k {
				fits = true
				break
			}
		}
		if !fits {
			start, cands = 1, make([]int32, len(s.T.dom[1]))
			for i := range cands {
				cands[i] = int32(i)
			}
		}
	}
	if why := s.descend(start, cands, k, lim, spares, &picked); why != "" {
		return nil, why
	}
	sort.Ints(picked)
	p := s.wholeNodes(picked)
	// Rank candidates: the descent decides level by level and can split a
	// spanning share unluckily; an unconstrained gang also considers the
	// first free nodes in topology order, and keeps whichever spans less.
	if k > 1 && !constrained(lim) {
		if ff := s.firstFit(k, spares); ff != nil && less(s.spanKey(ff), s.spanKey(p)) {
			p = ff
		}
	}
	// A cap below the level where the gang spans is checked on the result.
	for l, n := range lim {
		if n > 0 && s.count(p, l) > n {
			return nil, fmt.Sprintf("needs %d %s domains, at most %d allowed", s.count(p, l), s.T.Levels[l], n)
		}
	}
	return p, ""
}

// wholeNodes makes a plan of whole nodes, their GPU lists sharing one array.
func (s *Snapshot) wholeNodes(idx []int) *Plan {
	g := s.T.SKU.GPUsPerNode
	all := make([]int, g)
	for j := range all {
		all[j] = j
	}
	p := &Plan{Nodes: make([]Assignment, len(idx))}
	last := len(s.T.Levels) - 1
	for j, i := range idx {
		p.Nodes[j] = Assignment{NodeID: s.T.nodes[i].id, Domain: s.T.dom[last][s.T.nodes[i].anc[last]].path, GPUs: all[:g:g], index: i}
	}
	return p
}

func (s *Snapshot) assign(i int, m uint64) Assignment {
	a := Assignment{NodeID: s.T.nodes[i].id, Domain: s.T.dom[len(s.T.Levels)-1][s.T.nodes[i].anc[len(s.T.Levels)-1]].path, index: i}
	for g := 0; m != 0; g++ {
		if m&1 != 0 {
			a.GPUs = append(a.GPUs, g)
		}
		m >>= 1
	}
	return a
}

// descend chooses among the domains cands of level l for k nodes.
func (s *Snapshot) descend(l int, cands []int32, k int, lim []int, spares bool, out *[]int) string {
	best, bestCost := int32(-1), []int(nil)
	for _, d := range cands {
		f := s.freeAt(l, d, spares)
		if f < k {
			continue
		}
		cost := s.lookahead(l, d, k, spares)
		cost = append(cost, f)
		if best < 0 || less(cost, bestCost) {
			best, bestCost = d, cost
		}
	}
	if best >= 0 {
		return s.into(l, best, k, lim, spares, out)
	}
	if lim[l] == 1 {
		return fmt.Sprintf("no single %s has %d whole nodes free", s.T.Levels[l], k)
	}
	// Span: largest first; the last is the smallest that completes k.
	type fd struct {
		d int32
		f int
	}
	var all []fd
	for _, d := range cands {
		if f := s.freeAt(l, d, spares); f > 0 {
			all = append(all, fd{d, f})
		}
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].f != all[j].f {
			return all[i].f > all[j].f
		}
		return all[i].d < all[j].d
	})
	sum, n := 0, 0
	for n < len(all) && sum+all[n].f < k {
		sum += all[n].f
		n++
	}
	if n == len(all) {
		return fmt.Sprintf("%d whole nodes free here, %d asked", sum, k)
	}
	rest := k - sum
	last := n
	for j := n + 1; j < len(all); j++ {
		if all[j].f >= rest && all[j].f <= all[last].f {
			last = j
		}
	}
	if lim[l] > 0 && n+1 > lim[l] {
		return fmt.Sprintf("needs %d %s domains, at most %d allowed", n+1, s.T.Levels[l], lim[l])
	}
	if l+1 < len(s.T.Levels) {
		// n+1 domains here is the fewest. Which ones, and how much of each,
		// decides the domains used below: choose them so that the fewest
		// children are drawn on (fullest first), then span those children.
		var kids []int32
		if l+2 < len(s.T.Levels) { // e.g. spanning pods: choose them for their sus
			kids = s.spanChildren(l, cands, n+1, k, spares)
		}
		if kids == nil {
			for j := 0; j < n; j++ {
				kids = append(kids, s.T.dom[l][all[j].d].kids...)
			}
			kids = append(kids, s.T.dom[l][all[last].d].kids...)
		}
		return s.descend(l+1, kids, k, lim, spares, out)
	}
	for j := 0; j < n; j++ {
		if why := s.into(l, all[j].d, all[j].f, lim, spares, out); why != "" {
			return why
		}
	}
	return s.into(l, all[last].d, rest, lim, spares, out)
}

// spanChildren picks, among the domains cands of level l, at most n and a
// number of the fullest children of each, so that together they hold k
// nodes with the fewest children: a knapsack over (domains used, nodes
// covered, capped at k). It returns the chosen children, or nil when the
// tables would be too large to be worth it.
func (s *Snapshot) spanChildren(l int, cands []int32, n, k int, spares bool) []int32 {
	if len(cands)*n*(k+1) > 4<<20 {
		return nil
	}
	const inf = int32(1 << 30)
	width := k + 1
	at := func(j, x int) int { return j*width + x }
	dp := make([]int32, (n+1)*width)
	for i := range dp {
		dp[i] = inf
	}
	dp[0] = 0
	type step struct {
		kids []int32 // children of this candidate, fullest first
		take []int8  // per state: children taken from it (0: none)
		from []int32 // per state: nodes covered before it
	}
	steps := make([]step, len(cands))
	next := make([]int32, len(dp))
	for i, d := range cands {
		st := &steps[i]
		for _, kid := range s.T.dom[l][d].kids {
			if s.freeAt(l+1, kid, spares) > 0 {
				st.kids = append(st.kids, kid)
			}
		}
		if len(st.kids) == 0 || len(st.kids) > 127 {
			continue
		}
		sort.Slice(st.kids, func(a, b int) bool {
			fa, fb := s.freeAt(l+1, st.kids[a], spares), s.freeAt(l+1, st.kids[b], spares)
			return fa > fb || fa == fb && st.kids[a] < st.kids[b]
		})
		st.take = make([]int8, len(dp))
		st.from = make([]int32, len(dp))
		copy(next, dp)
		for j := 0; j < n; j++ {
			for x := 0; x <= k; x++ {
				base := dp[at(j, x)]
				if base == inf {
					continue
				}
				sum := 0
				for t, kid := range st.kids {
					sum += s.freeAt(l+1, kid, spares)
					nx := min(k, x+sum)
					if c := base + int32(t+1); c < next[at(j+1, nx)] {
						next[at(j+1, nx)] = c
						st.take[at(j+1, nx)] = int8(t + 1)
						st.from[at(j+1, nx)] = int32(x)
					}
					if nx == k {
						break
					}
				}
			}
		}
		dp, next = next, dp
	}
	bestJ := -1
	for j := 1; j <= n; j++ {
		if dp[at(j, k)] != inf && (bestJ < 0 || dp[at(j, k)] < dp[at(bestJ, k)]) {
			bestJ = j
		}
	}
	if bestJ < 0 {
		return nil
	}
	// Walk back: a candidate was taken where its step improved the state.
	var out []int32
	j, x := bestJ, k
	for i := len(cands) - 1; i >= 0 && j > 0; i-- {
		st := &steps[i]
		if st.take == nil || st.take[at(j, x)] == 0 {
			continue
		}
		t := int(st.take[at(j, x)])
		out = append(out, st.kids[:t]...)
		x = int(st.from[at(j, x)])
		j--
	}
	return out
}

// into places k nodes inside domain d of level l.
func (s *Snapshot) into(l int, d int32, k int, lim []int, spares bool, out *[]int) string {
	dom := &s.T.dom[l][d]
	if l == len(s.T.Levels)-1 {
		// Non-spare nodes first; spares only for preemptible work.
		for pass := 0; pass < 2 && k > 0; pass++ {
			for i := dom.lo; i < dom.hi && k > 0; i++ {
				n := &s.T.nodes[i]
				if s.mask[i] == s.full && s.usable(int(i)) && n.spare == (pass == 1) && (!n.spare || spares) {
					*out = append(*out, int(i))
					k--
				}
			}
		}
		if k > 0 {
			return "capacity counters out of step"
		}
		return ""
	}
	return s.descend(l+1, dom.kids, k, lim, spares, out)
}

// lookahead is the fewest domains k nodes need at each level below d.
func (s *Snapshot) lookahead(l int, d int32, k int, spares bool) []int {
	var cost []int
	if k == 1 {
		return cost
	}
	lo, hi := s.T.dom[l][d].lo, s.T.dom[l][d].hi
	vals := make([]int32, 0, 64)
	for m := l + 1; m < len(s.T.Levels); m++ {
		doms := s.T.dom[m]
		first := sort.Search(len(doms), func(i int) bool { return doms[i].lo >= lo })
		vals = vals[:0]
		for j := first; j < len(doms) && doms[j].hi <= hi; j++ {
			vals = append(vals, int32(s.freeAt(m, int32(j), spares)))
		}
		cost = append(cost, cover(vals, k))
	}
	return cost
}

// less compares cost vectors lexicographically.
func less(a, b []int) bool {
	for i := range a {
		if i >= len(b) || a[i] != b[i] {
			return i < len(b) && a[i] < b[i]
		}
	}
	return false
}

// placePartition plans g GPUs inside one node along the SKU's partition
// table: aligned blocks (GPUs 0-1, 2-3 … for 2; 0-3, 4-7 for 4), filling
// partly used nodes first, the fullest that fits.
func (s *Snapshot) placePartition(g int, spares bool) (*Plan, string) {
	block := uint64(1)<<g - 1
	fit := func(m uint64) uint64 {
		for off := 0; off+g <= s.T.SKU.GPUsPerNode; off += g {
			if m&(block<<off) == block<<off {
				return block << off
			}
		}
		return 0
	}
	for c := g; c < len(s.partial); c++ {
		for i := s.partial[c].next(0); i >= 0; i = s.partial[c].next(i + 1) {
			if !s.usable(i) {
				continue
			}
			if b := fit(s.mask[i]); b != 0 {
				return &Plan{Nodes: []Assignment{s.assign(i, b)}}, ""
			}
		}
	}
	var picked []int
	lim := make([]int, len(s.T.Levels))
	if why := s.descend(0, s.topDomains(), 1, lim, spares, &picked); why != "" {
		return nil, fmt.Sprintf("no node has an aligned block of %d free GPUs", g)
	}
	return &Plan{Nodes: []Assignment{s.assign(picked[0], block)}}, ""
}

func (s *Snapshot) topDomains() []int32 {
	top := make([]int32, len(s.T.dom[0]))
	for i := range top {
		top[i] = int32(i)
	}
	return top
}

// placeWhole plans every non-spare node of a domain ("*": the site).
func (s *Snapshot) placeWhole(path string) (*Plan, string) {
	lo, hi := int32(0), int32(len(s.T.nodes))
	if path != "*" {
		segs := strings.Count(path, "/")
		if segs >= len(s.T.Levels) {
			return nil, "no domain " + path
		}
		found := false
		for _, d := range s.T.dom[segs] {
			if d.path == path {
				lo, hi, found = d.lo, d.hi, true
			}
		}
		if !found {
			return nil, "no domain " + path
		}
	}
	idx := make([]int, 0, hi-lo)
	busy := 0
	for i := lo; i < hi; i++ {
		if s.T.nodes[i].spare {
			continue
		}
		if s.mask[i] != s.full || !s.usable(int(i)) {
			busy++
			continue
		}
		idx = append(idx, int(i))
	}
	if busy > 0 {
		return nil, fmt.Sprintf("%d of the domain's non-spare nodes are not free", busy)
	}
	if len(idx) == 0 {
		return nil, "the domain has no non-spare nodes"
	}
	return s.wholeNodes(idx), ""
}

func constrained(lim []int) bool {
	for _, n := range lim {
		if n > 0 {
			return true
		}
	}
	return false
}

// spanKey orders plans by the domains they span: from the second level down
// (pods, sus, racks on a Colossus-shaped site), then the top level (halls),
// whose boundaries are boundaries of every level below anyway.
func (s *Snapshot) spanKey(p *Plan) []int {
	L := len(s.T.Levels)
	key := make([]int, 0, L)
	for l := 1; l < L; l++ {
		key = append(key, s.count(p, l))
	}
	return append(key, s.count(p, 0))
}

// firstFit takes the first k whole-free usable nodes in topology order.
func (s *Snapshot) firstFit(k int, spares bool) *Plan {
	idx := make([]int, 0, k)
	for i := range s.T.nodes {
		if len(idx) == k {
			break
		}
		if s.mask[i] == s.full && s.usable(i) && (!s.T.nodes[i].spare || spares) {
			idx = append(idx, i)
		}
	}
	if len(idx) < k {
		return nil
	}
	return s.wholeNodes(idx)
}

// count returns the distinct domains of level l a plan uses.
func (s *Snapshot) count(p *Plan, l int) int {
	s.gen++
	if s.gen == 0 { // wrapped: start the marks afresh
		for _, m := range s.mark {
			clear(m)
		}
		s.gen = 1
	}
	n := 0
	for _, a := range p.Nodes {
		d := s.T.nodes[a.index].anc[l]
		if s.mark[l][d] != s.gen {
			s.mark[l][d] = s.gen
			n++
		}
	}
	return n
}

// score fills p.Score and p.GPUs.
func (s *Snapshot) score(p *Plan) { s.scoreWith(p, s.free) }

// scoreWith scores p against the given whole-free counts per level and
// domain.
func (s *Snapshot) scoreWith(p *Plan, free [][]int32) {
	p.GPUs = 0
	for _, a := range p.Nodes {
		p.GPUs += len(a.GPUs)
	}
	k := len(p.Nodes)
	p.Score = make([]LevelScore, len(s.T.Levels))
	for l, name := range s.T.Levels {
		sc := LevelScore{Level: name, Used: s.count(p, l), BoundEmpty: s.T.emptyBound(l, k), BoundFree: 1}
		// Plans are scored before they are committed, so their nodes still
		// count as free: the bound is over the non-spare free capacity.
		if k > 1 {
			sc.BoundFree = cover(free[l], k)
		}
		p.Score[l] = sc
	}
}

// rejected counts the site's nodes per reason they cannot serve r, from
// counters kept up to date, without visiting nodes.
func (s *Snapshot) rejected(r Request, why string, excluded int) map[Reason]int {
	out := map[Reason]int{}
	for k, v := range s.blocked {
		out[k] = v
	}
	if s.T.otherSKU > 0 {
		out[ReasonSKU] = s.T.otherSKU
	}
	if excluded > 0 {
		out[ReasonExcluded] = excluded
	}
	whole, spareWhole := 0, 0
	for d := range s.T.dom[0] {
		whole += int(s.free[0][d])
		spareWhole += int(s.spareFree[0][d])
	}
	usable := whole // nodes with room for r
	if r.GPUs > 0 && r.GPUs < s.T.SKU.GPUsPerNode {
		for c := r.GPUs; c < len(s.partial); c++ {
			for _, w := range s.partial[c] {
				usable += bits.OnesCount64(w)
			}
		}
	}
	if r.Class.Preemptible() {
		usable += spareWhole
		out[ReasonCapacity] = s.sellable + s.spares - usable - excluded
	} else {
		out[ReasonSpare] = s.spares
		out[ReasonCapacity] = s.sellable - usable - excluded
	}
	if strings.Contains(why, "domains") || strings.Contains(why, "no single") {
		out[ReasonTopology] = usable
	}
	for k, v := range out {
		if v <= 0 {
			delete(out, k)
		}
	}
	return out
}

// alternatives tries looser constraints, nearest first, and keeps the first
// two that fit.
func (s *Snapshot) alternatives(r Request) []Alternative {
	var tries []Request
	if r.Within != "" {
		for l := s.T.level(r.Within) - 1; l >= 0; l-- {
			x := r
			x.Within = s.T.Levels[l]
			tries = append(tries, x)
		}
	}
	names := make([]string, 0, len(r.MaxDomains))
	for name := range r.MaxDomains {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		n := r.MaxDomains[name]
		x := r
		x.MaxDomains = map[string]int{}
		for k, v := range r.MaxDomains {
			x.MaxDomains[k] = v
		}
		x.MaxDomains[name] = n * 2
		tries = append(tries, x)
	}
	if r.Within != "" || len(r.MaxDomains) > 0 {
		x := r
		x.Within, x.MaxDomains = "", nil
		tries = append(tries, x)
	}
	var out []Alternative
	for _, x := range tries {
		lim, _ := s.limits(x)
		if p, _ := s.placeGang(x.GPUs/s.T.SKU.GPUsPerNode, lim, x.Class.Preemptible()); p != nil {
			s.score(p)
			out = append(out, Alternative{Constraint: x.Constraint(), Score: p.Score})
			if len(out) == 2 {
				break
			}
		}
	}
	return out
}

// ParseMaxDomains parses "LEVEL:N[,LEVEL:N]".
func ParseMaxDomains(v string) (map[string]int, error) {
	out := map[string]int{}
	for _, part := range strings.Split(v, ",") {
		name, num, ok := strings.Cut(part, ":")
		n, err := strconv.Atoi(num)
		if !ok || err != nil || n < 1 {
			return nil, fmt.Errorf("max_domains %q: want LEVEL:N, e.g. su:4", part)
		}
		out[name] = n
	}
	return out, nil
}
