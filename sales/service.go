package sales

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/fleet"
	"github.com/neocloud/neocloud/placement"
	"github.com/neocloud/neocloud/pricing"
	"github.com/neocloud/neocloud/tenant"
)

// Store is what selling needs from storage. Updates are compare-and-set on
// Version (the stored one must be one less); a lost race is a KindConflict
// error. Lists are ordered by id unless said otherwise.
type Store interface {
	Prices(ctx context.Context) ([]pricing.Price, error)
	InsertPrice(ctx context.Context, p pricing.Price) error

	PutQuota(ctx context.Context, q Quota) error
	Quotas(ctx context.Context, tenantID string) ([]Quota, error)
	// LockTenantLimits makes the transaction in ctx the only one, until it
	// ends, that checks one of a tenant's limits (its quota, its holds,
	// its contracts' replacement allowance) and acts under it: concurrent
	// requests of the tenant, on any server, take turns (on SQLite the
	// write transaction alone does).
	LockTenantLimits(ctx context.Context, tenantID string) error
	// HeldGPUs sums the GPUs of a tenant's live reservations and open holds
	// of one SKU and class that overlap [start, end).
	HeldGPUs(ctx context.Context, tenantID, sku string, class Class, start, end time.Time, now time.Time) (int64, error)

	InsertQuote(ctx context.Context, q Quote) error
	// UpdateQuote closes an open quote with q's state (used, expired): one
	// closed meanwhile (reserved from at once elsewhere, say) is a
	// KindConflict naming its state, and stays as it is.
	UpdateQuote(ctx context.Context, q Quote) error
	Quote(ctx context.Context, id string) (Quote, error)
	Quotes(ctx context.Context, tenantID string, pg neocloud.Page) ([]Quote, error)
	// OpenHolds returns open holding quotes of a site and SKU.
	OpenHolds(ctx context.Context, siteID, sku string) ([]Quote, error)
	CountHolds(ctx context.Context, tenantID string, now time.Time) (int, error)
	// ExpiredQuotes returns open quotes whose expiry is at or before now.
	ExpiredQuotes(ctx context.Context, now time.Time, limit int) ([]Quote, error)

	InsertContract(ctx context.Context, c Contract) error
	Contract(ctx context.Context, id string) (Contract, error)
	// StandingContract returns a tenant's on-demand or spot contract for a
	// SKU, or a KindNotFound error.
	StandingContract(ctx context.Context, tenantID string, kind Class, sku string) (Contract, error)
	// PutStandingContract stores c, a tenant's standing contract of a
	// class and SKU, unless one is there already (made at once by another
	// request), and returns the one stored.
	PutStandingContract(ctx context.Context, c Contract) (Contract, error)
	Contracts(ctx context.Context, tenantID string, pg neocloud.Page) ([]Contract, error)
	// ContractReservations returns a contract's reservations by start.
	ContractReservations(ctx context.Context, contractID string) ([]Reservation, error)

	InsertReservation(ctx context.Context, r Reservation) error
	// UpdateReservation writes every field and replaces its nodes.
	UpdateReservation(ctx context.Context, r Reservation) error
	Reservation(ctx context.Context, id string) (Reservation, error)
	// ReservationVersion returns a reservation's version (KindNotFound
	// when there is none): cheaper than reading it.
	ReservationVersion(ctx context.Context, id string) (int64, error)
	Reservations(ctx context.Context, f ReservationFilter, pg neocloud.Page) ([]Reservation, error)
	// LiveReservations returns the reservations of a site and SKU that are
	// not terminal.
	LiveReservations(ctx context.Context, siteID, sku string) ([]Reservation, error)
	// DueReservations returns live reservations due at or before now.
	DueReservations(ctx context.Context, now time.Time, limit int) ([]Reservation, error)

	// InsertAllocation writes an allocation and claims its GPUs: a GPU in
	// another live allocation is a KindConflict error.
	InsertAllocation(ctx context.Context, a Allocation) error
	// UpdateAllocation writes an allocation; an ended one frees its GPUs.
	UpdateAllocation(ctx context.Context, a Allocation) error
	Allocations(ctx context.Context, reservationID string) ([]Allocation, error)
	Allocation(ctx context.Context, id string) (Allocation, error)
	// AllocationStates counts a reservation's allocations by state.
	AllocationStates(ctx context.Context, reservationID string) (map[AllocationState]int, error)
	// AllocationsSettled says whether a reservation has live allocations
	// (not ended) and whether any of them is not ready: two index seeks,
	// where counting reads every allocation of a big reservation.
	AllocationsSettled(ctx context.Context, reservationID string) (live, unready bool, err error)
	DueAllocations(ctx context.Context, now time.Time, limit int) ([]Allocation, error)
	// LiveGPUs returns the GPUs of the nodes that are in live allocations.
	LiveGPUs(ctx context.Context, nodeIDs []string) (map[string][]int, error)
	// NodeAllocations returns a node's allocations that have not ended.
	NodeAllocations(ctx context.Context, nodeID string) ([]Allocation, error)
	// LastNodeAllocation returns the node's newest allocation, ended or
	// not, or KindNotFound.
	LastNodeAllocation(ctx context.Context, nodeID string) (Allocation, error)
	// LiveAllocationNodes returns which of the nodes have live allocations,
	// with the reservation of each.
	LiveAllocationNodes(ctx context.Context, nodeIDs []string) (map[string]string, error)

	// BumpCalendar increments and returns the admission version of a site
	// and SKU; its row lock serializes admissions until commit.
	BumpCalendar(ctx context.Context, siteID, sku string) (int64, error)

	MaintenanceStore
	BreakFixStore

	// AppendEvent numbers and stores an event.
	AppendEvent(ctx context.Context, e Event) (Event, error)
	// Events returns events after seq, oldest first; tenantID "" means all.
	Events(ctx context.Context, tenantID string, after int64, limit int) ([]Event, error)
}

