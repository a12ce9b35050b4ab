package fleet

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/neocloud/neocloud"
)

// Store is what the fleet service needs from storage. SiteByName returns a
// KindNotFound error when there is none. UpdateNodes writes every field and
// sets Version to the given value only where the stored version is one less
// (a compare-and-set); a lost race is a KindConflict error.
type Store interface {
	SiteByName(ctx context.Context, name string) (Site, error)
	PutSite(ctx context.Context, s Site) error
	Sites(ctx context.Context) ([]Site, error)
	PutSKUs(ctx context.Context, skus []SKU) error
	SKUs(ctx context.Context) ([]SKU, error)
	// SiteNodes returns every node of a site, retired ones included.
	SiteNodes(ctx context.Context, siteID string) ([]Node, error)
	// AllNodes returns every node with its GPUs, for loading the snapshot.
	AllNodes(ctx context.Context) ([]Node, error)
	Node(ctx context.Context, id string) (Node, error)
	// InsertNodes inserts nodes with their GPUs.
	InsertNodes(ctx context.Context, nodes []Node) error
	// UpdateNodes writes node fields, not GPUs.
	UpdateNodes(ctx context.Context, nodes []Node) error
	// PutGPUs replaces the GPUs of the given nodes.
	PutGPUs(ctx context.Context, nodes []Node) error
	// LogHealth appends a node's new health to its history.
	LogHealth(ctx context.Context, c HealthChange) error
	// NodeVersions returns every node's id and version.
	NodeVersions(ctx context.Context) (map[string]int64, error)
	// NodeVersionSum returns how many nodes there are and the sum of their
	// versions: as nodes are never deleted and every change bumps a
	// version, it changes whenever any node does.
	NodeVersionSum(ctx context.Context) (count, sum int64, err error)
	// NodesByID returns the given nodes with their GPUs.
	NodesByID(ctx context.Context, ids []string) ([]Node, error)
}

// HealthChange is one change of a node's health, kept as its history.
type HealthChange struct {
	NodeID  string    `json:"node_id"`
	At      time.Time `json:"at"`
	Health  Health    `json:"health"`
	Reasons []string  `json:"reasons,omitempty"`
}

// Tx runs work in one transaction carried by the context and defers work
// until that transaction has committed.
type Tx interface {
	InTx(ctx context.Context, fn func(ctx context.Context) error) error
	AfterCommit(ctx context.Context, fn func())
}

// InUseFunc reports which of the given nodes are in use (have active
// allocations), with a reason for each. Allocations come with the selling
// issues; until then nothing is in use.
type InUseFunc func(ctx context.Context, nodeIDs []string) (map[string]string, error)

// Service applies specs and node actions and keeps the snapshot current.
type Service struct {
	Store    Store
	Tx       Tx
	Snapshot *Snapshot
	InUse    InUseFunc
	Now      func() time.Time
	// Shared says other servers write the same store (replicas on one
	// PostgreSQL database): a site or node asked for (Site, Node) but not
	// held may have been applied through one of them since the last Sync,
	// so it is looked for again after one.
	Shared bool

	missMu sync.Mutex
	missAt time.Time // when a lookup's miss last synced
}

// missSyncEvery bounds how often lookups of sites and nodes not held sync
// the snapshot: misses within it (a typo, a scan) answer from the snapshot
// synced a moment ago.
const missSyncEvery = 250 * time.Millisecond

// NewService returns a service over store with an empty snapshot; call Load.
func NewService(store Store, tx Tx) *Service {
	return &Service{Store: store, Tx: tx, Snapshot: NewSnapshot(), Now: time.Now}
}

func (s *Service) now() time.Time { return s.Now().UTC().Truncate(time.Microsecond) }

// Load rebuilds the snapshot from the store and writes the built-in SKUs.
func (s *Service) Load(ctx context.Context) error {
	if err := s.Tx.InTx(ctx, func(ctx context.Context) error { return s.Store.PutSKUs(ctx, Catalog) }); err != nil {
		return err
	}
	sites, err := s.Store.Sites(ctx)
	if err != nil {
		return err
	}
	nodes, err := s.Store.AllNodes(ctx)
	if err != nil {
		return err
	}
	s.Snapshot.Load(sites, nodes)
	return nil
}

