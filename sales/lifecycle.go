package sales

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/fleet"
	"github.com/neocloud/neocloud/placement"
)

// preempt gives the spot work a committed reservation displaces its notice:
// it must be off its nodes by the later of now plus the class's notice and
// the reservation's start less turnaround. The victims are told at once
// (without naming who takes their nodes); their calendar entries end at the
// deadline, when the lifecycle releases them. Holds of spot quotes on those
// nodes are simply dropped.
func (s *Service) preempt(ctx context.Context, cal *calendar, r *Reservation, now time.Time) error {
	if r.Shape.Class.Preemptible() {
		return nil
	}
	for _, id := range cal.Displaced(r.ID) {
		if err := s.reclaim(ctx, cal, id, r.Shape.Start.Add(-cal.Turnaround), now); err != nil {
			return err
		}
	}
	return nil
}

// reclaim gives preemptible work (a reservation, an elastic step, or a
// quote's hold) notice to be off its nodes by the later of its class's
// notice and by; an elastic step that would leave its reservation below its
// minimum evicts it whole.
func (s *Service) reclaim(ctx context.Context, cal *calendar, id string, by time.Time, now time.Time) error {
	rid, stepID, isStep := stepOf(id)
	if !isStep {
		rid = id
	}
	v, err := s.Store.Reservation(ctx, rid)
	if neocloud.ErrorKind(err) == neocloud.KindNotFound {
		cal.Drop(id) // a quote's hold
		return nil
	}
	if err != nil {
		return err
	}
	if v.State.Terminal() || v.State == ReservationEnding {
		return nil
	}
	notice := s.notice(cal.site, v.Shape.Class)
	deadline := maxTime(now.Add(notice), by)
	if isStep {
		// Elastic work gives back the step, unless that leaves it
		// below its minimum: then it is evicted whole.
		handled, err := s.preemptStep(ctx, &v, stepID, deadline, now)
		if err != nil {
			return err
		}
		if handled {
			if cm, ok := cal.Reservation(stepID); ok && cm.End.After(deadline) {
				if err := cal.SetEnd(stepID, deadline); err != nil {
					return err
				}
			}
			return nil
		}
	}
	if v.PreemptAt != nil && !deadline.Before(*v.PreemptAt) {
		return nil // already told of an earlier deadline
	}
	v.PreemptAt = &deadline
	if v.DueAt.After(deadline) {
		v.DueAt = deadline
	}
	for _, cid := range v.calendarIDs() {
		if cm, ok := cal.Reservation(cid); ok && cm.End.After(deadline) {
			if err := cal.SetEnd(cid, deadline); err != nil {
				return err
			}
		}
	}
	if err := s.saveReservation(ctx, &v, now); err != nil {
		return err
	}
	if err := s.emit(ctx, v.TenantID, "reservation.preempting", v.ID, map[string]any{"deadline": deadline, "notice_s": int64(deadline.Sub(now) / time.Second), "reason": "capacity reclaimed for committed work"}); err != nil {
		return err
	}
	return nil
}