// ReservationFilter narrows a reservation list.
type ReservationFilter struct {
	TenantID string
	State    ReservationState
	Class    Class
}

// Tx runs work in one transaction carried by the context; OnEnd runs after
// it ends, committed or not.
type Tx interface {
	InTx(ctx context.Context, fn func(ctx context.Context) error) error
	AfterCommit(ctx context.Context, fn func())
	OnEnd(ctx context.Context, fn func(committed bool))
	TxID(ctx context.Context) any
}

// Policy holds the operator's selling policy.
type Policy struct {
	QuoteTTL    time.Duration // how long a quote (and its hold) lasts; default 15m
	MaxHolds    int           // open holds per tenant; default 4
	LeadTime    time.Duration // allocations are bound this long before start; default 30m
	MaxAttempts int           // provisioning attempts before the node is replaced; default 2
	Retry       time.Duration // how soon a failed step is retried; default 30s
	Poll        time.Duration // how soon a step not done yet is looked at again; default 5s
	SpotNotice  time.Duration // notice spot work gets before it is reclaimed; default 120s
	// InternalNotice is the notice of the operator's internal work; default 30s.
	InternalNotice time.Duration
	BindRetry      time.Duration // how soon binding looks again at nodes work is leaving; default 10s
}

// WithDefaults returns the policy with every zero field set to its default.
func (p Policy) WithDefaults() Policy {
	p.defaults()
	return p
}

func (p *Policy) defaults() {
	if p.QuoteTTL == 0 {
		p.QuoteTTL = 15 * time.Minute
	}
	if p.MaxHolds == 0 {
		p.MaxHolds = 4
	}
	if p.LeadTime == 0 {
		p.LeadTime = 30 * time.Minute
	}
	if p.MaxAttempts == 0 {
		p.MaxAttempts = 2
	}
	if p.Retry == 0 {
		p.Retry = 30 * time.Second
	}
	if p.Poll == 0 {
		p.Poll = 5 * time.Second
	}
	if p.SpotNotice == 0 {
		p.SpotNotice = 120 * time.Second
	}
	if p.InternalNotice == 0 {
		p.InternalNotice = 30 * time.Second
	}
	if p.BindRetry == 0 {
		p.BindRetry = 10 * time.Second
	}
}

