package billing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/agents"
	"github.com/neocloud/neocloud/fleet"
	"github.com/neocloud/neocloud/placement"
	"github.com/neocloud/neocloud/pricing"
	"github.com/neocloud/neocloud/sales"
	"github.com/neocloud/neocloud/tenant"
)

// Store is what billing keeps and reads. Writes run inside the caller's
// transaction (Tx).
type Store interface {
	// MeteredAllocations returns the allocations that were ready at some
	// instant of [from, to): ready or releasing now, or ended since from.
	MeteredAllocations(ctx context.Context, from, to time.Time) ([]Metered, error)
	// EnergyReadingsAt returns every node's readings in [from, to).
	EnergyReadingsAt(ctx context.Context, from, to time.Time) ([]agents.EnergyReading, error)
	// UsageRecordsIn returns the records (all revisions) of hours in
	// [from, to), for one tenant or all ("").
	UsageRecordsIn(ctx context.Context, tenantID string, from, to time.Time) ([]UsageRecord, error)
	InsertUsageRecords(ctx context.Context, rs []UsageRecord) error
	UpdateUsageRecords(ctx context.Context, rs []UsageRecord) error
	// OpenSpans returns a tenant's spans (see Spans) of the months in
	// [from, before), internal work's left out (it is never invoiced); a
	// span whose records do not tile it has GPUs -1.
	// Energy is read only when asked (power pass-through bills it).
	OpenSpans(ctx context.Context, tenantID string, from, before time.Time, energy bool) ([]UsageRecord, error)
	// OpenRevisions returns a tenant's revisions (rev > 0) not yet
	// invoiced of hours before a time, internal work's left out.
	OpenRevisions(ctx context.Context, tenantID string, before time.Time) ([]UsageRecord, error)
	// OpenSpansAll returns the open spans (as OpenSpans, energy
	// included) of several tenants at once, by tenant: one pass where the
	// store reads a table faster whole.
	OpenSpansAll(ctx context.Context, tenantIDs []string, from, before time.Time) (map[string][]UsageRecord, error)
	// SpansByTenant reports whether a tenant's spans read as cheaply on
	// their own as in one pass over every tenant's (they lie together):
	// a close outside a transaction then reads each tenant's spans as it
	// rates it, and holds only those in memory.
	SpansByTenant() bool
	// AllocationRecords returns an allocation's records of revision 0 of
	// hours in [from, to): a span's, when it does not tile.
	AllocationRecords(ctx context.Context, allocationID string, from, to time.Time) ([]UsageRecord, error)
	// LockUsage takes, for the rest of the transaction, the lock under
	// which usage is written and months close.
	LockUsage(ctx context.Context) error
	// Committed returns a context reading what is committed, outside the
	// transaction, in parallel (reads only).
	Committed(ctx context.Context) context.Context
	// TxID identifies the transaction ctx carries (nil: none).
	TxID(ctx context.Context) any
	// MeterThrough is the hour the meter has derived every record before
	// (zero: never run); SetMeterThrough moves it.
	MeterThrough(ctx context.Context) (time.Time, error)
	SetMeterThrough(ctx context.Context, t time.Time) error

	PutSpotPoint(ctx context.Context, p SpotPoint) error
	SpotPoints(ctx context.Context, from, to time.Time) ([]SpotPoint, error)
	LastSpotPoint(ctx context.Context, siteID, sku string) (SpotPoint, bool, error)

	Seller(ctx context.Context) (Seller, bool, error)
	PutSeller(ctx context.Context, s Seller) error
	Profile(ctx context.Context, tenantID string) (Profile, bool, error)
	PutProfile(ctx context.Context, p Profile) error

	Periods(ctx context.Context) ([]Period, error)
	InsertPeriod(ctx context.Context, p Period) error
	// NextNumber takes the next number of a series (1, 2, …).
	NextNumber(ctx context.Context, series string) (int64, error)
	// InsertInvoice stores a finalized invoice or credit note with its
	// commitment charges.
	InsertInvoice(ctx context.Context, inv Invoice) error
	// MarkInvoiced links to an invoice what it billed of a tenant's
	// contracts that the month's close does not close by itself: the
	// revisions not yet invoiced of hours before `before`, and the
	// records (revision 0) of hours in [from, start) — months before the
	// first close.
	MarkInvoiced(ctx context.Context, invoiceID, tenantID string, contractIDs []string, from, start, before time.Time) (int64, error)
	Invoice(ctx context.Context, id string) (Invoice, error)
	// InvoiceIDByNumber finds an invoice or credit note by its number.
	InvoiceIDByNumber(ctx context.Context, number string) (string, error)
	Invoices(ctx context.Context, f InvoiceFilter, pg neocloud.Page) ([]Invoice, error)
	// Credited sums the subtotals (negative) of credit notes against an
	// invoice.
	Credited(ctx context.Context, invoiceID string) (int64, error)
	BilledCharges(ctx context.Context, keys []string) (map[string]bool, error)
	// HourlyUsage sums records of hours in [from, to) by hour and class.
	HourlyUsage(ctx context.Context, from, to time.Time) ([]HourUsage, error)

	// What rating reads of selling and the fleet.
	AllContracts(ctx context.Context, tenantID string) ([]sales.Contract, error)
	ContractReservations(ctx context.Context, contractID string) ([]sales.Reservation, error)
	Prices(ctx context.Context) ([]pricing.Price, error)
	Sites(ctx context.Context) ([]fleet.Site, error)
	Tenants(ctx context.Context, f tenant.TenantFilter, p neocloud.Page) ([]tenant.Tenant, error)
	Tenant(ctx context.Context, id string) (tenant.Tenant, error)
}

