package sales

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/placement"
	"github.com/neocloud/neocloud/pricing"
)

// ShapeInput is what a tenant asks for, in a quote or directly in a
// reservation.
type ShapeInput struct {
	Tenant    string     `json:"tenant,omitempty" doc:"Tenant name or id; operators must name one, tenants may only name their own."`
	Site      string     `json:"site,omitempty" doc:"Site name or id; default the only site selling the SKU."`
	SKU       string     `json:"sku,omitempty" doc:"Required unless a quote is given."`
	GPUs      int        `json:"gpus,omitempty" doc:"Whole nodes' worth of GPUs, or one partition size of the SKU."`
	Class     Class      `json:"class,omitempty" doc:"reserved, on_demand or spot."`
	Start     *time.Time `json:"start,omitempty" doc:"RFC 3339; default now. Reserved capacity needs a start not in the past."`
	DurationS int64      `json:"duration_s,omitempty" minimum:"0" doc:"Seconds; required for reserved, absent for on-demand and spot (they run until cancelled)."`
	Within    string     `json:"within,omitempty" doc:"Topology level all nodes must share (e.g. pod, su, rack)."`
	Delivery  Delivery   `json:"delivery,omitempty" enum:"managed,bare_metal," doc:"Default managed; partitions are sold only as managed VMs."`
	// Elastic, with class internal (the operator's internal tenant only):
	// the request grows into idle capacity and shrinks by steps.
	Elastic *ElasticInput `json:"elastic,omitempty"`
}

// QuoteInput asks for a quote.
type QuoteInput struct {
	ShapeInput
	Hold bool `json:"hold,omitempty" doc:"Hold the capacity until the quote expires (capped per tenant)."`
}

// ReserveInput makes a reservation from a quote, or directly from a shape.
type ReserveInput struct {
	ShapeInput
	Quote string `json:"quote,omitempty" doc:"Quote id; the shape then comes from the quote."`
}

// shape validates in and resolves it to a shape; now is the request time.
func (s *Service) shape(ctx context.Context, in ShapeInput, now time.Time) (Shape, error) {
	sh := Shape{SKU: in.SKU, GPUs: in.GPUs, Class: in.Class, Within: in.Within, Delivery: in.Delivery, Start: now}
	if sh.Delivery == "" {
		sh.Delivery = DeliveryManaged
	}
	sku, err := s.sku(ctx, in.SKU)
	if err != nil {
		return sh, err
	}
	switch in.Class {
	case placement.ClassReserved, placement.ClassOnDemand, placement.ClassSpot:
		if in.Elastic != nil {
			return sh, neocloud.Invalid("body.elastic", "only internal work is elastic")
		}
	case placement.ClassInternal:
		if in.Elastic == nil {
			return sh, neocloud.Invalid("body.elastic", "internal work is elastic: give min_gpus, max_gpus and step_gpus")
		}
		site, err := s.siteFor(ctx, in.Site, in.SKU)
		if err != nil {
			return sh, err
		}
		if err := in.Elastic.validate(sku.GPUsPerNode, site.Levels); err != nil {
			return sh, err
		}
		if in.Start != nil || in.DurationS != 0 || in.Within != "" {
			return sh, neocloud.Invalid("body.start", "elastic internal work starts now and runs until cancelled; leave start, duration and within out")
		}
		sh.Site, sh.GPUs, sh.Delivery = site.ID, 0, DeliveryManaged
		return sh, nil
	default:
		return sh, neocloud.Invalid("body.class", "must be reserved, on_demand, spot or internal, not %q", in.Class)
	}
	if sh.Delivery != DeliveryManaged && sh.Delivery != DeliveryBareMetal {
		return sh, neocloud.Invalid("body.delivery", "must be managed or bare_metal, not %q", in.Delivery)
	}
	g := sku.GPUsPerNode
	partition := in.GPUs > 0 && in.GPUs < g && slices.Contains(sku.Partitions, in.GPUs)
	if in.GPUs <= 0 || (in.GPUs%g != 0 && !partition) {
		return sh, neocloud.Invalid("body.gpus", "%s sells whole nodes (multiples of %d GPUs) or partitions of %v GPUs, not %d", sku.Name, g, sku.Partitions, in.GPUs)
	}
	if partition && sh.Delivery == DeliveryBareMetal {
		return sh, neocloud.Invalid("body.delivery", "a %d-GPU partition is sold only as a managed VM, never bare metal", in.GPUs)
	}
	if partition && in.Within != "" {
		return sh, neocloud.Invalid("body.within", "a partition lies in one node; within does not apply")
	}
	site, err := s.siteFor(ctx, in.Site, in.SKU)
	if err != nil {
		return sh, err
	}
	sh.Site = site.ID
	if in.Within != "" && !slices.Contains(site.Levels, in.Within) {
		return sh, neocloud.Invalid("body.within", "site %s has no level %q (levels: %v)", site.Name, in.Within, site.Levels)
	}
	if in.Start != nil {
		st := in.Start.UTC().Truncate(time.Second)
		// A minute of clock skew is forgiven; older is the past.
		if st.Before(now.Add(-time.Minute)) {
			return sh, neocloud.Invalid("body.start", "%s is in the past", fmtTime(st))
		}
		if st.After(now) {
			sh.Start = st
		}
	}
	switch {
	case in.Class == placement.ClassReserved && in.DurationS <= 0:
		return sh, neocloud.Invalid("body.duration_s", "reserved capacity needs a duration")
	case in.Class != placement.ClassReserved && in.DurationS > 0:
		return sh, neocloud.Invalid("body.duration_s", "%s capacity runs until cancelled; leave the duration out", in.Class)
	case in.Class != placement.ClassReserved && sh.Start.After(now):
		return sh, neocloud.Invalid("body.start", "%s capacity starts now; reserve capacity for a later start", in.Class)
	}
	if in.DurationS > 0 {
		if in.DurationS > 10*365*86400 {
			return sh, neocloud.Invalid("body.duration_s", "at most ten years")
		}
		end := sh.Start.Add(time.Duration(in.DurationS) * time.Second)
		sh.End = &end
	}
	return sh, nil
}

