package sales

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/fleet"
	"github.com/neocloud/neocloud/placement"
)

// PrefixMaintenance is the id prefix of planned maintenance.
const PrefixMaintenance = "mnt_"

// MaintenanceInput plans maintenance of some nodes: each is out for
// DurationS seconds, rolled from Start in batches so that no reservation
// has more than its maximum nodes out at once (one unless it says more).
type MaintenanceInput struct {
	Site      string    `json:"site" doc:"Site name or id."`
	Nodes     []string  `json:"nodes,omitempty" doc:"Node ids or hostnames."`
	Domain    string    `json:"domain,omitempty" doc:"Every node below this topology path instead, e.g. h1/p03."`
	Start     time.Time `json:"start"`
	DurationS int64     `json:"duration_s" doc:"How long each node is out."`
	Reason    string    `json:"reason" minLength:"1"`
}

// Maintenance is planned maintenance on the calendar.
type Maintenance struct {
	ID        string    `json:"id"`
	Site      string    `json:"site"`
	State     string    `json:"state" enum:"scheduled,active,done,cancelled"`
	Reason    string    `json:"reason"`
	Start     time.Time `json:"start"`
	End       time.Time `json:"end"`
	DurationS int64     `json:"duration_s"`
	Batches   []Batch   `json:"batches"`
	Touched   []string  `json:"touched_reservations" doc:"Reservations whose nodes it takes out."`
	Moved     []string  `json:"moved" doc:"Future reservations re-chosen around it (spares first, within their constraint)."`
	DueAt     time.Time `json:"due_at"`
	CreatedAt time.Time `json:"created_at"`
}

// Batch is one window of a rolling maintenance.
type Batch struct {
	ID    string    `json:"id"`
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	Nodes []string  `json:"nodes"`
	SKU   string    `json:"sku"`
	State string    `json:"state" enum:"scheduled,active,done"`
}

// MaintenanceStore is the storage planned maintenance needs.
type MaintenanceStore interface {
	InsertMaintenance(ctx context.Context, m Maintenance) error
	UpdateMaintenance(ctx context.Context, m Maintenance) error
	Maintenance(ctx context.Context, id string) (Maintenance, error)
	// Maintenances lists a site's maintenance ("" for all), newest first.
	Maintenances(ctx context.Context, siteID string) ([]Maintenance, error)
	// OpenMaintenances lists a site's scheduled and active maintenance.
	OpenMaintenances(ctx context.Context, siteID string) ([]Maintenance, error)
	DueMaintenance(ctx context.Context, now time.Time) ([]Maintenance, error)
}