// InvoiceFilter narrows a list of invoices.
type InvoiceFilter struct {
	TenantID string
	Period   string
	Kind     string
}

// Tx runs functions in one write transaction.
type Tx interface {
	InTx(ctx context.Context, fn func(ctx context.Context) error) error
}

// Service meters, rates and invoices.
type Service struct {
	Store Store
	Tx    Tx
	Now   func() time.Time
	// Resolve finds a tenant by name or id as a principal may see it.
	Resolve func(ctx context.Context, p neocloud.Principal, ref string) (tenant.Tenant, error)
	// SpotRates gives the spot rate in force now per site and SKU (nil:
	// no spot series is recorded).
	SpotRates func(ctx context.Context) ([]SpotPoint, error)
	// Settle is how long after an hour ends the meter waits for its last
	// readings before deriving it; Lookback how many hours before the
	// meter's mark each pass derives again (late readings).
	Settle   time.Duration
	Lookback time.Duration
	Logger   *slog.Logger
	// Closed is called after a period is closed (the console shows it).
	Closed func(p Period)
	// SpotEvery is how often the spot rate is looked at (default 5
	// minutes of the clock): the series is billed per second between its
	// points.
	SpotEvery time.Duration
	lastSpot  time.Time // the Run loop's
}

// NewService returns a service with the default settle and lookback.
func NewService(st Store, tx Tx) *Service {
	return &Service{Store: st, Tx: tx, Now: time.Now, Settle: 5 * time.Minute, Lookback: 2 * time.Hour, SpotEvery: 5 * time.Minute, Logger: slog.Default()}
}

func (s *Service) now() time.Time { return s.Now().UTC().Truncate(time.Microsecond) }

// MeterResult says what a meter pass did.
type MeterResult struct {
	From      time.Time `json:"from"`
	To        time.Time `json:"to"`
	Inserted  int       `json:"inserted"`
	Updated   int       `json:"updated"`
	Unchanged int       `json:"unchanged"`
}

// Meter derives the records of every complete hour up to through (floored
// to the hour), again from Lookback before its mark, and moves the mark.
func (s *Service) Meter(ctx context.Context, through time.Time) (MeterResult, error) {
	var res MeterResult
	parallel := s.Store.TxID(ctx) == nil // the pass's own transaction
	err := s.Tx.InTx(ctx, func(ctx context.Context) error {
		if err := s.Store.LockUsage(ctx); err != nil {
			return err
		}
		mark, err := s.Store.MeterThrough(ctx)
		if err != nil {
			return err
		}
		to := through.UTC().Truncate(time.Hour)
		from := mark.Add(-s.Lookback)
		if mark.IsZero() {
			from = time.Unix(0, 0).UTC()
		}
		if !to.After(mark) && !mark.IsZero() {
			return nil
		}
		r, err := s.derive(ctx, from, to, parallel)
		if err != nil {
			return err
		}
		res = r
		return s.Store.SetMeterThrough(ctx, to)
	})
	return res, err
}

// Rederive derives the records of [from, to) again (an operator's
// correction after late readings): changed records are updated while not
// invoiced, and become corrections for the next invoice once they are.
func (s *Service) Rederive(ctx context.Context, p neocloud.Principal, from, to time.Time) (MeterResult, error) {
	if p.Role != neocloud.RoleOperatorAdmin {
		return MeterResult{}, neocloud.Errorf(neocloud.KindForbidden, "only operator-admins derive usage")
	}
	var res MeterResult
	err := s.Tx.InTx(ctx, func(ctx context.Context) error {
		if err := s.Store.LockUsage(ctx); err != nil {
			return err
		}
		mark, err := s.Store.MeterThrough(ctx)
		if err != nil {
			return err
		}
		if to.After(mark) {
			to = mark
		}
		if !to.After(from) {
			return neocloud.Invalid("query.period", "the meter has derived nothing of that period yet (through %s)", mark.Format(time.RFC3339))
		}
		res, err = s.derive(ctx, from, to, false)
		return err
	})
	return res, err
}