func (sh Shape) request() placement.Request {
	return placement.Request{GPUs: sh.GPUs, Class: sh.Class, Within: sh.Within}
}

// due is when the shape's end is due: its end, or never.
func (sh Shape) due() time.Time {
	if sh.End == nil {
		return farFuture
	}
	return *sh.End
}

func (sh Shape) duration() time.Duration {
	if sh.End == nil {
		return 0
	}
	return sh.End.Sub(sh.Start)
}

// tenantOf resolves whose request this is: a tenant's own; an operator must
// name a tenant.
func (s *Service) tenantOf(ctx context.Context, p neocloud.Principal, ref string) (string, error) {
	if !p.Role.Operator() {
		if ref != "" && ref != p.TenantID {
			id, err := s.ResolveTenant(ctx, p, ref)
			if err != nil || id != p.TenantID {
				return "", neocloud.Invalid("body.tenant", "a tenant may only act for itself")
			}
		}
		return p.TenantID, nil
	}
	if ref == "" {
		return "", neocloud.Invalid("body.tenant", "an operator must name the tenant")
	}
	id, err := s.ResolveTenant(ctx, p, ref)
	if err != nil {
		if neocloud.ErrorKind(err) == neocloud.KindNotFound {
			return "", neocloud.Invalid("body.tenant", "unknown tenant %q", ref)
		}
		return "", err
	}
	return id, nil
}

// price returns the rate of a shape and the book entry it comes from.
func (s *Service) price(ctx context.Context, sh Shape, cal *calendar) (pricing.Price, int64, error) {
	book, err := s.Store.Prices(ctx)
	if err != nil {
		return pricing.Price{}, 0, err
	}
	p, ok := pricing.At(book, sh.SKU, string(sh.Class), sh.Start)
	if !ok {
		if p, ok = pricing.At(book, sh.SKU, string(sh.Class), s.now()); !ok {
			return p, 0, neocloud.Conflict("unpriced", "no %s price is set for %s", sh.Class, sh.SKU)
		}
	}
	u := 0.0
	if usable := cal.UsableGPUs(); usable > 0 {
		u = float64(cal.BusyGPUs(s.now())) / float64(usable)
	}
	return p, p.Rate(sh.GPUs, sh.duration(), u), nil
}

