package sales

import (
	"cmp"
	"context"
	"fmt"
	"slices"
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
		if !a.State.Live() {
			continue
		}
		r, err := s.cachedReservation(ctx, a.ReservationID)
		if err != nil {
			return nil, err
		}
		out := &wire.Assignment{Generation: a.BoundAt.UnixMicro(), Reservation: r.ID, End: r.Shape.End}
		// Replacements in the reservation in the last hour: the tenant's
		// job on every node re-forms around the new one.
		if err := s.replacementNotices(ctx, out, r); err != nil {
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

func (s *Service) replacementNotices(ctx context.Context, out *wire.Assignment, r Reservation) error {
	// Replacements waiting for the work reclaimed from their nodes: the
	// reservation lists them (saving it reads every node's notices again).
	for _, p := range r.Replacing {
		out.Notices = append(out.Notices, wire.Notice{Kind: "replacement", Deadline: p.FailedAt,
			Reason: fmt.Sprintf("node %s failed; %s replaces it (waiting for the work reclaimed from it)", cmp.Or(p.Failed, p.Replaces), r.NodeHostname(p.NodeID))})
	}
	now := s.now()
	if r.ReplacedAt == nil || now.Sub(*r.ReplacedAt) > ReplacementNoticeFor {
		return nil // none in the last hour: no need to read its allocations
	}
	s.amu.Lock()
	gen := s.replGen[r.ID]
	c, ok := s.repls[r.ID]
	s.amu.Unlock()
	if !ok || c.gen != gen || (s.SharedTTL > 0 && time.Since(c.at) >= s.SharedTTL) {
		allocs, err := s.Store.Allocations(ctx, r.ID)
		if err != nil {
			return err
		}
		byID := map[string]Allocation{}
		for _, a := range allocs {
			byID[a.ID] = a
		}
		c = replNotices{gen: gen, at: time.Now()}
		for _, a := range allocs {
			if a.Replaces == "" || a.FailedAt == nil || a.State == AllocationEnded {
				continue
			}
			state := "being provisioned"
			if a.State == AllocationReady {
				state = "ready"
			}
			c.notices = append(c.notices, wire.Notice{Kind: "replacement", Deadline: *a.FailedAt,
				Reason: fmt.Sprintf("node %s failed; %s replaces it (%s)", byID[a.Replaces].Hostname, a.Hostname, state)})
		}
		s.amu.Lock()
		if s.repls == nil {
			s.repls = map[string]replNotices{}
		}
		if len(s.repls) >= maxCached {
			clear(s.repls)
		}
		s.repls[r.ID] = c
		s.amu.Unlock()
	}
	for _, n := range c.notices {
		if now.Sub(n.Deadline) <= ReplacementNoticeFor {
			out.Notices = append(out.Notices, n)
		}
	}
	return nil
}

// replNotices are a reservation's replacement notices as read at a
// generation of its replacement allocations.
type replNotices struct {
	gen     uint64
	at      time.Time
	notices []wire.Notice
}

// maxCached bounds each assignment cache (entries; cleared when full).
const maxCached = 8192

// cachedReservation reads a reservation through a cache of decoded ones,
// checked against the stored version (a lease's body lists thousands of
// nodes, and every node's assignment and lifecycle step needs it). It
// returns a copy the caller may change. What a transaction reads enters
// the cache only once it commits: a version seen inside one that rolls
// back may be written again with other contents.
func (s *Service) cachedReservation(ctx context.Context, id string) (Reservation, error) {
	v, err := s.Store.ReservationVersion(ctx, id)
	if err != nil {
		return Reservation{}, err
	}
	s.amu.Lock()
	r, ok := s.rsvs[id]
	s.amu.Unlock()
	if ok && r.Version == v {
		return r.clone(), nil
	}
	if s.Tx.TxID(ctx) == nil {
		// Outside a transaction what is read is committed: one read per
		// reservation at a time, shared by everyone waiting for it (a new
		// version of a big reservation is wanted by all its nodes at once).
		x, err, _ := s.rsvFlight.Do(fmt.Sprint(id, "@", v), func() (any, error) {
			r, err := s.Store.Reservation(context.WithoutCancel(ctx), id)
			if err != nil {
				return r, err
			}
			s.keep(r.clone())
			return r, nil
		})
		if err != nil {
			return Reservation{}, err
		}
		return x.(Reservation).clone(), nil
	}
	// Inside a transaction: what it read is shared within it (a batch of
	// lifecycle steps reads the same reservation for each of its nodes),
	// and kept for everyone once it commits.
	tx := s.Tx.TxID(ctx)
	s.amu.Lock()
	r, ok = s.txRsvs[tx][id]
	s.amu.Unlock()
	if ok && r.Version == v {
		return r.clone(), nil
	}
	if r, err = s.Store.Reservation(ctx, id); err != nil {
		return r, err
	}
	kept := r.clone()
	s.amu.Lock()
	if s.txRsvs == nil {
		s.txRsvs = map[any]map[string]Reservation{}
	}
	m, seen := s.txRsvs[tx]
	if !seen {
		m = map[string]Reservation{}
		s.txRsvs[tx] = m
	}
	m[id] = kept
	s.amu.Unlock()
	if !seen {
		s.Tx.OnEnd(ctx, func(bool) {
			s.amu.Lock()
			delete(s.txRsvs, tx)
			s.amu.Unlock()
		})
	}
	s.Tx.AfterCommit(ctx, func() { s.keep(kept) })
	return r, nil
}

// keep caches a decoded reservation unless a newer one is cached.
func (s *Service) keep(r Reservation) {
	s.amu.Lock()
	defer s.amu.Unlock()
	if s.rsvs == nil {
		s.rsvs = map[string]Reservation{}
	}
	if len(s.rsvs) >= maxCached {
		clear(s.rsvs)
	}
	if cur, ok := s.rsvs[r.ID]; !ok || cur.Version < r.Version {
		s.rsvs[r.ID] = r
	}
}

// clone copies a reservation so that changing the copy leaves r alone:
// its shortfalls and elastic steps (written in place, and few) are copied;
// its node list (thousands for a lease, never written in place: the sales
// code builds a new one) is clipped, so that appending to it reallocates.
func (r Reservation) clone() Reservation {
	c := r
	c.Nodes = slices.Clip(r.Nodes)
	c.Shortfalls = slices.Clone(r.Shortfalls)
	if r.Elastic != nil {
		e := *r.Elastic
		e.Steps = slices.Clone(e.Steps)
		c.Elastic = &e
	}
	return c
}

// replaced notes, once the transaction commits, that a reservation's
// replacement allocations changed: its notices are read again.
func (s *Service) replaced(ctx context.Context, reservationID string) {
	s.Tx.AfterCommit(ctx, func() {
		s.amu.Lock()
		if s.replGen == nil {
			s.replGen = map[string]uint64{}
		}
		s.replGen[reservationID]++
		s.amu.Unlock()
	})
}
