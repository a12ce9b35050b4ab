// Package sales owns selling capacity: quotes (with optional holds),
// contracts, reservations and their allocations, quotas and tenant events.
// It puts the capacity calendar (package placement) behind the API: every
// admission re-checks the calendar inside the transaction that writes it,
// and the database refuses a GPU in two live allocations. It holds no SQL
// and no HTTP; it drives provisioning, network isolation and sanitizing
// through the Provisioner, NetworkAttacher and Sanitizer seams.
package sales

import (
	"fmt"
	"slices"
	"time"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/placement"
)

// ID prefixes.
const (
	PrefixQuote       = "quo_"
	PrefixContract    = "ctr_"
	PrefixReservation = "rsv_"
	PrefixAllocation  = "alc_"
	PrefixEvent       = "evt_"
	PrefixPrice       = "prc_"
)

// Class is a reservation's priority class (placement's words).
type Class = placement.Class

// Delivery is how a reservation's nodes are handed over.
type Delivery string

const (
	DeliveryManaged   Delivery = "managed"    // operator image, agent trusted for health
	DeliveryBareMetal Delivery = "bare_metal" // tenant has root; never for partitions
)

// ReservationState is where a reservation is in its life.
type ReservationState string

const (
	ReservationPending   ReservationState = "pending"   // accepted, not yet admitted
	ReservationScheduled ReservationState = "scheduled" // admitted on concrete nodes, before start
	ReservationActive    ReservationState = "active"    // its capacity is ready
	ReservationEnding    ReservationState = "ending"    // past its end (or cancelled): releasing
	ReservationEnded     ReservationState = "ended"
	ReservationCancelled ReservationState = "cancelled" // cancelled before it was active
	ReservationFailed    ReservationState = "failed"    // could not be delivered
)

// reservationMoves is the reservation state machine, the one place that
// says which moves are legal.
var reservationMoves = map[ReservationState][]ReservationState{
	ReservationPending:   {ReservationScheduled, ReservationCancelled, ReservationFailed},
	ReservationScheduled: {ReservationActive, ReservationCancelled, ReservationFailed, ReservationEnding},
	ReservationActive:    {ReservationEnding, ReservationFailed},
	ReservationEnding:    {ReservationEnded},
}

// Terminal reports whether s is final.
func (s ReservationState) Terminal() bool {
	return s == ReservationEnded || s == ReservationCancelled || s == ReservationFailed
}

// Move checks a reservation state change; an illegal one is a conflict
// naming the current state.
func (s ReservationState) Move(to ReservationState) error {
	for _, ok := range reservationMoves[s] {
		if ok == to {
			return nil
		}
	}
	return neocloud.Conflict(string(s), "a %s reservation cannot become %s", s, to)
}

// AllocationState is where one node's allocation is in its life.
type AllocationState string

const (
	AllocationBound        AllocationState = "bound"        // GPUs claimed, nothing done yet
	AllocationProvisioning AllocationState = "provisioning" // image, keys, cluster join, network
	AllocationReady        AllocationState = "ready"        // billing and the SLA clock run
	AllocationReleasing    AllocationState = "releasing"    // network detached, sanitizing
	AllocationEnded        AllocationState = "ended"
)

var allocationMoves = map[AllocationState][]AllocationState{
	AllocationBound:        {AllocationProvisioning, AllocationReleasing, AllocationEnded},
	AllocationProvisioning: {AllocationProvisioning, AllocationReady, AllocationReleasing, AllocationEnded},
	AllocationReady:        {AllocationReleasing},
	AllocationReleasing:    {AllocationReleasing, AllocationEnded},
}

// Live says whether an allocation in this state holds its node for its
// reservation: bound, provisioning or ready, not on its way out.
func (s AllocationState) Live() bool { return s != AllocationReleasing && s != AllocationEnded }

// Move checks an allocation state change.
func (s AllocationState) Move(to AllocationState) error {
	for _, ok := range allocationMoves[s] {
		if ok == to {
			return nil
		}
	}
	return neocloud.Conflict(string(s), "a %s allocation cannot become %s", s, to)
}