// Sync takes into the snapshot what other servers sharing the store have
// changed since: sites updated later than held, and nodes new or at a
// newer version (every change of a node bumps it). Servers on one
// PostgreSQL database call it every few seconds, and when asked for a
// site or node they have not seen (Site, Node); a lone server's snapshot
// is never behind. It returns how many sites and nodes it took in.
func (s *Service) Sync(ctx context.Context) (int, error) {
	sites, err := s.Store.Sites(ctx)
	if err != nil {
		return 0, err
	}
	took := 0
	for _, st := range sites {
		if held, ok := s.Snapshot.Site(st.ID); !ok || st.UpdatedAt.After(held.UpdatedAt) {
			s.Snapshot.PutSite(st)
			took++
		}
	}
	// Most reads find nothing changed: two numbers say so.
	count, sum, err := s.Store.NodeVersionSum(ctx)
	if err != nil {
		return took, err
	}
	if heldCount, heldSum := s.Snapshot.VersionSum(); count == heldCount && sum == heldSum {
		return took, nil
	}
	versions, err := s.Store.NodeVersions(ctx)
	if err != nil {
		return took, err
	}
	held := s.Snapshot.Versions()
	var stale []string
	for id, v := range versions {
		if h, ok := held[id]; !ok || v > h {
			stale = append(stale, id)
		}
	}
	if len(stale) == 0 {
		return took, nil
	}
	sort.Strings(stale)
	nodes, err := s.Store.NodesByID(ctx, stale)
	if err != nil {
		return took, err
	}
	s.Snapshot.PutNodes(nodes)
	return took + len(nodes), nil
}

// Site returns the site named or with id ref, or a NotFound error.
func (s *Service) Site(ctx context.Context, ref string) (Site, error) {
	return lookup(ctx, s, "site", ref, s.Snapshot.Site)
}

// Node returns the node with hostname or id ref, or a NotFound error.
func (s *Service) Node(ctx context.Context, ref string) (Node, error) {
	return lookup(ctx, s, "node", ref, s.Snapshot.Node)
}

// lookup finds ref in the snapshot, again after a sync when it missed.
func lookup[T any](ctx context.Context, s *Service, kind, ref string, find func(string) (T, bool)) (T, error) {
	x, ok := find(ref)
	if !ok {
		if err := s.syncOnMiss(ctx); err != nil {
			return x, err
		}
		if x, ok = find(ref); !ok {
			return x, neocloud.NotFound(kind, ref)
		}
	}
	return x, nil
}

// syncOnMiss syncs the snapshot for a lookup that missed, on a shared
// store, unless a miss did within missSyncEvery (lookups missing at once
// wait for one sync).
func (s *Service) syncOnMiss(ctx context.Context) error {
	if !s.Shared {
		return nil
	}
	s.missMu.Lock()
	defer s.missMu.Unlock()
	if time.Since(s.missAt) < missSyncEvery {
		return nil
	}
	_, err := s.Sync(ctx)
	s.missAt = time.Now()
	return err
}

func (s *Service) inUse(ctx context.Context, ids []string) (map[string]string, error) {
	if s.InUse == nil || len(ids) == 0 {
		return nil, nil
	}
	return s.InUse(ctx, ids)
}

// ApplyResult says what applying a spec changed.
type ApplyResult struct {
	Site        string `json:"site"`
	SiteID      string `json:"site_id"`
	SiteCreated bool   `json:"site_created"`
	SiteChanged bool   `json:"site_changed"`
	Added       int    `json:"added" doc:"Nodes added, or re-admitted after retirement."`
	Changed     int    `json:"changed" doc:"Nodes whose declared fields changed."`
	Retired     int    `json:"retired" doc:"Nodes retired because the spec no longer lists them."`
	Unchanged   int    `json:"unchanged"`
	Nodes       int    `json:"nodes" doc:"Nodes the spec declares."`
	GPUs        int    `json:"gpus" doc:"GPUs the spec declares."`
}

