package billing

import (
	"context"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"time"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/fleet"
	"github.com/neocloud/neocloud/placement"
	"github.com/neocloud/neocloud/sales"
)

// CreditStore is what SLA credits read and keep.
type CreditStore interface {
	Allocations(ctx context.Context, reservationID string) ([]sales.Allocation, error)
	// ConfirmedReports returns a reservation's confirmed tenant reports.
	ConfirmedReports(ctx context.Context, reservationID string) ([]sales.BreakFix, error)
	// HealthLog returns the nodes' health changes in [from, to) and each
	// one's last change before from.
	HealthLog(ctx context.Context, nodeIDs []string, from, to time.Time) ([]fleet.HealthChange, error)
	Maintenances(ctx context.Context, siteID string) ([]sales.Maintenance, error)
	PutCreditSources(ctx context.Context, invoiceID string, line int, c Credit) error
	CreditSources(ctx context.Context, invoiceID string, line int) (Credit, bool, error)
	// LineRecords returns the records on an invoice that a line covers
	// (at most q.Limit of them, by id) and what all of them sum to.
	LineRecords(ctx context.Context, q LineQuery) (LineRecordSet, error)
}

// LineQuery selects an invoice line's records: the tenant's, of a
// contract (and a reservation or a site, where the line names one), of
// hours in [From, To), on the invoice — marked with it, or of revision 0
// in its period (closing the period closed them).
type LineQuery struct {
	InvoiceID, TenantID, ContractID, ReservationID, SiteID string
	PeriodStart, PeriodEnd, From, To                       time.Time
	Limit                                                  int
}

// LineRecordSet is a line's records (the first Limit, by id) and their
// sums over all of them.
type LineRecordSet struct {
	Records     []UsageRecord
	Count       int
	Allocations int
	GPUSeconds  int64
	EnergyJ     int64
}

// LineRecordLimit is how many records a line's lineage lists (the sums
// cover them all).
const LineRecordLimit = 1000

// credits computes the SLA credits of a tenant's committed reservations
// (lease and reserved, with credit tiers) for the month [start, end).
func (s *Service) credits(ctx context.Context, contracts []ContractWork, start, end time.Time) ([]Credit, error) {
	var out []Credit
	to := minTime(end, s.now())
	if !start.Before(to) {
		return nil, nil // a month yet to come has nothing to measure
	}
	for _, c := range contracts {
		if (c.Kind != placement.ClassLease && c.Kind != placement.ClassReserved) || len(c.Terms.SLA.CreditTiers) == 0 {
			continue
		}
		for _, r := range c.Reservations {
			if r.State == sales.ReservationCancelled || r.State == sales.ReservationFailed || r.State == sales.ReservationPending ||
				r.Shape.End == nil || !r.Shape.Start.Before(to) || !r.Shape.End.After(start) {
				continue
			}
			down, excluded, err := s.downtime(ctx, c, r, start, to)
			if err != nil {
				return nil, err
			}
			gs := committedSeconds(ContractWork{Reservations: []sales.Reservation{r}}, start, end)
			charge := roundHalfEven(new(big.Rat).SetFrac(new(big.Int).Mul(big.NewInt(c.Terms.RateMicros), big.NewInt(gs)), big.NewInt(3600)))
			cr := ComputeCredit(SLAInput{Reservation: r, SLA: c.Terms.SLA, Start: start, End: end, Down: down, Excluded: excluded, ChargeMicros: charge})
			cr.AsOf = to
			out = append(out, cr)
		}
	}
	return out, nil
}

