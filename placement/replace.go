package placement

import "fmt"

// Replace plans a replacement for a failed node of an allocation. The
// replacement keeps the reservation's constraint: with within=LEVEL it stays
// in the failed node's domain of that level. Spares come first, the nearest
// to the failed node first (same rack, then su, …); then other free nodes,
// nearest first. The failed node must already be blocked in the snapshot.
func (s *Snapshot) Replace(failed string, within string) (Result, error) {
	fi, ok := s.T.NodeIndex(failed)
	if !ok {
		return Result{}, fmt.Errorf("node %q is not in this topology", failed)
	}
	widest := 0
	if within != "" {
		if widest = s.T.level(within); widest < 0 {
			return Result{}, fmt.Errorf("within: no level %q", within)
		}
	}
	n := &s.T.nodes[fi]
	for _, spare := range []bool{true, false} {
		// From the failed node's rack outwards; level -1 is the whole site.
		stop := widest
		if within == "" {
			stop = -1
		}
		for l := len(s.T.Levels) - 1; l >= stop; l-- {
			lo, hi := int32(0), int32(len(s.T.nodes))
			if l >= 0 {
				counts := s.free
				if spare {
					counts = s.spareFree
				}
				if counts[l][n.anc[l]] == 0 {
					continue
				}
				lo, hi = s.T.dom[l][n.anc[l]].lo, s.T.dom[l][n.anc[l]].hi
			}
			for i := lo; i < hi; i++ {
				if int(i) != fi && s.T.nodes[i].spare == spare && s.mask[i] == s.full && s.usable(int(i)) {
					p := &Plan{Nodes: []Assignment{s.assign(int(i), s.full)}}
					s.score(p)
					return Result{Plan: p}, nil
				}
			}
		}
	}
	scope := "the site"
	if within != "" {
		scope = fmt.Sprintf("%s %s", within, s.T.dom[widest][n.anc[widest]].path)
	}
	return Result{Refusal: &Refusal{Message: "no free node or spare in " + scope, Rejected: s.rejected(Request{GPUs: s.T.SKU.GPUsPerNode}, "", 0)}}, nil
}

// FirstFit is the naive baseline: the first free nodes in index order (by
// domain path), ignoring topology. It is what a scheduler without gang or
// topology semantics does, kept for comparison in tests and benchmarks.
func (s *Snapshot) FirstFit(gpus int) *Plan {
	p := s.firstFit(gpus/s.T.SKU.GPUsPerNode, false)
	if p != nil {
		s.score(p)
	}
	return p
}
