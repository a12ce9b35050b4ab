package agents

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/fleet"
)

// Liveness is the policy for nodes whose agents fall silent.
type Liveness struct {
	// Missed heartbeats make a node unreachable (default 3).
	Missed int
	// Grace is how long a node stays unreachable before it is failed and
	// replaced (default 5 minutes).
	Grace time.Duration
	// StartupIntervals: after the server starts, no node is judged until
	// this many heartbeat intervals have passed, so that a restart (or a
	// new leader) never mistakes its own absence for the fleet's (default 6).
	StartupIntervals int
	// Breaker gives, per topology level, the share of a domain's reporting
	// nodes that may be silent at once; above it the domain is treated as
	// the control plane's blindness (a switch, a partition), not as node
	// failures: nothing there is marked unreachable, failed or replaced,
	// and an incident is opened for an operator (default su 20%, hall 5%).
	Breaker map[string]float64
}

// interval is the heartbeat interval in the time of Now.
func (s *Service) interval() time.Duration {
	d := time.Duration(max(1, s.HeartbeatS)) * time.Second
	if s.TimeScale > 1 {
		d = time.Duration(float64(d) * s.TimeScale)
	}
	return d
}

func (l Liveness) withDefaults() Liveness {
	if l.Missed <= 0 {
		l.Missed = 3
	}
	if l.Grace <= 0 {
		l.Grace = 5 * time.Minute
	}
	if l.StartupIntervals <= 0 {
		l.StartupIntervals = 6
	}
	if l.Breaker == nil {
		l.Breaker = map[string]float64{"su": 0.20, "hall": 0.05}
	}
	return l
}

// Incident is something for an operator: here, a domain gone silent.
type Incident struct {
	ID       string     `json:"id"`
	Kind     string     `json:"kind" enum:"silent_domain"`
	SiteID   string     `json:"site_id"`
	Level    string     `json:"level"`
	Domain   string     `json:"domain"`
	Silent   int        `json:"silent" doc:"Nodes silent now."`
	Nodes    int        `json:"nodes" doc:"Reporting nodes in the domain."`
	Message  string     `json:"message"`
	OpenedAt time.Time  `json:"opened_at"`
	ClosedAt *time.Time `json:"closed_at,omitempty"`
}

// PrefixIncident is the id prefix of incidents.
const PrefixIncident = "inc_"

// SweepResult says what one liveness sweep did.
type SweepResult struct {
	// Leads: this server judges liveness (with other servers on the
	// database, it holds the lease; alone, always).
	Leads       bool
	Judged      bool     // false during the startup grace
	Silent      int      // nodes silent now
	Unreachable []string // nodes marked unreachable by this sweep
	Failed      []string // nodes failed by this sweep
	Held        int      // silent nodes left alone: in a domain whose breaker is open, or serving bare metal
	Checks      int      // active health checks started on idle nodes
}

