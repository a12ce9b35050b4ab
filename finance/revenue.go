package finance

import (
	"math/big"
	"sort"
	"time"

	"github.com/neocloud/neocloud/billing"
	"github.com/neocloud/neocloud/pricing"
)

// Charge is one performance obligation's price: an invoice line, a
// month's take-or-pay charge of a committed contract (invoiced or not
// yet), or what a draft says has been earned and not yet invoiced. It is
// earned evenly over its service period and invoiced at IssuedAt (nil:
// not yet).
type Charge struct {
	Key          string
	TenantID     string
	ContractID   string
	Class        string
	Kind         string // a billing line kind
	SiteID       string
	AmountMicros int64
	ServiceStart time.Time
	ServiceEnd   time.Time
	IssuedAt     *time.Time
	// Signed: when the contract behind a committed charge was signed
	// (backlog counts it from then).
	Signed time.Time
}

// Committed reports whether a charge is a committed contract's
// take-or-pay charge (backlog while unearned).
func (c Charge) Committed() bool { return c.Kind == "commitment" }

// Earned is how much of the charge is earned before t: its amount × the
// share of its service period before t, rounded half-even. Every balance
// is a difference of Earned at two instants, so they reconcile to the
// micro-unit.
func (c Charge) Earned(t time.Time) int64 {
	if !t.After(c.ServiceStart) {
		return 0
	}
	if !t.Before(c.ServiceEnd) || !c.ServiceEnd.After(c.ServiceStart) {
		return c.AmountMicros
	}
	num := new(big.Int).Mul(big.NewInt(c.AmountMicros), big.NewInt(int64(t.Sub(c.ServiceStart)/time.Microsecond)))
	return roundHalfEven(new(big.Rat).SetFrac(num, big.NewInt(int64(c.ServiceEnd.Sub(c.ServiceStart)/time.Microsecond))))
}

// invoiced reports whether the charge was invoiced before t (periods are
// half-open: an invoice issued at a period's end is the next period's).
func (c Charge) invoiced(t time.Time) bool { return c.IssuedAt != nil && c.IssuedAt.Before(t) }

// Deferred is billed and not yet earned at t; Unbilled earned and not yet
// billed.
func (c Charge) Deferred(t time.Time) int64 {
	if c.invoiced(t) {
		return c.AmountMicros - c.Earned(t)
	}
	return 0
}

// Unbilled is earned by t and not invoiced by then.
func (c Charge) Unbilled(t time.Time) int64 {
	if c.invoiced(t) {
		return 0
	}
	return c.Earned(t)
}

// Money is an amount in micro-units with its decimal form.
type Money struct {
	Micros int64  `json:"micros"`
	Amount string `json:"amount"`
}

func money(m int64) Money { return Money{Micros: m, Amount: pricing.FormatMicros(m)} }

// RevenueRow is recognized revenue of one tenant, class or kind.
type RevenueRow struct {
	Key        string `json:"key"`
	Recognized Money  `json:"recognized"`
	// PricePerGPUHour (classes): recognized ÷ the class's GPU-hours.
	PricePerGPUHour string `json:"price_per_gpu_hour,omitempty"`
}

// Revenue is a site's revenue for a period as an auditor reads it.
type Revenue struct {
	SiteID   string    `json:"site_id"`
	SiteName string    `json:"site_name"`
	Period   string    `json:"period"`
	From     time.Time `json:"from"`
	To       time.Time `json:"to"`
	Currency string    `json:"currency"`
	// Recognized: earned in the period (committed charges evenly over
	// their service month, usage as delivered, SLA credits in the month
	// of the service they credit).
	Recognized Money `json:"recognized"`
	// Invoiced: invoices and credit notes issued in the period (before
	// tax).
	Invoiced Money `json:"invoiced"`
	// Deferred (billed, not yet earned) and Unbilled (earned, not yet
	// billed) at the period's start and end.
	DeferredStart Money `json:"deferred_start"`
	DeferredEnd   Money `json:"deferred_end"`
	UnbilledStart Money `json:"unbilled_start"`
	UnbilledEnd   Money `json:"unbilled_end"`
	// Identity: recognized + Δdeferred − Δunbilled = invoiced, to the
	// micro-unit.
	Identity  string       `json:"identity"`
	ByTenant  []RevenueRow `json:"by_tenant"`
	ByClass   []RevenueRow `json:"by_class"`
	ByKind    []RevenueRow `json:"by_kind"`
	Charges   int          `json:"charges" doc:"Obligations behind the figures."`
	Estimated bool         `json:"estimated" doc:"Part of the period is still open: its usage as drafted so far."`
}

// RecognizeRevenue sums charges over [from, to). gpuSeconds gives each
// class's GPU-seconds for realized prices (nil: none).
func RecognizeRevenue(charges []Charge, from, to time.Time, gpuSeconds map[string]int64) Revenue {
	r := Revenue{From: from, To: to}
	var rec, inv, ds, de, us, ue int64
	by := map[string]map[string]int64{"tenant": {}, "class": {}, "kind": {}}
	for _, c := range charges {
		e := c.Earned(to) - c.Earned(from)
		rec += e
		if c.invoiced(to) && !c.invoiced(from) {
			inv += c.AmountMicros
		}
		ds += c.Deferred(from)
		de += c.Deferred(to)
		us += c.Unbilled(from)
		ue += c.Unbilled(to)
		if e != 0 {
			by["tenant"][c.TenantID] += e
			by["class"][c.Class] += e
			by["kind"][c.Kind] += e
		}
	}
	r.Recognized, r.Invoiced = money(rec), money(inv)
	r.DeferredStart, r.DeferredEnd, r.UnbilledStart, r.UnbilledEnd = money(ds), money(de), money(us), money(ue)
	r.Identity = "holds"
	if rec+(de-ds)-(ue-us) != inv {
		r.Identity = "does not hold" // a charge was counted twice or not at all
	}
	rows := func(m map[string]int64, prices bool) []RevenueRow {
		var out []RevenueRow
		for k, v := range m {
			row := RevenueRow{Key: k, Recognized: money(v)}
			if prices && gpuSeconds[k] > 0 {
				row.PricePerGPUHour = pricing.FormatMicros(roundHalfEven(mulDiv(v, 3600, gpuSeconds[k])))
			}
			out = append(out, row)
		}
		sort.Slice(out, func(i, j int) bool {
			if out[i].Recognized.Micros != out[j].Recognized.Micros {
				return out[i].Recognized.Micros > out[j].Recognized.Micros
			}
			return out[i].Key < out[j].Key
		})
		return out
	}
	r.ByTenant, r.ByClass, r.ByKind = rows(by["tenant"], false), rows(by["class"], true), rows(by["kind"], false)
	r.Charges = len(charges)
	return r
}

// roundHalfEven is billing's one rounding.
func roundHalfEven(r *big.Rat) int64 { return billing.RoundHalfEven(r) }
