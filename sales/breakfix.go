package sales

import (
	"context"
	"fmt"
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
	Reason        string     `json:"reason,omitempty"`
	CreatedBy     string     `json:"created_by"`
	CreatedAt     time.Time  `json:"created_at" doc:"For a confirmed report, downtime counts from here."`
	ConfirmedAt   *time.Time `json:"confirmed_at,omitempty" doc:"A report confirmed by an operator (or the node's own health)."`
	ConfirmedBy   string     `json:"confirmed_by,omitempty"`
	CommandID     string     `json:"command_id,omitempty" doc:"The agent command a reboot or GPU reset became."`
}

// BreakFixStore keeps break-fix requests.
type BreakFixStore interface {
	InsertBreakFix(ctx context.Context, b BreakFix) error
	UpdateBreakFix(ctx context.Context, b BreakFix) error
	BreakFix(ctx context.Context, id string) (BreakFix, error)
	// CountBreakFix counts a contract's requests of a kind made by its
	// tenant since a time.
	CountBreakFix(ctx context.Context, contractID, kind string, since time.Time) (int, error)
}

// BreakFixInput asks for break-fix on a node.
type BreakFixInput struct {
	Reason string `json:"reason,omitempty" maxLength:"500" doc:"What is wrong (required to report)."`
}

// ServesTenant says whether a node serves a live allocation of a tenant:
// what lets the tenant see the node (its health and conditions).
func (s *Service) ServesTenant(ctx context.Context, nodeID, tenantID string) (bool, error) {
	allocs, err := s.Store.NodeAllocations(ctx, nodeID)
	if err != nil {
		return false, err
	}
	for _, a := range allocs {
		if a.State != AllocationReleasing && a.State != AllocationEnded && a.TenantID == tenantID {
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
			if a.State == AllocationReleasing || a.State == AllocationEnded {
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
		b = BreakFix{ID: neocloud.NewID(PrefixBreakFix), NodeID: n.ID, Hostname: n.Hostname, Kind: kind, Reason: in.Reason, CreatedBy: p.TokenID, CreatedAt: now}
		var r Reservation
		if alloc != nil {
			if r, err = s.Store.Reservation(ctx, alloc.ReservationID); err != nil {
				return err
			}
			b.TenantID, b.ReservationID, b.ContractID = r.TenantID, r.ID, r.ContractID
		}
		switch kind {
		case BreakFixReport:
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
				monthStart := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
				used, err := s.Store.CountBreakFix(ctx, c.ID, BreakFixReplace, monthStart)
				if err != nil {
					return err
				}
				if allow := c.Terms.SLA.ReplacementsPerMonth; used >= allow {
					return neocloud.Conflict("allowance", "contract %s allows %d replacements a month; %d used this month (report the node instead: an operator confirms it)", c.ID, allow, used)
				}
			}
			why := "replacement requested: " + in.Reason
			if _, err := s.NodeFailed(ctx, n.ID, why, true); err != nil {
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
// and its downtime counts from when the report was made.
func (s *Service) ConfirmReport(ctx context.Context, p neocloud.Principal, id string) (BreakFix, error) {
	var b BreakFix
	err := s.Tx.InTx(ctx, func(ctx context.Context) error {
		var err error
		if b, err = s.Store.BreakFix(ctx, id); err != nil {
			return err
		}
		if b.Kind != BreakFixReport {
			return neocloud.Conflict(b.Kind, "%s is a %s, not a report", b.ID, b.Kind)
		}
		if b.ConfirmedAt != nil {
			return neocloud.Conflict("confirmed", "report %s was confirmed at %s", b.ID, b.ConfirmedAt.Format(time.RFC3339))
		}
		now := s.now()
		b.ConfirmedAt, b.ConfirmedBy = &now, p.TokenID
		if err := s.Store.UpdateBreakFix(ctx, b); err != nil {
			return err
		}
		why := fmt.Sprintf("reported by its tenant at %s and confirmed: %s", b.CreatedAt.Format(time.RFC3339), b.Reason)
		if _, err := s.NodeFailed(ctx, b.NodeID, why, true); err != nil {
			return err
		}
		if s.OnReplaced != nil {
			return s.OnReplaced(ctx, b.NodeID, why)
		}
		return nil
	})
	return b, err
}