// bind makes one allocation per node of a scheduled reservation. A node
// whose GPUs are still in another live allocation (work that has not left
// it yet: sanitizing, or spot work awaiting preemption) is re-chosen within
// the constraint onto a node free of all work; failing that, it is bound
// later and the reservation says it waits. The database refuses a GPU in
// two live allocations whatever happens here. The calendar lock is held.
func (s *Service) bind(ctx context.Context, cal *calendar, r *Reservation, now time.Time) error {
	have, err := s.Store.Allocations(ctx, r.ID)
	if err != nil {
		return err
	}
	bound := map[string]bool{}
	for _, a := range have {
		if a.State != AllocationEnded {
			bound[a.NodeID] = true
		}
	}
	first := len(bound) == 0
	waiting := 0
	for j := 0; j < len(r.Nodes); j++ {
		n := r.Nodes[j]
		if bound[n.NodeID] {
			continue
		}
		free, err := s.freeNow(ctx, n)
		if err != nil {
			return err
		}
		// A replacement waiting for its node keeps its link to the failed
		// allocation, whichever node it ends up on.
		k := slices.IndexFunc(r.Replacing, func(p Replacing) bool { return p.NodeID == n.NodeID })
		for try := 0; !free && try < 3; try++ {
			res, err := cal.RechooseFree(r.ID, n.NodeID)
			if err != nil {
				return err
			}
			if res.Plan == nil {
				break
			}
			cm, _ := cal.Reservation(r.ID)
			r.Nodes = s.nodesOf(cm)
			n = r.Nodes[j]
			if k >= 0 {
				r.Replacing[k].NodeID = n.NodeID
			}
			if free, err = s.freeNow(ctx, n); err != nil {
				return err
			}
		}
		if !free {
			waiting++
			continue
		}
		if k < 0 {
			if _, err := s.newAllocation(ctx, r, n, now); err != nil {
				return err
			}
			continue
		}
		if err := s.bindReplacement(ctx, r, n, r.Replacing[k].Replaces, r.Replacing[k].FailedAt, now); err != nil {
			return err
		}
		r.Replacing = slices.Delete(r.Replacing, k, k+1)
	}
	r.Bound = waiting == 0
	r.DueAt, r.Reason = r.Shape.due(), ""
	if waiting > 0 {
		r.DueAt = now.Add(s.Policy.BindRetry)
		r.Reason = fmt.Sprintf("%d of %d nodes wait for work to leave them", waiting, len(r.Nodes))
	}
	if err := s.saveReservation(ctx, r, now); err != nil {
		return err
	}
	if !first && waiting > 0 {
		return nil
	}
	return s.emit(ctx, r.TenantID, "reservation.bound", r.ID, map[string]any{"nodes": len(r.Nodes) - waiting, "waiting": waiting})
}

// freeNow reports whether the GPUs a reservation wants on a node are in no
// live allocation.
func (s *Service) freeNow(ctx context.Context, n NodeGPUs) (bool, error) {
	live, err := s.Store.LiveGPUs(ctx, []string{n.NodeID})
	if err != nil {
		return false, err
	}
	busy := live[n.NodeID]
	if len(busy) == 0 {
		return true, nil
	}
	if len(n.GPUs) == 0 {
		return false, nil
	}
	for _, g := range n.GPUs {
		if slices.Contains(busy, g) {
			return false, nil
		}
	}
	return true, nil
}

func (s *Service) newAllocation(ctx context.Context, r *Reservation, n NodeGPUs, now time.Time) (Allocation, error) {
	s.Tx.AfterCommit(ctx, s.Kick) // its provisioning is due now
	gpus := n.GPUs
	if len(gpus) == 0 {
		node, ok := s.Fleet.Snapshot.Node(n.NodeID)
		if !ok {
			return Allocation{}, errf("node %s of reservation %s is not in the fleet", n.NodeID, r.ID)
		}
		for _, g := range node.GPUs {
			gpus = append(gpus, g.Index)
		}
	}
	a := Allocation{ID: neocloud.NewID(PrefixAllocation), ReservationID: r.ID, TenantID: r.TenantID, NodeID: n.NodeID, Hostname: n.Hostname,
		GPUs: gpus, State: AllocationBound, DueAt: now, BoundAt: now, Version: 1, CreatedAt: now, UpdatedAt: now}
	if err := s.Store.InsertAllocation(ctx, a); err != nil {
		return a, err
	}
	return a, s.emit(ctx, r.TenantID, "allocation.bound", a.ID, map[string]any{"reservation": r.ID, "node": n.Hostname})
}

// withdraw ends a reservation before its time (r.Reason says why): one
// that holds no node is cancelled, one that does ends.
func (s *Service) withdraw(ctx context.Context, cal *calendar, r *Reservation, now time.Time) error {
	held, err := s.holding(ctx, *r)
	if err != nil {
		return err
	}
	if held {
		return s.end(ctx, cal, r, now)
	}
	if err := r.State.Move(ReservationCancelled); err != nil {
		return err
	}
	cal.Drop(r.ID)
	r.State, r.DueAt = ReservationCancelled, farFuture
	if err := s.saveReservation(ctx, r, now); err != nil {
		return err
	}
	return s.emit(ctx, r.TenantID, "reservation.cancelled", r.ID, map[string]any{"reason": r.Reason})
}

// holding says whether a reservation is to end rather than be dropped:
// it has been active, or it has an allocation not yet ended. A reservation
// need not be bound whole to hold nodes: some of its nodes may wait for
// work reclaimed from them, or for maintenance, or a replacement may.
func (s *Service) holding(ctx context.Context, r Reservation) (bool, error) {
	if r.State == ReservationActive {
		return true, nil
	}
	allocs, err := s.Store.Allocations(ctx, r.ID)
	if err != nil {
		return false, err
	}
	return slices.ContainsFunc(allocs, func(a Allocation) bool { return a.State != AllocationEnded }), nil
}