// Apply makes the site match the spec: it adds nodes the spec adds (as
// available, health ok), updates declared fields that changed, and retires
// nodes the spec no longer lists. Retiring a node in use is refused with the
// reason, and then nothing changes. Applying the same spec twice changes
// nothing the second time.
func (s *Service) Apply(ctx context.Context, spec *Spec) (ApplyResult, error) {
	res := ApplyResult{Site: spec.Site.Name, Nodes: len(spec.Nodes)}
	var touchedSite Site
	var touched []Node
	err := s.Tx.InTx(ctx, func(ctx context.Context) error {
		now := s.now()
		// 1. The site.
		site, err := s.Store.SiteByName(ctx, spec.Site.Name)
		switch neocloud.ErrorKind(err) {
		case "":
		case neocloud.KindNotFound:
			site = Site{ID: neocloud.NewID(PrefixSite), Name: spec.Site.Name, CreatedAt: now}
			res.SiteCreated = true
		default:
			return err
		}
		want := site
		want.Region, want.Timezone, want.Levels, want.Hierarchies, want.Power, want.Policy = spec.Site.Region, spec.Site.Timezone, spec.Site.Levels, spec.Site.Hierarchies, spec.Site.Power, spec.Site.Policy
		want.Economics = spec.Site.Economics
		if !res.SiteCreated && !reflect.DeepEqual(normSite(site), normSite(want)) {
			res.SiteChanged = true
			if !slices.Equal(site.Levels, want.Levels) {
				return neocloud.Invalid("spec site.levels", "the levels of an existing site cannot change (%s → %s)", strings.Join(site.Levels, ","), strings.Join(want.Levels, ","))
			}
		}
		if res.SiteCreated || res.SiteChanged {
			want.UpdatedAt = now
			if err := s.Store.PutSite(ctx, want); err != nil {
				return err
			}
		}
		touchedSite = want
		res.SiteID = want.ID
		if len(spec.SKUs) > 0 {
			if err := s.Store.PutSKUs(ctx, spec.SKUs); err != nil {
				return err
			}
		}

		// 2. The difference.
		existing, err := s.Store.SiteNodes(ctx, site.ID)
		if err != nil {
			return err
		}
		byHost := make(map[string]*Node, len(existing))
		for i := range existing {
			byHost[existing[i].Hostname] = &existing[i]
		}
		var added, updated, gpusChanged []Node
		var mustIdle []*Node // retired, or changing SKU: refused while in use
		for _, ns := range spec.Nodes {
			sku, _ := spec.SKU(ns.SKU)
			res.GPUs += sku.GPUsPerNode
			old, ok := byHost[ns.Hostname]
			if !ok {
				n := Node{ID: neocloud.NewID(PrefixNode), Hostname: ns.Hostname, SiteID: site.ID, Site: site.Name,
					Lifecycle: LifecycleAvailable, Health: HealthOK, Version: 1, CreatedAt: now, UpdatedAt: now}
				declare(&n, ns, sku)
				added = append(added, n)
				continue
			}
			delete(byHost, ns.Hostname)
			n := *old
			declare(&n, ns, sku)
			switch {
			case old.Lifecycle == LifecycleRetired:
				n.Lifecycle = LifecycleAvailable // re-admitted: provisioning → available
				res.Added++
			case !sameDeclared(*old, n):
				if old.SKU != n.SKU {
					mustIdle = append(mustIdle, old)
				}
				res.Changed++
			default:
				res.Unchanged++
				continue
			}
			n.Version, n.UpdatedAt = old.Version+1, now
			updated = append(updated, n)
			if !slices.Equal(old.GPUs, n.GPUs) {
				gpusChanged = append(gpusChanged, n)
			}
		}
		for _, old := range byHost {
			if old.Lifecycle == LifecycleRetired {
				continue
			}
			mustIdle = append(mustIdle, old)
			n := *old
			n.Lifecycle, n.Version, n.UpdatedAt = LifecycleRetired, old.Version+1, now
			updated = append(updated, n)
			res.Retired++
		}
		res.Added += len(added)

		// 3. Refuse to retire (or change the SKU of) nodes in use.
		ids := make([]string, len(mustIdle))
		for i, n := range mustIdle {
			ids[i] = n.ID
		}
		busy, err := s.inUse(ctx, ids)
		if err != nil {
			return err
		}
		if len(busy) > 0 {
			var details []neocloud.FieldError
			for _, n := range mustIdle {
				if why, ok := busy[n.ID]; ok {
					details = append(details, neocloud.FieldError{Field: "spec nodes " + n.Hostname, Message: "in use: " + why})
				}
			}
			sort.Slice(details, func(i, j int) bool { return details[i].Field < details[j].Field })
			return &neocloud.Error{Kind: neocloud.KindConflict, State: "in_use", Field: details[0].Field,
				Message: fmt.Sprintf("%d nodes the spec would retire or change are in use", len(details)), Details: details}
		}

		// 4. Write.
		if err := s.Store.InsertNodes(ctx, added); err != nil {
			return err
		}
		if err := s.Store.UpdateNodes(ctx, updated); err != nil {
			return err
		}
		if err := s.Store.PutGPUs(ctx, gpusChanged); err != nil {
			return err
		}
		touched = append(added, updated...)
		s.Tx.AfterCommit(ctx, func() {
			s.Snapshot.PutSite(touchedSite)
			s.Snapshot.PutNodes(touched)
		})
		return nil
	})
	return res, err
}