// derive derives the records of [from, to) under the usage lock. With
// parallel (the transaction is the pass's own and has written nothing)
// its reads run on the read pool, the energy readings beside the rest.
func (s *Service) derive(ctx context.Context, from, to time.Time, parallel bool) (MeterResult, error) {
	res := MeterResult{From: from, To: to}
	rctx := ctx
	if parallel {
		rctx = s.Store.Committed(ctx)
	}
	allocs, err := s.Store.MeteredAllocations(rctx, from, to)
	if err != nil {
		return res, err
	}
	if len(allocs) == 0 {
		return res, nil
	}
	var readings []agents.EnergyReading
	var rerr error
	read := func() { readings, rerr = s.Store.EnergyReadingsAt(rctx, from.Add(-time.Hour), to.Add(time.Hour)) }
	done := make(chan struct{})
	if parallel {
		go func() { defer close(done); read() }()
	} else {
		read()
		close(done)
	}
	stored, err := s.Store.UsageRecordsIn(rctx, "", from, to)
	var ps []Period
	if err == nil {
		ps, err = s.Store.Periods(rctx)
	}
	<-done
	if err = errors.Join(err, rerr); err != nil {
		return res, err
	}
	byNode := map[string][]agents.EnergyReading{}
	for _, r := range readings {
		byNode[r.NodeID] = append(byNode[r.NodeID], r)
	}
	through := closedThrough(ps)
	type key struct {
		alloc string
		hour  int64
	}
	existing := map[key][]UsageRecord{}
	for _, r := range stored {
		k := key{r.AllocationID, r.Hour.Unix()}
		existing[k] = append(existing[k], r)
	}
	now := s.now()
	var ins, upd []UsageRecord
	for _, m := range allocs {
		for _, r := range Derive(m, byNode[m.NodeID], from, to) {
			r.DerivedAt = now
			i, u := Reconcile(r, existing[key{r.AllocationID, r.Hour.Unix()}], through)
			switch {
			case i != nil:
				ins = append(ins, *i)
			case u != nil:
				upd = append(upd, *u)
			default:
				res.Unchanged++
			}
		}
	}
	if err := s.Store.InsertUsageRecords(ctx, ins); err != nil {
		return res, err
	}
	if err := s.Store.UpdateUsageRecords(ctx, upd); err != nil {
		return res, err
	}
	res.Inserted, res.Updated = len(ins), len(upd)
	return res, nil
}

// RecordSpot appends the spot rates in force now where they changed.
func (s *Service) RecordSpot(ctx context.Context) error {
	if s.SpotRates == nil {
		return nil
	}
	pts, err := s.SpotRates(ctx)
	if err != nil {
		return err
	}
	return s.Tx.InTx(ctx, func(ctx context.Context) error {
		for _, p := range pts {
			last, ok, err := s.Store.LastSpotPoint(ctx, p.SiteID, p.SKU)
			if err != nil {
				return err
			}
			if ok && (last.RateMicros == p.RateMicros || !p.At.After(last.At)) {
				continue
			}
			if err := s.Store.PutSpotPoint(ctx, p); err != nil {
				return err
			}
		}
		return nil
	})
}

// seller returns the seller, or the default one.
func (s *Service) seller(ctx context.Context) (Seller, error) {
	sl, ok, err := s.Store.Seller(ctx)
	if err != nil || !ok {
		return DefaultSeller(), err
	}
	return sl, nil
}

// Seller returns the invoicing seller's details.
func (s *Service) Seller(ctx context.Context) (Seller, error) { return s.seller(ctx) }

// SetSeller replaces the seller's details (operator-admin).
func (s *Service) SetSeller(ctx context.Context, in Seller) (Seller, error) {
	if err := in.Validate(); err != nil {
		return Seller{}, err
	}
	return in, s.Tx.InTx(ctx, func(ctx context.Context) error { return s.Store.PutSeller(ctx, in) })
}

// Profile returns a tenant's billing profile as p may see it.
func (s *Service) Profile(ctx context.Context, p neocloud.Principal, ref string) (Profile, error) {
	t, err := s.Resolve(ctx, p, ref)
	if err != nil {
		return Profile{}, err
	}
	pr, ok, err := s.Store.Profile(ctx, t.ID)
	if !ok {
		pr = Profile{TenantID: t.ID, TaxRate: "0"}
	}
	return pr, err
}

// SetProfile replaces a tenant's billing profile.
func (s *Service) SetProfile(ctx context.Context, p neocloud.Principal, ref string, in Profile) (Profile, error) {
	t, err := s.Resolve(ctx, p, ref)
	if err != nil {
		return Profile{}, err
	}
	if in.TaxRate == "" {
		in.TaxRate = "0"
	}
	if err := in.Validate(); err != nil {
		return Profile{}, err
	}
	in.TenantID = t.ID
	return in, s.Tx.InTx(ctx, func(ctx context.Context) error { return s.Store.PutProfile(ctx, in) })
}