// end moves a reservation that holds nodes to ending: its allocations
// release (network detached, node sanitized) and its calendar entry ends
// now, so that the nodes are free again after turnaround. A replacement
// still waiting for its node is given up: the reservation went without the
// failed node's GPUs from the failure to now, a shortfall.
func (s *Service) end(ctx context.Context, cal *calendar, r *Reservation, now time.Time) error {
	if err := r.State.Move(ReservationEnding); err != nil {
		return err
	}
	// The nodes stay the reservation's on the calendar while they are
	// released and sanitized (about a turnaround); settle sets the true end.
	// Preemptible work keeps them that long even past a reclaim deadline, so
	// that other preemptible work is not placed on nodes still sanitizing.
	release := now.Add(cal.Turnaround)
	for _, cid := range r.calendarIDs() {
		cm, ok := cal.Reservation(cid)
		if ok && (cm.End.After(release) || (r.Shape.Class.Preemptible() && cm.End.Before(release))) {
			if err := cal.SetEnd(cid, release); err != nil {
				return err
			}
		}
	}
	r.State, r.DueAt = ReservationEnding, farFuture
	allocs, err := s.Store.Allocations(ctx, r.ID)
	if err != nil {
		return err
	}
	for _, p := range r.Replacing {
		if i := slices.IndexFunc(allocs, func(a Allocation) bool { return a.ID == p.Replaces }); i >= 0 {
			a, t := allocs[i], now
			r.Shortfalls = append(r.Shortfalls, Shortfall{Node: a.Hostname, GPUs: len(a.GPUs), Allocation: a.ID, Since: p.FailedAt, Until: &t,
				Reason: "its replacement still waited for the work reclaimed from its node when the reservation ended"})
		}
	}
	r.Replacing = nil
	for _, a := range allocs {
		if a.State == AllocationEnded || a.State == AllocationReleasing {
			continue
		}
		if err := s.release(ctx, r, &a, now); err != nil {
			return err
		}
	}
	if err := s.saveReservation(ctx, r, now); err != nil {
		return err
	}
	return s.emit(ctx, r.TenantID, "reservation.ending", r.ID, map[string]any{"reason": r.Reason})
}

// release starts taking an allocation down: detach the network first.
func (s *Service) release(ctx context.Context, r *Reservation, a *Allocation, now time.Time) error {
	if err := a.State.Move(AllocationReleasing); err != nil {
		return err
	}
	if a.State == AllocationReady && s.OnAllocation != nil {
		if err := s.OnAllocation(ctx, *a, "released"); err != nil {
			return err
		}
	}
	a.State, a.Attempts = AllocationReleasing, 1
	t := now
	a.ReleasedAt = &t
	until, err := s.Network.Begin(ctx, Work{Op: "detach", Allocation: *a, Reservation: *r, Attempt: 1, Now: now})
	if err != nil {
		return err
	}
	a.DueAt = until
	return s.saveAllocation(ctx, a, now, "allocation.releasing")
}

func (s *Service) saveAllocation(ctx context.Context, a *Allocation, now time.Time, event string) error {
	a.Version++
	a.UpdatedAt = now
	if err := s.Store.UpdateAllocation(ctx, *a); err != nil {
		return err
	}
	if event == "" {
		return nil
	}
	data := map[string]any{"reservation": a.ReservationID, "node": a.Hostname}
	if a.Reason != "" {
		data["reason"] = a.Reason
	}
	return s.emit(ctx, a.TenantID, event, a.ID, data)
}

