package sales

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/neocloud/neocloud"
)

// Break-fix: a tenant acts on its own nodes — reports one, reboots it,
// resets its GPUs, or asks for a replacement within its contract's
// allowance. Another tenant's node answers 404, as if it did not exist.

// Break-fix kinds.
const (
	BreakFixReport   = "report"
	BreakFixReboot   = "reboot"
	BreakFixGPUReset = "gpu_reset"
	BreakFixReplace  = "replace"
)

// Break-fix states. A report is open until an operator confirms or
// declines it, or the node's own health fails it; the other kinds are done
// when made (a reboot's or GPU reset's outcome is its command's).
const (
	BreakFixOpen      = "open"
	BreakFixConfirmed = "confirmed"
	BreakFixDeclined  = "declined"
	BreakFixDone      = "done"
)

// ConfirmedByHealth is ConfirmedBy for a report confirmed by the node's
// own failure (its agent's evidence, its silence, its out-of-band
// controller) rather than by an operator.
const ConfirmedByHealth = "health"

// PrefixBreakFix is the id prefix of break-fix requests.
const PrefixBreakFix = "bfx_"

// BreakFix is a tenant's (or an operator's) request on a node it serves.
type BreakFix struct {
	ID            string     `json:"id"`
	NodeID        string     `json:"node_id"`
	Hostname      string     `json:"hostname"`
	TenantID      string     `json:"tenant_id,omitempty"`
	ReservationID string     `json:"reservation_id,omitempty"`
	ContractID    string     `json:"contract_id,omitempty"`
	Kind          string     `json:"kind" enum:"report,reboot,gpu_reset,replace"`
	State         string     `json:"state" enum:"open,confirmed,declined,done" doc:"A report is open until an operator confirms or declines it, or the node's own health fails it; the other kinds are done when made."`
	Reason        string     `json:"reason,omitempty"`
	CreatedBy     string     `json:"created_by"`
	CreatedAt     time.Time  `json:"created_at" doc:"For a confirmed report, downtime counts from here."`
	ConfirmedAt   *time.Time `json:"confirmed_at,omitempty" doc:"A report confirmed by an operator (or the node's own health)."`
	ConfirmedBy   string     `json:"confirmed_by,omitempty" doc:"The operator's token, or health when the node failed by itself."`
	DeclinedAt    *time.Time `json:"declined_at,omitempty" doc:"A report an operator found no fault behind: no downtime counts."`
	DeclinedBy    string     `json:"declined_by,omitempty"`
	Resolution    string     `json:"resolution,omitempty" doc:"Why a report was declined, or the failure that confirmed it."`
	CommandID     string     `json:"command_id,omitempty" doc:"The agent command a reboot or GPU reset became."`
}

// BreakFixFilter narrows a list of break-fix requests; empty fields match
// all.
type BreakFixFilter struct {
	TenantID, NodeID, ReservationID, Kind, State string
}

// BreakFixStore keeps break-fix requests.
type BreakFixStore interface {
	InsertBreakFix(ctx context.Context, b BreakFix) error
	// UpdateBreakFix closes an open report with b's state: one no longer
	// open (closed meanwhile, by another request or server) is a
	// KindConflict naming its state, and stays as it is.
	UpdateBreakFix(ctx context.Context, b BreakFix) error
	BreakFix(ctx context.Context, id string) (BreakFix, error)
	// BreakFixes lists requests oldest first (by id), a page at a time.
	BreakFixes(ctx context.Context, f BreakFixFilter, pg neocloud.Page) ([]BreakFix, error)
	CountBreakFixes(ctx context.Context, f BreakFixFilter) (int, error)
	// CountBreakFix counts a contract's requests of a kind made by its
	// tenant since a time.
	CountBreakFix(ctx context.Context, contractID, kind string, since time.Time) (int, error)
}