// rateInput gathers what one tenant's invoices for [start, end) depend on:
// the open usage is the spans of months from `from` (the end of the latest
// closed month) and the revisions not yet invoiced.
func (s *Service) rateInput(ctx context.Context, t tenant.Tenant, period string, from, start, end time.Time, seller Seller, shared *shared) (RateInput, error) {
	in := RateInput{TenantID: t.ID, TenantName: t.Name, Seller: seller, Period: period, Start: start, End: end,
		Prices: shared.prices, Spot: shared.spot, Sites: shared.sites}
	pr, ok, err := s.Store.Profile(ctx, t.ID)
	if err != nil {
		return in, err
	}
	if !ok {
		pr = Profile{TenantID: t.ID}
	}
	in.Profile = pr
	if in.Contracts, err = s.contractWork(ctx, t.ID); err != nil {
		return in, err
	}
	energy := false
	for _, c := range in.Contracts {
		energy = energy || c.Terms.PowerPassThrough
	}
	var pre []UsageRecord
	if shared.spans != nil {
		pre = shared.spans[t.ID]
	}
	if in.Records, err = s.openUsage(ctx, t.ID, from, end, energy, pre, shared.spans != nil); err != nil {
		return in, err
	}
	var keys []string
	for _, c := range in.Contracts {
		for m := mustStart(MonthOf(c.Start)); m.Before(end.AddDate(0, 1, 0)); m = m.AddDate(0, 1, 0) {
			keys = append(keys, "commit:"+c.ID+":"+MonthOf(m))
		}
	}
	if in.Billed, err = s.Store.BilledCharges(ctx, keys); err != nil {
		return in, err
	}
	in.Credits, err = s.credits(ctx, in.Contracts, start, end)
	return in, err
}

// openUsage is what a tenant's next invoice rates: its spans of the open
// months before `before` (a span that does not tile, as its records) and
// its revisions not yet invoiced.
func (s *Service) openUsage(ctx context.Context, tenantID string, from, before time.Time, energy bool, spans []UsageRecord, loaded bool) ([]UsageRecord, error) {
	if !loaded {
		var err error
		if spans, err = s.Store.OpenSpans(ctx, tenantID, from, before, energy); err != nil {
			return nil, err
		}
	}
	out := spans[:0]
	var split []UsageRecord
	for _, sp := range spans {
		if sp.Tiles() {
			out = append(out, sp)
			continue
		}
		rs, err := s.Store.AllocationRecords(ctx, sp.AllocationID, sp.Hour, sp.Hour.AddDate(0, 1, 0))
		if err != nil {
			return nil, err
		}
		split = append(split, rs...)
	}
	revs, err := s.Store.OpenRevisions(ctx, tenantID, before)
	if err != nil {
		return nil, err
	}
	return append(append(out, split...), revs...), nil
}

// closedThrough is the end of the latest closed month (zero: none).
func closedThrough(ps []Period) time.Time {
	var t time.Time
	for _, p := range ps {
		if p.End.After(t) {
			t = p.End
		}
	}
	return t
}