// Step does the lifecycle work due now: quotes expire and drop their holds;
// reservations are bound at their lead time and end at their end;
// allocations are provisioned, made ready at the reservation's start,
// released and sanitized. It returns how much it did; call it until it
// returns 0 to catch up. Each item commits in its own transaction.
func (s *Service) Step(ctx context.Context) (int, error) {
	now := s.now()
	done := 0
	quotes, err := s.Store.ExpiredQuotes(ctx, now, 500)
	if err != nil {
		return 0, err
	}
	for _, q := range quotes {
		if err := s.inStep(ctx, func(ctx context.Context) error { return s.expire(ctx, q, now) }); err != nil {
			return done, err
		}
		done++
	}
	rsvs, err := s.Store.DueReservations(ctx, now, 500)
	if err != nil {
		return done, err
	}
	n, err := batches(ctx, s, rsvs, func(ctx context.Context, r Reservation) error { return s.stepReservation(ctx, r.ID, now) })
	done += n
	if err != nil {
		return done, err
	}
	ms, err := s.Store.DueMaintenance(ctx, now)
	if err != nil {
		return done, err
	}
	n, err = batches(ctx, s, ms, func(ctx context.Context, m Maintenance) error { return s.stepMaintenance(ctx, m.ID, now) })
	done += n
	if err != nil {
		return done, err
	}
	allocs, err := s.Store.DueAllocations(ctx, now, 2000)
	if err != nil {
		return done, err
	}
	n, err = batches(ctx, s, allocs, func(ctx context.Context, a Allocation) error {
		return s.stepAllocation(ctx, a.ID, a.ReservationID, now)
	})
	return done + n, err
}

// batches runs fn over items, 64 to a transaction (a commit per item would
// make the disk's flushes the limit); a batch that fails is run again an
// item per transaction, so that one bad item holds up no other.
func batches[T any](ctx context.Context, s *Service, items []T, fn func(context.Context, T) error) (int, error) {
	const size = 64
	done := 0
	for lo := 0; lo < len(items); lo += size {
		chunk := items[lo:min(len(items), lo+size)]
		err := s.inStep(ctx, func(ctx context.Context) error {
			for _, it := range chunk {
				if err := fn(ctx, it); err != nil {
					return err
				}
			}
			return nil
		})
		if err == nil {
			done += len(chunk)
			continue
		}
		for _, it := range chunk {
			if err := s.inStep(ctx, func(ctx context.Context) error { return fn(ctx, it) }); err != nil {
				return done, err
			}
			done++
		}
	}
	return done, nil
}

// inStep runs a lifecycle step in a transaction of its own, fenced first
// when servers take turns at the lifecycle: a server that no longer holds
// the lease (paused past it, say) calls no seam and writes nothing.
func (s *Service) inStep(ctx context.Context, fn func(ctx context.Context) error) error {
	return s.Tx.InTx(ctx, func(ctx context.Context) error {
		if s.Fence != nil {
			if err := s.Fence(ctx); err != nil {
				return err
			}
		}
		return fn(ctx)
	})
}

// Run calls Step every interval, and at once after a commit that made
// work due now (a reservation starting now), until ctx ends.
func (s *Service) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		lead := true
		if s.Lead != nil {
			var err error
			if lead, err = s.Lead(ctx); err != nil && ctx.Err() == nil {
				s.log().Error("lifecycle lease", "err", err)
			}
		}
		for lead {
			n, err := s.Step(ctx)
			if err != nil && ctx.Err() == nil {
				s.log().Error("lifecycle step failed", "err", err)
			}
			if n == 0 || err != nil {
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.kicked():
		}
	}
}

// kicked returns the channel Kick signals.
func (s *Service) kicked() chan struct{} {
	s.kickOnce.Do(func() { s.kick = make(chan struct{}, 1) })
	return s.kick
}

// Kick wakes Run: work is due now.
func (s *Service) Kick() {
	select {
	case s.kicked() <- struct{}{}:
	default:
	}
}

func (s *Service) expire(ctx context.Context, q Quote, now time.Time) error {
	q, err := s.Store.Quote(ctx, q.ID)
	if err != nil || q.State != "open" {
		return err
	}
	if q.Hold && q.Offer.Available {
		s.lock(ctx)
		cal, err := s.calendarFor(ctx, q.Shape.Site, q.Shape.SKU)
		if err != nil {
			return err
		}
		cal.Drop(q.ID)
	}
	q.State, q.Nodes = "expired", nil
	if err := s.Store.UpdateQuote(ctx, q); neocloud.ErrorKind(err) == neocloud.KindConflict {
		return nil // used meanwhile
	} else if err != nil {
		return err
	}
	return s.emit(ctx, q.TenantID, "quote.expired", q.ID, map[string]any{"held": q.Hold})
}

