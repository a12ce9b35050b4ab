package sales

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/placement"
	"github.com/neocloud/neocloud/pricing"
)

// LeaseInput asks for a lease of every non-spare node of a site or of one
// of its domains (a hall), from Start for DurationS seconds, optionally
// delivered in phases of PhaseGPUs every PhaseEveryS seconds.
type LeaseInput struct {
	Tenant      string    `json:"tenant" doc:"Tenant name or id."`
	Site        string    `json:"site" doc:"Site name or id."`
	Domain      string    `json:"domain,omitempty" doc:"A domain of the site to lease instead of all of it, e.g. h1 (a hall)."`
	SKU         string    `json:"sku,omitempty" doc:"Default: the site's only SKU."`
	Start       time.Time `json:"start"`
	DurationS   int64     `json:"duration_s" doc:"Seconds, e.g. 94608000 for three years."`
	Rate        string    `json:"price_per_gpu_hour" doc:"Rate per GPU-hour in currency units, e.g. 1.85."`
	Currency    string    `json:"currency,omitempty" doc:"Default USD."`
	PhaseGPUs   int       `json:"phase_gpus,omitempty" doc:"Deliver this many GPUs per phase (whole nodes); default everything at once."`
	PhaseEveryS int64     `json:"phase_every_s,omitempty" doc:"Seconds between phases."`
	Delivery    Delivery  `json:"delivery,omitempty" enum:"managed,bare_metal," doc:"Default managed."`
	// PowerPassThrough bills the leased nodes' energy at cost: kWh × the
	// site's PUE × its energy rate.
	PowerPassThrough bool   `json:"power_pass_through,omitempty" doc:"Bill energy at cost: kWh × PUE × the site's energy rate."`
	OverageRate      string `json:"overage_rate_per_gpu_hour,omitempty" doc:"Rate for GPU-hours beyond the commitment; absent: no overage billed."`
	// Replacements is how many nodes the tenant may have replaced on
	// request each month; 0: the standard SLA's.
	Replacements int `json:"replacements_per_month,omitempty" minimum:"0" doc:"Nodes the tenant may have replaced on request each month (default: the standard SLA's 4)."`
}

// Lease is a lease's own terms: what is leased and how it is delivered.
type Lease struct {
	Site   string  `json:"site"`
	Domain string  `json:"domain,omitempty"`
	GPUs   int     `json:"gpus" doc:"GPUs contracted."`
	Phases []Phase `json:"phases"`
}

// Phase is one delivery of a lease: a reservation of part of its nodes.
type Phase struct {
	Reservation string    `json:"reservation"`
	Start       time.Time `json:"start"`
	GPUs        int       `json:"gpus"`
}

// ContractView is a contract with its delivery progress and what remains
// of its commitment.
type ContractView struct {
	Contract
	Delivery *Delivered `json:"delivery,omitempty"`
}

// Delivered is how far a contract's capacity has been delivered.
type Delivered struct {
	ContractedGPUs    int            `json:"contracted_gpus"`
	ReadyGPUs         int            `json:"ready_gpus" doc:"GPUs in ready allocations now."`
	Phases            []PhaseProgess `json:"phases,omitempty"`
	RemainingMicros   int64          `json:"remaining_commitment_micros" doc:"Rate × each reservation's GPUs × what is left of its window."`
	RemainingCurrency string         `json:"currency"`
	ReplacementsUsed  int            `json:"replacements_used" doc:"Nodes the tenant had replaced this month (UTC), of terms.sla.replacements_per_month."`
}

// PhaseProgess is one phase's state.
type PhaseProgess struct {
	Phase
	State     ReservationState `json:"state"`
	ReadyGPUs int              `json:"ready_gpus"`
}