// checkQuota refuses a shape that would take the tenant past its quota.
func (s *Service) checkQuota(ctx context.Context, tenant string, sh Shape, now time.Time) error {
	qs, err := s.Store.Quotas(ctx, tenant)
	if err != nil {
		return err
	}
	for _, q := range qs {
		if q.SKU != sh.SKU || q.Class != sh.Class {
			continue
		}
		// What is held is read, and this reservation written, before
		// another request of the tenant reads it.
		if err := s.Store.LockTenantLimits(ctx, tenant); err != nil {
			return err
		}
		held, err := s.Store.HeldGPUs(ctx, tenant, sh.SKU, sh.Class, sh.Start, sh.end(), now)
		if err != nil {
			return err
		}
		if held+int64(sh.GPUs) > q.GPUs {
			return neocloud.Conflict("over_quota", "quota for %s %s is %d GPUs; %d are held over that window, %d more asked", sh.SKU, sh.Class, q.GPUs, held, sh.GPUs)
		}
	}
	return nil
}

// unavailable fills an offer that does not fit with the earliest start and
// looser alternatives.
func unavailable(cal *calendar, sh Shape, tenant string, refusal *placement.Refusal, o *Offer) error {
	o.Available = false
	if refusal != nil {
		o.Refusal = refusal.Message
	}
	if sh.Class.Preemptible() || sh.Open() {
		return nil
	}
	adm, err := cal.EarliestStart(sh.request(), tenant, sh.Start, sh.duration(), 200)
	if err != nil {
		return err
	}
	before := time.Time{}
	if adm.Plan != nil {
		t := adm.Start
		o.EarliestStart, before = &t, t
	}
	alts, err := cal.LooserStarts(sh.request(), tenant, sh.Start, sh.duration(), 50, before)
	if err != nil {
		return err
	}
	o.Alternatives = alts
	return nil
}

// CreateQuote prices a shape and says whether it fits; with a hold, the
// capacity is held until the quote expires.
func (s *Service) CreateQuote(ctx context.Context, p neocloud.Principal, in QuoteInput) (Quote, error) {
	var q Quote
	err := s.Tx.InTx(ctx, func(ctx context.Context) error {
		now := s.now()
		tenant, err := s.tenantOf(ctx, p, in.Tenant)
		if err != nil {
			return err
		}
		sh, err := s.shape(ctx, in.ShapeInput, now)
		if err != nil {
			return err
		}
		if sh.Class == placement.ClassInternal {
			return neocloud.Invalid("body.class", "internal work is not quoted; reserve it")
		}
		q = Quote{ID: neocloud.NewID(PrefixQuote), TenantID: tenant, State: "open", Shape: sh, ExpiresAt: now.Add(s.Policy.QuoteTTL), CreatedAt: now}
		if in.Hold {
			// The tenant's holds are counted, and this one written, before
			// another of its requests counts them.
			if err := s.Store.LockTenantLimits(ctx, tenant); err != nil {
				return err
			}
			if err := s.checkQuota(ctx, tenant, sh, now); err != nil {
				return err
			}
			n, err := s.Store.CountHolds(ctx, tenant, now)
			if err != nil {
				return err
			}
			if n >= s.Policy.MaxHolds {
				return neocloud.Conflict("hold_limit", "the tenant already has %d open holds (the limit)", n)
			}
		}
		s.lock(ctx)
		cal, err := s.calendarFor(ctx, sh.Site, sh.SKU)
		if err != nil {
			return err
		}
		entry, rate, err := s.price(ctx, sh, cal)
		if err != nil {
			return err
		}
		q.ExpiresAt = now.Add(s.Policy.QuoteTTL)
		q.Offer = Offer{RateMicros: rate, PricePerGPUHour: pricing.FormatMicros(rate), Currency: entry.Currency}
		if !sh.Open() {
			total, err := pricing.Total(rate, sh.GPUs, sh.duration())
			if err != nil {
				return err
			}
			q.Offer.TotalMicros = &total
		}
		var res placement.Result
		if in.Hold {
			res, err = cal.Admit(q.ID, sh.request(), tenant, sh.Start, sh.end())
		} else {
			res, err = cal.Plan(sh.request(), tenant, sh.Start, sh.end())
		}
		if err != nil {
			return neocloud.Invalid("body.gpus", "%v", err)
		}
		res, perr := s.powerFit(ctx, cal, sh, res, func() (placement.Result, error) {
			if in.Hold {
				cal.Drop(q.ID)
				return cal.Admit(q.ID, sh.request(), tenant, sh.Start, sh.end())
			}
			return cal.Plan(sh.request(), tenant, sh.Start, sh.end())
		})
		if neocloud.ErrorKind(perr) == neocloud.KindNoCapacity {
			// Power is capacity too: no placement the site's and its
			// power domains' firm capacity can carry.
			cal.Drop(q.ID)
			q.Offer.Available, q.Offer.Refusal = false, perr.Error()
			return s.Store.InsertQuote(ctx, q)
		} else if perr != nil {
			return perr
		}
		if res.Plan == nil {
			if err := unavailable(cal, sh, tenant, res.Refusal, &q.Offer); err != nil {
				return err
			}
		} else {
			q.Offer.Available = true
			q.Offer.Nodes = len(res.Plan.Nodes)
			q.Offer.Topology = topologyPromise(cal.T, res.Plan, sh.Within)
			if in.Hold {
				cm, _ := cal.Reservation(q.ID)
				q.Hold, q.Nodes = true, s.nodesOf(cm)
			}
		}
		return s.Store.InsertQuote(ctx, q)
	})
	return q, err
}