func (s *Service) stepReservation(ctx context.Context, id string, now time.Time) error {
	r, err := s.Store.Reservation(ctx, id)
	if err != nil {
		return err
	}
	if r.State.Terminal() || r.DueAt.After(now) {
		return nil
	}
	s.lock(ctx)
	cal, err := s.calendarFor(ctx, r.Shape.Site, r.Shape.SKU)
	if err != nil {
		return err
	}
	switch {
	case r.PreemptAt != nil && !r.PreemptAt.After(now) && (r.State == ReservationScheduled || r.State == ReservationActive):
		// Reclaimed: off its nodes now, its notice served.
		r.Reason = "preempted: capacity reclaimed for committed work"
		data := map[string]any{"gpus": r.Shape.GPUs}
		if e := r.Elastic; e != nil {
			lost := 0.0
			for _, st := range e.Steps {
				lost += float64(e.StepGPUs) * sinceCheckpoint(st.Since, now, time.Duration(e.CheckpointS)*time.Second).Hours()
			}
			e.LostGPUh += lost
			e.Reclaims++
			data["lost_gpu_hours"] = round2(lost)
		}
		if err := s.emit(ctx, r.TenantID, "reservation.evicted", r.ID, data); err != nil {
			return err
		}
		return s.withdraw(ctx, cal, &r, now)
	case r.Elastic != nil && (r.State == ReservationScheduled || r.State == ReservationActive):
		return s.stepElastic(ctx, cal, &r, now)
	case (r.State == ReservationScheduled || r.State == ReservationActive) && !r.Shape.end().After(now):
		return s.end(ctx, cal, &r, now)
	case (r.State == ReservationScheduled || r.State == ReservationActive) && !r.Bound:
		return s.bind(ctx, cal, &r, now)
	}
	r.DueAt = r.Shape.due()
	return s.saveReservation(ctx, &r, now)
}

// stepAllocation advances one allocation whose step is due.
func (s *Service) stepAllocation(ctx context.Context, id, rsvID string, now time.Time) error {
	r, err := s.cachedReservation(ctx, rsvID)
	if err != nil {
		return err
	}
	one, err := s.Store.Allocation(ctx, id)
	if err != nil {
		return err
	}
	a := &one
	if a.DueAt.After(now) {
		return nil
	}
	w := Work{Allocation: *a, Reservation: r, Attempt: a.Attempts, Now: now}
	switch a.State {
	case AllocationBound:
		// 1. Provision and attach the network together.
		if err := s.beginProvisioning(ctx, &r, a, 1, now); err != nil {
			return err
		}
		return s.saveAllocation(ctx, a, now, "allocation.provisioning")
	case AllocationProvisioning:
		if a.Provisioned {
			return s.ready(ctx, a, &r, now)
		}
		// 2. Both steps report; a failure is retried, then the node replaced.
		w.Op = "provision"
		okP, errP := s.Provisioner.Check(ctx, w)
		w.Op = "attach"
		okN, errN := s.Network.Check(ctx, w)
		if failed := firstErr(errP, errN); failed != nil {
			if a.Attempts < s.Policy.MaxAttempts {
				a.Reason = "attempt " + fmt.Sprint(a.Attempts) + " failed: " + failed.Error()
				if err := s.beginProvisioning(ctx, &r, a, a.Attempts+1, now.Add(s.Policy.Retry)); err != nil {
					return err
				}
				return s.saveAllocation(ctx, a, now, "allocation.retrying")
			}
			return s.replace(ctx, &r, a, fmt.Sprintf("provisioning failed %d times: %v", a.Attempts, failed), now)
		}
		if !okP || !okN {
			a.DueAt = now.Add(s.Policy.Poll)
			return s.saveAllocation(ctx, a, now, "")
		}
		a.Provisioned, a.Reason = true, ""
		a.DueAt = maxTime(now, r.Shape.Start)
		if a.DueAt.After(now) {
			return s.saveAllocation(ctx, a, now, "allocation.provisioned")
		}
		return s.ready(ctx, a, &r, now)
	case AllocationReleasing:
		if a.SanitizedAt == nil {
			// 4. Network detached (checked until it is); then sanitize.
			if a.Reason != "sanitizing" {
				w.Op = "detach"
				if ok, err := s.Network.Check(ctx, w); err != nil || !ok {
					a.DueAt = now.Add(s.Policy.Poll)
					if err != nil {
						a.DueAt, a.Reason = now.Add(s.Policy.Retry), "detach: "+err.Error()
					}
					return s.saveAllocation(ctx, a, now, "")
				}
			}
			if a.Reason == "sanitizing" {
				w.Op = "sanitize"
				ok, err := s.Sanitizer.Check(ctx, w)
				if err != nil {
					// A node that does not sanitize never serves anyone again
					// until it does: retry, and tell the operator via the event.
					a.Attempts++
					w.Attempt = a.Attempts
					until, berr := s.Sanitizer.Begin(ctx, w)
					if berr != nil {
						return berr
					}
					a.DueAt = until
					return s.saveAllocation(ctx, a, now, "allocation.sanitize_retry")
				}
				if !ok {
					a.DueAt = now.Add(s.Policy.Poll)
					return s.saveAllocation(ctx, a, now, "")
				}
				t := now
				a.SanitizedAt = &t
				return s.finish(ctx, &r, a, now)
			}
			w.Op, w.Attempt = "sanitize", 1
			a.Attempts = 1
			until, err := s.Sanitizer.Begin(ctx, w)
			if err != nil {
				return err
			}
			a.Reason, a.DueAt = "sanitizing", until
			return s.saveAllocation(ctx, a, now, "")
		}
		return s.finish(ctx, &r, a, now)
	}
	return nil
}