// CreateLease signs a lease: a contract of kind lease and one reservation
// per phase, on every non-spare node of the site or domain. It is admitted
// only if no committed reservation or maintenance conflicts (the answer
// names them); spot work on those nodes is given notice before each phase
// starts.
func (s *Service) CreateLease(ctx context.Context, p neocloud.Principal, in LeaseInput) (ContractView, error) {
	var out ContractView
	err := s.Tx.InTx(ctx, func(ctx context.Context) error {
		now := s.now()
		// 1. The input.
		tenant, err := s.tenantOf(ctx, p, in.Tenant)
		if err != nil {
			return err
		}
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
		case in.DurationS <= 0 || in.DurationS > 20*365*86400:
			return neocloud.Invalid("body.duration_s", "must be between one second and twenty years")
		case in.Replacements < 0:
			return neocloud.Invalid("body.replacements_per_month", "must not be negative")
		case in.PhaseGPUs < 0 || in.PhaseEveryS < 0:
			return neocloud.Invalid("body.phase_gpus", "must not be negative")
		case in.PhaseGPUs > 0 && in.PhaseEveryS == 0:
			return neocloud.Invalid("body.phase_every_s", "phased delivery needs the time between phases")
		}
		if start.Before(now) {
			start = now
		}
		end := start.Add(time.Duration(in.DurationS) * time.Second)
		rate, err := pricing.ParseMicros("body.price_per_gpu_hour", in.Rate)
		if err != nil {
			return err
		}
		if rate <= 0 {
			return neocloud.Invalid("body.price_per_gpu_hour", "must be positive")
		}
		var overage int64
		if in.OverageRate != "" {
			if overage, err = pricing.ParseMicros("body.overage_rate_per_gpu_hour", in.OverageRate); err != nil {
				return err
			}
			if overage < 0 {
				return neocloud.Invalid("body.overage_rate_per_gpu_hour", "must not be negative")
			}
		}
		skuName := in.SKU
		if skuName == "" {
			var skus []string
			for k, ids := range s.siteIndex() {
				if slices.Contains(ids, site.ID) {
					skus = append(skus, k)
				}
			}
			if len(skus) != 1 {
				return neocloud.Invalid("body.sku", "site %s has %d SKUs; name one", site.Name, len(skus))
			}
			skuName = skus[0]
		}
		sku, err := s.sku(ctx, skuName)
		if err != nil {
			return err
		}
		delivery := in.Delivery
		if delivery == "" {
			delivery = DeliveryManaged
		}
		if in.PhaseGPUs%sku.GPUsPerNode != 0 {
			return neocloud.Invalid("body.phase_gpus", "phases are whole nodes: a multiple of %d GPUs", sku.GPUsPerNode)
		}

		// 2. The nodes, and nothing committed in the way.
		s.lock(ctx)
		cal, err := s.calendarFor(ctx, site.ID, skuName)
		if err != nil {
			return err
		}
		nodes, level, err := cal.T.DomainNodes(in.Domain)
		if err != nil {
			return neocloud.Invalid("body.domain", "%v", err)
		}
		if len(nodes) == 0 {
			return neocloud.Invalid("body.domain", "no non-spare %s nodes there", skuName)
		}
		conflicts, err := cal.Conflicts(nodes, tenant, start, end)
		if err != nil {
			return err
		}
		if len(conflicts) > 0 {
			more := ""
			if len(conflicts) > 10 {
				more = fmt.Sprintf(" and %d more", len(conflicts)-10)
				conflicts = conflicts[:10]
			}
			return &neocloud.Error{Kind: neocloud.KindNoCapacity, Message: fmt.Sprintf("committed work or maintenance holds those nodes in that window: %s%s", strings.Join(conflicts, ", "), more)}
		}
		gpus := len(nodes) * sku.GPUsPerNode
		if s.PowerCheck != nil {
			on := make(map[string]int, len(nodes))
			for _, n := range nodes {
				on[n] = sku.GPUsPerNode
			}
			if _, err := s.PowerCheck(ctx, site.ID, skuName, gpus, start, end, on); err != nil {
				return err
			}
		}
		total, err := pricing.Total(rate, gpus, end.Sub(start))
		if err != nil {
			return err
		}

		// 3. The contract.
		currency := in.Currency
		if currency == "" {
			currency = "USD"
		}
		c := Contract{ID: neocloud.NewID(PrefixContract), TenantID: tenant, Kind: placement.ClassLease, SKU: skuName, Start: start, End: &end, CreatedAt: now,
			Terms: Terms{RateMicros: rate, PricePerGPUHour: pricing.FormatMicros(rate), Currency: currency, BillingSchedule: "monthly_in_advance", CommitmentMicros: total,
				SLA:              standardSLA(14 * 24 * time.Hour),
				EarlyTermination: "the remaining commitment is due", EarlyTerminationP: 100,
				Lease: &Lease{Site: site.ID, Domain: in.Domain, GPUs: gpus}, PowerPassThrough: in.PowerPassThrough, OverageRateMicros: overage}}
		if overage > 0 {
			c.Terms.OverageRate = pricing.FormatMicros(overage)
		}
		if in.Replacements > 0 {
			c.Terms.SLA.ReplacementsPerMonth = in.Replacements
		}

		// 4. One reservation per phase, each bound, provisioned and made
		// ready like any other; spot work on its nodes gets notice.
		per := len(nodes)
		if in.PhaseGPUs > 0 {
			per = in.PhaseGPUs / sku.GPUsPerNode
		}
		within := ""
		if level >= 0 {
			within = site.Levels[level]
		}
		var rsvs []Reservation
		for i, at := 0, start; i*per < len(nodes); i, at = i+1, at.Add(time.Duration(in.PhaseEveryS)*time.Second) {
			if !at.Before(end) {
				return neocloud.Invalid("body.phase_every_s", "phase %d would start after the lease ends", i+1)
			}
			chunk := nodes[i*per : min(len(nodes), (i+1)*per)]
			sh := Shape{Site: site.ID, SKU: skuName, GPUs: len(chunk) * sku.GPUsPerNode, Class: placement.ClassLease, Within: within, Delivery: delivery, Start: at, End: &end}
			r := Reservation{ID: neocloud.NewID(PrefixReservation), TenantID: tenant, ContractID: c.ID, State: ReservationScheduled, Shape: sh,
				DueAt: at.Add(-s.Policy.LeadTime), Version: 1, CreatedAt: now, UpdatedAt: now}
			var ng []NodeGPUs
			for _, id := range chunk {
				ng = append(ng, NodeGPUs{NodeID: id})
			}
			if err := cal.Hold(calendarEntry(r.ID, tenant, sh, ng)); err != nil {
				return err
			}
			cm, _ := cal.Reservation(r.ID)
			r.Nodes = s.nodesOf(cm)
			c.Terms.Lease.Phases = append(c.Terms.Lease.Phases, Phase{Reservation: r.ID, Start: at, GPUs: sh.GPUs})
			rsvs = append(rsvs, r)
		}
		// Take-or-pay: each phase from its start to the lease's end (a phase
		// is billed from the day it is due, whatever the use).
		var gpuSeconds int64
		for _, ph := range c.Terms.Lease.Phases {
			gpuSeconds += int64(ph.GPUs) * int64(end.Sub(ph.Start)/time.Second)
		}
		if c.Terms.CommitmentMicros, err = pricing.TotalSeconds(rate, gpuSeconds); err != nil {
			return err
		}
		if err := s.Store.InsertContract(ctx, c); err != nil {
			return err
		}
		for i := range rsvs {
			r := &rsvs[i]
			if err := s.Store.InsertReservation(ctx, *r); err != nil {
				return err
			}
			if err := s.emit(ctx, tenant, "reservation.scheduled", r.ID, map[string]any{"start": r.Shape.Start, "gpus": r.Shape.GPUs, "sku": skuName, "class": placement.ClassLease, "contract": c.ID}); err != nil {
				return err
			}
			if err := s.preempt(ctx, cal, r, now); err != nil {
				return err
			}
			if !r.DueAt.After(now) {
				if err := s.bind(ctx, cal, r, now); err != nil {
					return err
				}
			}
		}
		out, err = s.view(ctx, c, now)
		return err
	})
	return out, err
}