// Shape is what is asked for: a SKU, a number of GPUs, a window, a class
// and a topology constraint.
type Shape struct {
	Site     string     `json:"site" doc:"Site id."`
	SKU      string     `json:"sku"`
	GPUs     int        `json:"gpus"`
	Class    Class      `json:"class"`
	Within   string     `json:"within,omitempty" doc:"Topology level all nodes must share, e.g. pod."`
	Delivery Delivery   `json:"delivery"`
	Start    time.Time  `json:"start"`
	End      *time.Time `json:"end,omitempty" doc:"Absent while on-demand or spot work runs until cancelled."`
}

// Open reports whether the shape runs until cancelled.
func (s Shape) Open() bool { return s.End == nil }

// end is the shape's end for the calendar.
func (s Shape) end() time.Time {
	if s.End == nil {
		return placement.Forever
	}
	return *s.End
}

// Offer is the priced part of a quote.
type Offer struct {
	Available       bool                    `json:"available" doc:"Whether the shape fits at the asked start."`
	PricePerGPUHour string                  `json:"price_per_gpu_hour" doc:"Rate in currency units."`
	RateMicros      int64                   `json:"rate_micros" doc:"Rate per GPU-hour in micro-units."`
	TotalMicros     *int64                  `json:"total_micros,omitempty" doc:"Rate × GPUs × hours; absent for open-ended work."`
	Currency        string                  `json:"currency"`
	Topology        string                  `json:"topology" doc:"The topology promise: how many domains of each level the nodes span."`
	Nodes           int                     `json:"nodes"`
	EarliestStart   *time.Time              `json:"earliest_start,omitempty" doc:"When the shape does not fit at the asked start: the earliest start it fits."`
	Alternatives    []placement.LooserStart `json:"alternatives,omitempty" doc:"Looser constraints and their earliest starts."`
	Refusal         string                  `json:"refusal,omitempty"`
}

// Quote is a priced, time-limited offer for a shape, optionally holding the
// capacity until it expires.
type Quote struct {
	ID        string     `json:"id"`
	TenantID  string     `json:"tenant_id"`
	State     string     `json:"state" enum:"open,used,expired"`
	Hold      bool       `json:"hold" doc:"Whether the capacity is held until the quote expires."`
	Shape     Shape      `json:"shape"`
	Offer     Offer      `json:"offer"`
	Nodes     []NodeGPUs `json:"nodes,omitempty" doc:"The held nodes, while the hold lasts."`
	ExpiresAt time.Time  `json:"expires_at"`
	CreatedAt time.Time  `json:"created_at"`
}

// SLA is a contract's service level terms.
type SLA struct {
	AvailabilityPercent float64      `json:"availability_percent"`
	CreditTiers         []CreditTier `json:"credit_tiers"`
	CreditCapPercent    float64      `json:"credit_cap_percent"`
	MaintenanceNoticeS  int64        `json:"maintenance_notice_s"`
	// ReplacementsPerMonth is how many nodes the tenant may have replaced
	// on request each calendar month (UTC), beyond failures the control
	// plane finds itself.
	ReplacementsPerMonth int `json:"replacements_per_month"`
	// DegradedConditions: a node degraded by a reason containing one of
	// these counts as down (e.g. "NVLink error").
	DegradedConditions []string `json:"degraded_conditions,omitempty"`
	// ExcludeAnnouncedMaintenance: maintenance announced at least
	// MaintenanceNoticeS ahead is neither promised nor down.
	ExcludeAnnouncedMaintenance bool `json:"exclude_announced_maintenance,omitempty"`
}

// CreditTier: below availability Below (percent) the tenant is credited
// Percent of the period's charge.
type CreditTier struct {
	Below   float64 `json:"below"`
	Percent float64 `json:"percent"`
}