// ready hands a provisioned allocation over at its due time (the
// reservation's start, or when provisioning finished if later): billing
// and the SLA clock start here.
func (s *Service) ready(ctx context.Context, a *Allocation, r *Reservation, now time.Time) error {
	t := a.DueAt
	a.State, a.ReadyAt, a.DueAt = AllocationReady, &t, farFuture
	if err := s.saveAllocation(ctx, a, now, "allocation.ready"); err != nil {
		return err
	}
	if a.Replaces != "" && a.FailedAt != nil {
		ttr := t.Sub(*a.FailedAt).Seconds() // time to ready: ReadyAt − FailedAt
		if err := s.emit(ctx, r.TenantID, "node.replacement_ready", r.ID, map[string]any{"node": a.Hostname, "replaces": a.Replaces, "time_to_ready_s": ttr}); err != nil {
			return err
		}
	}
	if s.OnAllocation != nil {
		if err := s.OnAllocation(ctx, *a, "ready"); err != nil {
			return err
		}
	}
	return s.settle(ctx, r, now)
}

func (s *Service) beginProvisioning(ctx context.Context, r *Reservation, a *Allocation, attempt int, now time.Time) error {
	a.State, a.Attempts = AllocationProvisioning, attempt
	w := Work{Op: "provision", Allocation: *a, Reservation: *r, Attempt: attempt, Now: now}
	u1, err := s.Provisioner.Begin(ctx, w)
	if err != nil {
		return err
	}
	w.Op = "attach"
	u2, err := s.Network.Begin(ctx, w)
	if err != nil {
		return err
	}
	a.DueAt = maxTime(u1, u2)
	return nil
}

// finish ends a sanitized allocation, freeing its GPUs.
func (s *Service) finish(ctx context.Context, r *Reservation, a *Allocation, now time.Time) error {
	t := now
	a.State, a.EndedAt, a.DueAt = AllocationEnded, &t, farFuture
	if a.Reason == "sanitizing" {
		a.Reason = ""
	}
	if err := s.saveAllocation(ctx, a, now, "allocation.ended"); err != nil {
		return err
	}
	return s.settle(ctx, r, now)
}

// settle derives the reservation's state from its allocations: active once
// all are ready, ended once all have ended after its end.
func (s *Service) settle(ctx context.Context, r *Reservation, now time.Time) error {
	if r.State != ReservationScheduled && r.State != ReservationEnding {
		return nil // nothing its allocations can move it to
	}
	live, unready, err := s.Store.AllocationsSettled(ctx, r.ID)
	if err != nil {
		return err
	}
	switch {
	case r.State == ReservationScheduled && live && !unready:
		byState, err := s.Store.AllocationStates(ctx, r.ID)
		if err != nil {
			return err
		}
		ready := byState[AllocationReady]
		r.State = ReservationActive
		if err := s.saveReservation(ctx, r, now); err != nil {
			return err
		}
		return s.emit(ctx, r.TenantID, "reservation.active", r.ID, map[string]any{"nodes": ready})
	case r.State == ReservationEnding && !live:
		s.lock(ctx)
		cal, err := s.calendarFor(ctx, r.Shape.Site, r.Shape.SKU)
		if err != nil {
			return err
		}
		for _, cid := range r.calendarIDs() {
			if cm, ok := cal.Reservation(cid); ok && cm.End.After(now) {
				if err := cal.SetEnd(cid, now); err != nil {
					return err
				}
			}
		}
		r.State = ReservationEnded
		if err := s.saveReservation(ctx, r, now); err != nil {
			return err
		}
		return s.emit(ctx, r.TenantID, "reservation.ended", r.ID, nil)
	}
	return nil
}