// CreateMaintenance puts maintenance on the calendar. Future reservations
// it touches are re-chosen around it where their constraint allows; the
// tenants of those it still touches are told now, and it is refused if that
// is later than their contract's maintenance notice allows.
func (s *Service) CreateMaintenance(ctx context.Context, p neocloud.Principal, in MaintenanceInput) (Maintenance, error) {
	var m Maintenance
	err := s.Tx.InTx(ctx, func(ctx context.Context) error {
		now := s.now()
		site, err := s.Fleet.Site(ctx, in.Site)
		if neocloud.ErrorKind(err) == neocloud.KindNotFound {
			return neocloud.Invalid("body.site", "unknown site %q", in.Site)
		} else if err != nil {
			return err
		}
		start := in.Start.UTC().Truncate(time.Second)
		switch {
		case start.Before(now.Add(-time.Minute)):
			return neocloud.Invalid("body.start", "%s is in the past", fmtTime(start))
		case in.DurationS <= 0 || in.DurationS > 90*86400:
			return neocloud.Invalid("body.duration_s", "must be between one second and ninety days")
		case strings.TrimSpace(in.Reason) == "":
			return neocloud.Invalid("body.reason", "say why")
		case (len(in.Nodes) == 0) == (in.Domain == ""):
			return neocloud.Invalid("body.nodes", "give nodes or a domain, not both")
		}
		// 1. The nodes, by SKU.
		bySKU := map[string][]string{}
		if in.Domain != "" {
			s.Fleet.Snapshot.Each(fleet.NodeFilter{SiteID: site.ID, Domain: in.Domain}, func(n *fleet.Node) {
				if n.Lifecycle != fleet.LifecycleRetired {
					bySKU[n.SKU] = append(bySKU[n.SKU], n.ID)
				}
			})
			if len(bySKU) == 0 {
				return neocloud.Invalid("body.domain", "no nodes below %q at %s", in.Domain, site.Name)
			}
		}
		for i, ref := range in.Nodes {
			n, err := s.Fleet.Node(ctx, ref)
			if err != nil && neocloud.ErrorKind(err) != neocloud.KindNotFound {
				return err
			}
			if err != nil || n.SiteID != site.ID {
				return neocloud.Invalid(fmt.Sprintf("body.nodes[%d]", i), "no node %q at %s", ref, site.Name)
			}
			bySKU[n.SKU] = append(bySKU[n.SKU], n.ID)
		}
		m = Maintenance{ID: neocloud.NewID(PrefixMaintenance), Site: site.ID, State: "scheduled", Reason: in.Reason, Start: start, End: start, DurationS: in.DurationS, CreatedAt: now}
		d := time.Duration(in.DurationS) * time.Second
		s.lock(ctx)
		skus := make([]string, 0, len(bySKU))
		for k := range bySKU {
			skus = append(skus, k)
		}
		sort.Strings(skus)
		touched := map[string]bool{}
		for _, sku := range skus {
			cal, err := s.calendarFor(ctx, site.ID, sku)
			if err != nil {
				return err
			}
			// 2. Batches that keep every reservation within its maximum
			// nodes out at once.
			ws, err := cal.Rolling(m.ID+"/"+sku, bySKU[sku], start, d)
			if err != nil {
				return err
			}
			for _, w := range ws {
				m.Batches = append(m.Batches, Batch{ID: w.ID, Start: w.Start, End: w.End, Nodes: w.Nodes, SKU: sku, State: "scheduled"})
				if w.End.After(m.End) {
					m.End = w.End
				}
				// Spot and internal work there is reclaimed with notice by
				// the window's start.
				for _, id := range w.Nodes {
					for _, rid := range cal.HoldersDuring(id, w.Start, w.End) {
						if cm, ok := cal.Reservation(rid); ok && cm.Class.Preemptible() {
							if err := s.reclaim(ctx, cal, rid, w.Start, now); err != nil {
								return err
							}
						}
					}
				}
				// 3. Future reservations move around it where they can.
				for _, id := range s.touchedBy(cal, w) {
					if moved, err := s.moveAround(ctx, cal, id, w, now); err != nil {
						return err
					} else if moved {
						m.Moved = appendOnce(m.Moved, id)
						continue
					}
					touched[id] = true
				}
			}
		}
		// 4. Tell the tenants still touched; the notice their contract
		// promises must fit.
		for id := range touched {
			r, err := s.Store.Reservation(ctx, id)
			if err != nil {
				return err
			}
			c, err := s.Store.Contract(ctx, r.ContractID)
			if err != nil {
				return err
			}
			notice := time.Duration(c.Terms.SLA.MaintenanceNoticeS) * time.Second
			if first := m.firstFor(r); first.Sub(now) < notice {
				return neocloud.Conflict("notice", "reservation %s is promised %v of notice before maintenance; start at %s or later", r.ID, notice, fmtTime(now.Add(notice)))
			}
			m.Touched = append(m.Touched, id)
		}
		sort.Strings(m.Touched)
		for _, id := range m.Touched {
			r, _ := s.Store.Reservation(ctx, id)
			var nodes []string
			var from time.Time
			for _, b := range m.Batches {
				for _, n := range b.Nodes {
					if r.hasNode(n) {
						nodes = append(nodes, s.hostname(n))
						if from.IsZero() || b.Start.Before(from) {
							from = b.Start
						}
					}
				}
			}
			if err := s.emit(ctx, r.TenantID, "maintenance.scheduled", r.ID, map[string]any{"maintenance": m.ID, "nodes": nodes, "start": from, "duration_s": in.DurationS, "reason": in.Reason}); err != nil {
				return err
			}
		}
		m.DueAt = m.Start
		return s.Store.InsertMaintenance(ctx, m)
	})
	return m, err
}

func appendOnce(s []string, v string) []string {
	for _, x := range s {
		if x == v {
			return s
		}
	}
	return append(s, v)
}

func (s *Service) hostname(id string) string {
	if n, ok := s.Fleet.Snapshot.Node(id); ok {
		return n.Hostname
	}
	return id
}