// downtime gathers a reservation's down intervals in [from, to) from the
// control plane's own records: failed nodes until their replacement was
// ready, shortfalls until the reservation ended, nodes degraded by a
// condition the contract names, confirmed tenant reports from when they
// were made; and the announced maintenance the contract excludes.
func (s *Service) downtime(ctx context.Context, c ContractWork, r sales.Reservation, from, to time.Time) ([]DownInterval, []Window, error) {
	st, ok := s.Store.(CreditStore)
	if !ok {
		return nil, nil, nil
	}
	allocs, err := st.Allocations(ctx, r.ID)
	if err != nil {
		return nil, nil, err
	}
	byID := map[string]sales.Allocation{}
	for _, a := range allocs {
		byID[a.ID] = a
	}
	root := func(a sales.Allocation) sales.Allocation {
		for i := 0; a.Replaces != "" && i < 1000; i++ {
			p, ok := byID[a.Replaces]
			if !ok {
				break
			}
			a = p
		}
		return a
	}
	clip := func(d DownInterval) (DownInterval, bool) {
		d.From, d.To = maxTime(d.From, from), minTime(d.To, to)
		return d, d.To.After(d.From)
	}
	var down []DownInterval
	add := func(d DownInterval) {
		if d, ok := clip(d); ok {
			down = append(down, d)
		}
	}
	// Failed nodes: from the failure until the replacement was ready (or,
	// not yet ready, until now; a replacement that failed in turn hands on
	// to the next).
	for _, a := range allocs {
		if a.Replaces == "" || a.FailedAt == nil {
			continue
		}
		rt := root(a)
		if rt.ReadyAt == nil {
			continue // the chain never served: no SLA clock yet
		}
		prev := byID[a.Replaces]
		until := to
		switch {
		case a.ReadyAt != nil:
			until = *a.ReadyAt
		case a.EndedAt != nil:
			until = *a.EndedAt
		}
		add(DownInterval{Slot: rt.ID, Node: prev.Hostname, GPUs: len(prev.GPUs), From: *a.FailedAt, To: until, Cause: DownFailed,
			Evidence: fmt.Sprintf("%s failed: %s; replaced by %s (%s)", prev.Hostname, prev.Reason, a.Hostname, a.ID)})
	}
	// Failed nodes whose replacement has no allocation yet: it waits for
	// the spot or internal work reclaimed from its node to leave. Down
	// until now; once bound, the replacement's allocation carries the
	// failure on (and the reservation no longer lists it here).
	for _, p := range r.Replacing {
		prev, ok := byID[p.Replaces]
		if !ok || root(prev).ReadyAt == nil {
			continue
		}
		add(DownInterval{Slot: root(prev).ID, Node: prev.Hostname, GPUs: len(prev.GPUs), From: p.FailedAt, To: to, Cause: DownFailed,
			Evidence: fmt.Sprintf("%s failed: %s; its replacement %s waits for the work reclaimed from it", prev.Hostname, prev.Reason, r.NodeHostname(p.NodeID))})
	}
	// Shortfalls: no replacement to be had.
	for _, sf := range r.Shortfalls {
		until := to
		if sf.Until != nil {
			until = *sf.Until
		}
		slot := sf.Allocation
		if a, ok := byID[sf.Allocation]; ok {
			slot = root(a).ID
		}
		add(DownInterval{Slot: slot, Node: sf.Node, GPUs: sf.GPUs, From: sf.Since, To: until, Cause: DownShortfall, Evidence: "no replacement: " + sf.Reason})
	}
	// Confirmed reports: down from when the tenant reported until the
	// confirmation, or until the node left the work if it left first (a
	// confirmation that comes late counts no time the tenant was served by
	// a replacement).
	reports, err := st.ConfirmedReports(ctx, r.ID)
	if err != nil {
		return nil, nil, err
	}
	for _, b := range reports {
		for _, a := range allocs {
			if a.NodeID == b.NodeID && a.ReadyAt != nil && !a.ReadyAt.After(b.CreatedAt) && (a.EndedAt == nil || a.EndedAt.After(b.CreatedAt)) {
				until := *b.ConfirmedAt
				for _, t := range []*time.Time{a.ReleasedAt, a.EndedAt} {
					if t != nil {
						until = minTime(until, *t)
					}
				}
				add(DownInterval{Slot: root(a).ID, Node: b.Hostname, GPUs: len(a.GPUs), From: b.CreatedAt, To: until, Cause: DownReported,
					Evidence: fmt.Sprintf("tenant report %s: %q, confirmed by %s", b.ID, b.Reason, b.ConfirmedBy)})
			}
		}
	}
	// Degraded by a condition the contract names, while serving.
	if conds := c.Terms.SLA.DegradedConditions; len(conds) > 0 {
		var nodes []string
		for _, a := range allocs {
			if a.ReadyAt != nil && !slices.Contains(nodes, a.NodeID) {
				nodes = append(nodes, a.NodeID)
			}
		}
		log, err := st.HealthLog(ctx, nodes, from, to)
		if err != nil {
			return nil, nil, err
		}
		byNode := map[string][]fleet.HealthChange{}
		for _, h := range log {
			byNode[h.NodeID] = append(byNode[h.NodeID], h)
		}
		for _, a := range allocs {
			if a.ReadyAt == nil {
				continue
			}
			served := to
			for _, t := range []*time.Time{a.ReleasedAt, a.EndedAt} {
				if t != nil {
					served = minTime(served, *t)
				}
			}
			hs := byNode[a.NodeID]
			for i, h := range hs {
				why := matching(h, conds)
				if why == "" {
					continue
				}
				until := to
				if i+1 < len(hs) {
					until = hs[i+1].At
				}
				add(DownInterval{Slot: root(a).ID, Node: a.Hostname, GPUs: len(a.GPUs), From: maxTime(h.At, *a.ReadyAt), To: minTime(until, served), Cause: DownDegraded,
					Evidence: "degraded: " + why})
			}
		}
	}
	// Maintenance announced at least the contract's notice ahead.
	var excluded []Window
	if c.Terms.SLA.ExcludeAnnouncedMaintenance {
		ms, err := st.Maintenances(ctx, r.Shape.Site)
		if err != nil {
			return nil, nil, err
		}
		notice := time.Duration(c.Terms.SLA.MaintenanceNoticeS) * time.Second
		for _, m := range ms {
			if m.State != "cancelled" && slices.Contains(m.Touched, r.ID) && m.Start.Sub(m.CreatedAt) >= notice {
				excluded = append(excluded, Window{From: m.Start, To: m.End, Reason: m.Reason})
			}
		}
	}
	return down, excluded, nil
}

