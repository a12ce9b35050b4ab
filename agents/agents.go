// Package agents is the server's side of node agents: site-scoped join
// tokens, joining (matching an agent to its node and issuing that node's
// own credential), heartbeats applied once per sequence number, the latest
// state of every node in memory, and health conditions from a rule table
// of NVIDIA XID classes. It holds no SQL and no HTTP.
package agents

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/fleet"
	"github.com/neocloud/neocloud/tenant"
	"github.com/neocloud/neocloud/wire"
)

// PrefixJoinToken is the id prefix of join tokens.
const PrefixJoinToken = "jtk_"

// JoinToken lets agents of one site join, until it expires or is used up.
type JoinToken struct {
	ID        string     `json:"id"`
	SiteID    string     `json:"site_id"`
	Hint      string     `json:"hint"`
	MaxUses   int64      `json:"max_uses"`
	Uses      int64      `json:"uses"`
	ExpiresAt time.Time  `json:"expires_at"`
	CreatedBy string     `json:"created_by"`
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

// State is a node's last heartbeat as the server keeps it.
type State struct {
	NodeID     string           `json:"node_id"`
	Seq        int64            `json:"seq"`
	SeenAt     time.Time        `json:"seen_at"`
	Heartbeat  wire.Heartbeat   `json:"heartbeat"`
	Conditions []Condition      `json:"conditions,omitempty"`
	Health     fleet.Health     `json:"health"`
	Action     Action           `json:"action,omitempty"`
	GPUs       []wire.GPUSample `json:"-"`
}

// Sample is one heartbeat's summary of a node: the sum of its GPUs'
// energy counters (J) and power (W).
type Sample struct {
	NodeID  string    `json:"node_id"`
	Seq     int64     `json:"seq"`
	At      time.Time `json:"at"`
	EnergyJ uint64    `json:"energy_j"`
	PowerW  float64   `json:"power_w"`
}

// Minute is one node-minute of reports: how many, the energy counter sum
// at its first and last, power (sum and peak) and the hottest GPU.
type Minute struct {
	NodeID       string    `json:"node_id"`
	Minute       time.Time `json:"minute"`
	Samples      int64     `json:"samples"`
	EnergyFirstJ uint64    `json:"energy_first_j"`
	EnergyLastJ  uint64    `json:"energy_last_j"`
	PowerSumW    float64   `json:"-"`
	PowerAvgW    float64   `json:"power_avg_w"`
	PowerMaxW    float64   `json:"power_max_w"`
	TempMaxC     float64   `json:"temp_max_c"`
}

// EnergyReading is one GPU's energy counter at an instant that matters to
// billing: an allocation becoming ready or released, or the hour.
type EnergyReading struct {
	NodeID       string    `json:"node_id"`
	GPU          int       `json:"gpu"`
	At           time.Time `json:"at"`
	EnergyJ      uint64    `json:"energy_j"`
	Reason       string    `json:"reason" enum:"ready,released,hourly"`
	AllocationID string    `json:"allocation_id,omitempty"`
}

// PrefixCommand is the id prefix of node commands.
const PrefixCommand = "cmd_"

// NodeCommand is an order for a node's agent and how it went.
type NodeCommand struct {
	wire.Command
	NodeID    string     `json:"node_id"`
	State     string     `json:"state" enum:"pending,done,failed,refused"`
	Message   string     `json:"message,omitempty"`
	CreatedBy string     `json:"created_by"`
	CreatedAt time.Time  `json:"created_at"`
	DoneAt    *time.Time `json:"done_at,omitempty"`
}

// Retention is how long minute rollups and samples are kept.
const Retention = 7 * 24 * time.Hour

// Store is what agents need from storage.
type Store interface {
	InsertJoinToken(ctx context.Context, t JoinToken, hash string) error
	// UseJoinToken counts one use of the token with this hash, refusing an
	// expired, revoked or used-up one (KindUnauthenticated).
	UseJoinToken(ctx context.Context, hash string, now time.Time) (JoinToken, error)
	JoinTokens(ctx context.Context, siteID string) ([]JoinToken, error)
	// AgentState returns a node's stored last heartbeat, or KindNotFound.
	AgentState(ctx context.Context, nodeID string) (State, error)
	// PutAgentState stores a node's last heartbeat if seq is newer than the
	// stored one, reporting whether it was.
	PutAgentState(ctx context.Context, s State) (bool, error)
	// PutSample records one heartbeat's sample of a node once, reporting
	// whether it was new.
	PutSample(ctx context.Context, s Sample) (bool, error)
	// PutMinute folds one report into its node's minute rollup.
	PutMinute(ctx context.Context, m Minute) error
	// Minutes returns a node's rollups in [from, to).
	Minutes(ctx context.Context, nodeID string, from, to time.Time) ([]Minute, error)
	// PutEnergyReadings records GPU energy counter readings (once each).
	PutEnergyReadings(ctx context.Context, rs []EnergyReading) error
	// EnergyReadings returns a node's readings in [from, to).
	EnergyReadings(ctx context.Context, nodeID string, from, to time.Time) ([]EnergyReading, error)
	InsertCommand(ctx context.Context, c NodeCommand) error
	// Commands returns a node's commands, newest first; pending only when
	// pendingOnly.
	Commands(ctx context.Context, nodeID string, pendingOnly bool) ([]NodeCommand, error)
	// FinishCommand records a pending command's outcome (once).
	FinishCommand(ctx context.Context, nodeID string, r wire.Result, at time.Time) error
	// PurgeTelemetry deletes rollups and samples older than before.
	PurgeTelemetry(ctx context.Context, before time.Time) (int64, error)
	// Samples returns a node's samples in [from, to] by sequence number.
	Samples(ctx context.Context, nodeID string, from, to int64) ([]Sample, error)
	// NodeCredential returns the live agent token of a node, or KindNotFound.
	NodeCredential(ctx context.Context, nodeID string) (tenant.Token, error)
}

// Tx runs work in one transaction.
type Tx interface {
	InTx(ctx context.Context, fn func(ctx context.Context) error) error
}

// Service serves agents. It is safe for concurrent use.
type Service struct {
	Store      Store
	Tx         Tx
	Fleet      *fleet.Service
	Tokens     *tenant.Service
	Now        func() time.Time
	HeartbeatS int // the cadence agents are told to report at (default 10)
	// SetHealth records a node's health and reasons (the fleet's).
	SetHealth func(ctx context.Context, nodeID string, h fleet.Health, reasons []string) error
	// Assignment tells what a node serves now, for the heartbeat answer.
	Assignment func(ctx context.Context, nodeID string) (*wire.Assignment, error)

	mu     sync.RWMutex
	latest map[string]State
}

// NewService returns a service over store.
func NewService(store Store, tx Tx, fl *fleet.Service, tokens *tenant.Service) *Service {
	return &Service{Store: store, Tx: tx, Fleet: fl, Tokens: tokens, Now: time.Now, HeartbeatS: 10, latest: map[string]State{},
		SetHealth: fl.SetHealth}
}

func (s *Service) now() time.Time { return s.Now().UTC().Truncate(time.Microsecond) }

// JoinTokenInput creates a join token.
type JoinTokenInput struct {
	Site    string `json:"site" doc:"Site name or id."`
	MaxUses int64  `json:"max_uses" minimum:"1" doc:"How many agents may join with it."`
	TTLS    int64  `json:"ttl_s" minimum:"1" doc:"Seconds it stays valid."`
}

// CreateJoinToken makes a join token and returns its secret, shown once.
func (s *Service) CreateJoinToken(ctx context.Context, p neocloud.Principal, in JoinTokenInput) (JoinToken, string, error) {
	site, ok := s.Fleet.Snapshot.Site(in.Site)
	if !ok {
		return JoinToken{}, "", neocloud.Invalid("body.site", "unknown site %q", in.Site)
	}
	if in.MaxUses <= 0 {
		return JoinToken{}, "", neocloud.Invalid("body.max_uses", "must be positive")
	}
	if in.TTLS <= 0 || in.TTLS > 30*86400 {
		return JoinToken{}, "", neocloud.Invalid("body.ttl_s", "must be between one second and 30 days")
	}
	now := s.now()
	secret := tenant.NewSecret()
	t := JoinToken{ID: neocloud.NewID(PrefixJoinToken), SiteID: site.ID, Hint: tenant.Hint(secret), MaxUses: in.MaxUses,
		ExpiresAt: now.Add(time.Duration(in.TTLS) * time.Second), CreatedBy: p.TokenID, CreatedAt: now}
	return t, secret, s.Tx.InTx(ctx, func(ctx context.Context) error { return s.Store.InsertJoinToken(ctx, t, tenant.HashSecret(secret)) })
}

// JoinTokens lists a site's join tokens.
func (s *Service) JoinTokens(ctx context.Context, siteRef string) ([]JoinToken, error) {
	site, ok := s.Fleet.Snapshot.Site(siteRef)
	if !ok {
		return nil, neocloud.NotFound("site", siteRef)
	}
	return s.Store.JoinTokens(ctx, site.ID)
}

// Join matches an agent to its node by hostname (and serial, when the node
// declares one) at the join token's site, and issues the node's own
// credential. A node that already has one must be re-keyed by an operator
// first: a join token alone never takes over a known node.
func (s *Service) Join(ctx context.Context, joinSecret string, in wire.JoinRequest) (wire.JoinResponse, error) {
	var out wire.JoinResponse
	if in.Version < 1 || in.Version > wire.Version {
		return out, neocloud.Invalid("body.version", "protocol version %d is not spoken here (1 to %d)", in.Version, wire.Version)
	}
	err := s.Tx.InTx(ctx, func(ctx context.Context) error {
		now := s.now()
		jt, err := s.Store.UseJoinToken(ctx, tenant.HashSecret(joinSecret), now)
		if err != nil {
			return err
		}
		n, ok := s.Fleet.Snapshot.Node(in.Hostname)
		if !ok || n.SiteID != jt.SiteID || n.Lifecycle == fleet.LifecycleRetired {
			return neocloud.Invalid("body.hostname", "no node %q at the join token's site", in.Hostname)
		}
		if n.Serial != "" && n.Serial != in.Serial {
			return neocloud.Invalid("body.serial", "node %s is declared with another serial", n.Hostname)
		}
		if _, err := s.Store.NodeCredential(ctx, n.ID); err == nil {
			return neocloud.Conflict("joined", "node %s has joined already; an operator must re-key it (neocloud node rekey)", n.Hostname)
		} else if neocloud.ErrorKind(err) != neocloud.KindNotFound {
			return err
		}
		secret := tenant.NewSecret()
		tok := tenant.Token{ID: neocloud.NewID(neocloud.PrefixToken), Name: "agent " + n.Hostname, Role: neocloud.RoleAgent, NodeID: n.ID,
			Hint: tenant.Hint(secret), CreatedAt: now, CreatedBy: jt.ID}
		if err := s.Tokens.Store.CreateToken(ctx, tok, tenant.HashSecret(secret)); err != nil {
			return err
		}
		out = wire.JoinResponse{Version: wire.Version, NodeID: n.ID, Credential: secret, HeartbeatS: s.HeartbeatS}
		return nil
	})
	return out, err
}

// Rekey revokes a node's credential so that its agent may join again.
func (s *Service) Rekey(ctx context.Context, p neocloud.Principal, ref string) (fleet.Node, error) {
	n, ok := s.Fleet.Snapshot.Node(ref)
	if !ok {
		return fleet.Node{}, neocloud.NotFound("node", ref)
	}
	return n, s.Tx.InTx(ctx, func(ctx context.Context) error {
		tok, err := s.Store.NodeCredential(ctx, n.ID)
		if neocloud.ErrorKind(err) == neocloud.KindNotFound {
			return nil
		}
		if err != nil {
			return err
		}
		_, err = s.Tokens.Revoke(ctx, p, tok.ID)
		return err
	})
}

// Heartbeat applies an agent's heartbeat once per sequence number: a
// replay (or an older one arriving late) changes nothing. It evaluates the
// rule table and records the node's health when it changes.
func (s *Service) Heartbeat(ctx context.Context, p neocloud.Principal, hb wire.Heartbeat) (wire.HeartbeatAnswer, error) {
	ans := wire.HeartbeatAnswer{Version: wire.Version}
	if p.Role != neocloud.RoleAgent || p.NodeID == "" {
		return ans, neocloud.Errorf(neocloud.KindForbidden, "only a node's agent may report for it")
	}
	if hb.Version < 1 || hb.Version > wire.Version {
		return ans, neocloud.Invalid("body.version", "protocol version %d is not spoken here (1 to %d)", hb.Version, wire.Version)
	}
	if hb.Seq < 1 {
		return ans, neocloud.Invalid("body.seq", "must be at least 1")
	}
	err := s.Tx.InTx(ctx, func(ctx context.Context) error {
		now := s.now()
		st := State{NodeID: p.NodeID, Seq: hb.Seq, SeenAt: now, Heartbeat: hb}
		// Conditions that call for a reset or worse stay until the node is
		// remediated; heat, links and checks are as the last report says.
		var sticky []Condition
		if prev, err := s.Latest(ctx, p.NodeID); err == nil {
			sticky = Sticky(prev.Conditions)
		} else if neocloud.ErrorKind(err) != neocloud.KindNotFound {
			return err
		}
		st.Conditions = merge(sticky, Evaluate(hb))
		st.Health, st.Action = Worst(st.Conditions)
		sm := Sample{NodeID: p.NodeID, Seq: hb.Seq, At: hb.At.UTC()}
		hottest := 0.0
		for _, g := range hb.GPUs {
			sm.EnergyJ += g.EnergyJ
			sm.PowerW += g.PowerW
			hottest = max(hottest, g.TempC)
		}
		fresh, err := s.Store.PutSample(ctx, sm)
		if err != nil {
			return err
		}
		if fresh {
			m := Minute{NodeID: p.NodeID, Minute: sm.At.Truncate(time.Minute), Samples: 1, EnergyFirstJ: sm.EnergyJ, EnergyLastJ: sm.EnergyJ, PowerSumW: sm.PowerW, PowerMaxW: sm.PowerW, TempMaxC: hottest}
			if err := s.Store.PutMinute(ctx, m); err != nil {
				return err
			}
		}
		newer := false
		if fresh {
			if newer, err = s.Store.PutAgentState(ctx, st); err != nil {
				return err
			}
		}
		if !fresh {
			ans.Duplicate = true
		}
		if !newer {
			// A replay, or a spooled report older than the last applied:
			// its sample is kept (once), the node's state is not rolled back.
			prev, err := s.Store.AgentState(ctx, p.NodeID)
			if err != nil {
				return err
			}
			ans.Acked, ans.Health = prev.Seq, string(prev.Health)
			return nil
		}
		ans.Acked, ans.Health = hb.Seq, string(st.Health)
		n, ok := s.Fleet.Snapshot.Node(p.NodeID)
		if ok && (n.Health != st.Health || fmt.Sprint(n.HealthReasons) != fmt.Sprint(reasons(st.Conditions))) && s.SetHealth != nil {
			if err := s.SetHealth(ctx, p.NodeID, st.Health, reasons(st.Conditions)); err != nil {
				return err
			}
		}
		s.mu.Lock()
		s.latest[p.NodeID] = st
		s.mu.Unlock()
		return nil
	})
	if err == nil && s.Assignment != nil {
		ans.Assignment, err = s.Assignment(ctx, p.NodeID)
	}
	if err == nil {
		err = s.Tx.InTx(ctx, func(ctx context.Context) error {
			for _, r := range hb.Results {
				if err := s.Store.FinishCommand(ctx, p.NodeID, r, s.now()); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err == nil {
		var cs []NodeCommand
		if cs, err = s.Store.Commands(ctx, p.NodeID, true); err == nil {
			for i := len(cs) - 1; i >= 0; i-- { // oldest first
				ans.Commands = append(ans.Commands, cs[i].Command)
			}
		}
	}
	return ans, err
}

// CommandInput orders a node's agent.
type CommandInput struct {
	Kind   string `json:"kind" enum:"drain,health_check,sanitize,power_cap"`
	PowerW int    `json:"power_w,omitempty" doc:"For power_cap: watts per GPU."`
}

// Order queues a command for a node's agent, fenced by the node's current
// assignment generation. Sanitizing a node that serves work is refused
// here as the agent would refuse it.
func (s *Service) Order(ctx context.Context, p neocloud.Principal, ref string, in CommandInput) (NodeCommand, error) {
	n, ok := s.Fleet.Snapshot.Node(ref)
	if !ok {
		return NodeCommand{}, neocloud.NotFound("node", ref)
	}
	switch in.Kind {
	case "drain", "health_check", "sanitize":
	case "power_cap":
		if in.PowerW <= 0 {
			return NodeCommand{}, neocloud.Invalid("body.power_w", "a power cap needs watts per GPU")
		}
	default:
		return NodeCommand{}, neocloud.Invalid("body.kind", "must be drain, health_check, sanitize or power_cap, not %q", in.Kind)
	}
	var gen int64
	if s.Assignment != nil {
		a, err := s.Assignment(ctx, n.ID)
		if err != nil {
			return NodeCommand{}, err
		}
		if a != nil {
			if in.Kind == "sanitize" {
				return NodeCommand{}, neocloud.Conflict("assigned", "node %s serves reservation %s: it is sanitized only when released", n.Hostname, a.Reservation)
			}
			gen = a.Generation
		}
	}
	c := NodeCommand{Command: wire.Command{ID: neocloud.NewID(PrefixCommand), Kind: in.Kind, Generation: gen, PowerW: in.PowerW},
		NodeID: n.ID, State: "pending", CreatedBy: p.TokenID, CreatedAt: s.now()}
	return c, s.Tx.InTx(ctx, func(ctx context.Context) error { return s.Store.InsertCommand(ctx, c) })
}

// Latest returns a node's last heartbeat state, from memory or the store.
func (s *Service) Latest(ctx context.Context, nodeID string) (State, error) {
	s.mu.RLock()
	st, ok := s.latest[nodeID]
	s.mu.RUnlock()
	if ok {
		return st, nil
	}
	return s.Store.AgentState(ctx, nodeID)
}

func reasons(cs []Condition) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Reason)
	}
	sort.Strings(out)
	return out
}

func merge(a, b []Condition) []Condition {
	seen := map[string]bool{}
	var out []Condition
	for _, c := range append(append([]Condition{}, a...), b...) {
		if !seen[c.Reason] {
			seen[c.Reason] = true
			out = append(out, c)
		}
	}
	return out
}

// RecordEnergy keeps the node's GPUs' energy counters, as its last report
// gave them, for a billing boundary (reason ready or released, with the
// allocation) or the hour. A node with no report yet records nothing.
func (s *Service) RecordEnergy(ctx context.Context, nodeID string, gpus []int, reason, allocationID string) error {
	st, err := s.Latest(ctx, nodeID)
	if neocloud.ErrorKind(err) == neocloud.KindNotFound {
		return nil
	}
	if err != nil {
		return err
	}
	want := map[int]bool{}
	for _, g := range gpus {
		want[g] = true
	}
	var rs []EnergyReading
	at := s.now()
	for _, g := range st.Heartbeat.GPUs {
		if len(gpus) == 0 || want[g.Index] {
			rs = append(rs, EnergyReading{NodeID: nodeID, GPU: g.Index, At: at, EnergyJ: g.EnergyJ, Reason: reason, AllocationID: allocationID})
		}
	}
	return s.Store.PutEnergyReadings(ctx, rs)
}

// Hourly records every reporting node's energy counters and forgets
// telemetry older than the retention.
func (s *Service) Hourly(ctx context.Context) error {
	s.mu.RLock()
	nodes := make([]string, 0, len(s.latest))
	for id := range s.latest {
		nodes = append(nodes, id)
	}
	s.mu.RUnlock()
	sort.Strings(nodes)
	for _, id := range nodes {
		if err := s.Tx.InTx(ctx, func(ctx context.Context) error { return s.RecordEnergy(ctx, id, nil, "hourly", "") }); err != nil {
			return err
		}
	}
	_, err := s.Store.PurgeTelemetry(ctx, s.now().Add(-Retention))
	return err
}