// Quote returns a quote the principal may see.
func (s *Service) Quote(ctx context.Context, p neocloud.Principal, id string) (Quote, error) {
	return visible(ctx, p, "quote", id, s.Store.Quote, func(q Quote) string { return q.TenantID })
}

// visible loads an object and answers it only to a principal who may see
// its tenant's objects: to anyone else it is missing, like an unknown id.
func visible[T any](ctx context.Context, p neocloud.Principal, what, id string, load func(context.Context, string) (T, error), tenant func(T) string) (T, error) {
	var zero T
	v, err := load(ctx, id)
	if err != nil {
		return zero, err
	}
	if !p.SeesTenant(tenant(v)) {
		return zero, neocloud.NotFound(what, id)
	}
	return v, nil
}

// Reserve makes a reservation: from a quote (its hold, if any, becomes the
// reservation) or directly from a shape. Reserved capacity gets a contract
// of its own; on-demand and spot use the tenant's standing contract.
func (s *Service) Reserve(ctx context.Context, p neocloud.Principal, in ReserveInput) (Reservation, error) {
	var r Reservation
	err := s.Tx.InTx(ctx, func(ctx context.Context) error {
		now := s.now()
		var sh Shape
		var quote *Quote
		var tenant string
		if in.Quote != "" {
			q, err := s.Quote(ctx, p, in.Quote)
			if err != nil {
				return err
			}
			switch {
			case q.State != "open":
				return neocloud.Conflict(q.State, "quote %s is %s", q.ID, q.State)
			case !now.Before(q.ExpiresAt):
				return neocloud.Conflict("expired", "quote %s expired at %s", q.ID, fmtTime(q.ExpiresAt))
			case !q.Offer.Available:
				return &neocloud.Error{Kind: neocloud.KindNoCapacity, Message: "quote " + q.ID + " was not available at its start; ask for a new quote"}
			}
			sh, tenant, quote = q.Shape, q.TenantID, &q
			if sh.Start.Before(now) {
				if sh.Class == placement.ClassReserved && !q.Hold {
					return neocloud.Conflict("started", "the quote's start %s has passed; ask for a new quote", fmtTime(sh.Start))
				}
				if sh.Open() {
					sh.Start = now
				}
			}
		} else {
			var err error
			if tenant, err = s.tenantOf(ctx, p, in.Tenant); err != nil {
				return err
			}
			if sh, err = s.shape(ctx, in.ShapeInput, now); err != nil {
				return err
			}
		}
		if sh.Class == placement.ClassInternal {
			var err error
			r, err = s.reserveElastic(ctx, tenant, sh, *in.Elastic, now)
			return err
		}
		if quote == nil || !quote.Hold {
			if err := s.checkQuota(ctx, tenant, sh, now); err != nil {
				return err
			}
		}
		s.lock(ctx)
		cal, err := s.calendarFor(ctx, sh.Site, sh.SKU)
		if err != nil {
			return err
		}
		entry, rate, err := s.price(ctx, sh, cal)
		if err != nil {
			return err
		}
		if quote != nil {
			rate = quote.Offer.RateMicros
		}
		r = Reservation{ID: neocloud.NewID(PrefixReservation), TenantID: tenant, State: ReservationPending, Shape: sh, Version: 1, CreatedAt: now, UpdatedAt: now}
		// 1. Admit on the calendar (or take over the quote's hold).
		if _, held := cal.Reservation(in.Quote); quote != nil && quote.Hold && held {
			if err := cal.Rename(quote.ID, r.ID, sh.Class); err != nil {
				return err
			}
		} else {
			// Committed work bound soon takes nodes free of all work first;
			// failing that, nodes spot or internal work holds, reclaimed with
			// notice. (Preemptible work only ever takes free nodes.)
			res, err := cal.Admit(r.ID, sh.request(), tenant, sh.Start, sh.end())
			if soon := !sh.Start.Add(-s.Policy.LeadTime).After(now); soon && err == nil && res.Plan != nil && !sh.Class.Preemptible() {
				cal.Drop(r.ID)
				if free, ferr := cal.AdmitFree(r.ID, sh.request(), tenant, sh.Start, sh.end()); ferr == nil && free.Plan != nil {
					res = free
				} else {
					res, err = cal.Admit(r.ID, sh.request(), tenant, sh.Start, sh.end())
				}
			}
			if err != nil {
				return neocloud.Invalid("body.gpus", "%v", err)
			}
			// A refusal rolls the transaction back, and the calendar with it.
			if res, err = s.powerFit(ctx, cal, sh, res, func() (placement.Result, error) {
				cal.Drop(r.ID)
				return cal.Admit(r.ID, sh.request(), tenant, sh.Start, sh.end())
			}); err != nil {
				return err
			}
			if res.Plan == nil {
				var o Offer
				if err := unavailable(cal, sh, tenant, res.Refusal, &o); err != nil {
					return err
				}
				msg := fmt.Sprintf("%d %s GPUs (%s) do not fit from %s", sh.GPUs, sh.SKU, sh.request().Constraint(), fmtTime(sh.Start))
				if o.EarliestStart != nil {
					msg += "; earliest start " + fmtTime(*o.EarliestStart)
				}
				for _, a := range o.Alternatives {
					msg += fmt.Sprintf("; %s from %s", a.Constraint, fmtTime(a.Start))
				}
				return &neocloud.Error{Kind: neocloud.KindNoCapacity, Message: msg}
			}
		}
		cm, _ := cal.Reservation(r.ID)
		r.Nodes = s.nodesOf(cm)
		// 2. The contract.
		c, err := s.contractFor(ctx, tenant, sh, entry, rate, now)
		if err != nil {
			return err
		}
		r.ContractID = c.ID
		if quote != nil {
			r.QuoteID = quote.ID
			quote.State, quote.Nodes = "used", nil
			if err := s.Store.UpdateQuote(ctx, *quote); err != nil {
				return err
			}
		}
		// 3. Scheduled; bound at once when its start is within the lead time.
		if err := r.State.Move(ReservationScheduled); err != nil {
			return err
		}
		r.State = ReservationScheduled
		r.DueAt = sh.Start.Add(-s.Policy.LeadTime)
		if err := s.Store.InsertReservation(ctx, r); err != nil {
			return err
		}
		if err := s.emit(ctx, tenant, "reservation.scheduled", r.ID, map[string]any{"start": sh.Start, "gpus": sh.GPUs, "sku": sh.SKU, "class": sh.Class}); err != nil {
			return err
		}
		if err := s.preempt(ctx, cal, &r, now); err != nil {
			return err
		}
		if !r.DueAt.After(now) {
			return s.bind(ctx, cal, &r, now)
		}
		return nil
	})
	return r, err
}