// Service sells capacity. It is safe for concurrent use: calendars are
// guarded by one lock taken inside a write transaction and held until that
// transaction ends, so what a request admits is what it commits.
type Service struct {
	Store       Store
	Tx          Tx
	Fleet       *fleet.Service
	Now         func() time.Time
	Policy      Policy
	Provisioner Provisioner
	Network     NetworkAttacher
	Sanitizer   Sanitizer
	Logger      *slog.Logger
	// Lead, when set, says whether this server is to do the lifecycle
	// work now: servers sharing a database take it in turn (a lease), so
	// that a step, and the seams it calls, runs on one of them. Run skips
	// its steps while Lead says no.
	Lead func(ctx context.Context) (bool, error)
	// Fence, when set, fails in ctx's transaction unless this server
	// still holds the lease Lead took, at its epoch: each step's
	// transaction calls it before anything else, and another server's
	// takeover waits for that transaction to end.
	Fence func(ctx context.Context) error
	// FailNode takes a node that failed provisioning out of service (in the
	// caller's transaction); nil leaves it to the calendar alone.
	FailNode func(ctx context.Context, nodeID, reason string) error
	// Notify is called after a commit that wrote events.
	Notify func()
	// PowerCheck, where set, refuses committed work a site's power cannot
	// carry over [start, end) on the nodes the calendar chose (node →
	// GPUs): an error of kind no_capacity naming the power headroom of
	// the site or power domain.
	// Where a power domain refuses, avoid lists its nodes: the calendar
	// places around them.
	PowerCheck func(ctx context.Context, site, sku string, gpus int, start, end time.Time, nodes map[string]int) (avoid []string, err error)
	// SharedTTL bounds how long what is cached in memory for node
	// assignments (replacement notices) is trusted: 0 when this server is
	// the store's only writer.
	SharedTTL time.Duration
	// assignment caches: reservations by id (checked against their stored
	// version), and each reservation's replacement notices with the
	// generation of its replacement allocations they were read at.
	amu       sync.Mutex
	rsvs      map[string]Reservation
	rsvFlight singleflight.Group
	txRsvs    map[any]map[string]Reservation // read inside each open transaction
	replGen   map[string]uint64
	repls     map[string]replNotices

	// NodesChanged is called after a commit that may have changed what
	// these nodes serve (their assignment and its notices).
	NodesChanged func(nodeIDs []string)
	// OrderNode sends a command (reboot, gpu_reset) to a node's agent and
	// returns its id; OnReplaced opens a node's repair after a tenant's
	// replacement or a confirmed report.
	OrderNode  func(ctx context.Context, p neocloud.Principal, nodeID, kind string) (string, error)
	OnReplaced func(ctx context.Context, nodeID, why string) error
	// OnAllocation is told, in the transaction, when an allocation becomes
	// ready or starts releasing (edge "ready" or "released"): the meter's
	// boundaries, where energy counters are read.
	OnAllocation func(ctx context.Context, a Allocation, edge string) error
	// IsInternal reports whether a tenant is the operator's internal one.
	IsInternal func(ctx context.Context, tenantID string) (bool, error)
	// ResolveTenant turns a tenant name or id into an id the principal may
	// see, or a KindNotFound error.
	ResolveTenant func(ctx context.Context, p neocloud.Principal, ref string) (string, error)

	mu      sync.Mutex
	ownerMu sync.Mutex
	owner   any // the transaction holding mu
	cals    map[string]*calendar

	kickOnce sync.Once
	kick     chan struct{}

	siteMu   sync.Mutex
	sites    map[string][]string // SKU → ids of the sites selling it
	sitesGen uint64
}

type calendar struct {
	*placement.Calendar
	site    fleet.Site
	version int64
	gen     uint64
}

