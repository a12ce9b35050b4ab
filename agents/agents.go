// Package agents is the server's side of node agents: site-scoped join
// tokens, joining (matching an agent to its node and issuing that node's
// own credential), heartbeats applied once per sequence number and
// group-committed, the latest state of every node in memory, health
// conditions from a rule table of NVIDIA XID classes, and commands fenced
// by the node's assignment generation. It also keeps the fleet whole:
// liveness (silent nodes judged without mistaking the control plane's own
// blindness for failures: startup grace, domain breaker and incidents,
// out-of-band evidence, one leader under a lease), repair tickets through
// burn-in and sanitize back to service, and active health checks of idle
// nodes. Selling (what a node serves, replacing its work) is reached
// through hooks that Connect sets. It holds no SQL and no HTTP.
package agents

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/fleet"
	"github.com/neocloud/neocloud/sales"
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
	NodeID     string         `json:"node_id"`
	Seq        int64          `json:"seq"`
	SeenAt     time.Time      `json:"seen_at"`
	Heartbeat  wire.Heartbeat `json:"heartbeat"`
	Conditions []Condition    `json:"conditions,omitempty"`
	Health     fleet.Health   `json:"health"`
	Action     Action         `json:"action,omitempty"`
	Found      []wire.GPUInfo `json:"gpus_found,omitempty" doc:"The GPUs the agent found when it joined: models and UUIDs."`
	storedAt   time.Time      // when this node's state was last stored
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
	// UtilSum sums each report's mean GPU utilization (percent); ÷
	// Samples is the minute's.
	UtilSum    float64 `json:"-"`
	UtilAvgPct float64 `json:"util_avg_pct"`
}

// Averages sets the minute's means from its sums.
func (m *Minute) Averages() {
	if m.Samples > 0 {
		m.PowerAvgW = milli(m.PowerSumW / float64(m.Samples))
		m.UtilAvgPct = milli(m.UtilSum / float64(m.Samples))
	}
}

// milli rounds a measurement to a thousandth (of a watt, of a percent): a
// sum of GPUs' readings then reads 5102.1, not 5102.099999999999, and
// nothing real is lost.
func milli(x float64) float64 { return math.Round(x*1000) / 1000 }

// EnergyReading is one GPU's energy counter at an instant that matters to
// billing: an allocation becoming ready or released, or the hour. GPU
// NodeMeterGPU (-1) is the node's input energy from its out-of-band
// controller.
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
	// LatestPower returns each node's GPU power draw (W) in its latest
	// stored report made at or after since (the agent's clock), by node id:
	// what every server stored.
	LatestPower(ctx context.Context, since time.Time) (map[string]float64, error)
	// PutSamples records heartbeats' samples, each (node, seq) once,
	// reporting which were new.
	PutSamples(ctx context.Context, ss []Sample) ([]bool, error)
	// PutMinutes folds reports into their nodes' minute rollups; each
	// (node, minute) appears once in ms.
	PutMinutes(ctx context.Context, ms []Minute) error
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
	// PurgeTelemetry deletes rollups and samples older than before (a
	// store may keep a node's samples that follow a newer one in sequence
	// order: a clock set back) and says how many.
	PurgeTelemetry(ctx context.Context, before time.Time) (int64, error)
	// Samples returns a node's samples in [from, to] by sequence number.
	Samples(ctx context.Context, nodeID string, from, to int64) ([]Sample, error)
	// NodeCredential returns the live agent token of a node, or KindNotFound.
	NodeCredential(ctx context.Context, nodeID string) (tenant.Token, error)
	// AgentNodes returns the nodes that have a live agent credential.
	AgentNodes(ctx context.Context) ([]string, error)
	// PutSeen records when nodes were last heard from (each time only
	// moves forward); Seen returns them all. Servers sharing a database
	// judge liveness from these.
	PutSeen(ctx context.Context, seen map[string]time.Time) error
	Seen(ctx context.Context) (map[string]time.Time, error)
	// PutIncidents stores incidents (new or changed); Incidents lists them,
	// open first, newest first.
	PutIncidents(ctx context.Context, incs []Incident) error
	Incidents(ctx context.Context, openOnly bool) ([]Incident, error)
	// TakeLease takes or renews a named lease until a time, reporting
	// whether this holder has it (another's that has not expired stands)
	// and its epoch, which grows with every change of holder. HoldsLease,
	// in a write transaction, says whether the holder still has it at that
	// epoch: its writes commit only then.
	TakeLease(ctx context.Context, name, holder string, now, until time.Time) (int64, bool, error)
	HoldsLease(ctx context.Context, name, holder string, epoch int64, now time.Time) (bool, error)
	RemediationStore
}