// contractFor returns the contract a new reservation falls under.
func (s *Service) contractFor(ctx context.Context, tenant string, sh Shape, entry pricing.Price, rate int64, now time.Time) (Contract, error) {
	terms := Terms{RateMicros: rate, PricePerGPUHour: pricing.FormatMicros(rate), Currency: entry.Currency,
		SLA: standardSLA(7 * 24 * time.Hour)}
	if sh.Class != placement.ClassReserved {
		c, err := s.Store.StandingContract(ctx, tenant, sh.Class, sh.SKU)
		if neocloud.ErrorKind(err) != neocloud.KindNotFound {
			return c, err
		}
		terms.BillingSchedule, terms.EarlyTermination = "monthly_in_arrears", "none: billed per second until cancelled"
		if sh.Class == placement.ClassSpot {
			terms.SLA = SLA{} // preemptible: no availability promise
			terms.EarlyTermination = "none: billed per second at the spot price; preemptible with notice"
		}
		c = Contract{ID: neocloud.NewID(PrefixContract), TenantID: tenant, Kind: sh.Class, SKU: sh.SKU, Terms: terms, Start: now, CreatedAt: now}
		return s.Store.PutStandingContract(ctx, c)
	}
	total, err := pricing.Total(rate, sh.GPUs, sh.duration())
	if err != nil {
		return Contract{}, err
	}
	terms.BillingSchedule, terms.CommitmentMicros = "monthly_in_advance", total
	terms.EarlyTermination, terms.EarlyTerminationP = "the remaining commitment is due, less what is resold", 100
	c := Contract{ID: neocloud.NewID(PrefixContract), TenantID: tenant, Kind: sh.Class, SKU: sh.SKU, Terms: terms, Start: sh.Start, End: sh.End, CreatedAt: now}
	return c, s.Store.InsertContract(ctx, c)
}

