package sales

import (
	"context"
	"fmt"
	"time"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/wire"
)

// NodeAssignment is what a node serves now, for its agent: the reservation
// of its active allocation (bound, provisioning or ready), its end, and
// the notices against it — a preemption deadline, a step of elastic work
// being reclaimed, planned maintenance of the node. The generation is the
// allocation's bind time in microseconds: it grows with every new
// assignment of the node. nil when the node is idle.
func (s *Service) NodeAssignment(ctx context.Context, nodeID string) (*wire.Assignment, error) {
	allocs, err := s.Store.NodeAllocations(ctx, nodeID)
	if err != nil {
		return nil, err
	}
	for _, a := range allocs {
		if a.State == AllocationReleasing || a.State == AllocationEnded {
			continue
		}
		r, err := s.Store.Reservation(ctx, a.ReservationID)
		if err != nil {
			return nil, err
		}
		out := &wire.Assignment{Generation: a.BoundAt.UnixMicro(), Reservation: r.ID, End: r.Shape.End}
		// Replacements in the reservation in the last hour: the tenant's
		// job on every node re-forms around the new one.
		if err := s.replacementNotices(ctx, out, r.ID); err != nil {
			return nil, err
		}
		if r.PreemptAt != nil {
			out.Notices = append(out.Notices, wire.Notice{Kind: "preemption", Deadline: *r.PreemptAt, Reason: "capacity reclaimed for committed work"})
		}
		if e := r.Elastic; e != nil {
			for _, st := range e.Steps {
				if st.ReclaimAt == nil {
					continue
				}
				for _, n := range st.Nodes {
					if n == nodeID {
						out.Notices = append(out.Notices, wire.Notice{Kind: "preemption", Deadline: *st.ReclaimAt, Reason: "this step of elastic work is reclaimed"})
					}
				}
			}
		}
		ms, err := s.Store.OpenMaintenances(ctx, r.Shape.Site)
		if err != nil {
			return nil, err
		}
		now := s.now()
		for _, m := range ms {
			for _, b := range m.Batches {
				if b.State == "done" || !b.End.After(now) {
					continue
				}
				for _, n := range b.Nodes {
					if n == nodeID {
						out.Notices = append(out.Notices, wire.Notice{Kind: "maintenance", Deadline: b.Start, Reason: m.Reason + " until " + b.End.Format(time.RFC3339)})
					}
				}
			}
		}
		return out, nil
	}
	return nil, nil
}

// NodeGeneration is a node's assignment generation: that of its newest
// allocation, live or ended (0 if it never had one). It only grows, and it
// is what the node's agent fences destructive commands with.
func (s *Service) NodeGeneration(ctx context.Context, nodeID string) (int64, error) {
	a, err := s.Store.LastNodeAllocation(ctx, nodeID)
	if neocloud.ErrorKind(err) == neocloud.KindNotFound {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return a.BoundAt.UnixMicro(), nil
}

// ReplacementNoticeFor is how long a replacement shows on the nodes of its
// reservation.
const ReplacementNoticeFor = time.Hour

func (s *Service) replacementNotices(ctx context.Context, out *wire.Assignment, reservationID string) error {
	allocs, err := s.Store.Allocations(ctx, reservationID)
	if err != nil {
		return err
	}
	byID := map[string]Allocation{}
	for _, a := range allocs {
		byID[a.ID] = a
	}
	now := s.now()
	for _, a := range allocs {
		if a.Replaces == "" || a.FailedAt == nil || now.Sub(*a.FailedAt) > ReplacementNoticeFor || a.State == AllocationEnded {
			continue
		}
		failed := byID[a.Replaces].Hostname
		state := "being provisioned"
		if a.State == AllocationReady {
			state = "ready"
		}
		out.Notices = append(out.Notices, wire.Notice{Kind: "replacement", Deadline: *a.FailedAt,
			Reason: fmt.Sprintf("node %s failed; %s replaces it (%s)", failed, a.Hostname, state)})
	}
	return nil
}