func normSite(s Site) Site {
	s.ID, s.CreatedAt, s.UpdatedAt = "", time.Time{}, time.Time{}
	if len(s.Hierarchies) == 0 {
		s.Hierarchies = nil
	}
	return s
}

// declare sets the fields a spec declares on n.
func declare(n *Node, ns NodeSpec, sku SKU) {
	n.Serial, n.SKU, n.Domain, n.Spare, n.Hierarchies = ns.Serial, ns.SKU, ns.Domain, ns.Spare, ns.Hierarchies
	gpus := make([]GPU, sku.GPUsPerNode)
	for i := range gpus {
		gpus[i] = GPU{Index: i, Model: sku.GPUModel, MemoryMiB: sku.GPUMemoryMiB}
		if i < len(ns.GPUUUIDs) {
			gpus[i].UUID = ns.GPUUUIDs[i]
		} else if i < len(n.GPUs) && n.GPUs[i].Model == sku.GPUModel {
			gpus[i].UUID = n.GPUs[i].UUID // keep what agents discovered
		}
	}
	n.GPUs = gpus
}

func sameDeclared(a, b Node) bool {
	if len(a.Hierarchies) == 0 && len(b.Hierarchies) == 0 {
		a.Hierarchies, b.Hierarchies = nil, nil
	}
	return a.Serial == b.Serial && a.SKU == b.SKU && a.Domain == b.Domain && a.Spare == b.Spare &&
		reflect.DeepEqual(a.Hierarchies, b.Hierarchies) && slices.Equal(a.GPUs, b.GPUs)
}

// Action is an operator action on a node.
type Action string

const (
	ActionCordon      Action = "cordon"      // no new work is placed
	ActionUncordon    Action = "uncordon"    // placement may use it again
	ActionDrain       Action = "drain"       // cordon, then maintenance once its work has ended
	ActionMaintenance Action = "maintenance" // out of service for planned work
	ActionAvailable   Action = "available"   // back in service
	ActionRetire      Action = "retire"      // out of the fleet for good (refused while in use)
)