// Terms are a contract's commercial terms; billing reads them.
type Terms struct {
	RateMicros        int64  `json:"rate_micros" doc:"Per GPU-hour, micro-units."`
	PricePerGPUHour   string `json:"price_per_gpu_hour"`
	Currency          string `json:"currency"`
	BillingSchedule   string `json:"billing_schedule" enum:"monthly_in_advance,monthly_in_arrears"`
	CommitmentMicros  int64  `json:"commitment_micros" doc:"Take-or-pay amount over the term; 0 for pay-as-you-go."`
	SLA               SLA    `json:"sla"`
	EarlyTermination  string `json:"early_termination" doc:"What ending early costs."`
	EarlyTerminationP int    `json:"early_termination_percent" doc:"Share of the remaining commitment due on early termination."`
	Lease             *Lease `json:"lease,omitempty" doc:"For a lease: what is leased and its phases."`
	// PowerPassThrough bills the energy of the contract's allocations at
	// cost (kWh × PUE × the site's energy rate) on top of the GPU-hours.
	PowerPassThrough bool `json:"power_pass_through,omitempty"`
	// PowerCapFloorW is the lowest per-GPU power cap load shedding may
	// apply to the contract's committed nodes (0: never capped).
	PowerCapFloorW int `json:"power_cap_floor_w,omitempty"`
	// OverageRateMicros: per GPU-hour used beyond the commitment in a
	// month; 0: none billed.
	OverageRateMicros int64  `json:"overage_rate_micros,omitempty"`
	OverageRate       string `json:"overage_rate_per_gpu_hour,omitempty"`
}