// BreakFixInput asks for break-fix on a node.
type BreakFixInput struct {
	Reason string `json:"reason,omitempty" maxLength:"500" doc:"What is wrong (required to report)."`
}

// DeclineInput says why an operator declines a report.
type DeclineInput struct {
	Reason string `json:"reason" maxLength:"500" doc:"Why no fault is behind the report (the tenant is told)."`
}

// BreakFixes lists break-fix requests oldest first: every tenant's for
// operators, the caller's own tenant's for a tenant's users.
func (s *Service) BreakFixes(ctx context.Context, p neocloud.Principal, f BreakFixFilter, pg neocloud.Page) ([]BreakFix, error) {
	if !p.Role.Operator() {
		f.TenantID = p.TenantID
	}
	return s.Store.BreakFixes(ctx, f, pg)
}

// CountBreakFixes counts the break-fix requests BreakFixes would list.
func (s *Service) CountBreakFixes(ctx context.Context, p neocloud.Principal, f BreakFixFilter) (int, error) {
	if !p.Role.Operator() {
		f.TenantID = p.TenantID
	}
	return s.Store.CountBreakFixes(ctx, f)
}

// BreakFixRequest returns a break-fix request the caller may see (another
// tenant's answers 404).
func (s *Service) BreakFixRequest(ctx context.Context, p neocloud.Principal, id string) (BreakFix, error) {
	return visible(ctx, p, "break-fix request", id, s.Store.BreakFix, func(b BreakFix) string { return b.TenantID })
}

// ServesTenant says whether a node serves a live allocation of a tenant:
// what lets the tenant see the node (its health and conditions).
func (s *Service) ServesTenant(ctx context.Context, nodeID, tenantID string) (bool, error) {
	allocs, err := s.Store.NodeAllocations(ctx, nodeID)
	if err != nil {
		return false, err
	}
	for _, a := range allocs {
		if a.State.Live() && a.TenantID == tenantID {
			return true, nil
		}
	}
	return false, nil
}

