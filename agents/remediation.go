package agents

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/fleet"
	"github.com/neocloud/neocloud/wire"
)

// A failed node is repaired, burned in and sanitized before it serves
// again: failed → repair (a ticket) → repair-done → burn_in (the agent's
// burn-in) → sanitizing (the agent's sanitize, and a record of it) →
// available. A node failing QuarantineAfter times in 30 days is
// quarantined: only an operator's forced repair-done lets it back.

// Ticket states.
const (
	TicketOpen       = "open"       // the node is in repair
	TicketBurnIn     = "burn_in"    // repaired; its burn-in runs
	TicketSanitizing = "sanitizing" // burned in; its sanitize runs
	TicketClosed     = "closed"     // available again
)

// PrefixTicket is the id prefix of repair tickets; PrefixSanitize of
// sanitize records.
const (
	PrefixTicket   = "rpr_"
	PrefixSanitize = "san_"
)

// QuarantineWindow is how far back failures are counted for quarantine.
const QuarantineWindow = 30 * 24 * time.Hour

// RepairTicket is a failed node's way back to service.
type RepairTicket struct {
	ID       string `json:"id"`
	NodeID   string `json:"node_id"`
	Hostname string `json:"hostname,omitempty"`
	// Serial and Domain say where a technician finds the node: its chassis
	// serial, and its place in the site (hall/pod/su/rack).
	Serial      string      `json:"serial,omitempty"`
	Domain      string      `json:"domain,omitempty"`
	State       string      `json:"state" enum:"open,burn_in,sanitizing,closed"`
	Reasons     []string    `json:"reasons"`
	GPUs        []TicketGPU `json:"gpus" doc:"The node's GPUs, with those named in the reasons marked."`
	Quarantined bool        `json:"quarantined" doc:"Failed too often: back to service only by an operator's forced repair-done."`
	CommandID   string      `json:"command_id,omitempty" doc:"The agent command of the running step."`
	Message     string      `json:"message,omitempty"`
	OpenedAt    time.Time   `json:"opened_at"`
	UpdatedAt   time.Time   `json:"updated_at"`
	ClosedAt    *time.Time  `json:"closed_at,omitempty"`
}

// Located fills in where a ticket's node is (hostname, serial, domain)
// from the fleet as it is now: tickets are stored by node id.
func (s *Service) Located(ts ...RepairTicket) []RepairTicket {
	for i := range ts {
		if n, ok := s.Fleet.Snapshot.Node(ts[i].NodeID); ok {
			ts[i].Hostname, ts[i].Serial, ts[i].Domain = n.Hostname, n.Serial, n.Domain
		}
	}
	return ts
}

// TicketGPU is one GPU of a ticket's node.
type TicketGPU struct {
	Index   int    `json:"index"`
	UUID    string `json:"uuid,omitempty"`
	Suspect bool   `json:"suspect,omitempty"`
}

// SanitizeRecord is the proof that a node was sanitized before another
// tenant got it.
type SanitizeRecord struct {
	ID         string    `json:"id"`
	NodeID     string    `json:"node_id"`
	TicketID   string    `json:"ticket_id,omitempty"`
	CommandID  string    `json:"command_id,omitempty"`
	Result     string    `json:"result" enum:"done,failed"`
	Steps      []string  `json:"steps" doc:"What the node's agent reports it did."`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
}

// TicketFilter selects repair tickets: one node's ("" for all), and open
// ones (Closed false), closed ones (true) or both (nil).
type TicketFilter struct {
	NodeID string
	Closed *bool
}

// RemediationStore is what remediation needs from storage.
type RemediationStore interface {
	InsertTicket(ctx context.Context, t RepairTicket) error
	UpdateTicket(ctx context.Context, t RepairTicket) error
	// Tickets returns tickets newest first: of one node ("" for all), not
	// closed when openOnly.
	Tickets(ctx context.Context, nodeID string, openOnly bool) ([]RepairTicket, error)
	// TicketPage returns a page of the tickets f selects, newest first
	// (the cursor is the last one's id); CountTickets counts them all.
	TicketPage(ctx context.Context, f TicketFilter, pg neocloud.Page) ([]RepairTicket, error)
	CountTickets(ctx context.Context, f TicketFilter) (int, error)
	InsertSanitizeRecord(ctx context.Context, r SanitizeRecord) error
	SanitizeRecords(ctx context.Context, nodeID string) ([]SanitizeRecord, error)
}