// Tx runs work in one transaction; AfterCommit defers fn until ctx's
// transaction commits.
type Tx interface {
	InTx(ctx context.Context, fn func(ctx context.Context) error) error
	AfterCommit(ctx context.Context, fn func())
}

// Service serves agents. It is safe for concurrent use.
type Service struct {
	Store      Store
	Tx         Tx
	Fleet      *fleet.Service
	Tokens     *tenant.Service
	Now        func() time.Time
	HeartbeatS int // the cadence agents are told to report at (default 10)
	// TimeScale is how many seconds of Now pass in a real second (1 when
	// zero): the demo runs an accelerated clock while its agents still
	// report every HeartbeatS real seconds, so silence is judged in
	// intervals of HeartbeatS × TimeScale seconds of Now.
	TimeScale float64
	// SetHealth records a node's health and reasons (the fleet's).
	SetHealth func(ctx context.Context, nodeID string, h fleet.Health, reasons []string) error
	// Assignment tells what a node serves now, for the heartbeat answer.
	Assignment func(ctx context.Context, nodeID string) (*wire.Assignment, error)
	// OnFailed takes a failed node's work elsewhere; evidence says the
	// failure is known from outside the node (its out-of-band controller,
	// its tenant's confirmed report), not only from its agent or silence.
	OnFailed func(ctx context.Context, nodeID, why string, evidence bool) error
	// BareMetal says whether a node serves bare-metal work, which silence
	// never fails.
	BareMetal func(ctx context.Context, nodeID string) (bool, error)
	// Liveness is the policy for silent nodes; Started is when this
	// server started (no node is judged for a while after it).
	Liveness Liveness
	Started  time.Time
	// Remediation is the policy of a failed node's way back; Generation
	// tells a node's assignment generation, current or last (the fence
	// its agent holds).
	Remediation Remediation
	Generation  func(ctx context.Context, nodeID string) (int64, error)
	// OutOfBand reads nodes' out-of-band controllers (nil: none).
	OutOfBand OutOfBand
	// Checks is the policy of active health checks on idle nodes.
	Checks ActiveChecks
	caps   atomic.Pointer[skuCaps]

	incMu     sync.Mutex
	incidents map[string]*Incident
	// With other servers on the database, one of them judges liveness at a
	// time: since when this one has held the lease.
	leaderSince time.Time
	leaseEpoch  int64

	// mu guards nodes and the fields of its records marked so; assignMu
	// guards the others.
	mu    sync.RWMutex
	nodes map[string]*nodeRecord

	batchOnce sync.Once
	batch     chan *hbWrite
	// CommitWait is how long a group commit waits at most for more
	// heartbeats after the first: a commit's fixed cost (its fsync above
	// all) is shared by more of them, for that much more latency.
	// CommitIdle is the least it waits for the next before it commits
	// those it has. Its wait for the next is commitGaps times the recent
	// gap between heartbeats, when that is longer: reports coming at their
	// own pace (agents' timers, at the site's cadence) are waited for,
	// while a burst (the next reports of clients the last commit answered)
	// is committed as soon as it has all come.
	CommitWait time.Duration
	CommitIdle time.Duration

	// SharedTTL bounds how long what is cached in memory (a node's
	// assignment, whether it has pending commands) is trusted: 0 when this
	// server is the store's only writer (SQLite), so that changes made
	// here are all it needs to hear of; with other servers on the same
	// database, their changes are seen within it.
	SharedTTL time.Duration
	// Instance is this server's replica id: the holder it names when it
	// takes the liveness lease (NewService gives it one of its own).
	Instance string

	assignMu sync.Mutex
}

// nodeRecord is what the service keeps of one node in memory: one lookup
// finds all of it. Records are made on first use and kept for the life of
// the process.
type nodeRecord struct {
	id string
	// Guarded by Service.mu.
	state    State // the last report applied, or the stored state
	known    bool  // whether state is one
	repaired repair
	// Guarded by Service.assignMu; a zero time says none yet.
	assigned cachedAssignment
	change   nodeChange
	// pending says whether the node has commands waiting and when that
	// was read from the store.
	pending   pendingCommands
	lastCheck time.Time // the last active health check started
}