// replace ends an allocation whose node could not be provisioned, takes the
// node out of service and binds a replacement within the reservation's
// constraint. With none to be had the reservation goes on short a node and
// the tenant is told.
func (s *Service) replace(ctx context.Context, r *Reservation, a *Allocation, why string, now time.Time) error {
	t := now
	a.State, a.EndedAt, a.DueAt, a.Reason = AllocationEnded, &t, farFuture, why
	if err := s.saveAllocation(ctx, a, now, "allocation.failed"); err != nil {
		return err
	}
	if s.FailNode != nil {
		if err := s.FailNode(ctx, a.NodeID, why); err != nil {
			return err
		}
	}
	s.lock(ctx)
	cal, err := s.calendarFor(ctx, r.Shape.Site, r.Shape.SKU)
	if err != nil {
		return err
	}
	if err := cal.Block(a.NodeID); err != nil {
		return err
	}
	if r.Elastic != nil {
		// Elastic work is not replaced node by node: the step that lost a
		// node is given back whole, and the job grows again into idle
		// capacity.
		return s.shrinkFailed(ctx, cal, r, a.NodeID, why, now)
	}
	res, err := cal.Rechoose(r.ID, a.NodeID)
	if err != nil {
		return err
	}
	if res.Plan == nil {
		r.Reason = "no replacement for " + a.Hostname
		r.Shortfalls = append(r.Shortfalls, Shortfall{Node: a.Hostname, GPUs: len(a.GPUs), Allocation: a.ID, Since: t, Reason: why})
		if err := s.emit(ctx, r.TenantID, "node.replacement_failed", r.ID, map[string]any{"node": a.Hostname, "reason": why}); err != nil {
			return err
		}
		// With nothing left to deliver, the reservation has failed.
		allocs, err := s.Store.Allocations(ctx, r.ID)
		if err != nil {
			return err
		}
		live := 0
		for _, x := range allocs {
			if x.State != AllocationEnded {
				live++
			}
		}
		if live == 0 && r.State.Move(ReservationFailed) == nil {
			cal.Drop(r.ID)
			r.State, r.DueAt = ReservationFailed, farFuture
			r.Reason = "no node could be provisioned: " + why
			if err := s.saveReservation(ctx, r, now); err != nil {
				return err
			}
			return s.emit(ctx, r.TenantID, "reservation.failed", r.ID, map[string]any{"reason": r.Reason})
		}
		return s.saveReservation(ctx, r, now)
	}
	cm, _ := cal.Reservation(r.ID)
	r.Nodes = s.nodesOf(cm)
	r.ReplacedAt = &t
	var repl NodeGPUs
	for _, n := range r.Nodes {
		if n.NodeID == res.Plan.Nodes[0].NodeID {
			repl = n
		}
	}
	// With no spare, the replacement may be a node spot or internal work
	// holds: that work gets its notice, and bind makes the allocation
	// once it has left.
	if err := s.preempt(ctx, cal, r, now); err != nil {
		return err
	}
	free, err := s.freeNow(ctx, repl)
	if err != nil {
		return err
	}
	if err := s.emit(ctx, r.TenantID, "node.replaced", r.ID, map[string]any{"failed": a.Hostname, "replacement": repl.Hostname, "reason": why}); err != nil {
		return err
	}
	if !free {
		r.Replacing = append(r.Replacing, Replacing{NodeID: repl.NodeID, Replaces: a.ID, Failed: a.Hostname, FailedAt: t})
		r.Bound, r.DueAt = false, now.Add(s.Policy.BindRetry)
		return s.saveReservation(ctx, r, now)
	}
	if err := s.saveReservation(ctx, r, now); err != nil {
		return err
	}
	return s.bindReplacement(ctx, r, repl, a.ID, t, now)
}