// Remediation is the policy of the way back.
type Remediation struct {
	QuarantineAfter int           // failures in 30 days that quarantine a node (default 3)
	Fallback        time.Duration // how long burn-in and sanitize take on a node without an agent (simulated)
}

// failed takes a failed node's work elsewhere and opens its repair ticket.
func (s *Service) failed(ctx context.Context, nodeID, why string, evidence bool) error {
	if s.OnFailed != nil {
		if err := s.OnFailed(ctx, nodeID, why, evidence); err != nil {
			return err
		}
	}
	// A node still serving work (bare metal, on its agent's word alone)
	// is not taken to repair under its tenant.
	if s.Assignment != nil {
		if a, err := s.Assignment(ctx, nodeID); err != nil || a != nil {
			return err
		}
	}
	_, err := s.OpenRepair(ctx, nodeID, why)
	return err
}

// FailNode is an operator's word that a node is broken: seen on the floor,
// or one of a silent domain the breaker holds, checked by hand. It is
// evidence, as the out-of-band controller's is: the node is failed, its
// work replaced (bare metal too, and counted as the tenant's downtime) and
// its repair opened, in one transaction. It returns the repair ticket.
func (s *Service) FailNode(ctx context.Context, ref, reason string) (RepairTicket, error) {
	var t RepairTicket
	reason = strings.TrimSpace(reason)
	if reason == "" {
		return t, neocloud.Invalid("body.reason", "say why the node is failed (the ticket and the tenant's event carry it)")
	}
	n, err := s.Fleet.Node(ctx, ref)
	if err != nil {
		return t, err
	}
	if n.Lifecycle == fleet.LifecycleRetired {
		return t, neocloud.Conflict(string(n.Lifecycle), "node %s is retired", n.Hostname)
	}
	why := "failed by an operator: " + reason
	err = s.Tx.InTx(ctx, func(ctx context.Context) error {
		if err := s.SetHealth(ctx, n.ID, fleet.HealthFailed, []string{why}); err != nil {
			return err
		}
		if err := s.failed(ctx, n.ID, why, true); err != nil {
			return err
		}
		ts, err := s.Store.Tickets(ctx, n.ID, true)
		if err != nil {
			return err
		}
		if len(ts) == 0 {
			return fmt.Errorf("node %s failed without a repair ticket", n.Hostname)
		}
		t = ts[0]
		return nil
	})
	return t, err
}

// OpenRepair moves a node to repair with a ticket naming why, or adds the
// reason to its open ticket.
func (s *Service) OpenRepair(ctx context.Context, nodeID, why string) (RepairTicket, error) {
	var t RepairTicket
	n, ok := s.Fleet.Snapshot.Node(nodeID)
	if !ok {
		return t, neocloud.NotFound("node", nodeID)
	}
	err := s.Tx.InTx(ctx, func(ctx context.Context) error {
		now := s.now()
		ts, err := s.Store.Tickets(ctx, nodeID, false)
		if err != nil {
			return err
		}
		if len(ts) > 0 && ts[0].State != TicketClosed {
			t = ts[0]
			if !slices.Contains(t.Reasons, why) {
				t.Reasons = append(t.Reasons, why)
			}
			if t.State != TicketOpen { // failed again during burn-in or sanitize
				t.State, t.CommandID, t.Message = TicketOpen, "", "failed during "+t.State+": "+why
				if err := s.Fleet.SetLifecycle(ctx, nodeID, fleet.LifecycleRepair); err != nil {
					return err
				}
			}
			t.UpdatedAt = now
			return s.Store.UpdateTicket(ctx, t)
		}
		recent := 0
		for _, x := range ts {
			if now.Sub(x.OpenedAt) < QuarantineWindow {
				recent++
			}
		}
		k := s.Remediation.QuarantineAfter
		if k <= 0 {
			k = 3
		}
		t = RepairTicket{ID: neocloud.NewID(PrefixTicket), NodeID: nodeID, State: TicketOpen, Reasons: []string{why}, OpenedAt: now, UpdatedAt: now,
			Quarantined: recent+1 >= k}
		if t.Quarantined {
			t.Message = fmt.Sprintf("failed %d times in 30 days: quarantined for operator review", recent+1)
		}
		found := map[int]string{}
		if st, _, err := s.latestOf(ctx, s.record(nodeID), 0); err == nil {
			for _, g := range st.Found {
				found[g.Index] = g.UUID
			}
		}
		for _, g := range n.GPUs {
			uuid := g.UUID
			if uuid == "" {
				uuid = found[g.Index]
			}
			t.GPUs = append(t.GPUs, TicketGPU{Index: g.Index, UUID: uuid, Suspect: strings.Contains(why, fmt.Sprintf("gpu %d:", g.Index))})
		}
		if n.Lifecycle != fleet.LifecycleRepair {
			if err := s.Fleet.SetLifecycle(ctx, nodeID, fleet.LifecycleRepair); err != nil {
				return err
			}
		}
		return s.Store.InsertTicket(ctx, t)
	})
	return t, err
}