func (r *Reservation) hasNode(id string) bool {
	for _, n := range r.Nodes {
		if n.NodeID == id {
			return true
		}
	}
	return false
}

// firstFor is when the maintenance first takes one of r's nodes.
func (m *Maintenance) firstFor(r Reservation) time.Time {
	first := m.End
	for _, b := range m.Batches {
		for _, n := range b.Nodes {
			if r.hasNode(n) && b.Start.Before(first) {
				first = b.Start
			}
		}
	}
	return first
}

// touchedBy lists the committed reservations (not quotes' holds, not
// spot work, which is planned around) whose nodes a window takes out.
func (s *Service) touchedBy(cal *calendar, w *placement.Window) []string {
	var out []string
	seen := map[string]bool{}
	for _, id := range w.Nodes {
		for _, rid := range cal.HoldersDuring(id, w.Start, w.End) {
			if _, _, step := stepOf(rid); step || seen[rid] || !strings.HasPrefix(rid, PrefixReservation) {
				continue
			}
			if cm, ok := cal.Reservation(rid); ok && !cm.Class.Preemptible() {
				seen[rid] = true
				out = append(out, rid)
			}
		}
	}
	sort.Strings(out)
	return out
}

// moveAround re-chooses a future, unbound reservation's nodes in a window
// (spares first, within its constraint). It reports whether every one of
// them could move.
func (s *Service) moveAround(ctx context.Context, cal *calendar, id string, w *placement.Window, now time.Time) (bool, error) {
	r, err := s.Store.Reservation(ctx, id)
	if err != nil {
		return false, err
	}
	if r.Bound || r.State != ReservationScheduled {
		return false, nil
	}
	for _, n := range w.Nodes {
		if !r.hasNode(n) {
			continue
		}
		res, err := cal.Rechoose(r.ID, n)
		if err != nil {
			return false, err
		}
		if res.Plan == nil {
			return false, nil
		}
		cm, _ := cal.Reservation(r.ID)
		r.Nodes = s.nodesOf(cm)
	}
	if err := s.saveReservation(ctx, &r, now); err != nil {
		return false, err
	}
	return true, s.emit(ctx, r.TenantID, "reservation.rechosen", r.ID, map[string]any{"reason": "planned maintenance", "nodes": len(r.Nodes)})
}

// CancelMaintenance takes maintenance that has not started off the
// calendar, and tells the tenants it touched.
func (s *Service) CancelMaintenance(ctx context.Context, p neocloud.Principal, id string) (Maintenance, error) {
	var m Maintenance
	err := s.Tx.InTx(ctx, func(ctx context.Context) error {
		var err error
		if m, err = s.Store.Maintenance(ctx, id); err != nil {
			return err
		}
		if m.State != "scheduled" {
			return neocloud.Conflict(m.State, "maintenance %s is %s", m.ID, m.State)
		}
		s.lock(ctx)
		for _, b := range m.Batches {
			cal, err := s.calendarFor(ctx, m.Site, b.SKU)
			if err != nil {
				return err
			}
			cal.DropWindow(b.ID)
		}
		m.State, m.DueAt = "cancelled", farFuture
		if err := s.Store.UpdateMaintenance(ctx, m); err != nil {
			return err
		}
		for _, rid := range m.Touched {
			r, err := s.Store.Reservation(ctx, rid)
			if err != nil {
				return err
			}
			if err := s.emit(ctx, r.TenantID, "maintenance.cancelled", r.ID, map[string]any{"maintenance": m.ID}); err != nil {
				return err
			}
		}
		return nil
	})
	return m, err
}