// Reservation returns a reservation the principal may see.
func (s *Service) Reservation(ctx context.Context, p neocloud.Principal, id string) (Reservation, error) {
	return visible(ctx, p, "reservation", id, s.Store.Reservation, func(r Reservation) string { return r.TenantID })
}

// Cancel ends a reservation: one not yet bound is cancelled at once; one
// with allocations ends now, releasing its nodes through sanitize.
func (s *Service) Cancel(ctx context.Context, p neocloud.Principal, id string) (Reservation, error) {
	var r Reservation
	err := s.Tx.InTx(ctx, func(ctx context.Context) error {
		var err error
		if r, err = s.Reservation(ctx, p, id); err != nil {
			return err
		}
		now := s.now()
		s.lock(ctx)
		cal, err := s.calendarFor(ctx, r.Shape.Site, r.Shape.SKU)
		if err != nil {
			return err
		}
		if r.State.Terminal() || r.State == ReservationEnding {
			return neocloud.Conflict(string(r.State), "reservation %s is %s", r.ID, r.State)
		}
		r.Reason = "cancelled"
		return s.withdraw(ctx, cal, &r, now)
	})
	return r, err
}

// Extend moves a reservation's end later on the same nodes, or fails with
// how far the same nodes allow and when a new reservation could start.
func (s *Service) Extend(ctx context.Context, p neocloud.Principal, id string, end time.Time) (Reservation, error) {
	var r Reservation
	err := s.Tx.InTx(ctx, func(ctx context.Context) error {
		var err error
		if r, err = s.Reservation(ctx, p, id); err != nil {
			return err
		}
		now := s.now()
		end = end.UTC().Truncate(time.Second)
		switch {
		case r.Shape.Open():
			return neocloud.Invalid("body.end", "%s capacity runs until cancelled; it has no end to extend", r.Shape.Class)
		case r.State != ReservationScheduled && r.State != ReservationActive:
			return neocloud.Conflict(string(r.State), "a %s reservation cannot be extended", r.State)
		case !end.After(*r.Shape.End):
			return neocloud.Invalid("body.end", "%s is not after the current end %s", fmtTime(end), fmtTime(*r.Shape.End))
		case end.Sub(r.Shape.Start) > 10*365*24*time.Hour:
			return neocloud.Invalid("body.end", "a reservation lasts at most ten years")
		}
		// The added time counts against the tenant's quota like a new
		// reservation of the same size would.
		more := r.Shape
		more.Start, more.End = *r.Shape.End, &end
		if err := s.checkQuota(ctx, r.TenantID, more, now); err != nil {
			return err
		}
		s.lock(ctx)
		cal, err := s.calendarFor(ctx, r.Shape.Site, r.Shape.SKU)
		if err != nil {
			return err
		}
		limit, err := cal.MaxEnd(r.ID)
		if err != nil {
			return err
		}
		if end.After(limit) {
			msg := fmt.Sprintf("the same nodes are free only until %s", fmtTime(limit))
			if !limit.After(*r.Shape.End) {
				msg = "the same nodes are taken right after the current end"
			}
			next := r.Shape
			next.Start, next.End = *r.Shape.End, &end
			var o Offer
			if err := unavailable(cal, next, r.TenantID, nil, &o); err == nil && o.EarliestStart != nil {
				msg += fmt.Sprintf("; a new reservation of %s could start at %s", end.Sub(next.Start), fmtTime(*o.EarliestStart))
			}
			return &neocloud.Error{Kind: neocloud.KindNoCapacity, Message: msg}
		}
		if err := cal.SetEnd(r.ID, end); err != nil {
			return err
		}
		if err := s.preempt(ctx, cal, &r, now); err != nil {
			return err
		}
		old := *r.Shape.End
		r.Shape.End = &end
		if r.Bound {
			r.DueAt = r.Shape.due()
		}
		if err := s.saveReservation(ctx, &r, now); err != nil {
			return err
		}
		return s.emit(ctx, r.TenantID, "reservation.extended", r.ID, map[string]any{"from": old, "to": end})
	})
	return r, err
}