// RepairDone is an operator's word that a node in repair is fixed: its
// hardware conditions are cleared and its burn-in starts. A quarantined
// node needs force.
func (s *Service) RepairDone(ctx context.Context, ref string, force bool) (RepairTicket, error) {
	var t RepairTicket
	n, err := s.Fleet.Node(ctx, ref)
	if err != nil {
		return t, err
	}
	err = s.Tx.InTx(ctx, func(ctx context.Context) error {
		ts, err := s.Store.Tickets(ctx, n.ID, true)
		if err != nil {
			return err
		}
		if len(ts) == 0 || ts[0].State != TicketOpen {
			return neocloud.Conflict(string(n.Lifecycle), "node %s has no open repair ticket", n.Hostname)
		}
		t = ts[0]
		if t.Quarantined && !force {
			return neocloud.Conflict("quarantined", "node %s is quarantined (%s): review it, then repair-done --force", n.Hostname, t.Message)
		}
		if err := s.Fleet.SetLifecycle(ctx, n.ID, fleet.LifecycleBurnIn); err != nil {
			return err
		}
		if err := s.SetHealth(ctx, n.ID, fleet.HealthOK, nil); err != nil {
			return err
		}
		now := s.now()
		s.Tx.AfterCommit(ctx, func() {
			r := s.record(n.ID)
			s.mu.Lock()
			r.repaired = repair{at: now, seq: r.state.Seq}
			s.mu.Unlock()
			s.clearConditions(n.ID, ActionRepair)
		})
		return s.startStep(ctx, &t, TicketBurnIn, "burn_in")
	})
	return t, err
}

// repair is when an operator last declared a node repaired, and the last
// report received from it then.
type repair struct {
	at  time.Time
	seq int64
}

// repairedAt is the node's last repair (zero: none since this server
// started).
func (s *Service) repairedAt(r *nodeRecord) repair {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return r.repaired
}

// before says whether a report was sampled before the repair: it was on
// its way then (the next sequence number at most; an agent sends one at a
// time) and its agent's clock says so too.
func (r repair) before(hb wire.Heartbeat) bool {
	return !r.at.IsZero() && hb.Seq <= r.seq+1 && hb.At.Before(r.at)
}

// clearConditions drops a node's remembered hardware conditions up to a
// rung of the ladder: what a reset, a reboot or a repair remedies.
func (s *Service) clearConditions(nodeID string, upTo Action) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.nodes[nodeID]
	if r == nil || !r.known {
		return
	}
	st := r.state
	var keep []Condition
	for _, c := range st.Conditions {
		if ladder[c.Action] > ladder[upTo] {
			keep = append(keep, c)
		}
	}
	st.Conditions = keep
	st.Health, st.Action = Worst(keep)
	r.state = st
}

// startStep moves a ticket to a step and orders the node's agent to run
// it (a node without an agent runs it simulated, for Fallback).
func (s *Service) startStep(ctx context.Context, t *RepairTicket, state, kind string) error {
	now := s.now()
	t.State, t.UpdatedAt, t.CommandID, t.Message = state, now, "", ""
	hasAgent := true
	if _, err := s.Store.NodeCredential(ctx, t.NodeID); neocloud.ErrorKind(err) == neocloud.KindNotFound {
		hasAgent = false
	} else if err != nil {
		return err
	}
	if hasAgent {
		gen, err := s.generation(ctx, t.NodeID)
		if err != nil {
			return err
		}
		c := NodeCommand{Command: wire.Command{ID: neocloud.NewID(PrefixCommand), Kind: kind, Generation: gen},
			NodeID: t.NodeID, State: "pending", CreatedBy: "remediation " + t.ID, CreatedAt: now}
		if err := s.enqueue(ctx, c); err != nil {
			return err
		}
		t.CommandID = c.ID
	} else {
		t.Message = "no agent: " + kind + " simulated"
	}
	return s.Store.UpdateTicket(ctx, *t)
}