// ContractView returns a contract the principal may see, with its delivery
// progress.
func (s *Service) ContractView(ctx context.Context, p neocloud.Principal, id string) (ContractView, error) {
	c, err := s.Contract(ctx, p, id)
	if err != nil {
		return ContractView{}, err
	}
	return s.view(ctx, c, s.now())
}

// ContractViews lists the contracts the principal may see, each with its
// delivery progress.
func (s *Service) ContractViews(ctx context.Context, p neocloud.Principal, tenantID string, pg neocloud.Page) ([]ContractView, error) {
	cs, err := s.Contracts(ctx, p, tenantID, pg)
	if err != nil {
		return nil, err
	}
	out := make([]ContractView, 0, len(cs))
	now := s.now()
	for _, c := range cs {
		v, err := s.view(ctx, c, now)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

func (s *Service) view(ctx context.Context, c Contract, now time.Time) (ContractView, error) {
	v := ContractView{Contract: c}
	rsvs, err := s.Store.ContractReservations(ctx, c.ID)
	if err != nil {
		return v, err
	}
	d := &Delivered{RemainingCurrency: c.Terms.Currency}
	byID := map[string]Reservation{}
	for _, r := range rsvs {
		byID[r.ID] = r
		if !r.State.Terminal() {
			d.ContractedGPUs += r.Shape.GPUs
		}
	}
	if c.Terms.Lease != nil {
		d.ContractedGPUs = c.Terms.Lease.GPUs
	}
	ready := map[string]int{}
	for _, r := range rsvs {
		as, err := s.Store.Allocations(ctx, r.ID)
		if err != nil {
			return v, err
		}
		for _, a := range as {
			if a.State == AllocationReady {
				ready[r.ID] += len(a.GPUs)
				d.ReadyGPUs += len(a.GPUs)
			}
		}
	}
	if c.Terms.Lease != nil {
		for _, ph := range c.Terms.Lease.Phases {
			d.Phases = append(d.Phases, PhaseProgess{Phase: ph, State: byID[ph.Reservation].State, ReadyGPUs: ready[ph.Reservation]})
		}
	}
	if c.End != nil && c.Terms.CommitmentMicros > 0 && now.Before(*c.End) {
		// What the reservations still to run commit: each one's GPUs over
		// what is left of its window (a phase not yet due, all of it).
		var gpuSeconds int64
		for _, r := range rsvs {
			if r.State == ReservationCancelled || r.State == ReservationFailed || r.Shape.End == nil {
				continue
			}
			if from := maxTime(now, r.Shape.Start); r.Shape.End.After(from) {
				gpuSeconds += int64(r.Shape.GPUs) * int64(r.Shape.End.Sub(from)/time.Second)
			}
		}
		if rem, err := pricing.TotalSeconds(c.Terms.RateMicros, gpuSeconds); err == nil {
			d.RemainingMicros = min(rem, c.Terms.CommitmentMicros)
		}
	}
	if d.ReplacementsUsed, err = s.replacementsUsed(ctx, c.ID, now); err != nil {
		return v, err
	}
	v.Delivery = d
	return v, nil
}