// stepMaintenance runs a maintenance's batches as they come due: at a
// batch's start its nodes' allocations are released (the tenant is told;
// a spare within the reservation's constraint takes the node's place where
// one is free), at its end the nodes are back and reservations short of
// them bind again.
func (s *Service) stepMaintenance(ctx context.Context, id string, now time.Time) error {
	m, err := s.Store.Maintenance(ctx, id)
	if err != nil || m.DueAt.After(now) || m.State == "done" || m.State == "cancelled" {
		return err
	}
	s.lock(ctx)
	m.DueAt = farFuture
	open := false
	for i := range m.Batches {
		b := &m.Batches[i]
		switch {
		case b.State == "scheduled" && !b.Start.After(now):
			b.State, m.State = "active", "active"
			if err := s.takeOut(ctx, m, *b, now); err != nil {
				return err
			}
		case b.State == "active" && !b.End.After(now):
			b.State = "done"
			cal, err := s.calendarFor(ctx, m.Site, b.SKU)
			if err != nil {
				return err
			}
			cal.DropWindow(b.ID)
			if err := s.bringBack(ctx, m, *b, now); err != nil {
				return err
			}
		}
		switch b.State {
		case "scheduled":
			open = true
			m.DueAt = minTime(m.DueAt, b.Start)
		case "active":
			open = true
			m.DueAt = minTime(m.DueAt, b.End)
		}
	}
	if !open {
		m.State = "done"
	}
	return s.Store.UpdateMaintenance(ctx, m)
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// takeOut releases the allocations on a batch's nodes.
func (s *Service) takeOut(ctx context.Context, m Maintenance, b Batch, now time.Time) error {
	in := map[string]bool{}
	for _, n := range b.Nodes {
		in[n] = true
	}
	for _, rid := range m.Touched {
		r, err := s.Store.Reservation(ctx, rid)
		if err != nil {
			return err
		}
		if r.State.Terminal() || r.State == ReservationEnding {
			continue
		}
		allocs, err := s.Store.Allocations(ctx, r.ID)
		if err != nil {
			return err
		}
		cal, err := s.calendarFor(ctx, r.Shape.Site, r.Shape.SKU)
		if err != nil {
			return err
		}
		waiting := false
		for i := range allocs {
			a := &allocs[i]
			if !in[a.NodeID] || a.State == AllocationEnded || a.State == AllocationReleasing {
				continue
			}
			a.Reason = "planned maintenance " + m.ID
			if err := s.release(ctx, &r, a, now); err != nil {
				return err
			}
			// A spare (or any free node) within the reservation's
			// constraint takes the node's place for good; else the node
			// comes back when the batch ends.
			res, err := cal.RechooseFree(r.ID, a.NodeID)
			if err != nil {
				return err
			}
			if res.Plan != nil {
				cm, _ := cal.Reservation(r.ID)
				r.Nodes = s.nodesOf(cm)
				var repl NodeGPUs
				for _, n := range r.Nodes {
					if n.NodeID == res.Plan.Nodes[0].NodeID {
						repl = n
					}
				}
				if _, err := s.newAllocation(ctx, &r, repl, now); err != nil {
					return err
				}
				if err := s.emit(ctx, r.TenantID, "node.replaced", r.ID, map[string]any{"failed": a.Hostname, "replacement": repl.Hostname, "reason": "planned maintenance " + m.ID}); err != nil {
					return err
				}
				continue
			}
			waiting = true
			if err := s.emit(ctx, r.TenantID, "maintenance.started", r.ID, map[string]any{"maintenance": m.ID, "node": a.Hostname, "until": b.End}); err != nil {
				return err
			}
		}
		if waiting {
			// Bind again when the batch ends.
			r.Bound = false
			r.DueAt = b.End
		}
		if err := s.saveReservation(ctx, &r, now); err != nil {
			return err
		}
	}
	return nil
}

// bringBack tells the touched tenants their nodes are back; their
// reservations bind the missing nodes on their next step.
func (s *Service) bringBack(ctx context.Context, m Maintenance, b Batch, now time.Time) error {
	for _, rid := range m.Touched {
		r, err := s.Store.Reservation(ctx, rid)
		if err != nil {
			return err
		}
		hit := false
		for _, n := range b.Nodes {
			hit = hit || r.hasNode(n)
		}
		if !hit || r.State.Terminal() {
			continue
		}
		if err := s.emit(ctx, r.TenantID, "maintenance.ended", r.ID, map[string]any{"maintenance": m.ID}); err != nil {
			return err
		}
	}
	s.Tx.AfterCommit(ctx, s.Kick)
	return nil
}

// Maintenances lists planned maintenance (operators).
func (s *Service) Maintenances(ctx context.Context, siteRef string) ([]Maintenance, error) {
	id := ""
	if siteRef != "" {
		st, ok := s.Fleet.Snapshot.Site(siteRef)
		if !ok {
			return nil, neocloud.Invalid("query.site", "unknown site %q", siteRef)
		}
		id = st.ID
	}
	return s.Store.Maintenances(ctx, id)
}
