package sales

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/placement"
)

// ElasticInput makes an internal request elastic: it runs on at least
// MinGPUs, grows into idle capacity up to MaxGPUs in steps of StepGPUs (each
// step within one domain of StepWithin), and gives steps back one at a time
// when committed work needs their nodes. Work since the last checkpoint of
// a step given back is lost.
type ElasticInput struct {
	MinGPUs     int    `json:"min_gpus" minimum:"1"`
	MaxGPUs     int    `json:"max_gpus" minimum:"1"`
	StepGPUs    int    `json:"step_gpus" minimum:"1" doc:"Grow and shrink by this many GPUs (whole nodes)."`
	StepWithin  string `json:"step_within,omitempty" doc:"Topology level each step lies within, e.g. su."`
	CheckpointS int64  `json:"checkpoint_s,omitempty" doc:"Seconds between the job's checkpoints; work since the last one is lost when a step is reclaimed."`
}

// Elastic is an elastic internal reservation's state: its steps, each a
// calendar entry of its own, and what reclaims have cost it.
type Elastic struct {
	ElasticInput
	Steps    []Step  `json:"steps"`
	NextStep int     `json:"next_step"`
	LostGPUh float64 `json:"lost_gpu_hours" doc:"GPU-hours of work lost to reclaims since the last checkpoints."`
	Reclaims int     `json:"reclaims"`
}

// Step is one step of an elastic reservation.
type Step struct {
	ID        string     `json:"id"`
	Nodes     []string   `json:"nodes"`
	Since     time.Time  `json:"since"`
	ReclaimAt *time.Time `json:"reclaim_at,omitempty" doc:"When committed work takes its nodes back."`
}

// stepOf splits a calendar id "rsv_…/s3" into the reservation and the step.
func stepOf(id string) (string, string, bool) {
	i := strings.LastIndex(id, "/s")
	if i < 0 {
		return "", "", false
	}
	if _, err := strconv.Atoi(id[i+2:]); err != nil {
		return "", "", false
	}
	return id[:i], id, true
}

// GrowEvery is how often an elastic reservation looks for idle capacity.
const GrowEvery = time.Minute

func (e *Elastic) gpus() int { return len(e.Steps) * e.StepGPUs }

// validate checks an elastic request against the SKU's node size.
func (in *ElasticInput) validate(gpusPerNode int, levels []string) error {
	switch {
	case in.StepGPUs <= 0 || in.StepGPUs%gpusPerNode != 0:
		return neocloud.Invalid("body.elastic.step_gpus", "steps are whole nodes: a positive multiple of %d GPUs", gpusPerNode)
	case in.MinGPUs <= 0 || in.MinGPUs%in.StepGPUs != 0:
		return neocloud.Invalid("body.elastic.min_gpus", "must be a positive multiple of the step (%d GPUs)", in.StepGPUs)
	case in.MaxGPUs < in.MinGPUs || in.MaxGPUs%in.StepGPUs != 0:
		return neocloud.Invalid("body.elastic.max_gpus", "must be a multiple of the step, at least min_gpus")
	case in.CheckpointS < 0:
		return neocloud.Invalid("body.elastic.checkpoint_s", "must not be negative")
	case in.StepWithin != "" && !containsLevel(levels, in.StepWithin):
		return neocloud.Invalid("body.elastic.step_within", "no level %q (levels: %v)", in.StepWithin, levels)
	}
	return nil
}

func containsLevel(levels []string, l string) bool {
	for _, x := range levels {
		if x == l {
			return true
		}
	}
	return false
}