// NewService returns a service with simulated seams that finish at once.
// It resolves tenants with tenants, takes nodes that fail provisioning out
// of service by cordoning them, and tells the fleet which nodes are in use.
func NewService(store Store, tx Tx, fl *fleet.Service, tenants *tenant.Service) *Service {
	s := &Service{Tx: tx, Fleet: fl, Now: time.Now, cals: map[string]*calendar{},
		Provisioner: &SimStage{}, Network: &SimStage{}, Sanitizer: &SimStage{}}
	s.Store = touching{store, s}
	s.Policy.defaults()
	s.ResolveTenant = func(ctx context.Context, p neocloud.Principal, ref string) (string, error) {
		t, err := tenants.Resolve(ctx, p, ref)
		return t.ID, err
	}
	s.IsInternal = func(ctx context.Context, id string) (bool, error) {
		t, err := tenants.Resolve(ctx, neocloud.Principal{Role: neocloud.RoleOperatorViewer}, id)
		return t.Internal, err
	}
	s.FailNode = func(ctx context.Context, nodeID, reason string) error {
		_, err := fl.Act(ctx, nodeID, fleet.ActionCordon)
		return err
	}
	fl.InUse = store.LiveAllocationNodes
	return s
}

func (s *Service) now() time.Time { return s.Now().UTC().Truncate(time.Second) }

func (s *Service) log() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

// lock takes the calendar lock for the rest of ctx's transaction (again
// within the same transaction, it is already held). On a rollback the
// calendars are dropped (they may hold what did not commit) and rebuilt
// from the store when next needed.
func (s *Service) lock(ctx context.Context) {
	id := s.Tx.TxID(ctx)
	s.ownerMu.Lock()
	held := id != nil && s.owner == id
	s.ownerMu.Unlock()
	if held {
		return
	}
	s.mu.Lock()
	s.ownerMu.Lock()
	s.owner = id
	s.ownerMu.Unlock()
	s.Tx.OnEnd(ctx, func(committed bool) {
		if !committed {
			s.cals = map[string]*calendar{}
		}
		s.ownerMu.Lock()
		s.owner = nil
		s.ownerMu.Unlock()
		s.mu.Unlock()
	})
}

// calendarFor returns the calendar of a site and SKU, current with the
// store and the fleet. The lock must be held.
func (s *Service) calendarFor(ctx context.Context, siteID, skuName string) (*calendar, error) {
	if s.cals == nil {
		s.cals = map[string]*calendar{}
	}
	v, err := s.Store.BumpCalendar(ctx, siteID, skuName)
	if err != nil {
		return nil, err
	}
	key := siteID + "|" + skuName
	gen := s.Fleet.Snapshot.Gen()
	c := s.cals[key]
	if c == nil || c.gen != gen || c.version+1 != v {
		if c, err = s.loadCalendar(ctx, siteID, skuName); err != nil {
			return nil, err
		}
		c.gen = gen
		s.cals[key] = c
	}
	c.version = v
	return c, nil
}