// matching says which of a degraded node's reasons a contract names.
func matching(h fleet.HealthChange, conds []string) string {
	if h.Health != fleet.HealthDegraded {
		return ""
	}
	for _, why := range h.Reasons {
		for _, c := range conds {
			if strings.Contains(strings.ToLower(why), strings.ToLower(c)) {
				return why
			}
		}
	}
	return ""
}

// creditLines are the credits' invoice lines: one per reservation whose
// availability fell below a tier.
func creditLines(credits []Credit, contracts map[string]ContractWork) map[string][]Line {
	out := map[string][]Line{}
	for _, c := range credits {
		if c.CreditMicros <= 0 {
			continue
		}
		k := contracts[c.ContractID]
		cur := k.Terms.Currency
		if cur == "" {
			cur = "USD"
		}
		ms, me, _ := Month("", c.Period)
		cr := c
		out[cur] = append(out[cur], Line{Kind: LineCredit, ContractID: c.ContractID, ReservationID: c.ReservationID, Class: string(k.Kind),
			Description: fmt.Sprintf("SLA credit, %s: availability %s%% (%d down of %d GPU-minutes), %s: %s%% of %s", ms.Format("January 2006"), c.Availability,
				c.DownGPUMinutes, c.GPUMinutes, c.Tier, c.Percent, money(c.ChargeMicros)),
			ServiceStart: ms, ServiceEnd: me, Quantity: "1", Unit: "amount", UnitPrice: money(-c.CreditMicros), AmountMicros: -c.CreditMicros, credit: &cr})
	}
	return out
}

// Credits returns a tenant's SLA credits for a month (the open one as it
// stands): every committed reservation's availability, its down intervals
// and the credit earned.
func (s *Service) Credits(ctx context.Context, p neocloud.Principal, tenantRef, period string) ([]Credit, error) {
	t, err := s.tenantOf(ctx, p, tenantRef)
	if err != nil {
		return nil, err
	}
	start, end, err := Month("query.period", period)
	if err != nil {
		return nil, err
	}
	cs, err := s.contractWork(ctx, t.ID)
	if err != nil {
		return nil, err
	}
	out, err := s.credits(ctx, cs, start, end)
	if out == nil {
		out = []Credit{}
	}
	return out, err
}