// stepElastic is an elastic reservation's lifecycle step: steps whose
// reclaim deadline has come are given back; then it grows into idle
// capacity (all of its minimum at once while it is queued).
func (s *Service) stepElastic(ctx context.Context, cal *calendar, r *Reservation, now time.Time) error {
	e := r.Elastic
	// 1. Reclaims due.
	kept := e.Steps[:0:0]
	for _, st := range e.Steps {
		if st.ReclaimAt == nil || st.ReclaimAt.After(now) {
			kept = append(kept, st)
			continue
		}
		if err := s.giveBack(ctx, cal, r, st, "reclaimed for committed work", now); err != nil {
			return err
		}
	}
	e.Steps = kept
	// 2. Grow into what is idle: free of all work now, spot included.
	want := e.MaxGPUs / e.StepGPUs
	if len(e.Steps) == 0 {
		want = e.MinGPUs / e.StepGPUs // queued: all of the minimum or nothing
	}
	var added []Step
	for len(e.Steps)+len(added) < e.MaxGPUs/e.StepGPUs && len(added) < want {
		id := fmt.Sprintf("%s/s%d", r.ID, e.NextStep+len(added))
		res, err := cal.AdmitFree(id, placement.Request{GPUs: e.StepGPUs, Class: placement.ClassInternal, Within: e.StepWithin}, r.TenantID, now, placement.Forever)
		if err != nil {
			return err
		}
		if res.Plan == nil {
			break
		}
		st := Step{ID: id, Since: now}
		free := true
		for _, a := range res.Plan.Nodes {
			st.Nodes = append(st.Nodes, a.NodeID)
			ok, err := s.freeNow(ctx, NodeGPUs{NodeID: a.NodeID})
			if err != nil {
				return err
			}
			free = free && ok
		}
		if !free { // work is still leaving those nodes: look again later
			cal.Drop(id)
			break
		}
		added = append(added, st)
	}
	if len(e.Steps) == 0 && len(added)*e.StepGPUs < e.MinGPUs {
		for _, st := range added {
			cal.Drop(st.ID)
		}
		added = nil
		r.Reason = fmt.Sprintf("queued: waiting for %d idle GPUs", e.MinGPUs)
	}
	for _, st := range added {
		e.NextStep++
		e.Steps = append(e.Steps, st)
		for _, id := range st.Nodes {
			n := NodeGPUs{NodeID: id}
			if fn, ok := s.Fleet.Snapshot.Node(id); ok {
				n.Hostname, n.Domain = fn.Hostname, fn.Domain
			}
			r.Nodes = append(r.Nodes, n)
			if _, err := s.newAllocation(ctx, r, n, now); err != nil {
				return err
			}
		}
	}
	if len(added) > 0 {
		r.Reason, r.Bound = "", true
		if err := s.emit(ctx, r.TenantID, "reservation.grown", r.ID, map[string]any{"gpus": e.gpus(), "added_gpus": len(added) * e.StepGPUs}); err != nil {
			return err
		}
	}
	r.Shape.GPUs = e.gpus()
	// 3. Next look: the next reclaim deadline, or a minute after growing
	// (five when nothing was idle).
	r.DueAt = now.Add(GrowEvery)
	if len(added) == 0 {
		r.DueAt = now.Add(5 * GrowEvery)
	}
	for _, st := range e.Steps {
		if st.ReclaimAt != nil && st.ReclaimAt.Before(r.DueAt) {
			r.DueAt = *st.ReclaimAt
		}
	}
	return s.saveReservation(ctx, r, now)
}

// giveBack releases one step whose nodes committed work takes (or one of
// whose nodes failed): its allocations release (sanitize, turnaround), the
// work since its last checkpoint is counted lost, and the tenant is told.
// The caller removes the step from the reservation's list.
func (s *Service) giveBack(ctx context.Context, cal *calendar, r *Reservation, st Step, why string, now time.Time) error {
	e := r.Elastic
	cal.Drop(st.ID)
	in := map[string]bool{}
	for _, id := range st.Nodes {
		in[id] = true
	}
	allocs, err := s.Store.Allocations(ctx, r.ID)
	if err != nil {
		return err
	}
	for i := range allocs {
		a := &allocs[i]
		if in[a.NodeID] && a.State != AllocationEnded && a.State != AllocationReleasing {
			a.Reason = why
			if err := s.release(ctx, r, a, now); err != nil {
				return err
			}
		}
	}
	nodes := r.Nodes[:0:0]
	for _, n := range r.Nodes {
		if !in[n.NodeID] {
			nodes = append(nodes, n)
		}
	}
	r.Nodes = nodes
	lost := float64(e.StepGPUs) * sinceCheckpoint(st.Since, now, time.Duration(e.CheckpointS)*time.Second).Hours()
	e.LostGPUh += lost
	e.Reclaims++
	return s.emit(ctx, r.TenantID, "reservation.shrunk", r.ID, map[string]any{"gpus": e.gpus() - e.StepGPUs, "reclaimed_gpus": e.StepGPUs, "lost_gpu_hours": round2(lost), "reason": why})
}

// sinceCheckpoint is the work a job running since since loses at t: all of
// it without checkpoints, else what followed the last one.
func sinceCheckpoint(since, t time.Time, every time.Duration) time.Duration {
	d := t.Sub(since)
	if every <= 0 || d <= 0 {
		return max(d, 0)
	}
	return d % every
}

func round2(v float64) float64 { return math.Round(v*100) / 100 }

// preemptStep gives an elastic reservation's step notice, or, when giving
// back every step in question would leave it below its minimum, evicts it
// whole (the caller's ordinary path). It reports whether it handled id.
func (s *Service) preemptStep(ctx context.Context, r *Reservation, stepID string, deadline time.Time, now time.Time) (bool, error) {
	e := r.Elastic
	left := 0
	var target *Step
	for i := range e.Steps {
		st := &e.Steps[i]
		if st.ID == stepID {
			target = st
		}
		if st.ReclaimAt == nil && st.ID != stepID {
			left++
		}
	}
	if target == nil {
		return true, nil // given back already
	}
	if left*e.StepGPUs < e.MinGPUs {
		return false, nil // below the minimum: evict it whole
	}
	if target.ReclaimAt != nil && !deadline.Before(*target.ReclaimAt) {
		return true, nil
	}
	target.ReclaimAt = &deadline
	if r.DueAt.After(deadline) {
		r.DueAt = deadline
	}
	if err := s.saveReservation(ctx, r, now); err != nil {
		return true, err
	}
	return true, s.emit(ctx, r.TenantID, "reservation.shrinking", r.ID, map[string]any{"gpus": e.StepGPUs, "deadline": deadline, "notice_s": int64(deadline.Sub(now) / time.Second)})
}