// NodeBreakFix carries out a break-fix request on a node the caller
// serves: a report is recorded (an operator confirms it, and downtime then
// counts from when it was made), a reboot or GPU reset goes to the node's
// agent fenced by the allocation's generation, a replacement takes the
// node out of the work within the contract's monthly allowance.
func (s *Service) NodeBreakFix(ctx context.Context, p neocloud.Principal, nodeRef, kind string, in BreakFixInput) (BreakFix, error) {
	var b BreakFix
	n, ok := s.Fleet.Snapshot.Node(nodeRef)
	if !ok {
		return b, neocloud.NotFound("node", nodeRef)
	}
	if kind == BreakFixReport && in.Reason == "" {
		return b, neocloud.Invalid("body.reason", "say what is wrong")
	}
	err := s.Tx.InTx(ctx, func(ctx context.Context) error {
		allocs, err := s.Store.NodeAllocations(ctx, n.ID)
		if err != nil {
			return err
		}
		var alloc *Allocation
		for i, a := range allocs {
			if !a.State.Live() {
				continue
			}
			if p.Role.Operator() || a.TenantID == p.TenantID {
				alloc = &allocs[i]
				break
			}
		}
		if alloc == nil && !p.Role.Operator() {
			return neocloud.NotFound("node", nodeRef) // not theirs: as if it did not exist
		}
		now := s.now()
		b = BreakFix{ID: neocloud.NewID(PrefixBreakFix), NodeID: n.ID, Hostname: n.Hostname, Kind: kind, State: BreakFixDone, Reason: in.Reason, CreatedBy: p.TokenID, CreatedAt: now}
		var r Reservation
		if alloc != nil {
			if r, err = s.Store.Reservation(ctx, alloc.ReservationID); err != nil {
				return err
			}
			b.TenantID, b.ReservationID, b.ContractID = r.TenantID, r.ID, r.ContractID
		}
		switch kind {
		case BreakFixReport:
			b.State = BreakFixOpen
		case BreakFixReboot, BreakFixGPUReset:
			if s.OrderNode == nil {
				return neocloud.Errorf(neocloud.KindUnavailable, "this server cannot reach node agents")
			}
			if b.CommandID, err = s.OrderNode(ctx, p, n.ID, kind); err != nil {
				return err
			}
		case BreakFixReplace:
			if alloc == nil {
				return neocloud.Conflict("idle", "node %s serves no work to replace it in", n.Hostname)
			}
			if !p.Role.Operator() {
				c, err := s.Store.Contract(ctx, r.ContractID)
				if err != nil {
					return err
				}
				// The tenant's replacements are counted, and this one
				// written, before another of its requests counts them.
				if err := s.Store.LockTenantLimits(ctx, r.TenantID); err != nil {
					return err
				}
				used, err := s.replacementsUsed(ctx, c.ID, now)
				if err != nil {
					return err
				}
				if allow := c.Terms.SLA.ReplacementsPerMonth; used >= allow {
					return neocloud.Conflict("allowance", "contract %s allows %d replacements a month; %d used this month (report the node instead: an operator confirms it)", c.ID, allow, used)
				}
			}
			// The tenant's own replacement confirms none of its reports:
			// downtime counts from a report only on an operator's word or
			// the node's own failure.
			why := "replacement requested: " + in.Reason
			if _, err := s.nodeFailed(ctx, n.ID, why, true, ""); err != nil {
				return err
			}
			if s.OnReplaced != nil {
				if err := s.OnReplaced(ctx, n.ID, why); err != nil {
					return err
				}
			}
		default:
			return neocloud.Invalid("kind", "unknown break-fix %q", kind)
		}
		if err := s.Store.InsertBreakFix(ctx, b); err != nil {
			return err
		}
		if b.TenantID != "" {
			return s.emit(ctx, b.TenantID, "node."+kind, b.ReservationID, map[string]any{"node": n.Hostname, "break_fix": b.ID, "reason": in.Reason})
		}
		return nil
	})
	return b, err
}

// ConfirmReport is an operator's confirmation of a tenant's report: the
// node is failed with that evidence (its work replaced, a repair opened),
// and its downtime counts from when the report was made. A report of a
// node that has since left the reservation's work (replaced at the
// tenant's request, the reservation over) is confirmed without failing the
// node, which may serve someone else by now: its downtime counts until it
// left.
func (s *Service) ConfirmReport(ctx context.Context, p neocloud.Principal, id string) (BreakFix, error) {
	var b BreakFix
	err := s.Tx.InTx(ctx, func(ctx context.Context) error {
		var err error
		if b, err = s.openReport(ctx, id); err != nil {
			return err
		}
		serving := b.ReservationID == "" // an operator's report of an idle node fails it
		allocs, err := s.Store.NodeAllocations(ctx, b.NodeID)
		if err != nil {
			return err
		}
		for _, a := range allocs {
			serving = serving || a.ReservationID == b.ReservationID && a.State.Live()
		}
		now := s.now()
		b.State, b.ConfirmedAt, b.ConfirmedBy = BreakFixConfirmed, &now, p.TokenID
		if !serving {
			b.Resolution = "confirmed after the node had left the reservation's work: downtime counts until it left"
		}
		if err := s.Store.UpdateBreakFix(ctx, b); err != nil {
			return err
		}
		if err := s.emitReport(ctx, b); err != nil {
			return err
		}
		if !serving {
			return nil
		}
		why := fmt.Sprintf("reported by its tenant at %s and confirmed: %s", b.CreatedAt.Format(time.RFC3339), b.Reason)
		if _, err := s.nodeFailed(ctx, b.NodeID, why, true, p.TokenID); err != nil {
			return err
		}
		if s.OnReplaced != nil {
			return s.OnReplaced(ctx, b.NodeID, why)
		}
		return nil
	})
	return b, err
}