// generation is the node's assignment generation: its current one, or
// the last it had (what its agent's fence holds).
func (s *Service) generation(ctx context.Context, nodeID string) (int64, error) {
	if s.Generation == nil {
		return 0, nil
	}
	return s.Generation(ctx, nodeID)
}

// Remediate (run after Sweep) moves tickets whose step is over: a burn-in done starts the
// sanitize; a sanitize done writes its record and returns the node to
// service; a step that failed reopens the ticket (the node back to
// repair).
func (s *Service) Remediate(ctx context.Context) (int, error) {
	if s.SharedTTL > 0 && s.leaderSince.IsZero() {
		return 0, nil // with several servers, the liveness leader moves repairs along
	}
	ts, err := s.Store.Tickets(ctx, "", true)
	if err != nil {
		return 0, err
	}
	moved := 0
	for _, t := range ts {
		if t.State != TicketBurnIn && t.State != TicketSanitizing {
			continue
		}
		state, msg, err := s.stepOutcome(ctx, t)
		if err != nil {
			return moved, err
		}
		if state == "pending" {
			continue
		}
		t := t
		err = s.Tx.InTx(ctx, func(ctx context.Context) error {
			if err := s.fenced(ctx); err != nil {
				return err
			}
			now := s.now()
			if state != "done" {
				t.State, t.CommandID, t.Message, t.UpdatedAt = TicketOpen, "", t.State+" "+state+": "+msg, now
				t.Reasons = append(t.Reasons, t.Message)
				if err := s.Fleet.SetLifecycle(ctx, t.NodeID, fleet.LifecycleRepair); err != nil {
					return err
				}
				return s.Store.UpdateTicket(ctx, t)
			}
			if t.State == TicketBurnIn {
				if err := s.Fleet.SetLifecycle(ctx, t.NodeID, fleet.LifecycleSanitizing); err != nil {
					return err
				}
				return s.startStep(ctx, &t, TicketSanitizing, "sanitize")
			}
			// The steps are what the agent says it did.
			var steps []string
			if msg != "" {
				steps = strings.Split(msg, "; ")
			}
			if t.CommandID == "" {
				steps = []string{"simulated: the node has no agent"}
			}
			rec := SanitizeRecord{ID: neocloud.NewID(PrefixSanitize), NodeID: t.NodeID, TicketID: t.ID, CommandID: t.CommandID, Result: "done",
				Steps: steps, StartedAt: t.UpdatedAt, FinishedAt: now}
			if err := s.Store.InsertSanitizeRecord(ctx, rec); err != nil {
				return err
			}
			if err := s.Fleet.SetLifecycle(ctx, t.NodeID, fleet.LifecycleAvailable); err != nil {
				return err
			}
			if _, err := s.Fleet.Act(ctx, t.NodeID, fleet.ActionUncordon); err != nil {
				return err
			}
			t.State, t.ClosedAt, t.UpdatedAt, t.Message = TicketClosed, &now, now, "back in service"
			return s.Store.UpdateTicket(ctx, t)
		})
		if err != nil {
			return moved, err
		}
		moved++
	}
	return moved, nil
}

// stepOutcome says how a ticket's running step went: pending, done,
// failed or refused, with the agent's message.
func (s *Service) stepOutcome(ctx context.Context, t RepairTicket) (string, string, error) {
	if t.CommandID == "" { // simulated: done after the fallback time
		if s.now().Sub(t.UpdatedAt) < s.Remediation.Fallback {
			return "pending", "", nil
		}
		return "done", "", nil
	}
	cs, err := s.Store.Commands(ctx, t.NodeID, false)
	if err != nil {
		return "", "", err
	}
	for _, c := range cs {
		if c.ID == t.CommandID {
			return c.State, c.Message, nil
		}
	}
	return "failed", "its command is gone", nil
}
