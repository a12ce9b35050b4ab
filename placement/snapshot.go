package placement

import (
	"math/bits"
	"sort"
)

// Snapshot is the free capacity of a Topology for one planning cycle. Plans
// are computed against it without changing it; Commit and Release apply a
// plan. It is not safe for concurrent use.
type Snapshot struct {
	T    *Topology
	mask []uint64 // per node: bit g set = GPU g free; 0 for a blocked node
	full uint64
	// free and spareFree count whole-free usable nodes per level and domain:
	// non-spare and spare ones.
	free, spareFree [][]int32
	// freeAll and spareAll back free and spareFree: level l is
	// [T.levelOff[l], T.levelOff[l+1]).
	freeAll, spareAll []int32
	// partial[c] marks usable non-spare nodes with exactly c free GPUs
	// (0 < c < GPUs per node), so partitions fill used nodes first.
	partial []bitset
	// excluded marks nodes a request excludes while it is being planned.
	excluded bitset
	// why holds each node's reason it cannot be used ("" if it can): the
	// topology's static reasons, then failures seen by this snapshot.
	why []Reason
	// blocked counts nodes per reason; sellable counts unblocked non-spare
	// nodes and spares unblocked spares, for explanations.
	blocked          map[Reason]int
	sellable, spares int
	// mark and gen count distinct domains without allocating.
	mark [][]uint32
	gen  uint32
	// freeGPUs and usableGPUs count GPUs of unblocked nodes.
	freeGPUs, usableGPUs int
}

type bitset []uint64

func newBitset(n int) bitset    { return make(bitset, (n+63)/64) }
func (b bitset) set(i int)      { b[i/64] |= 1 << (i % 64) }
func (b bitset) clear(i int)    { b[i/64] &^= 1 << (i % 64) }
func (b bitset) has(i int) bool { return b[i/64]&(1<<(i%64)) != 0 }
func (b bitset) next(i int) int { // first set index ≥ i, or -1
	for w := i / 64; w < len(b); w++ {
		word := b[w]
		if w == i/64 {
			word &= ^uint64(0) << (i % 64)
		}
		if word != 0 {
			return w*64 + bits.TrailingZeros64(word)
		}
	}
	return -1
}

// NewSnapshot returns a snapshot with every unblocked node wholly free.
func NewSnapshot(t *Topology) *Snapshot {
	g := t.SKU.GPUsPerNode
	s := &Snapshot{T: t, mask: make([]uint64, len(t.nodes)), full: uint64(1)<<g - 1, excluded: newBitset(len(t.nodes))}
	s.free = make([][]int32, len(t.Levels))
	s.spareFree = make([][]int32, len(t.Levels))
	n := t.levelOff[len(t.Levels)]
	s.freeAll, s.spareAll = make([]int32, n), make([]int32, n)
	for l := range t.Levels {
		lo, hi := t.levelOff[l], t.levelOff[l+1]
		s.free[l] = s.freeAll[lo:hi:hi]
		s.spareFree[l] = s.spareAll[lo:hi:hi]
	}
	s.partial = make([]bitset, g)
	for c := range s.partial {
		s.partial[c] = newBitset(len(t.nodes))
	}
	s.blocked = map[Reason]int{}
	s.why = make([]Reason, len(t.nodes))
	s.mark = make([][]uint32, len(t.Levels))
	for l := range s.mark {
		s.mark[l] = make([]uint32, len(t.dom[l]))
	}
	for i, n := range t.nodes {
		switch {
		case n.blocked != "":
			s.why[i] = n.blocked
			s.blocked[n.blocked]++
		case n.spare:
			s.spares++
			s.usableGPUs += g
			s.setMask(i, s.full)
		default:
			s.sellable++
			s.usableGPUs += g
			s.setMask(i, s.full)
		}
	}
	return s
}

// usable reports whether node i may take work at all.
func (s *Snapshot) usable(i int) bool { return s.why[i] == "" && !s.excluded.has(i) }

// Blocked returns why node i cannot be used in this snapshot, or "".
func (s *Snapshot) Blocked(i int) Reason { return s.why[i] }