// record returns a node's record, making it on first use.
func (s *Service) record(nodeID string) *nodeRecord {
	s.mu.RLock()
	r := s.nodes[nodeID]
	s.mu.RUnlock()
	if r != nil {
		return r
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if r = s.nodes[nodeID]; r == nil {
		if s.nodes == nil {
			s.nodes = map[string]*nodeRecord{}
		}
		r = &nodeRecord{id: nodeID, change: nodeChange{wake: make(chan struct{})}}
		s.nodes[nodeID] = r
	}
	return r
}

type pendingCommands struct {
	any bool
	at  time.Time
}

// fresh says whether something cached at at may still be trusted.
func (s *Service) fresh(at, now time.Time) bool {
	return s.SharedTTL == 0 || now.Sub(at) < s.SharedTTL
}

// SharedPoll is how often a push stream reads its node's assignment again
// even without a change heard in this process.
const SharedPoll = 10 * time.Second

type cachedAssignment struct {
	a       *wire.Assignment
	at      time.Time
	expires time.Time // when a notice in it expires (zero: none does)
}

// nodeChange counts a node's assignment changes and wakes those waiting
// for the next one.
type nodeChange struct {
	version int64
	wake    chan struct{}
}

// NewService returns a service over store.
func NewService(store Store, tx Tx, fl *fleet.Service, tokens *tenant.Service) *Service {
	return &Service{Store: store, Tx: tx, Fleet: fl, Tokens: tokens, Now: time.Now, HeartbeatS: 10, CommitWait: DefaultCommitWait, CommitIdle: DefaultCommitIdle, nodes: map[string]*nodeRecord{},
		SetHealth: fl.SetHealth, Started: time.Now().UTC(), Instance: neocloud.NewID(neocloud.PrefixReplica)}
}

func (s *Service) now() time.Time { return s.Now().UTC().Truncate(time.Microsecond) }

// rejoinSeqMargin is how far past a node's last known report a re-joined
// agent starts counting: a server stores a node's state at least once a
// minute, so fewer reports than this are ever unstored.
const rejoinSeqMargin = 1_000_000

// JoinTokenInput creates a join token.
type JoinTokenInput struct {
	Site    string `json:"site" doc:"Site name or id."`
	MaxUses int64  `json:"max_uses" minimum:"1" doc:"How many agents may join with it."`
	TTLS    int64  `json:"ttl_s" minimum:"1" doc:"Seconds it stays valid."`
}

// CreateJoinToken makes a join token and returns its secret, shown once.
func (s *Service) CreateJoinToken(ctx context.Context, p neocloud.Principal, in JoinTokenInput) (JoinToken, string, error) {
	site, err := s.Fleet.Site(ctx, in.Site)
	if neocloud.ErrorKind(err) == neocloud.KindNotFound {
		return JoinToken{}, "", neocloud.Invalid("body.site", "unknown site %q", in.Site)
	} else if err != nil {
		return JoinToken{}, "", err
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
		n, err := s.Fleet.Node(ctx, in.Hostname)
		if err != nil && neocloud.ErrorKind(err) != neocloud.KindNotFound {
			return err
		}
		if err != nil || n.SiteID != jt.SiteID || n.Lifecycle == fleet.LifecycleRetired {
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
		if err := s.Tokens.Store.CreateToken(ctx, tok, tenant.HashSecret(secret)); neocloud.ErrorKind(err) == neocloud.KindConflict {
			// Another agent joined as this node a moment ago (one live
			// credential per node is the schema's rule).
			return neocloud.Conflict("joined", "node %s has joined already; an operator must re-key it (neocloud node rekey)", n.Hostname)
		} else if err != nil {
			return err
		}
		out = wire.JoinResponse{Version: wire.Version, NodeID: n.ID, Credential: secret, HeartbeatS: s.HeartbeatS}
		// A node that reported before (re-keyed, re-imaged) counts on
		// past its last report: past the last stored, by more reports
		// than any server holds unstored.
		if prev, known, err := s.latestOf(ctx, s.record(n.ID), 0); err != nil {
			return err
		} else if known && prev.Seq > 0 {
			out.NextSeq = prev.Seq + rejoinSeqMargin
		}
		// The GPUs found (their UUIDs name them on repair tickets) are kept
		// with the node's state from here on.
		if _, err := s.Store.PutAgentState(ctx, State{NodeID: n.ID, SeenAt: now, Health: fleet.HealthOK, Found: in.GPUs}); err != nil {
			return err
		}
		s.Tx.AfterCommit(ctx, func() {
			r := s.record(n.ID)
			s.mu.Lock()
			defer s.mu.Unlock()
			if r.known {
				r.state.Found = in.GPUs
			}
		})
		return nil
	})
	return out, err
}

// Rekey revokes a node's credential so that its agent may join again.
func (s *Service) Rekey(ctx context.Context, p neocloud.Principal, ref string) (fleet.Node, error) {
	n, err := s.Fleet.Node(ctx, ref)
	if err != nil {
		return fleet.Node{}, err
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
//
// Heartbeats are group-committed: those that arrive while a commit is
// under way are written together in the next transaction, and each is
// answered only after its own has committed. A node's state is kept in
// memory and stored when its health or conditions change, or at most a
// minute after the last time.
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
	for i, r := range hb.Results {
		switch r.State {
		case "done", "failed", "refused":
		default:
			return ans, neocloud.Invalid(fmt.Sprintf("body.results[%d].state", i), "a result is done, failed or refused, not %q", r.State)
		}
	}
	now := s.now()
	rec := s.record(p.NodeID)
	prev, known, err := s.latestOf(ctx, rec, hb.Seq)
	if err != nil {
		return ans, err
	}
	st := State{NodeID: p.NodeID, Seq: hb.Seq, SeenAt: now, Heartbeat: hb, Found: prev.Found}
	// Conditions that call for a reset or worse stay until the node is
	// remediated (a GPU reset or a reboot reported done here clears those
	// it remedies); heat, links and checks are as the last report says.
	remedied, checks, err := s.outcomes(ctx, p.NodeID, hb.Results)
	if err != nil {
		return ans, err
	}
	// A repair clears what was found before it: a report sampled before
	// the node was declared repaired says nothing about the repaired node.
	repaired := s.repairedAt(rec)
	var sticky []Condition
	for _, c := range Sticky(prev.Conditions) {
		if ladder[c.Action] > ladder[remedied] && c.At.After(repaired.at) {
			sticky = append(sticky, c)
		}
	}
	var found []Condition
	if !repaired.before(hb) {
		found = append(Evaluate(hb), checks...)
		for i := range found {
			found[i].At = now
		}
	}
	st.Conditions = merge(sticky, found)
	st.Health, st.Action = Worst(st.Conditions)
	sm := Sample{NodeID: p.NodeID, Seq: hb.Seq, At: hb.At.UTC()}
	hottest, util := 0.0, 0.0
	for _, g := range hb.GPUs {
		sm.EnergyJ += g.EnergyJ
		sm.PowerW += g.PowerW
		hottest = max(hottest, g.TempC)
		util += g.UtilPct
	}
	if len(hb.GPUs) > 0 {
		util /= float64(len(hb.GPUs))
	}
	sm.PowerW, util = milli(sm.PowerW), milli(util)
	w := hbWrites.Get().(*hbWrite)
	*w = hbWrite{sample: sm, seenAt: now, tempMax: hottest, utilPct: util, results: hb.Results, done: w.done}
	stReasons := reasons(st.Conditions)
	changed := !known || prev.Health != st.Health || !slices.Equal(reasons(prev.Conditions), stReasons)
	if hb.Seq > prev.Seq && (changed || now.Sub(prev.storedAt) >= time.Minute) {
		stored := st
		w.state = &stored
	}
	if err := s.commit(ctx, w); err != nil {
		return ans, err
	}
	fresh, stored := w.fresh, w.state != nil
	*w = hbWrite{done: w.done}
	hbWrites.Put(w)
	if !fresh {
		ans.Duplicate = true
	}
	if !fresh || hb.Seq <= prev.Seq {
		// A replay, or a spooled report older than the last applied: its
		// sample is kept (once), the node's state is not rolled back.
		cur, _, err := s.latestOf(ctx, rec, 0)
		if err != nil {
			return ans, err
		}
		ans.Acked, ans.Health = cur.Seq, string(cur.Health)
	} else {
		ans.Acked, ans.Health = hb.Seq, string(st.Health)
		if stored {
			st.storedAt = now
		} else {
			st.storedAt = prev.storedAt
		}
		s.mu.Lock()
		if !rec.known || rec.state.Seq < st.Seq {
			rec.state, rec.known = st, true
		}
		s.mu.Unlock()
		sku, health, healthReasons, ok := s.Fleet.Snapshot.NodeHealth(p.NodeID)
		if ok {
			ans.PowerCapW = s.powerCap(ctx, sku)
		}
		if s.repairedAt(rec) != repaired {
			ok = false // repaired while this report was on its way: it decides nothing
		}
		if to := st.Health; ok && (health != to || !slices.Equal(healthReasons, stReasons)) && s.SetHealth != nil {
			// The failure and what follows it (work replaced, repair opened)
			// commit together: a crash between them cannot leave a failed
			// node in a reservation.
			err := s.Tx.InTx(ctx, func(ctx context.Context) error {
				if err := s.SetHealth(ctx, p.NodeID, to, stReasons); err != nil {
					return err
				}
				if to == fleet.HealthFailed && health != fleet.HealthFailed {
					// The agent's word: enough for managed delivery, not
					// for bare metal (see sales.NodeFailed).
					return s.failed(ctx, p.NodeID, strings.Join(stReasons, "; "), false)
				}
				return nil
			})
			if err != nil {
				return ans, err
			}
		}
	}
	if ans.Assignment, err = s.assignmentOf(ctx, rec); err != nil {
		return ans, err
	}
	if ans.Commands, err = s.pendingOf(ctx, rec); err != nil {
		return ans, err
	}
	return ans, nil
}

// skuCaps are the SKUs' per-GPU power caps as of a fleet generation.
type skuCaps struct {
	gen  uint64
	caps map[string]int
}

// powerCap returns the per-GPU power cap of a power-capped SKU (0: none),
// reading the SKUs again when the fleet has changed.
func (s *Service) powerCap(ctx context.Context, sku string) int {
	gen := s.Fleet.Snapshot.Gen()
	c := s.caps.Load()
	if c == nil || c.gen != gen {
		skus, err := s.Fleet.Store.SKUs(ctx)
		if err != nil {
			return 0 // the next heartbeat tells it
		}
		c = &skuCaps{gen: gen, caps: map[string]int{}}
		for _, k := range skus {
			if k.PowerCapW > 0 {
				c.caps[k.Name] = k.PowerCapW
			}
		}
		s.caps.Store(c)
	}
	return c.caps[sku]
}

// pendingOf returns a node's pending commands, oldest first, reading the
// store only when the node may have some.
func (s *Service) pendingOf(ctx context.Context, r *nodeRecord) ([]wire.Command, error) {
	now := time.Now()
	s.assignMu.Lock()
	pc, ok := r.pending, !r.pending.at.IsZero()
	s.assignMu.Unlock()
	if ok && !pc.any && s.fresh(pc.at, now) {
		return nil, nil
	}
	cs, err := s.Store.Commands(ctx, r.id, true)
	if err != nil {
		return nil, err
	}
	s.assignMu.Lock()
	if !r.pending.at.After(now) {
		r.pending = pendingCommands{any: len(cs) > 0, at: now}
	}
	s.assignMu.Unlock()
	var out []wire.Command
	for i := len(cs) - 1; i >= 0; i-- { // oldest first
		out = append(out, cs[i].Command)
	}
	return out, nil
}

// enqueue stores a command for its node's agent in ctx's transaction; the
// node's next heartbeat answer carries it.
func (s *Service) enqueue(ctx context.Context, c NodeCommand) error {
	s.commandQueued(c.NodeID) // before the commit too: a heartbeat in between reads the store again
	s.Tx.AfterCommit(ctx, func() {
		s.commandQueued(c.NodeID)
		s.wake(c.NodeID) // the push stream sends it at once
	})
	return s.Store.InsertCommand(ctx, c)
}

// commandQueued notes that a node has a command waiting.
func (s *Service) commandQueued(nodeID string) {
	r := s.record(nodeID)
	s.assignMu.Lock()
	defer s.assignMu.Unlock()
	r.pending = pendingCommands{any: true, at: time.Now()}
}

// AssignmentOf returns what a node serves now, from a cache that
// NodesChanged keeps current (and SharedTTL bounds).
func (s *Service) AssignmentOf(ctx context.Context, nodeID string) (*wire.Assignment, error) {
	if s.Assignment == nil {
		return nil, nil
	}
	return s.assignmentOf(ctx, s.record(nodeID))
}

func (s *Service) assignmentOf(ctx context.Context, r *nodeRecord) (*wire.Assignment, error) {
	if s.Assignment == nil {
		return nil, nil
	}
	now := time.Now()
	s.assignMu.Lock()
	c, ok := r.assigned, !r.assigned.at.IsZero()
	version := r.change.version
	s.assignMu.Unlock()
	if ok && s.fresh(c.at, now) && (c.expires.IsZero() || now.Before(c.expires)) {
		return c.a, nil
	}
	a, err := s.Assignment(ctx, r.id)
	if err != nil {
		return nil, err
	}
	s.assignMu.Lock()
	if r.change.version == version { // no change while reading
		c := cachedAssignment{a: a, at: now}
		if a != nil {
			for _, n := range a.Notices {
				if n.Kind == "replacement" {
					if e := n.Deadline.Add(sales.ReplacementNoticeFor); c.expires.IsZero() || e.Before(c.expires) {
						c.expires = e // the notice goes then: read again
					}
				}
			}
		}
		r.assigned = c
	}
	s.assignMu.Unlock()
	return a, nil
}

// NodesChanged forgets the nodes' cached assignments and wakes their push
// streams: called after a commit that may have changed what they serve.
func (s *Service) NodesChanged(nodeIDs []string) {
	rs := make([]*nodeRecord, len(nodeIDs))
	for i, id := range nodeIDs {
		rs[i] = s.record(id)
	}
	s.assignMu.Lock()
	defer s.assignMu.Unlock()
	for _, r := range rs {
		r.assigned = cachedAssignment{}
		r.change.version++
		close(r.change.wake)
		r.change.wake = make(chan struct{})
	}
}

// wake wakes a node's push stream without a change to its assignment (a
// command is waiting).
func (s *Service) wake(nodeID string) {
	r := s.record(nodeID)
	s.assignMu.Lock()
	defer s.assignMu.Unlock()
	close(r.change.wake)
	r.change.wake = make(chan struct{})
}

// PendingCommands returns a node's pending commands, oldest first.
func (s *Service) PendingCommands(ctx context.Context, nodeID string) ([]wire.Command, error) {
	return s.pendingOf(ctx, s.record(nodeID))
}

// NextChange returns a channel closed at the node's next assignment change.
func (s *Service) NextChange(nodeID string) <-chan struct{} {
	r := s.record(nodeID)
	s.assignMu.Lock()
	defer s.assignMu.Unlock()
	return r.change.wake
}

// outcomes reads what command results in a report mean for the node: the
// highest rung of the ladder that commands done remedy (a GPU reset, a
// reboot), and the conditions of health checks that failed.
func (s *Service) outcomes(ctx context.Context, nodeID string, results []wire.Result) (Action, []Condition, error) {
	up := ActionNone
	if len(results) == 0 {
		return up, nil, nil
	}
	cs, err := s.Store.Commands(ctx, nodeID, false)
	if err != nil {
		return up, nil, err
	}
	kinds := map[string]string{}
	for _, c := range cs {
		kinds[c.ID] = c.Kind
	}
	var failed []Condition
	for _, r := range results {
		switch {
		case r.State == "done":
			a := map[string]Action{"gpu_reset": ActionReset, "reboot": ActionReboot}[kinds[r.ID]]
			if ladder[a] > ladder[up] {
				up = a
			}
		case r.State == "failed" && kinds[r.ID] == "health_check":
			failed = append(failed, Condition{GPU: -1, Kind: "active_check", Health: fleet.HealthDegraded, Action: ActionReboot, Reason: "active health check failed: " + r.Message})
		}
	}
	return up, failed, nil
}

// latestOf returns a node's last state from memory, else from the store
// (and keeps it in memory), else an empty one; known says whether there
// was one.
func (s *Service) latestOf(ctx context.Context, r *nodeRecord, next int64) (State, bool, error) {
	s.mu.RLock()
	st, ok := r.state, r.known
	s.mu.RUnlock()
	// With other servers on the database, the reports this one did not
	// hear (a gap before next, the report at hand) went to them, and may
	// have changed the node's state there: it is read again.
	if ok && (s.SharedTTL == 0 || next <= st.Seq+1) {
		return st, true, nil
	}
	return s.reread(ctx, r)
}

// reread reads a node's state from the store, keeping the newer of it and
// what is held.
func (s *Service) reread(ctx context.Context, r *nodeRecord) (State, bool, error) {
	stored, err := s.Store.AgentState(ctx, r.id)
	if neocloud.ErrorKind(err) == neocloud.KindNotFound {
		s.mu.RLock()
		defer s.mu.RUnlock()
		if r.known {
			return r.state, true, nil
		}
		return State{NodeID: r.id}, false, nil
	}
	if err != nil {
		return State{}, false, err
	}
	stored.storedAt = stored.SeenAt
	s.mu.Lock()
	defer s.mu.Unlock()
	if !r.known || r.state.Seq < stored.Seq {
		r.state, r.known = stored, true
	}
	return r.state, true, nil
}

// hbWrite is one heartbeat's writes, waiting for a group commit.
type hbWrite struct {
	sample  Sample
	seenAt  time.Time // when this server received it
	queued  time.Time // when it was handed to the committer (this machine's clock)
	tempMax float64
	utilPct float64 // the report's mean GPU utilization
	state   *State  // nil: not stored this time
	results []wire.Result
	// Set by the commit, before it sends on done.
	fresh bool
	err   error
	done  chan struct{} // one slot: the commit never waits on it
}

// hbWrites keeps written hbWrites for the next heartbeats. One whose
// commit was not waited for (the request ended first) is left to the
// garbage collector: its commit still sends on its done.
var hbWrites = sync.Pool{New: func() any { return &hbWrite{done: make(chan struct{}, 1)} }}

// A group commit's waits for more heartbeats: the longest from the
// first, the least for the next, and how many of the recent gaps between
// heartbeats it waits for the next. 20 ms at most keeps heartbeat answers
// far within what agents wait (their 10 s interval); at a 25,000-node
// site's cadence (2,500 a second) it takes commits of some 50 heartbeats.
const (
	DefaultCommitWait = 20 * time.Millisecond
	DefaultCommitIdle = 500 * time.Microsecond
	commitGaps        = 8
)

// maxBatch bounds the heartbeats one transaction writes.
const maxBatch = 1024

// commit hands w to the group committer and waits for its transaction.
func (s *Service) commit(ctx context.Context, w *hbWrite) error {
	s.batchOnce.Do(func() {
		s.batch = make(chan *hbWrite, maxBatch)
		go s.committer()
	})
	w.queued = time.Now()
	select {
	case s.batch <- w:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-w.done:
		return w.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// committer writes whatever heartbeats have queued, one transaction at a
// time, for the life of the process.
func (s *Service) committer() {
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	// gap is the recent gaps between heartbeats handed over, a moving
	// average; last is when the latest was, ended when the last commit
	// ended. A gap counts only when its second report came while the
	// first waited for its commit: a client that sends its next report
	// once answered (one at a time) has no pace of its own to wait for,
	// only the commit's.
	var gap time.Duration
	var last, ended time.Time
	arrived := func(w *hbWrite, first bool) {
		if g := w.queued.Sub(last); g >= 0 && (!first || w.queued.Before(ended)) {
			gap += (g - gap) / 4
		}
		last = w.queued
	}
	for w := range s.batch {
		arrived(w, true)
		ws := []*hbWrite{w}
		if d := s.CommitWait; d > 0 {
			deadline := time.Now().Add(d)
		wait:
			for len(ws) < maxBatch {
				left := time.Until(deadline)
				if left <= 0 {
					break
				}
				linger.Reset(min(left, max(s.CommitIdle, commitGaps*gap)))
				select {
				case w := <-s.batch:
					arrived(w, false)
					ws = append(ws, w)
					linger.Stop() // a tick not received is dropped (Go 1.23 timers)
				case <-linger.C:
					break wait
				}
			}
		}
	more:
		for len(ws) < maxBatch {
			select {
			case w := <-s.batch:
				arrived(w, false)
				ws = append(ws, w)
			default:
				break more
			}
		}
		err := s.Tx.InTx(context.Background(), func(ctx context.Context) error { return s.writeBatch(ctx, ws) })
		ended = time.Now()
		for _, w := range ws {
			w.err = err
			w.done <- struct{}{}
		}
	}
}

// writeBatch stores a batch's samples, folds the new ones into minute
// rollups, stores the states due and records command outcomes.
func (s *Service) writeBatch(ctx context.Context, ws []*hbWrite) error {
	samples := make([]Sample, len(ws))
	for i, w := range ws {
		samples[i] = w.sample
	}
	fresh, err := s.Store.PutSamples(ctx, samples)
	if err != nil {
		return err
	}
	type key struct {
		node   string
		minute time.Time
	}
	index := make(map[key]int, len(ws)) // in ms
	ms := make([]Minute, 0, len(ws))
	for i, w := range ws {
		w.fresh = fresh[i]
		if !w.fresh {
			continue
		}
		sm := w.sample
		k := key{sm.NodeID, sm.At.Truncate(time.Minute)}
		j, ok := index[k]
		if !ok {
			j = len(ms)
			index[k] = j
			ms = append(ms, Minute{NodeID: sm.NodeID, Minute: k.minute, EnergyFirstJ: sm.EnergyJ, EnergyLastJ: sm.EnergyJ})
		}
		m := &ms[j]
		m.Samples++
		m.EnergyFirstJ, m.EnergyLastJ = min(m.EnergyFirstJ, sm.EnergyJ), max(m.EnergyLastJ, sm.EnergyJ)
		m.PowerSumW += sm.PowerW
		m.PowerMaxW = max(m.PowerMaxW, sm.PowerW)
		m.TempMaxC = max(m.TempMaxC, w.tempMax)
		m.UtilSum += w.utilPct
	}
	if len(ms) > 0 {
		if err := s.Store.PutMinutes(ctx, ms); err != nil {
			return err
		}
	}
	if s.SharedTTL > 0 {
		// Other servers judge liveness too: when each node was heard from
		// goes to the database with its report.
		seen := map[string]time.Time{}
		for _, w := range ws {
			if w.fresh && w.seenAt.After(seen[w.sample.NodeID]) {
				seen[w.sample.NodeID] = w.seenAt
			}
		}
		if err := s.Store.PutSeen(ctx, seen); err != nil {
			return err
		}
	}
	for _, w := range ws {
		if w.fresh && w.state != nil {
			if _, err := s.Store.PutAgentState(ctx, *w.state); err != nil {
				return err
			}
		}
		for _, r := range w.results {
			if err := s.Store.FinishCommand(ctx, w.sample.NodeID, r, s.now()); err != nil {
				return err
			}
		}
	}
	return nil
}

// CommandInput orders a node's agent.
type CommandInput struct {
	Kind   string `json:"kind" enum:"drain,health_check,sanitize,power_cap,burn_in,reboot,gpu_reset"`
	PowerW int    `json:"power_w,omitempty" doc:"For power_cap: watts per GPU."`
}

// Order queues a command for a node's agent, fenced by the node's current
// assignment generation. Sanitizing a node that serves work is refused
// here as the agent would refuse it.
func (s *Service) Order(ctx context.Context, p neocloud.Principal, ref string, in CommandInput) (NodeCommand, error) {
	n, err := s.Fleet.Node(ctx, ref)
	if err != nil {
		return NodeCommand{}, err
	}
	switch in.Kind {
	case "drain", "health_check", "sanitize", "burn_in", "reboot", "gpu_reset":
	case "power_cap":
		if in.PowerW <= 0 {
			return NodeCommand{}, neocloud.Invalid("body.power_w", "a power cap needs watts per GPU")
		}
	default:
		return NodeCommand{}, neocloud.Invalid("body.kind", "must be drain, health_check, sanitize, power_cap, burn_in, reboot or gpu_reset, not %q", in.Kind)
	}
	gen, err := s.generation(ctx, n.ID)
	if err != nil {
		return NodeCommand{}, err
	}
	if s.Assignment != nil {
		a, err := s.Assignment(ctx, n.ID)
		if err != nil {
			return NodeCommand{}, err
		}
		if a != nil {
			if in.Kind == "sanitize" || in.Kind == "burn_in" {
				return NodeCommand{}, neocloud.Conflict("assigned", "node %s serves reservation %s: it is %s only when released", n.Hostname, a.Reservation, map[string]string{"sanitize": "sanitized", "burn_in": "burned in"}[in.Kind])
			}
			gen = a.Generation
		}
	}
	c := NodeCommand{Command: wire.Command{ID: neocloud.NewID(PrefixCommand), Kind: in.Kind, Generation: gen, PowerW: in.PowerW},
		NodeID: n.ID, State: "pending", CreatedBy: p.TokenID, CreatedAt: s.now()}
	return c, s.Tx.InTx(ctx, func(ctx context.Context) error { return s.enqueue(ctx, c) })
}

// Latest returns a node's last heartbeat state, from memory or the store
// (with other servers on the database, the store's when this server has
// heard nothing newer for SharedTTL: the node may report to another).
func (s *Service) Latest(ctx context.Context, nodeID string) (State, error) {
	s.mu.RLock()
	r := s.nodes[nodeID]
	var st State
	ok := r != nil && r.known
	if ok {
		st = r.state
	}
	s.mu.RUnlock()
	if !ok {
		return s.Store.AgentState(ctx, nodeID)
	}
	if s.fresh(st.SeenAt, s.now()) {
		return st, nil
	}
	st, _, err := s.reread(ctx, r)
	return st, err
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
	// The node's input energy, where its out-of-band controller meters it.
	if m, ok := s.OutOfBand.(EnergyMeter); ok && len(rs) > 0 {
		// A controller that cannot be read leaves the GPUs' estimate.
		if j, ok, err := m.NodeEnergy(ctx, nodeID); err == nil && ok {
			rs = append(rs, EnergyReading{NodeID: nodeID, GPU: NodeMeterGPU, At: at, EnergyJ: j, Reason: reason, AllocationID: allocationID})
		}
	}
	return s.Store.PutEnergyReadings(ctx, rs)
}

// GPUPower is every reporting node's GPUs' latest power draw (W), by
// node id. Servers sharing a PostgreSQL database each hear some of the
// agents: for the others they read what was stored, reports of the last
// three heartbeat intervals.
func (s *Service) GPUPower(ctx context.Context) (map[string]float64, error) {
	out := s.heardPower()
	if s.SharedTTL == 0 {
		return out, nil
	}
	stored, err := s.Store.LatestPower(ctx, time.Now().Add(-3*time.Duration(s.HeartbeatS)*time.Second))
	if err != nil {
		return nil, err
	}
	for id, w := range stored {
		out[id] = w // as fresh as what this server heard, or fresher
	}
	return out, nil
}

// heardPower is the latest power draw of the nodes this server has heard.
func (s *Service) heardPower() map[string]float64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[string]float64, len(s.nodes))
	for id, r := range s.nodes {
		if !r.known {
			continue
		}
		var w float64
		for _, g := range r.state.Heartbeat.GPUs {
			w += g.PowerW
		}
		out[id] = w
	}
	return out
}

// Hourly records every reporting node's energy counters and forgets
// telemetry older than the retention.
func (s *Service) Hourly(ctx context.Context) error {
	s.mu.RLock()
	nodes := make([]string, 0, len(s.nodes))
	for id, r := range s.nodes {
		if r.known {
			nodes = append(nodes, id)
		}
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