// DeclineReport closes a tenant's report on an operator's finding that no
// fault is behind it: the node stays in the work, no downtime counts, and
// the tenant is told why.
func (s *Service) DeclineReport(ctx context.Context, p neocloud.Principal, id string, in DeclineInput) (BreakFix, error) {
	var b BreakFix
	if strings.TrimSpace(in.Reason) == "" {
		return b, neocloud.Invalid("body.reason", "say why the report is declined (the tenant is told)")
	}
	err := s.Tx.InTx(ctx, func(ctx context.Context) error {
		var err error
		if b, err = s.openReport(ctx, id); err != nil {
			return err
		}
		now := s.now()
		b.State, b.DeclinedAt, b.DeclinedBy, b.Resolution = BreakFixDeclined, &now, p.TokenID, in.Reason
		if err := s.Store.UpdateBreakFix(ctx, b); err != nil {
			return err
		}
		return s.emitReport(ctx, b)
	})
	return b, err
}

// ReplacementsThisMonth counts the replacements a contract's tenant asked
// for this month (UTC), against its terms' replacements a month.
func (s *Service) ReplacementsThisMonth(ctx context.Context, contractID string) (int, error) {
	return s.replacementsUsed(ctx, contractID, s.now())
}

// replacementsUsed is ReplacementsThisMonth in now's month.
func (s *Service) replacementsUsed(ctx context.Context, contractID string, now time.Time) (int, error) {
	now = now.UTC()
	return s.Store.CountBreakFix(ctx, contractID, BreakFixReplace, time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC))
}

// openReport loads a report that still awaits an operator.
func (s *Service) openReport(ctx context.Context, id string) (BreakFix, error) {
	b, err := s.Store.BreakFix(ctx, id)
	switch {
	case err != nil:
		return b, err
	case b.Kind != BreakFixReport:
		return b, neocloud.Conflict(b.Kind, "%s is a %s, not a report", b.ID, b.Kind)
	case b.State == BreakFixConfirmed:
		return b, neocloud.Conflict("confirmed", "report %s was confirmed at %s", b.ID, b.ConfirmedAt.Format(time.RFC3339))
	case b.State == BreakFixDeclined:
		return b, neocloud.Conflict("declined", "report %s was declined at %s", b.ID, b.DeclinedAt.Format(time.RFC3339))
	}
	return b, nil
}

// confirmReports confirms a reservation's open reports of a node that has
// just failed and left its work: downtime counts from each report.
func (s *Service) confirmReports(ctx context.Context, nodeID, reservationID, by, why string, now time.Time) error {
	open, err := s.Store.BreakFixes(ctx, BreakFixFilter{NodeID: nodeID, ReservationID: reservationID, Kind: BreakFixReport, State: BreakFixOpen}, neocloud.Page{Limit: neocloud.MaxLimit})
	if err != nil {
		return err
	}
	for _, b := range open {
		b.State, b.ConfirmedAt, b.ConfirmedBy = BreakFixConfirmed, &now, by
		if by == ConfirmedByHealth {
			b.Resolution = "the node failed: " + why
		}
		if err := s.Store.UpdateBreakFix(ctx, b); neocloud.ErrorKind(err) == neocloud.KindConflict {
			continue // an operator closed it meanwhile
		} else if err != nil {
			return err
		}
		if err := s.emitReport(ctx, b); err != nil {
			return err
		}
	}
	return nil
}

// emitReport tells a report's tenant it was confirmed or declined.
func (s *Service) emitReport(ctx context.Context, b BreakFix) error {
	if b.TenantID == "" {
		return nil
	}
	data := map[string]any{"node": b.Hostname, "break_fix": b.ID, "reported_at": b.CreatedAt}
	if b.Resolution != "" {
		data["resolution"] = b.Resolution
	}
	return s.emit(ctx, b.TenantID, "node.report_"+b.State, b.ReservationID, data)
}