// Act performs an action on the node named by id or hostname. An illegal
// lifecycle move is a conflict naming the current state.
func (s *Service) Act(ctx context.Context, ref string, a Action) (Node, error) {
	cur, err := s.Node(ctx, ref)
	if err != nil {
		return Node{}, err
	}
	var out Node
	err = s.Tx.InTx(ctx, func(ctx context.Context) error {
		n, err := s.Store.Node(ctx, cur.ID)
		if err != nil {
			return err
		}
		old := n
		switch a {
		case ActionCordon:
			n.Cordoned = true
		case ActionUncordon:
			n.Cordoned = false
		case ActionDrain, ActionMaintenance:
			if a == ActionDrain {
				n.Cordoned = true
			}
			busy, err := s.inUse(ctx, []string{n.ID})
			if err != nil {
				return err
			}
			if why, ok := busy[n.ID]; ok {
				if a == ActionMaintenance {
					return neocloud.Conflict("in_use", "node %s is in use (%s): drain it first", n.Hostname, why)
				}
				break // drained: stays cordoned until its work ends
			}
			if n.Lifecycle != LifecycleMaintenance {
				if err := Transition(n.Lifecycle, LifecycleMaintenance); err != nil {
					return err
				}
				n.Lifecycle = LifecycleMaintenance
			}
		case ActionAvailable:
			if err := Transition(n.Lifecycle, LifecycleAvailable); err != nil {
				return err
			}
			n.Lifecycle = LifecycleAvailable
		case ActionRetire:
			if err := Transition(n.Lifecycle, LifecycleRetired); err != nil {
				return err
			}
			busy, err := s.inUse(ctx, []string{n.ID})
			if err != nil {
				return err
			}
			if why, ok := busy[n.ID]; ok {
				return neocloud.Conflict("in_use", "node %s is in use (%s)", n.Hostname, why)
			}
			n.Lifecycle = LifecycleRetired
		default:
			return neocloud.Invalid("action", "unknown node action %q", a)
		}
		if n.Lifecycle == old.Lifecycle && n.Cordoned == old.Cordoned {
			out = n // nothing to do: idempotent
			return nil
		}
		n.Version, n.UpdatedAt = old.Version+1, s.now()
		if err := s.Store.UpdateNodes(ctx, []Node{n}); err != nil {
			return err
		}
		out = n
		s.Tx.AfterCommit(ctx, func() { s.Snapshot.PutNodes([]Node{n}) })
		return nil
	})
	return out, err
}

// SetLifecycle moves a node along its lifecycle (remediation: repair,
// burn-in, sanitizing, available), refusing a move the lifecycle does not
// allow.
func (s *Service) SetLifecycle(ctx context.Context, id string, to Lifecycle) error {
	return s.Tx.InTx(ctx, func(ctx context.Context) error {
		n, err := s.Store.Node(ctx, id)
		if err != nil {
			return err
		}
		if n.Lifecycle == to {
			return nil
		}
		if err := Transition(n.Lifecycle, to); err != nil {
			return err
		}
		n.Lifecycle = to
		n.Version, n.UpdatedAt = n.Version+1, s.now()
		if err := s.Store.UpdateNodes(ctx, []Node{n}); err != nil {
			return err
		}
		s.Tx.AfterCommit(ctx, func() { s.Snapshot.PutNodes([]Node{n}) })
		return nil
	})
}

// SetHealth records a node's health and its reasons (from its agent's
// reports, or the control plane's own judgement). Unchanged, it writes
// nothing.
func (s *Service) SetHealth(ctx context.Context, id string, h Health, reasons []string) error {
	return s.Tx.InTx(ctx, func(ctx context.Context) error {
		n, err := s.Store.Node(ctx, id)
		if err != nil {
			return err
		}
		if n.Health == h && slices.Equal(n.HealthReasons, reasons) {
			return nil
		}
		n.Health, n.HealthReasons = h, slices.Clone(reasons)
		n.Version, n.UpdatedAt = n.Version+1, s.now()
		if err := s.Store.UpdateNodes(ctx, []Node{n}); err != nil {
			return err
		}
		if err := s.Store.LogHealth(ctx, HealthChange{NodeID: n.ID, At: n.UpdatedAt, Health: h, Reasons: n.HealthReasons}); err != nil {
			return err
		}
		s.Tx.AfterCommit(ctx, func() { s.Snapshot.PutNodes([]Node{n}) })
		return nil
	})
}