// contractWork returns a tenant's invoiced contracts (not internal ones),
// committed ones with their reservations; per-second work (on-demand and
// spot: a reservation per instance, a million a month at a large site) is
// rated from its records alone, which carry their reservation's size.
func (s *Service) contractWork(ctx context.Context, tenantID string) ([]ContractWork, error) {
	cs, err := s.Store.AllContracts(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	var out []ContractWork
	for _, c := range cs {
		if c.Kind == placement.ClassInternal {
			continue
		}
		var rs []sales.Reservation
		if c.Kind == placement.ClassLease || c.Kind == placement.ClassReserved {
			if rs, err = s.Store.ContractReservations(ctx, c.ID); err != nil {
				return nil, err
			}
		}
		out = append(out, ContractWork{Contract: c, Reservations: rs})
	}
	return out, nil
}

// shared is what every tenant's rating reads alike.
type shared struct {
	prices []pricing.Price
	spot   []SpotPoint
	sites  map[string]SiteEnergy
	// spans, when loaded for every tenant at once (a close), by tenant.
	spans map[string][]UsageRecord
}

func (s *Service) shared(ctx context.Context, end time.Time) (*shared, error) {
	sh := &shared{sites: map[string]SiteEnergy{}}
	var err error
	if sh.prices, err = s.Store.Prices(ctx); err != nil {
		return nil, err
	}
	if sh.spot, err = s.Store.SpotPoints(ctx, time.Unix(0, 0), end); err != nil {
		return nil, err
	}
	sites, err := s.Store.Sites(ctx)
	if err != nil {
		return nil, err
	}
	for _, st := range sites {
		se := SiteEnergy{}
		if st.Power != nil {
			se.PUE = PUEString(st.Power.PUE)
			if st.Power.EnergyPrice != "" {
				if se.RateMicros, err = pricing.ParseMicros("power.energy_price_per_kwh", st.Power.EnergyPrice); err != nil {
					return nil, err
				}
			}
		}
		sh.sites[st.ID] = se
	}
	return sh, nil
}

// Draft is a tenant's invoice for a period as it stands (the open period
// by default): numbered only when the period closes.
func (s *Service) Draft(ctx context.Context, p neocloud.Principal, ref, period string) ([]Invoice, error) {
	t, err := s.tenantOf(ctx, p, ref)
	if err != nil {
		return nil, err
	}
	now := s.now()
	if period == "" {
		period = MonthOf(now)
	}
	start, end, err := Month("query.period", period)
	if err != nil {
		return nil, err
	}
	ps, err := s.Store.Periods(ctx)
	if err != nil {
		return nil, err
	}
	from := closedThrough(ps)
	if start.Before(from) {
		return nil, neocloud.Conflict("closed", "period %s is closed: list its invoices instead", period)
	}
	seller, err := s.seller(ctx)
	if err != nil {
		return nil, err
	}
	sh, err := s.shared(ctx, end)
	if err != nil {
		return nil, err
	}
	in, err := s.rateInput(ctx, t, period, from, start, end, seller, sh)
	if err != nil {
		return nil, err
	}
	in.IssuedAt, in.Draft = now, true
	invs, err := Rate(in)
	for i := range invs {
		invs[i].ID = "draft"
	}
	return invs, err
}

// Periods lists the closed periods.
func (s *Service) Periods(ctx context.Context) ([]Period, error) { return s.Store.Periods(ctx) }

// Close finalizes a month: derives its last hours, then for every tenant
// with something to bill, rates it and stores a numbered, immutable invoice
// per currency (numbers follow in tenant name order, without gaps). A
// month closes once, after it has ended, and after the month before it
// (once any month has been closed).
//
// Called outside a transaction, the meter's pass commits first; the close
// then holds the usage lock, so no record changes under it, reads and
// rates the tenants in parallel from what is committed, and writes the
// invoices and the period in one transaction. Within the caller's
// transaction (an API request's) it all runs there, one tenant at a time.
func (s *Service) Close(ctx context.Context, p neocloud.Principal, period string) (Period, []Invoice, error) {
	start, end, err := Month("body.period", period)
	if err != nil {
		return Period{}, nil, err
	}
	check := func(ctx context.Context) ([]Period, error) {
		if now := s.now(); end.After(now) {
			return nil, neocloud.Invalid("body.period", "period %s has not ended (it ends %s)", period, end.Format(time.RFC3339))
		}
		ps, err := s.Store.Periods(ctx)
		if err != nil {
			return nil, err
		}
		var latest string
		for _, q := range ps {
			if q.Period == period {
				return nil, neocloud.Conflict("closed", "period %s was closed at %s", period, q.ClosedAt.Format(time.RFC3339))
			}
			latest = max(latest, q.Period)
		}
		if latest != "" {
			if prev := MonthOf(start.AddDate(0, -1, 0)); latest < prev {
				return nil, neocloud.Conflict("open", "close %s first: months close in order", MonthOf(mustStart(latest).AddDate(0, 1, 0)))
			}
			if latest > period {
				return nil, neocloud.Conflict("closed", "a later period (%s) is already closed", latest)
			}
		}
		return ps, nil
	}
	if _, err := check(ctx); err != nil {
		return Period{}, nil, err
	}
	if _, err := s.Meter(ctx, end); err != nil {
		return Period{}, nil, err
	}
	parallel := s.Store.TxID(ctx) == nil // the meter's pass is committed
	var out Period
	var invs []Invoice
	err = s.Tx.InTx(ctx, func(ctx context.Context) error {
		if err := s.Store.LockUsage(ctx); err != nil {
			return err
		}
		ps, err := check(ctx)
		if err != nil {
			return err
		}
		now := s.now()
		seller, err := s.seller(ctx)
		if err != nil {
			return err
		}
		sh, err := s.shared(ctx, end)
		if err != nil {
			return err
		}
		ts, err := s.allTenants(ctx)
		if err != nil {
			return err
		}
		from := closedThrough(ps)
		ids := make([]string, len(ts))
		for i, t := range ts {
			ids[i] = t.ID
		}
		rctx := ctx
		if parallel {
			rctx = s.Store.Committed(ctx)
		}
		if !parallel || !s.Store.SpansByTenant() {
			if sh.spans, err = s.Store.OpenSpansAll(rctx, ids, from, end); err != nil {
				return err
			}
		}
		rated, err := s.rateAll(ctx, parallel, ts, func(ctx context.Context, t tenant.Tenant) (RateInput, []Invoice, error) {
			in, err := s.rateInput(ctx, t, period, from, start, end, seller, sh)
			if err != nil {
				return in, nil, err
			}
			in.IssuedAt, in.KeepRecords = now, true
			got, err := Rate(in)
			return in, got, err
		})
		if err != nil {
			return err
		}
		for i, t := range ts {
			in := rated[i].in
			for _, inv := range rated[i].invoices {
				n, err := s.Store.NextNumber(ctx, "invoice")
				if err != nil {
					return err
				}
				inv.Number = fmt.Sprintf("%s%06d", seller.InvoicePrefix, n)
				credits := map[int]*Credit{}
				for i := range inv.Lines {
					if inv.Lines[i].credit != nil {
						credits[inv.Lines[i].N] = inv.Lines[i].credit
					}
					inv.Lines[i].credit = nil
				}
				if err := s.Store.InsertInvoice(ctx, inv); err != nil {
					return err
				}
				// Every record rated is on this invoice: the tenant's, of
				// this currency's contracts, before the period's end. The
				// period's own records close with it; revisions and the
				// months before a first close are marked.
				var ids []string
				for _, c := range in.Contracts {
					if cur := c.Terms.Currency; cur == inv.Currency || (cur == "" && inv.Currency == "USD") {
						ids = append(ids, c.ID)
					}
				}
				if _, err := s.Store.MarkInvoiced(ctx, inv.ID, t.ID, ids, from, start, end); err != nil {
					return err
				}
				if st, ok := s.Store.(CreditStore); ok {
					for n, c := range credits {
						if err := st.PutCreditSources(ctx, inv.ID, n, *c); err != nil {
							return err
						}
					}
				}
				invs = append(invs, inv)
			}
		}
		by := p.TokenID
		if by == "" {
			by = "automatic close"
		}
		out = Period{Period: period, Start: start, End: end, ClosedAt: now, ClosedBy: by, Invoices: len(invs)}
		return s.Store.InsertPeriod(ctx, out)
	})
	if err == nil && s.Closed != nil {
		s.Closed(out)
	}
	return out, invs, err
}

// rated is one tenant's rating: its inputs and invoices.
type rated struct {
	in       RateInput
	invoices []Invoice
}

// rateAll rates every tenant, results in the tenants' order: in parallel,
// reading what is committed on parallel connections (one worker a CPU) —
// the caller's transaction must then have written nothing the reads
// should see — or one at a time in the caller's transaction.
func (s *Service) rateAll(ctx context.Context, parallel bool, ts []tenant.Tenant, rate func(ctx context.Context, t tenant.Tenant) (RateInput, []Invoice, error)) ([]rated, error) {
	out := make([]rated, len(ts))
	rctx, workers := ctx, 1
	if parallel {
		rctx, workers = s.Store.Committed(ctx), max(1, min(runtime.GOMAXPROCS(0), 8, len(ts)))
	}
	work := make(chan int)
	errs := make(chan error, len(ts))
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				in, got, err := rate(rctx, ts[i])
				if err != nil {
					errs <- err
					continue
				}
				in.Records = nil // rated: not kept past the invoice
				out[i] = rated{in, got}
			}
		}()
	}
	for i := range ts {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, err
	}
	return out, nil
}