func (s *Service) saveReservation(ctx context.Context, r *Reservation, now time.Time) error {
	if r.State.Terminal() { // a shortfall lasts until the reservation ends
		for i := range r.Shortfalls {
			if r.Shortfalls[i].Until == nil {
				t := now
				r.Shortfalls[i].Until = &t
			}
		}
	}
	r.Version++
	r.UpdatedAt = now
	return s.Store.UpdateReservation(ctx, *r)
}

// Reservations lists reservations the principal may see.
func (s *Service) Reservations(ctx context.Context, p neocloud.Principal, f ReservationFilter, pg neocloud.Page) ([]Reservation, error) {
	if !p.Role.Operator() {
		f.TenantID = p.TenantID
	}
	return s.Store.Reservations(ctx, f, pg)
}

// Allocations lists a visible reservation's allocations.
func (s *Service) Allocations(ctx context.Context, p neocloud.Principal, id string) ([]Allocation, error) {
	if _, err := s.Reservation(ctx, p, id); err != nil {
		return nil, err
	}
	return s.Store.Allocations(ctx, id)
}

// Contracts lists contracts the principal may see.
func (s *Service) Contracts(ctx context.Context, p neocloud.Principal, tenantID string, pg neocloud.Page) ([]Contract, error) {
	if !p.Role.Operator() {
		tenantID = p.TenantID
	}
	return s.Store.Contracts(ctx, tenantID, pg)
}

// Contract returns a contract the principal may see.
func (s *Service) Contract(ctx context.Context, p neocloud.Principal, id string) (Contract, error) {
	return visible(ctx, p, "contract", id, s.Store.Contract, func(c Contract) string { return c.TenantID })
}

// Quotes lists quotes the principal may see.
func (s *Service) Quotes(ctx context.Context, p neocloud.Principal, tenantID string, pg neocloud.Page) ([]Quote, error) {
	if !p.Role.Operator() {
		tenantID = p.TenantID
	}
	return s.Store.Quotes(ctx, tenantID, pg)
}

// PriceInput sets a price book entry.
type PriceInput struct {
	SKU           string         `json:"sku" minLength:"1"`
	Class         Class          `json:"class" enum:"lease,reserved,on_demand,spot,internal"`
	EffectiveAt   *time.Time     `json:"effective_at,omitempty" doc:"Default now; a change is never retroactive."`
	List          string         `json:"price_per_gpu_hour,omitempty" doc:"List price per GPU-hour in currency units, e.g. 2.05 (not for spot)."`
	TermDiscounts []pricing.Tier `json:"term_discounts,omitempty"`
	VolumeTiers   []pricing.Tier `json:"volume_tiers,omitempty"`
	SpotFloor     string         `json:"spot_floor,omitempty" doc:"Spot only: price per GPU-hour at an idle site."`
	SpotCeiling   string         `json:"spot_ceiling,omitempty" doc:"Spot only: price per GPU-hour at a full site."`
	Currency      string         `json:"currency,omitempty" doc:"ISO 4217; default USD."`
}

