package sales

import "context"

// touching is the Store with every write that can change what a node
// serves — its allocations, its reservation (notices, elastic steps) and
// maintenance over it — noted, so that after the transaction commits
// NodesChanged hears which nodes' assignments to read again.
type touching struct {
	Store
	s *Service
}

func (t touching) touch(ctx context.Context, nodes []string) {
	if t.s.NodesChanged == nil || len(nodes) == 0 {
		return
	}
	t.s.Tx.AfterCommit(ctx, func() { t.s.NodesChanged(nodes) })
}

func (t touching) InsertAllocation(ctx context.Context, a Allocation) error {
	t.touch(ctx, []string{a.NodeID})
	if a.Replaces != "" {
		t.s.replaced(ctx, a.ReservationID)
	}
	return t.Store.InsertAllocation(ctx, a)
}

func (t touching) UpdateAllocation(ctx context.Context, a Allocation) error {
	nodes := []string{a.NodeID}
	if a.Replaces != "" { // its state shows on the reservation's other nodes
		t.s.replaced(ctx, a.ReservationID)
		r, err := t.s.cachedReservation(ctx, a.ReservationID)
		if err != nil {
			return err
		}
		for _, n := range r.Nodes {
			nodes = append(nodes, n.NodeID)
		}
	}
	t.touch(ctx, nodes)
	return t.Store.UpdateAllocation(ctx, a)
}

func (t touching) UpdateReservation(ctx context.Context, r Reservation) error {
	var nodes []string
	for _, n := range r.Nodes {
		nodes = append(nodes, n.NodeID)
	}
	if r.Elastic != nil {
		for _, st := range r.Elastic.Steps {
			nodes = append(nodes, st.Nodes...)
		}
	}
	t.touch(ctx, nodes)
	return t.Store.UpdateReservation(ctx, r)
}

func (t touching) InsertMaintenance(ctx context.Context, m Maintenance) error {
	t.touch(ctx, m.nodes())
	return t.Store.InsertMaintenance(ctx, m)
}

func (t touching) UpdateMaintenance(ctx context.Context, m Maintenance) error {
	t.touch(ctx, m.nodes())
	return t.Store.UpdateMaintenance(ctx, m)
}

func (m Maintenance) nodes() []string {
	var out []string
	for _, b := range m.Batches {
		out = append(out, b.Nodes...)
	}
	return out
}