// InternalReport is what the operator's own training got from idle capacity
// over a period, and what reclaims cost it.
type InternalReport struct {
	Start      time.Time `json:"start"`
	End        time.Time `json:"end"`
	UsedGPUh   float64   `json:"gpu_hours_used" doc:"GPU-hours of internal allocations ready in the period."`
	LostGPUh   float64   `json:"gpu_hours_lost" doc:"GPU-hours of work lost to reclaims (since the last checkpoint)."`
	Reclaims   int       `json:"reclaims" doc:"Steps given back or reservations evicted for committed work."`
	Evictions  int       `json:"evictions"`
	Shrinks    int       `json:"shrinks"`
	Tenants    []string  `json:"tenants"`
	RunningNow int       `json:"gpus_running_now"`
}

// Internal reports on the internal tenants' work over [start, end).
func (s *Service) Internal(ctx context.Context, start, end time.Time, internal []string) (InternalReport, error) {
	rep := InternalReport{Start: start, End: end, Tenants: internal}
	now := s.now()
	for _, t := range internal {
		rs, err := s.Store.Reservations(ctx, ReservationFilter{TenantID: t}, neocloud.Page{Limit: 1000})
		if err != nil {
			return rep, err
		}
		for _, r := range rs {
			as, err := s.Store.Allocations(ctx, r.ID)
			if err != nil {
				return rep, err
			}
			for _, a := range as {
				if a.ReadyAt == nil {
					continue
				}
				stop := now
				if a.ReleasedAt != nil {
					stop = *a.ReleasedAt
				}
				from, to := maxTime(*a.ReadyAt, start), stop
				if to.After(end) {
					to = end
				}
				if to.After(from) {
					rep.UsedGPUh += float64(len(a.GPUs)) * to.Sub(from).Hours()
				}
				if a.State == AllocationReady {
					rep.RunningNow += len(a.GPUs)
				}
			}
		}
		for after := int64(0); ; {
			evs, err := s.Store.Events(ctx, t, after, 1000)
			if err != nil {
				return rep, err
			}
			for _, ev := range evs {
				after = ev.Seq
				if ev.At.Before(start) || !ev.At.Before(end) {
					continue
				}
				switch ev.Kind {
				case "reservation.shrunk":
					rep.Shrinks++
					rep.Reclaims++
					if v, ok := ev.Data["lost_gpu_hours"].(float64); ok {
						rep.LostGPUh += v
					}
				case "reservation.evicted":
					rep.Evictions++
					rep.Reclaims++
					if v, ok := ev.Data["lost_gpu_hours"].(float64); ok {
						rep.LostGPUh += v
					}
				}
			}
			if len(evs) < 1000 {
				break
			}
		}
	}
	rep.UsedGPUh, rep.LostGPUh = round2(rep.UsedGPUh), round2(rep.LostGPUh)
	return rep, nil
}

// reserveElastic queues elastic internal work for an internal tenant; the
// lifecycle grows it into idle capacity.
func (s *Service) reserveElastic(ctx context.Context, tenant string, sh Shape, in ElasticInput, now time.Time) (Reservation, error) {
	if s.IsInternal == nil {
		return Reservation{}, neocloud.Invalid("body.tenant", "no internal tenants here")
	}
	internal, err := s.IsInternal(ctx, tenant)
	if err != nil {
		return Reservation{}, err
	}
	if !internal {
		return Reservation{}, neocloud.Invalid("body.class", "only the operator's internal tenant runs internal work")
	}
	c, err := s.Store.StandingContract(ctx, tenant, placement.ClassInternal, sh.SKU)
	if neocloud.ErrorKind(err) == neocloud.KindNotFound {
		c = Contract{ID: neocloud.NewID(PrefixContract), TenantID: tenant, Kind: placement.ClassInternal, SKU: sh.SKU, Start: now, CreatedAt: now,
			Terms: Terms{PricePerGPUHour: "0.00", Currency: "USD", BillingSchedule: "monthly_in_arrears", EarlyTermination: "none: the operator's own work"}}
		err = s.Store.InsertContract(ctx, c)
	}
	if err != nil {
		return Reservation{}, err
	}
	r := Reservation{ID: neocloud.NewID(PrefixReservation), TenantID: tenant, ContractID: c.ID, State: ReservationScheduled, Shape: sh,
		Elastic: &Elastic{ElasticInput: in}, Reason: fmt.Sprintf("queued: waiting for %d idle GPUs", in.MinGPUs), DueAt: now, Version: 1, CreatedAt: now, UpdatedAt: now}
	if err := s.Store.InsertReservation(ctx, r); err != nil {
		return r, err
	}
	s.Tx.AfterCommit(ctx, s.Kick)
	return r, s.emit(ctx, tenant, "reservation.scheduled", r.ID, map[string]any{"class": placement.ClassInternal, "min_gpus": in.MinGPUs, "max_gpus": in.MaxGPUs})
}