// SetPrice adds an entry to the price book.
func (s *Service) SetPrice(ctx context.Context, p neocloud.Principal, in PriceInput) (pricing.Price, error) {
	now := s.now()
	pr := pricing.Price{ID: neocloud.NewID(PrefixPrice), SKU: in.SKU, Class: string(in.Class), EffectiveAt: now, TermDiscounts: in.TermDiscounts, VolumeTiers: in.VolumeTiers,
		Currency: in.Currency, CreatedBy: p.TokenID, CreatedAt: now}
	if _, err := s.sku(ctx, in.SKU); err != nil {
		return pr, err
	}
	if pr.Currency == "" {
		pr.Currency = "USD"
	}
	if in.EffectiveAt != nil {
		if in.EffectiveAt.Before(now.Add(-time.Minute)) {
			return pr, neocloud.Invalid("body.effective_at", "a price change cannot be retroactive")
		}
		pr.EffectiveAt = in.EffectiveAt.UTC().Truncate(time.Second)
	}
	var err error
	if in.List != "" || in.Class != placement.ClassSpot {
		if pr.ListMicros, err = pricing.ParseMicros("price_per_gpu_hour", in.List); err != nil {
			return pr, err
		}
	}
	if in.Class == placement.ClassSpot {
		if in.SpotFloor == "" || in.SpotCeiling == "" {
			return pr, neocloud.Invalid("body.spot_floor", "a spot price needs a floor and a ceiling")
		}
		if pr.SpotFloor, err = pricing.ParseMicros("spot_floor", in.SpotFloor); err != nil {
			return pr, err
		}
		if pr.SpotCeiling, err = pricing.ParseMicros("spot_ceiling", in.SpotCeiling); err != nil {
			return pr, err
		}
	}
	pr.List = pricing.FormatMicros(pr.ListMicros)
	if err := pr.Validate(); err != nil {
		return pr, err
	}
	return pr, s.Tx.InTx(ctx, func(ctx context.Context) error { return s.Store.InsertPrice(ctx, pr) })
}

// SetQuota sets a tenant's quota for a SKU and class.
func (s *Service) SetQuota(ctx context.Context, p neocloud.Principal, tenantRef, sku string, class Class, gpus int64) (Quota, error) {
	q := Quota{SKU: sku, Class: class, GPUs: gpus, UpdatedAt: s.now()}
	id, err := s.tenantOf(ctx, p, tenantRef)
	if err != nil {
		return q, err
	}
	q.TenantID = id
	if _, err := s.sku(ctx, sku); err != nil {
		return q, err
	}
	switch class {
	case placement.ClassReserved, placement.ClassOnDemand, placement.ClassSpot:
	default:
		return q, neocloud.Invalid("body.class", "must be reserved, on_demand or spot")
	}
	if gpus < 0 {
		return q, neocloud.Invalid("body.gpus", "must not be negative")
	}
	return q, s.Tx.InTx(ctx, func(ctx context.Context) error { return s.Store.PutQuota(ctx, q) })
}

// Events returns the principal's events after seq.
func (s *Service) Events(ctx context.Context, p neocloud.Principal, after int64, limit int) ([]Event, error) {
	tenant := ""
	if !p.Role.Operator() {
		tenant = p.TenantID
	}
	return s.Store.Events(ctx, tenant, after, limit)
}

// farFuture is "not due": later than any real time, yet storable.
var farFuture = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)

// standardSLA is the service level committed capacity is sold with: 99.9%
// available, credits of 10% below it, 25% below 99% and all below 95%,
// the given notice before planned maintenance, and four replacements on
// request a month.
func standardSLA(notice time.Duration) SLA {
	return SLA{AvailabilityPercent: 99.9, CreditTiers: []CreditTier{{Below: 99.9, Percent: 10}, {Below: 99, Percent: 25}, {Below: 95, Percent: 100}},
		CreditCapPercent: 100, MaintenanceNoticeS: int64(notice / time.Second), ReplacementsPerMonth: 4,
		DegradedConditions: []string{"NVLink error", "link down", "row remap"}, ExcludeAnnouncedMaintenance: true}
}

// SpotRate is the spot price in force at a site for a SKU.
type SpotRate struct {
	Site       string
	SKU        string
	At         time.Time
	RateMicros int64
}

// SpotRates returns the spot rate in force now at every site for every SKU
// the price book prices spot: the rate a spot quote would get, which
// billing integrates per second.
func (s *Service) SpotRates(ctx context.Context) ([]SpotRate, error) {
	book, err := s.Store.Prices(ctx)
	if err != nil {
		return nil, err
	}
	var out []SpotRate
	err = s.Tx.InTx(ctx, func(ctx context.Context) error {
		now := s.now()
		for sku, sites := range s.siteIndex() {
			if _, ok := pricing.At(book, sku, string(placement.ClassSpot), now); !ok {
				continue
			}
			for _, site := range sites {
				s.lock(ctx)
				cal, err := s.calendarFor(ctx, site, sku)
				if err != nil {
					return err
				}
				_, rate, err := s.price(ctx, Shape{Site: site, SKU: sku, GPUs: 1, Class: placement.ClassSpot, Start: now}, cal)
				if err != nil {
					return err
				}
				out = append(out, SpotRate{Site: site, SKU: sku, At: now, RateMicros: rate})
			}
		}
		return nil
	})
	return out, err
}