func mustStart(period string) time.Time {
	t, _, _ := neocloud.ParsePeriod(period)
	return t
}

// allTenants returns every external tenant by name.
func (s *Service) allTenants(ctx context.Context) ([]tenant.Tenant, error) {
	var out []tenant.Tenant
	pg := neocloud.Page{Limit: neocloud.MaxLimit}
	for {
		ts, err := s.Store.Tenants(ctx, tenant.TenantFilter{}, pg)
		if err != nil {
			return nil, err
		}
		for _, t := range ts {
			if !t.Internal {
				out = append(out, t)
			}
		}
		if len(ts) < pg.Limit {
			break
		}
		pg.Cursor = neocloud.EncodeCursor(ts[len(ts)-1].ID)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// AutoClose closes every month that ended at least the seller's
// CloseAfterS ago and is not closed, in order, starting after the latest
// closed one (or, on a store that never closed one, with the first month
// it metered usage in). It returns those it closed: a month another server
// closed meanwhile is not among them, and is no error.
func (s *Service) AutoClose(ctx context.Context) ([]Period, error) {
	seller, err := s.seller(ctx)
	if err != nil || seller.CloseAfterS < 0 {
		return nil, err
	}
	ps, err := s.Store.Periods(ctx)
	if err != nil {
		return nil, err
	}
	now := s.now()
	due := now.Add(-time.Duration(seller.CloseAfterS) * time.Second)
	next := mustStart(MonthOf(now)).AddDate(0, -1, 0)
	if len(ps) == 0 {
		// A store that never closed a month starts with the first month it
		// metered anything in (this one, when nothing before it).
		before, err := s.Store.HourlyUsage(ctx, time.Unix(0, 0), mustStart(MonthOf(now)))
		if err != nil {
			return nil, err
		}
		if len(before) == 0 {
			next = mustStart(MonthOf(now))
		} else {
			next = mustStart(MonthOf(before[0].Hour))
		}
	}
	if len(ps) > 0 {
		latest := ps[0].Period
		for _, q := range ps {
			latest = max(latest, q.Period)
		}
		next = mustStart(latest).AddDate(0, 1, 0)
	}
	var out []Period
	for !next.AddDate(0, 1, 0).After(due) {
		q, _, err := s.Close(ctx, neocloud.Principal{Role: neocloud.RoleOperatorAdmin}, MonthOf(next))
		var ne *neocloud.Error
		switch {
		case errors.As(err, &ne) && ne.Kind == neocloud.KindConflict && ne.State == "closed":
			// Closed meanwhile by another server on the database (or by
			// an operator): done all the same.
		case err != nil:
			return out, err
		default:
			out = append(out, q)
		}
		next = next.AddDate(0, 1, 0)
	}
	return out, nil
}

// Run meters, records spot prices and closes months until ctx ends,
// looking every `every`.
func (s *Service) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := s.tick(ctx); err != nil && ctx.Err() == nil {
			s.Logger.Warn("billing", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Service) tick(ctx context.Context) error {
	if now := s.now(); now.Sub(s.lastSpot) >= s.SpotEvery {
		if err := s.RecordSpot(ctx); err != nil {
			return fmt.Errorf("spot prices: %w", err)
		}
		s.lastSpot = now
	}
	if _, err := s.Meter(ctx, s.now().Add(-s.Settle)); err != nil {
		return fmt.Errorf("meter: %w", err)
	}
	ps, err := s.AutoClose(ctx)
	for _, p := range ps {
		s.Logger.Info("billing period closed", "period", p.Period, "invoices", p.Invoices)
	}
	return err
}

// Invoice returns a finalized invoice or credit note p may see.
func (s *Service) Invoice(ctx context.Context, p neocloud.Principal, id string) (Invoice, error) {
	inv, err := s.Store.Invoice(ctx, id)
	if err != nil {
		return Invoice{}, err
	}
	if !p.SeesTenant(inv.TenantID) {
		return Invoice{}, neocloud.NotFound("invoice", id)
	}
	if inv.Kind == "invoice" {
		inv.CreditedMicros, err = s.Store.Credited(ctx, inv.ID)
	}
	return inv, err
}

// InvoiceByRef finds an invoice by id or number.
func (s *Service) InvoiceByRef(ctx context.Context, p neocloud.Principal, ref string) (Invoice, error) {
	if !strings.HasPrefix(ref, PrefixInvoice) && !strings.HasPrefix(ref, PrefixCredit) {
		id, err := s.Store.InvoiceIDByNumber(ctx, ref)
		if err != nil {
			return Invoice{}, err
		}
		return s.Invoice(ctx, p, id)
	}
	return s.Invoice(ctx, p, ref)
}

// Invoices lists finalized invoices and credit notes p may see.
func (s *Service) Invoices(ctx context.Context, p neocloud.Principal, tenantRef string, f InvoiceFilter, pg neocloud.Page) ([]Invoice, error) {
	if err := pg.Normalize(); err != nil {
		return nil, err
	}
	if p.Role.Tenant() {
		f.TenantID = p.TenantID
	}
	if tenantRef != "" {
		t, err := s.Resolve(ctx, p, tenantRef)
		if err != nil {
			return nil, err
		}
		f.TenantID = t.ID
	}
	if f.Period != "" {
		if _, _, err := Month("query.period", f.Period); err != nil {
			return nil, err
		}
	}
	return s.Store.Invoices(ctx, f, pg)
}

// CreditInput asks for a credit note against an invoice.
type CreditInput struct {
	Amount string `json:"amount,omitempty" doc:"Amount before tax to credit, in currency units; absent: all that is not yet credited."`
	Reason string `json:"reason" minLength:"1" maxLength:"500"`
}

// CreditNote issues a numbered credit note against a finalized invoice:
// an amount before tax (at most what is not yet credited) and the tax on
// it at the invoice's rate.
func (s *Service) CreditNote(ctx context.Context, p neocloud.Principal, invoiceRef string, in CreditInput) (Invoice, error) {
	if strings.TrimSpace(in.Reason) == "" {
		return Invoice{}, neocloud.Invalid("body.reason", "say why the invoice is credited")
	}
	var out Invoice
	err := s.Tx.InTx(ctx, func(ctx context.Context) error {
		inv, err := s.InvoiceByRef(ctx, p, invoiceRef)
		if err != nil {
			return err
		}
		if inv.Kind != "invoice" {
			return neocloud.Conflict(inv.Kind, "%s is a credit note; credit its invoice %s", inv.Number, inv.RefersToNumber)
		}
		left := inv.SubtotalMicros + inv.CreditedMicros
		amount := left
		if in.Amount != "" {
			if amount, err = pricing.ParseMicros("body.amount", in.Amount); err != nil {
				return err
			}
		}
		if amount <= 0 || amount > left {
			return neocloud.Invalid("body.amount", "must be positive and at most %s, what is left to credit on %s", money(left), inv.Number)
		}
		taxRate, err := Profile{TaxRate: inv.TaxRate}.taxRat()
		if err != nil {
			return err
		}
		seller, err := s.seller(ctx)
		if err != nil {
			return err
		}
		n, err := s.Store.NextNumber(ctx, "credit_note")
		if err != nil {
			return err
		}
		now := s.now()
		out = Invoice{ID: neocloud.NewID(PrefixCredit), Number: fmt.Sprintf("%s%06d", seller.CreditPrefix, n), Kind: "credit_note", State: "final",
			Seller: inv.Seller, Buyer: inv.Buyer, TenantID: inv.TenantID, TenantName: inv.TenantName, Period: inv.Period,
			PeriodStart: inv.PeriodStart, PeriodEnd: inv.PeriodEnd, Currency: inv.Currency, TaxRate: inv.TaxRate,
			IssuedAt: now, DueAt: now, RefersTo: inv.ID, RefersToNumber: inv.Number, Reason: strings.TrimSpace(in.Reason),
			Lines: []Line{{N: 1, Kind: LineCredit, Description: "Credit against " + inv.Number + ": " + strings.TrimSpace(in.Reason),
				ServiceStart: inv.PeriodStart, ServiceEnd: inv.PeriodEnd, Quantity: "1", Unit: "amount", UnitPrice: money(-amount),
				AmountMicros: -amount, Amount: money(-amount)}},
			SubtotalMicros: -amount}
		finish(&out, taxRate)
		return s.Store.InsertInvoice(ctx, out)
	})
	return out, err
}

// tenantOf resolves the tenant a read is about: the one named, or a
// tenant caller's own.
func (s *Service) tenantOf(ctx context.Context, p neocloud.Principal, ref string) (tenant.Tenant, error) {
	if ref == "" && p.Role.Tenant() {
		ref = p.TenantID
	}
	if ref == "" {
		return tenant.Tenant{}, neocloud.Invalid("query.tenant", "name the tenant")
	}
	return s.Resolve(ctx, p, ref)
}

// UsageRow is usage summed over one day, hour or reservation.
type UsageRow struct {
	Key           string `json:"key" doc:"The day (2027-01-04), hour (RFC 3339) or reservation id."`
	ReservationID string `json:"reservation_id,omitempty"`
	Class         string `json:"class,omitempty"`
	GPUSeconds    int64  `json:"gpu_seconds"`
	GPUHours      string `json:"gpu_hours"`
	EnergyJ       int64  `json:"energy_j" doc:"Energy of record (node input)."`
	EnergyKWh     string `json:"energy_kwh"`
	GPUEnergyKWh  string `json:"gpu_energy_kwh" doc:"The GPUs' own counters: about half the node's."`
	EnergySource  string `json:"energy_source" doc:"node_oob, estimated or mixed."`
	Records       int    `json:"records"`
	gpuJ          int64
	sources       map[string]bool
}

// Usage sums a tenant's usage records of a period by day, hour or
// reservation.
func (s *Service) Usage(ctx context.Context, p neocloud.Principal, tenantRef, period, by string) ([]UsageRow, error) {
	t, err := s.tenantOf(ctx, p, tenantRef)
	if err != nil {
		return nil, err
	}
	start, end, err := Month("query.period", period)
	if err != nil {
		return nil, err
	}
	key := map[string]func(UsageRecord) string{
		"day":         func(r UsageRecord) string { return r.Hour.Format("2006-01-02") },
		"hour":        func(r UsageRecord) string { return r.Hour.Format(time.RFC3339) },
		"reservation": func(r UsageRecord) string { return r.ReservationID },
	}[by]
	if key == nil {
		return nil, neocloud.Invalid("query.by", "must be day, hour or reservation, not %q", by)
	}
	recs, err := s.Store.UsageRecordsIn(ctx, t.ID, start, end)
	if err != nil {
		return nil, err
	}
	rows := map[string]*UsageRow{}
	var keys []string
	for _, r := range recs {
		k := key(r)
		row := rows[k]
		if row == nil {
			row = &UsageRow{Key: k, sources: map[string]bool{}}
			if by == "reservation" {
				row.ReservationID, row.Class = r.ReservationID, r.Class
			}
			rows[k] = row
			keys = append(keys, k)
		}
		row.GPUSeconds += r.GPUSeconds
		row.EnergyJ += r.EnergyJ
		row.gpuJ += r.GPUEnergyJ
		row.sources[r.EnergySource] = true
		if r.Rev == 0 {
			row.Records++
		}
	}
	sort.Strings(keys)
	out := make([]UsageRow, 0, len(keys))
	for _, k := range keys {
		row := rows[k]
		row.GPUHours, row.EnergyKWh, row.GPUEnergyKWh = hours(row.GPUSeconds), kwh(row.EnergyJ), kwh(row.gpuJ)
		switch {
		case len(row.sources) > 1:
			row.EnergySource = "mixed"
		case row.sources[SourceNodeOOB]:
			row.EnergySource = SourceNodeOOB
		default:
			row.EnergySource = SourceEstimated
		}
		out = append(out, *row)
	}
	return out, nil
}

// HourUsage is the usage metered in one hour for one class.
type HourUsage struct {
	Hour       time.Time `json:"hour"`
	Class      string    `json:"class"`
	GPUSeconds int64     `json:"gpu_seconds"`
	EnergyJ    int64     `json:"energy_j"`
}

// HourlyUsage returns the metered usage of every tenant by hour and class
// over [from, to) (operators' charts).
func (s *Service) HourlyUsage(ctx context.Context, from, to time.Time) ([]HourUsage, error) {
	return s.Store.HourlyUsage(ctx, from, to)
}