// Contract is the commercial terms covering one or more reservations.
type Contract struct {
	ID        string     `json:"id"`
	TenantID  string     `json:"tenant_id"`
	Kind      Class      `json:"kind"`
	SKU       string     `json:"sku"`
	Terms     Terms      `json:"terms"`
	Start     time.Time  `json:"start"`
	End       *time.Time `json:"end,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
}

// NodeGPUs is a node of a reservation and the GPUs it holds there (none
// listed: the whole node).
type NodeGPUs struct {
	NodeID   string `json:"node_id"`
	Hostname string `json:"hostname"`
	Domain   string `json:"domain"`
	GPUs     []int  `json:"gpus,omitempty"`
}

// Reservation is a claim on capacity over [start, end) with a shape.
type Reservation struct {
	ID         string           `json:"id"`
	TenantID   string           `json:"tenant_id"`
	ContractID string           `json:"contract_id"`
	QuoteID    string           `json:"quote_id,omitempty"`
	State      ReservationState `json:"state"`
	Shape      Shape            `json:"shape"`
	Nodes      []NodeGPUs       `json:"nodes"`
	Reason     string           `json:"reason,omitempty" doc:"Why it failed or ended early."`
	Bound      bool             `json:"bound" doc:"Allocations have been made for its nodes."`
	PreemptAt  *time.Time       `json:"preempt_at,omitempty" doc:"Spot work reclaimed for committed work: the deadline by which it must be off its nodes."`
	Elastic    *Elastic         `json:"elastic,omitempty" doc:"Elastic internal work: its steps and what reclaims cost it."`
	Shortfalls []Shortfall      `json:"shortfalls,omitempty" doc:"GPUs it ran short of when a failed node found no replacement: downtime for the SLA."`
	ReplacedAt *time.Time       `json:"replaced_at,omitempty" doc:"When its latest failed node was replaced."`
	// Replacing are replacements chosen onto nodes that spot or internal
	// work still holds: each is bound once that work has had its notice and
	// left, and keeps the failed allocation it replaces.
	Replacing []Replacing `json:"replacing,omitempty" doc:"Replacement nodes waiting for the spot or internal work reclaimed from them to leave."`
	DueAt     time.Time   `json:"due_at" doc:"When its next step is due (binding, or its end)."`
	Version   int64       `json:"version"`
	CreatedAt time.Time   `json:"created_at"`
	UpdatedAt time.Time   `json:"updated_at"`
}

// NodeHostname is the hostname of one of the reservation's nodes (the id
// itself for a node it does not hold).
func (r Reservation) NodeHostname(nodeID string) string {
	if i := slices.IndexFunc(r.Nodes, func(n NodeGPUs) bool { return n.NodeID == nodeID }); i >= 0 {
		return r.Nodes[i].Hostname
	}
	return nodeID
}

// Replacing is a replacement node waiting to be bound.
type Replacing struct {
	NodeID   string    `json:"node_id"`
	Replaces string    `json:"replaces" doc:"The failed node's allocation."`
	Failed   string    `json:"failed,omitempty" doc:"The failed node's hostname."`
	FailedAt time.Time `json:"failed_at"`
}

// Shortfall is a node's GPUs a reservation went without, from the failure
// that found no replacement until the reservation ended (Until nil: still
// short).
type Shortfall struct {
	Node       string     `json:"node"`
	GPUs       int        `json:"gpus"`
	Allocation string     `json:"allocation" doc:"The failed node's allocation."`
	Since      time.Time  `json:"since"`
	Until      *time.Time `json:"until,omitempty"`
	Reason     string     `json:"reason"`
}

// Allocation is the GPUs of one node bound to a reservation: the meter of
// record. ReadyAt starts billing; EndedAt stops it.
type Allocation struct {
	ID            string          `json:"id"`
	ReservationID string          `json:"reservation_id"`
	TenantID      string          `json:"tenant_id"`
	NodeID        string          `json:"node_id"`
	Hostname      string          `json:"hostname"`
	GPUs          []int           `json:"gpus"`
	State         AllocationState `json:"state"`
	Attempts      int             `json:"attempts" doc:"Provisioning attempts so far."`
	Provisioned   bool            `json:"provisioned" doc:"Provisioning finished; ready at the reservation's start."`
	DueAt         time.Time       `json:"due_at" doc:"When the current step is next looked at."`
	BoundAt       time.Time       `json:"bound_at"`
	ReadyAt       *time.Time      `json:"ready_at,omitempty"`
	ReleasedAt    *time.Time      `json:"released_at,omitempty"`
	SanitizedAt   *time.Time      `json:"sanitized_at,omitempty"`
	EndedAt       *time.Time      `json:"ended_at,omitempty"`
	Reason        string          `json:"reason,omitempty"`
	// A replacement names the allocation it replaces and when that one's
	// node failed; its ReadyAt minus FailedAt is the time to ready (also in
	// its node.replacement_ready event).
	Replaces  string     `json:"replaces,omitempty"`
	FailedAt  *time.Time `json:"failed_at,omitempty" doc:"For a replacement: when the node it replaces failed."`
	Version   int64      `json:"version"`
	CreatedAt time.Time  `json:"created_at"`
	UpdatedAt time.Time  `json:"updated_at"`
}

// Event is a change a tenant is told of. Seq orders events in commit order;
// a follower resumes after the last Seq it saw.
type Event struct {
	Seq      int64          `json:"seq"`
	ID       string         `json:"id"`
	TenantID string         `json:"tenant_id,omitempty"`
	Kind     string         `json:"kind" doc:"e.g. reservation.active, allocation.ready, quote.expired, node.replaced."`
	Subject  string         `json:"subject" doc:"The id of the object it is about."`
	Data     map[string]any `json:"data,omitempty"`
	At       time.Time      `json:"at"`
}

// Quota caps the GPUs a tenant may hold at once in one SKU and class.
type Quota struct {
	TenantID  string    `json:"tenant_id"`
	SKU       string    `json:"sku"`
	Class     Class     `json:"class"`
	GPUs      int64     `json:"gpus"`
	UpdatedAt time.Time `json:"updated_at"`
}

func fmtTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func errf(format string, args ...any) error { return fmt.Errorf("sales: "+format, args...) }

// NodeUse is what a node serves now: one live allocation (not ended) with
// its reservation's tenant and class, and how many of the node's GPUs it
// holds. Consoles and reports read it for the whole fleet at once.
type NodeUse struct {
	NodeID        string          `json:"node_id"`
	TenantID      string          `json:"tenant_id"`
	ReservationID string          `json:"reservation_id"`
	Class         placement.Class `json:"class"`
	State         AllocationState `json:"state"`
	GPUs          int             `json:"gpus"`
}

// ReservationCount counts reservations of one class in one state.
type ReservationCount struct {
	Class placement.Class  `json:"class"`
	State ReservationState `json:"state"`
	Count int              `json:"count"`
}
