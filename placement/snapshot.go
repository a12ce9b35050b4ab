package placement

import "math/bits"

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
	// partial[c] marks usable non-spare nodes with exactly c free GPUs
	// (0 < c < GPUs per node), so partitions fill used nodes first.
	partial []bitset
	// excluded marks nodes a request excludes while it is being planned.
	excluded bitset
}

type bitset []uint64

func newBitset(n int) bitset         { return make(bitset, (n+63)/64) }
func (b bitset) set(i int)           { b[i/64] |= 1 << (i % 64) }
func (b bitset) clear(i int)         { b[i/64] &^= 1 << (i % 64) }
func (b bitset) has(i int) bool      { return b[i/64]&(1<<(i%64)) != 0 }
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
	for l := range t.Levels {
		s.free[l] = make([]int32, len(t.dom[l]))
		s.spareFree[l] = make([]int32, len(t.dom[l]))
	}
	s.partial = make([]bitset, g)
	for c := range s.partial {
		s.partial[c] = newBitset(len(t.nodes))
	}
	for i, n := range t.nodes {
		if n.blocked == "" {
			s.setMask(i, s.full)
		}
	}
	return s
}

// usable reports whether node i may take work at all.
func (s *Snapshot) usable(i int) bool { return s.T.nodes[i].blocked == "" && !s.excluded.has(i) }

// setMask changes node i's free GPUs and keeps the counters in step.
func (s *Snapshot) setMask(i int, m uint64) {
	old := s.mask[i]
	n := &s.T.nodes[i]
	wasFree, isFree := old == s.full && s.full != 0, m == s.full
	if wasFree != isFree {
		d := int32(1)
		if wasFree {
			d = -1
		}
		counts := s.free
		if n.spare {
			counts = s.spareFree
		}
		for l, a := range n.anc {
			counts[l][a] += d
		}
	}
	if !n.spare {
		if c := bits.OnesCount64(old); c > 0 && c < len(s.partial) {
			s.partial[c].clear(i)
		}
		if c := bits.OnesCount64(m); c > 0 && c < len(s.partial) {
			s.partial[c].set(i)
		}
	}
	s.mask[i] = m
}

// Block takes node i out of service (failed, cordoned) for this snapshot;
// its GPUs count as used until Unblock.
func (s *Snapshot) Block(i int, why Reason) {
	s.setMask(i, 0)
	s.T.nodes[i].blocked = why
}

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
		if s.T.nodes[a.index].blocked != "" {
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
	used, total := 0, 0
	for i := range s.T.nodes {
		if s.T.nodes[i].blocked != "" {
			continue
		}
		total += bits.OnesCount64(s.full)
		used += bits.OnesCount64(s.full &^ s.mask[i])
	}
	if total == 0 {
		return 0
	}
	return float64(used) / float64(total)
}