// bindReplacement makes the allocation of a replacement node, linked to the
// failed allocation it replaces (the time to ready and the SLA's downtime
// run from failedAt).
func (s *Service) bindReplacement(ctx context.Context, r *Reservation, n NodeGPUs, replaces string, failedAt, now time.Time) error {
	na, err := s.newAllocation(ctx, r, n, now)
	if err != nil {
		return err
	}
	na.Replaces, na.FailedAt = replaces, &failedAt
	return s.saveAllocation(ctx, &na, now, "")
}

// shrinkFailed gives back the step of an elastic reservation that holds a
// failed node.
func (s *Service) shrinkFailed(ctx context.Context, cal *calendar, r *Reservation, nodeID, why string, now time.Time) error {
	e := r.Elastic
	kept := e.Steps[:0:0]
	for _, st := range e.Steps {
		if !slices.Contains(st.Nodes, nodeID) {
			kept = append(kept, st)
			continue
		}
		if err := s.giveBack(ctx, cal, r, st, "a node of the step failed: "+why, now); err != nil {
			return err
		}
	}
	e.Steps = kept
	r.Shape.GPUs = e.gpus()
	return s.saveReservation(ctx, r, now)
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// calendarIDs are the reservation's entries on the calendar: its own id,
// or one per step of elastic work.
func (r *Reservation) calendarIDs() []string {
	if r.Elastic == nil {
		return []string{r.ID}
	}
	ids := make([]string, len(r.Elastic.Steps))
	for i, st := range r.Elastic.Steps {
		ids[i] = st.ID
	}
	return ids
}

// notice is the notice a class of preemptible work gets at a site: the
// site's policy, else the server's.
func (s *Service) notice(site fleet.Site, class Class) time.Duration {
	spot, internal := s.Policy.SpotNotice, s.Policy.InternalNotice
	if p := site.Policy; p != nil {
		if p.SpotNoticeS > 0 {
			spot = time.Duration(p.SpotNoticeS) * time.Second
		}
		if p.InternalNoticeS > 0 {
			internal = time.Duration(p.InternalNoticeS) * time.Second
		}
	}
	if class == placement.ClassInternal {
		return internal
	}
	return spot
}

// NodeFailed takes a failed node out of the work it serves: each live
// allocation on it ends and a replacement within its reservation's
// constraint is bound and provisioned (or the reservation runs short and
// its tenant is told), as when provisioning fails. Bare-metal delivery is
// left alone unless evidence is true: the failure is known from outside
// the node — its out-of-band controller, or its tenant's confirmed report
// — since on bare metal the tenant has root, and neither the agent's
// silence nor its word is enough. A tenant's open reports of the node are
// confirmed by its failure: their downtime counts from each report.
func (s *Service) NodeFailed(ctx context.Context, nodeID, why string, evidence bool) (replaced int, err error) {
	return s.nodeFailed(ctx, nodeID, why, evidence, ConfirmedByHealth)
}

// nodeFailed is NodeFailed; the open reports of the work the node leaves
// are confirmed by confirmBy (none when empty).
func (s *Service) nodeFailed(ctx context.Context, nodeID, why string, evidence bool, confirmBy string) (replaced int, err error) {
	err = s.Tx.InTx(ctx, func(ctx context.Context) error {
		allocs, err := s.Store.NodeAllocations(ctx, nodeID)
		if err != nil {
			return err
		}
		now := s.now()
		for _, a := range allocs {
			if !a.State.Live() {
				continue
			}
			r, err := s.Store.Reservation(ctx, a.ReservationID)
			if err != nil {
				return err
			}
			if r.Shape.Delivery == DeliveryBareMetal && !evidence {
				continue // the tenant controls the node: silence is not failure
			}
			if err := s.replace(ctx, &r, &a, why, now); err != nil {
				return err
			}
			replaced++
			if confirmBy != "" {
				if err := s.confirmReports(ctx, nodeID, r.ID, confirmBy, why, now); err != nil {
					return err
				}
			}
		}
		return nil
	})
	return replaced, err
}

// BareMetal reports whether a node serves bare-metal work now.
func (s *Service) BareMetal(ctx context.Context, nodeID string) (bool, error) {
	allocs, err := s.Store.NodeAllocations(ctx, nodeID)
	if err != nil {
		return false, err
	}
	for _, a := range allocs {
		if !a.State.Live() {
			continue
		}
		r, err := s.Store.Reservation(ctx, a.ReservationID)
		if err != nil {
			return false, err
		}
		if r.Shape.Delivery == DeliveryBareMetal {
			return true, nil
		}
	}
	return false, nil
}