// Sweep judges every node whose agent has joined by its last heartbeat:
// silent for Missed intervals → unreachable; for Grace more → failed, and
// its work replaced through OnFailed. Nodes in a domain whose breaker is
// open are left alone and the domain gets an incident; nodes serving
// bare-metal work are never failed for silence.
func (s *Service) Sweep(ctx context.Context) (SweepResult, error) {
	var res SweepResult
	pol := s.Liveness.withDefaults()
	now := s.now()
	interval := s.interval()
	started := s.Started
	var shared map[string]time.Time
	res.Leads = true
	if s.SharedTTL > 0 {
		// Servers share the database: one judges at a time, from when any
		// of them last heard each node; a new leader waits its grace too.
		epoch, leader, err := s.Store.TakeLease(ctx, "liveness", s.Instance, now, now.Add(3*interval))
		if err != nil {
			return res, err
		}
		if leader && epoch != s.leaseEpoch {
			s.leaderSince, s.leaseEpoch = time.Time{}, epoch // taken over: a new leader
		}
		res.Leads = leader
		if !leader {
			s.leaderSince = time.Time{}
			s.incMu.Lock()
			s.incidents = nil // the leader keeps them; read again on taking over
			s.incMu.Unlock()
			return res, nil
		}
		if s.leaderSince.IsZero() {
			s.leaderSince = now
		}
		started = later(started, s.leaderSince)
		if shared, err = s.Store.Seen(ctx); err != nil {
			return res, err
		}
	}
	if now.Sub(started) < time.Duration(pol.StartupIntervals)*interval {
		return res, nil
	}
	res.Judged = true
	nodes, err := s.Store.AgentNodes(ctx)
	if err != nil {
		return res, err
	}
	silentFor := map[string]time.Duration{}
	type domainKey struct{ site, level, domain string }
	total, silent := map[domainKey]int{}, map[domainKey]int{}
	s.mu.RLock()
	for _, id := range nodes {
		last := later(started, shared[id])
		if r := s.nodes[id]; r != nil && r.known {
			last = later(last, r.state.SeenAt)
		}
		n, ok := s.Fleet.Snapshot.Node(id)
		if !ok {
			continue
		}
		site, _ := s.Fleet.Snapshot.Site(n.SiteID)
		d := now.Sub(last)
		quiet := d >= time.Duration(pol.Missed)*interval
		if quiet {
			silentFor[id] = d
		}
		parts := strings.Split(n.Domain, "/")
		for i, level := range site.Levels {
			if _, ok := pol.Breaker[level]; !ok || i >= len(parts) {
				continue
			}
			k := domainKey{n.SiteID, level, strings.Join(parts[:i+1], "/")}
			total[k]++
			if quiet {
				silent[k]++
			}
		}
	}
	s.mu.RUnlock()
	res.Silent = len(silentFor)

	// The breaker: domains with too many silent nodes at once.
	open := map[domainKey]bool{}
	s.incMu.Lock()
	if s.incidents == nil {
		// Open incidents carry on from the last leader (or before a restart).
		stored, err := s.Store.Incidents(ctx, true)
		if err != nil {
			s.incMu.Unlock()
			return res, err
		}
		s.incidents = map[string]*Incident{}
		for _, inc := range stored {
			inc := inc
			s.incidents[inc.SiteID+"|"+inc.Level+"|"+inc.Domain] = &inc
		}
	}
	var changed []Incident
	for k, n := range total {
		share := float64(silent[k]) / float64(n)
		key := k.site + "|" + k.level + "|" + k.domain
		inc := s.incidents[key]
		if silent[k] >= 2 && share > pol.Breaker[k.level] {
			open[k] = true
			msg := fmt.Sprintf("%d of %d reporting nodes of %s %s silent at once (over %.0f%%): not failing or replacing any of them; check the network and the out-of-band controllers, and fail (neocloud node fail) a node found truly down",
				silent[k], n, k.level, k.domain, 100*pol.Breaker[k.level])
			if inc == nil || inc.ClosedAt != nil {
				inc = &Incident{ID: neocloud.NewID(PrefixIncident), Kind: "silent_domain", SiteID: k.site, Level: k.level, Domain: k.domain, OpenedAt: now}
				s.incidents[key] = inc
			}
			if inc.Silent != silent[k] || inc.Nodes != n || inc.Message != msg {
				inc.Silent, inc.Nodes, inc.Message = silent[k], n, msg
				changed = append(changed, *inc)
			}
		} else if inc != nil && inc.ClosedAt == nil {
			t := now
			inc.ClosedAt, inc.Silent, inc.Nodes = &t, silent[k], n
			changed = append(changed, *inc)
			delete(s.incidents, key)
		}
	}
	s.incMu.Unlock()
	if len(changed) > 0 {
		if err := s.Tx.InTx(ctx, func(ctx context.Context) error {
			if err := s.fenced(ctx); err != nil {
				return err
			}
			return s.Store.PutIncidents(ctx, changed)
		}); err != nil {
			return res, err
		}
	}

	ids := make([]string, 0, len(silentFor))
	for id := range silentFor {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		n, _ := s.Fleet.Snapshot.Node(id)
		d := silentFor[id].Truncate(time.Second)
		// The out-of-band controller is evidence either way: a node it
		// reports powered off is down whatever else holds; one it reports
		// on is alive, its agent or network silent.
		power := PowerUnknown
		if s.OutOfBand != nil {
			if power, err = s.OutOfBand.Power(ctx, id); err != nil {
				return res, err
			}
		}
		if power == PowerOff {
			if n.Health != fleet.HealthFailed {
				why := fmt.Sprintf("no heartbeat for %v; out-of-band controller: powered off", d)
				if err := s.fail(ctx, id, why, true); err != nil {
					return res, err
				}
				res.Failed = append(res.Failed, id)
			}
			continue
		}
		site, _ := s.Fleet.Snapshot.Site(n.SiteID)
		parts := strings.Split(n.Domain, "/")
		held := false
		for i, level := range site.Levels {
			if i < len(parts) && open[domainKey{n.SiteID, level, strings.Join(parts[:i+1], "/")}] {
				held = true
			}
		}
		if !held && s.BareMetal != nil {
			if held, err = s.BareMetal(ctx, id); err != nil {
				return res, err
			}
		}
		if held {
			res.Held++
			continue
		}
		// Without evidence from the controller, the reasons say so: such
		// time is not counted as the tenant's downtime.
		evidence := "no out-of-band evidence"
		if power == PowerOn {
			evidence = "out-of-band controller: powered on"
		}
		switch {
		case d >= time.Duration(pol.Missed)*interval+pol.Grace && n.Health != fleet.HealthFailed:
			why := fmt.Sprintf("no heartbeat for %v (%s)", d, evidence)
			if err := s.fail(ctx, id, why, false); err != nil {
				return res, err
			}
			res.Failed = append(res.Failed, id)
		case n.Health == fleet.HealthOK || n.Health == fleet.HealthDegraded:
			err := s.Tx.InTx(ctx, func(ctx context.Context) error {
				if err := s.fenced(ctx); err != nil {
					return err
				}
				return s.SetHealth(ctx, id, fleet.HealthUnreachable, []string{fmt.Sprintf("no heartbeat for %v (%s)", d, evidence)})
			})
			if err != nil {
				return res, err
			}
			res.Unreachable = append(res.Unreachable, id)
		}
	}
	res.Checks, err = s.startChecks(ctx, nodes, silentFor)
	return res, err
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// ErrNotLeader is a leader's write after it lost its lease: nothing is
// written.
var ErrNotLeader = errors.New("this server no longer leads liveness: another took over")

// fenced fails, in ctx's transaction, when servers share the database and
// this one no longer holds the liveness lease at its epoch.
func (s *Service) fenced(ctx context.Context) error {
	if s.SharedTTL == 0 {
		return nil
	}
	held, err := s.Store.HoldsLease(ctx, "liveness", s.Instance, s.leaseEpoch, s.now())
	if err != nil {
		return err
	}
	if !held {
		return ErrNotLeader
	}
	return nil
}

// fail marks a node failed and takes its work elsewhere, in one
// transaction (fenced by the leader's lease).
func (s *Service) fail(ctx context.Context, id, why string, evidence bool) error {
	return s.Tx.InTx(ctx, func(ctx context.Context) error {
		if err := s.fenced(ctx); err != nil {
			return err
		}
		if err := s.SetHealth(ctx, id, fleet.HealthFailed, []string{why}); err != nil {
			return err
		}
		return s.failed(ctx, id, why, evidence)
	})
}

// Incidents lists incidents, open first, newest first (as every server
// sees them: they are stored).
func (s *Service) Incidents(ctx context.Context, openOnly bool) ([]Incident, error) {
	return s.Store.Incidents(ctx, openOnly)
}

// Power states an out-of-band controller reports.
const (
	PowerOn      = "on"
	PowerOff     = "off"
	PowerUnknown = "" // the controller cannot be reached
)

// OutOfBand is a node's out-of-band controller (BMC), read over Redfish or
// IPMI on a real site: evidence about a node independent of its agent.
type OutOfBand interface {
	Power(ctx context.Context, nodeID string) (string, error)
}

// SimBMC is a simulated fleet of BMCs: every node powered on unless set
// otherwise. It is safe for concurrent use.
type SimBMC struct {
	mu    sync.Mutex
	power map[string]string
	// energy is the node input energy counter (joules) the simulated BMCs
	// meter; ok false: that node's BMC has no power meter.
	energy func(nodeID string) (joules uint64, ok bool)
}

// SetEnergyMeter makes the simulated BMCs meter node input energy.
func (b *SimBMC) SetEnergyMeter(f func(nodeID string) (joules uint64, ok bool)) {
	b.mu.Lock()
	b.energy = f
	b.mu.Unlock()
}

// EnergyMeter is an out-of-band controller that meters a node's input
// energy (a Redfish PowerSubsystem or a metered PDU outlet): billing's
// energy of record where present.
type EnergyMeter interface {
	NodeEnergy(ctx context.Context, nodeID string) (joules uint64, ok bool, err error)
}

// NodeMeterGPU is the GPU index under which a node's metered input energy
// is kept among its energy readings.
const NodeMeterGPU = -1

// NodeEnergy reads a node's simulated input energy meter.
func (b *SimBMC) NodeEnergy(_ context.Context, nodeID string) (uint64, bool, error) {
	b.mu.Lock()
	f := b.energy
	b.mu.Unlock()
	if f == nil {
		return 0, false, nil
	}
	j, ok := f(nodeID)
	return j, ok, nil
}

// Power reports a node's simulated power state.
func (b *SimBMC) Power(_ context.Context, nodeID string) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if p, ok := b.power[nodeID]; ok {
		return p, nil
	}
	return PowerOn, nil
}

// Set sets what a node's simulated BMC reports: on, off, or unknown ("":
// the controller unreachable).
func (b *SimBMC) Set(nodeID, power string) error {
	switch power {
	case PowerOn, PowerOff, PowerUnknown:
	default:
		return neocloud.Invalid("body.power", "must be on, off or \"\" (unreachable), not %q", power)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.power == nil {
		b.power = map[string]string{}
	}
	b.power[nodeID] = power
	return nil
}