// ReservationShare is what a commitment line charges one reservation for:
// its GPUs over the part of its window in the line's service period.
type ReservationShare struct {
	ReservationID string    `json:"reservation_id"`
	GPUs          int       `json:"gpus"`
	From          time.Time `json:"from"`
	To            time.Time `json:"to"`
	GPUSeconds    int64     `json:"gpu_seconds"`
}

// LineSources is what an invoice line rests on, down to the telemetry:
// the usage records (with their allocations and energy) behind a usage,
// energy or adjustment line and what they sum to; the reservations behind
// a commitment; the availability and down intervals, with their evidence,
// behind a credit.
type LineSources struct {
	InvoiceID        string             `json:"invoice_id"`
	Number           string             `json:"number"`
	Line             Line               `json:"line"`
	Records          []UsageRecord      `json:"records,omitempty" doc:"The first 1,000 records by id; the sums cover them all."`
	RecordsTotal     int                `json:"records_total,omitempty"`
	Allocations      []string           `json:"allocations,omitempty" doc:"The allocations of the records listed."`
	AllocationsTotal int                `json:"allocations_total,omitempty"`
	GPUSeconds       int64              `json:"gpu_seconds" doc:"What the records (or reservations) sum to."`
	EnergyJ          int64              `json:"energy_j"`
	Reservations     []ReservationShare `json:"reservations,omitempty"`
	Credit           *Credit            `json:"credit,omitempty"`
}

// Sources explains line n of an invoice p may see.
func (s *Service) Sources(ctx context.Context, p neocloud.Principal, ref string, n int) (LineSources, error) {
	inv, err := s.InvoiceByRef(ctx, p, ref)
	if err != nil {
		return LineSources{}, err
	}
	if n < 1 || n > len(inv.Lines) {
		return LineSources{}, neocloud.NotFound("line", fmt.Sprintf("%s/%d", inv.Number, n))
	}
	l := inv.Lines[n-1]
	out := LineSources{InvoiceID: inv.ID, Number: inv.Number, Line: l}
	st, ok := s.Store.(CreditStore)
	if !ok {
		return out, nil
	}
	switch l.Kind {
	case LineCommitment:
		cs, err := s.contractWork(ctx, inv.TenantID)
		if err != nil {
			return out, err
		}
		for _, c := range cs {
			if c.ID != l.ContractID {
				continue
			}
			for _, r := range c.Reservations {
				gs := committedSeconds(ContractWork{Reservations: []sales.Reservation{r}}, l.ServiceStart, l.ServiceEnd)
				if gs > 0 {
					from, to := maxTime(r.Shape.Start, l.ServiceStart), minTime(*r.Shape.End, l.ServiceEnd)
					out.Reservations = append(out.Reservations, ReservationShare{ReservationID: r.ID, GPUs: r.Shape.GPUs, From: from, To: to, GPUSeconds: gs})
					out.GPUSeconds += gs
				}
			}
		}
	case LineCredit:
		c, ok, err := st.CreditSources(ctx, inv.ID, n)
		if err != nil {
			return out, err
		}
		if ok {
			out.Credit = &c
		}
	default:
		// A line's records: its contract's (reservation's, site's) on this
		// invoice, in the line's hours (the period's, or one earlier
		// month's for an adjustment).
		set, err := st.LineRecords(ctx, LineQuery{InvoiceID: inv.ID, TenantID: inv.TenantID, ContractID: l.ContractID, ReservationID: l.ReservationID,
			SiteID: l.SiteID, PeriodStart: inv.PeriodStart, PeriodEnd: inv.PeriodEnd, From: l.ServiceStart.Truncate(time.Hour), To: l.ServiceEnd, Limit: LineRecordLimit})
		if err != nil {
			return out, err
		}
		out.Records, out.RecordsTotal, out.AllocationsTotal, out.GPUSeconds, out.EnergyJ = set.Records, set.Count, set.Allocations, set.GPUSeconds, set.EnergyJ
		seen := map[string]bool{}
		for _, r := range out.Records {
			if !seen[r.AllocationID] {
				seen[r.AllocationID] = true
				out.Allocations = append(out.Allocations, r.AllocationID)
			}
		}
	}
	return out, nil
}