// setMask changes node i's free GPUs and keeps the counters in step.
func (s *Snapshot) setMask(i int, m uint64) {
	old := s.mask[i]
	if old == m {
		return
	}
	t := s.T
	spare := t.spare[i]
	wasFree, isFree := old == s.full && s.full != 0, m == s.full
	if wasFree != isFree {
		d := int32(1)
		if wasFree {
			d = -1
		}
		counts := s.freeAll
		if spare {
			counts = s.spareAll
		}
		L := len(t.Levels)
		for _, x := range t.flat[i*L : (i+1)*L] {
			counts[x] += d
		}
	}
	if !spare {
		if c := bits.OnesCount64(old); c > 0 && c < len(s.partial) {
			s.partial[c].clear(i)
		}
		if c := bits.OnesCount64(m); c > 0 && c < len(s.partial) {
			s.partial[c].set(i)
		}
	}
	s.freeGPUs += bits.OnesCount64(m) - bits.OnesCount64(old)
	s.mask[i] = m
}

// Block takes node i out of service (failed, cordoned) in this snapshot
// only; the shared topology is not touched.
func (s *Snapshot) Block(i int, why Reason) {
	n := &s.T.nodes[i]
	if s.why[i] != "" {
		return
	}
	s.setMask(i, 0)
	s.why[i] = why
	s.blocked[why]++
	s.usableGPUs -= s.T.SKU.GPUsPerNode
	if n.spare {
		s.spares--
	} else {
		s.sellable--
	}
}

// Occupy marks all of node i's GPUs used by work the snapshot did not plan
// (e.g. allocations loaded from the store).
func (s *Snapshot) Occupy(i int) { s.setMask(i, 0) }

// Commit marks a plan's GPUs used.
func (s *Snapshot) Commit(p *Plan) {
	for _, a := range p.Nodes {
		m := s.mask[a.index]
		for _, g := range a.GPUs {
			m &^= 1 << g
		}
		s.setMask(a.index, m)
	}
}

// Release frees a committed plan's GPUs again.
func (s *Snapshot) Release(p *Plan) {
	for _, a := range p.Nodes {
		if s.why[a.index] != "" {
			continue
		}
		m := s.mask[a.index]
		for _, g := range a.GPUs {
			m |= 1 << g
		}
		s.setMask(a.index, m)
	}
}

// FreeGPUs returns node i's free GPU mask.
func (s *Snapshot) FreeGPUs(i int) uint64 { return s.mask[i] }

// Utilization returns the share of usable GPUs in use.
func (s *Snapshot) Utilization() float64 {
	if s.usableGPUs == 0 {
		return 0
	}
	return 1 - float64(s.freeGPUs)/float64(s.usableGPUs)
}

// NestedBound returns the fewest domains of level l that k whole nodes need
// on the current free capacity, and the fewest domains of level l+1 among
// placements that use only that many of level l: the lexicographic lower
// bound (pods first, then sus). It runs a small dynamic programme; it is
// meant for reports, not the planning path.
func (s *Snapshot) NestedBound(l, k int) (int, int) {
	n := cover(s.free[l], k)
	if n < 0 || l+1 >= len(s.T.Levels) {
		return n, -1
	}
	const inf = 1 << 30
	dp := make([][]int, n+1)
	for j := range dp {
		dp[j] = make([]int, k+1)
		for x := range dp[j] {
			dp[j][x] = inf
		}
	}
	dp[0][0] = 0
	for d := range s.T.dom[l] {
		var vals []int
		for _, kid := range s.T.dom[l][d].kids {
			if f := int(s.free[l+1][kid]); f > 0 {
				vals = append(vals, f)
			}
		}
		if len(vals) == 0 {
			continue
		}
		sort.Sort(sort.Reverse(sort.IntSlice(vals)))
		for j := n - 1; j >= 0; j-- {
			for x := k; x >= 0; x-- {
				if dp[j][x] == inf {
					continue
				}
				sum := 0
				for t, v := range vals {
					sum += v
					nx := min(k, x+sum)
					if c := dp[j][x] + t + 1; c < dp[j+1][nx] {
						dp[j+1][nx] = c
					}
					if nx == k {
						break
					}
				}
			}
		}
	}
	best := inf
	for j := 1; j <= n; j++ {
		best = min(best, dp[j][k])
	}
	return n, best
}