func (s *Service) loadCalendar(ctx context.Context, siteID, skuName string) (*calendar, error) {
	site, ok := s.Fleet.Snapshot.Site(siteID)
	if !ok {
		return nil, neocloud.NotFound("site", siteID)
	}
	sku, err := s.sku(ctx, skuName)
	if err != nil {
		return nil, err
	}
	var nodes []fleet.Node
	s.Fleet.Snapshot.Each(fleet.NodeFilter{SiteID: siteID, SKU: skuName}, func(n *fleet.Node) { nodes = append(nodes, *n) })
	cal := placement.NewCalendar(placement.Build(site, sku, nodes))
	live, err := s.Store.LiveReservations(ctx, siteID, skuName)
	if err != nil {
		return nil, err
	}
	for _, r := range live {
		if r.State == ReservationPending {
			continue
		}
		if r.Elastic != nil {
			for _, st := range r.Elastic.Steps {
				sh := Shape{Class: placement.ClassInternal, GPUs: r.Elastic.StepGPUs, Within: r.Elastic.StepWithin, Start: st.Since, End: st.ReclaimAt}
				var ng []NodeGPUs
				for _, id := range st.Nodes {
					ng = append(ng, NodeGPUs{NodeID: id})
				}
				if err := cal.Hold(calendarEntry(st.ID, r.TenantID, sh, ng)); err != nil {
					s.log().Warn("elastic step left off the calendar", "step", st.ID, "err", err)
				}
			}
			continue
		}
		if err := cal.Hold(calendarEntry(r.ID, r.TenantID, r.Shape, r.Nodes)); err != nil {
			s.log().Warn("reservation left off the calendar", "reservation", r.ID, "err", err)
		}
	}
	ms, err := s.Store.OpenMaintenances(ctx, siteID)
	if err != nil {
		return nil, err
	}
	for _, m := range ms {
		for _, b := range m.Batches {
			if b.SKU == skuName && b.State != "done" {
				if _, err := cal.AddWindow(&placement.Window{ID: b.ID, Start: b.Start, End: b.End, Nodes: b.Nodes}); err != nil {
					s.log().Warn("maintenance left off the calendar", "batch", b.ID, "err", err)
				}
			}
		}
	}
	holds, err := s.Store.OpenHolds(ctx, siteID, skuName)
	if err != nil {
		return nil, err
	}
	for _, q := range holds {
		if err := cal.Hold(calendarEntry(q.ID, q.TenantID, q.Shape, q.Nodes)); err != nil {
			s.log().Warn("hold left off the calendar", "quote", q.ID, "err", err)
		}
	}
	return &calendar{Calendar: cal, site: site}, nil
}

func (s *Service) sku(ctx context.Context, name string) (fleet.SKU, error) {
	if sku, ok := fleet.CatalogSKU(name); ok {
		return sku, nil
	}
	all, err := s.Fleet.Store.SKUs(ctx)
	if err != nil {
		return fleet.SKU{}, err
	}
	for _, k := range all {
		if k.Name == name {
			return k, nil
		}
	}
	return fleet.SKU{}, neocloud.Invalid("body.sku", "unknown SKU %q", name)
}

// calendarEntry is the calendar's view of a reservation or hold.
func calendarEntry(id, tenant string, sh Shape, nodes []NodeGPUs) *placement.Reservation {
	cm := &placement.Reservation{ID: id, Tenant: tenant, Class: sh.Class, Start: sh.Start, End: sh.end(),
		Request: placement.Request{GPUs: sh.GPUs, Class: sh.Class, Within: sh.Within}}
	partial := false
	for _, n := range nodes {
		cm.Nodes = append(cm.Nodes, n.NodeID)
		partial = partial || len(n.GPUs) > 0
	}
	if partial {
		for _, n := range nodes {
			cm.GPUs = append(cm.GPUs, n.GPUs)
		}
	}
	return cm
}

// nodesOf describes a calendar reservation's nodes.
// powerFit has power check the nodes a committed shape was placed on
// (res); where a power domain refuses them, it places again (again)
// around that domain — a window over its nodes for the shape's span,
// dropped before returning — up to three times, and otherwise answers
// power's refusal. Preemptible work is planned around, never refused.
func (s *Service) powerFit(ctx context.Context, cal *calendar, sh Shape, res placement.Result, again func() (placement.Result, error)) (placement.Result, error) {
	if s.PowerCheck == nil || sh.Class.Preemptible() || res.Plan == nil {
		return res, nil
	}
	sku, err := s.sku(ctx, sh.SKU)
	if err != nil {
		return res, err
	}
	var windows []string
	defer func() {
		for _, id := range windows {
			cal.DropWindow(id)
		}
	}()
	for try := 0; ; try++ {
		on := make(map[string]int, len(res.Plan.Nodes))
		for _, a := range res.Plan.Nodes {
			on[a.NodeID] = cmp.Or(len(a.GPUs), sku.GPUsPerNode)
		}
		avoid, perr := s.PowerCheck(ctx, sh.Site, sh.SKU, sh.GPUs, sh.Start, sh.end(), on)
		if perr == nil || try == 3 {
			return res, perr
		}
		var mine []string
		for _, id := range avoid {
			if _, ok := cal.T.NodeIndex(id); ok {
				mine = append(mine, id)
			}
		}
		if len(mine) == 0 {
			return res, perr
		}
		w := &placement.Window{ID: neocloud.NewID("pwr"), Start: sh.Start, End: sh.end(), Nodes: mine}
		if _, err := cal.AddWindow(w); err != nil {
			return res, err
		}
		windows = append(windows, w.ID)
		next, err := again()
		if err != nil {
			return res, err
		}
		if next.Plan == nil {
			return res, perr
		}
		res = next
	}
}

func (s *Service) nodesOf(cm *placement.Reservation) []NodeGPUs {
	out := make([]NodeGPUs, len(cm.Nodes))
	for j, id := range cm.Nodes {
		out[j].NodeID = id
		if n, ok := s.Fleet.Snapshot.Node(id); ok {
			out[j].Hostname, out[j].Domain = n.Hostname, n.Domain
		}
		if j < len(cm.GPUs) && cm.GPUs[j] != nil {
			out[j].GPUs = append([]int(nil), cm.GPUs[j]...)
		}
	}
	return out
}

// emit stores an event in ctx's transaction and wakes followers after it
// commits.
func (s *Service) emit(ctx context.Context, tenant, kind, subject string, data map[string]any) error {
	_, err := s.Store.AppendEvent(ctx, Event{ID: neocloud.NewID(PrefixEvent), TenantID: tenant, Kind: kind, Subject: subject, Data: data, At: s.now()})
	if err == nil && s.Notify != nil {
		s.Tx.AfterCommit(ctx, s.Notify)
	}
	return err
}

// topologyPromise renders how many domains of each level a plan spans.
func topologyPromise(t *placement.Topology, p *placement.Plan, within string) string {
	var parts []string
	for _, l := range t.Levels {
		if n := p.Used(l); n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, l))
		}
	}
	s := strings.Join(parts, ", ")
	if within != "" {
		s = "within one " + within + ": " + s
	}
	return s
}

// siteIndex returns SKU → ids of the sites with its nodes, rebuilt when
// the fleet changes (a walk of every node is too slow per request). The
// map is shared: callers only read it.
func (s *Service) siteIndex() map[string][]string {
	gen := s.Fleet.Snapshot.Gen()
	s.siteMu.Lock()
	defer s.siteMu.Unlock()
	if s.sites == nil || s.sitesGen != gen {
		sites := map[string][]string{}
		seen := map[string]bool{}
		s.Fleet.Snapshot.Each(fleet.NodeFilter{}, func(n *fleet.Node) {
			if k := n.SKU + "|" + n.SiteID; !seen[k] && n.Lifecycle != fleet.LifecycleRetired {
				seen[k] = true
				sites[n.SKU] = append(sites[n.SKU], n.SiteID)
			}
		})
		for _, ids := range sites {
			sort.Strings(ids)
		}
		s.sites, s.sitesGen = sites, gen
	}
	return s.sites
}

// siteFor resolves the site of a shape: the one named, else the only site
// with nodes of the SKU.
func (s *Service) siteFor(ctx context.Context, ref, sku string) (fleet.Site, error) {
	if ref != "" {
		st, err := s.Fleet.Site(ctx, ref)
		if neocloud.ErrorKind(err) == neocloud.KindNotFound {
			return fleet.Site{}, neocloud.Invalid("body.site", "unknown site %q", ref)
		}
		return st, err
	}
	ids := s.siteIndex()[sku]
	switch len(ids) {
	case 0:
		return fleet.Site{}, neocloud.Invalid("body.sku", "no site has nodes of SKU %q", sku)
	case 1:
		st, _ := s.Fleet.Snapshot.Site(ids[0])
		return st, nil
	}
	return fleet.Site{}, neocloud.Invalid("body.site", "SKU %s is sold at %d sites; name one", sku, len(ids))
}
