package billing

import (
	"fmt"
	"math/big"
	"sort"
	"strconv"
	"time"

	"github.com/neocloud/neocloud/sales"
)

// Causes of downtime.
const (
	DownFailed    = "failed"    // the node failed: down until its replacement is ready
	DownShortfall = "shortfall" // no replacement was found: down until the reservation ends
	DownDegraded  = "degraded"  // degraded by a condition the contract names
	DownReported  = "reported"  // the tenant reported it and an operator confirmed
)

// DownInterval is time some of a reservation's GPUs were down, with the
// evidence for it. Slot names the allocation whose GPUs were down (the
// first of a chain of replacements): intervals of one slot overlap, and
// count once.
type DownInterval struct {
	Slot     string    `json:"slot" doc:"The allocation whose GPUs were down."`
	Node     string    `json:"node"`
	GPUs     int       `json:"gpus"`
	From     time.Time `json:"from"`
	To       time.Time `json:"to"`
	Cause    string    `json:"cause" enum:"failed,shortfall,degraded,reported"`
	Evidence string    `json:"evidence" doc:"What says so: the failure's reasons, the health change, the report."`
}

// Window is a span of time, e.g. announced maintenance excluded from the
// SLA.
type Window struct {
	From   time.Time `json:"from"`
	To     time.Time `json:"to"`
	Reason string    `json:"reason,omitempty"`
}

// SLAInput is what one reservation's availability in one month depends on.
type SLAInput struct {
	Reservation sales.Reservation
	SLA         sales.SLA
	Start, End  time.Time // the month
	Down        []DownInterval
	Excluded    []Window // announced maintenance the contract excludes
	// ChargeMicros is the reservation's charge for the month, which the
	// credit is a share of.
	ChargeMicros int64
}

// Credit is a reservation's availability in a month and the credit it
// earns, with the down intervals behind it.
type Credit struct {
	ReservationID  string         `json:"reservation_id"`
	ContractID     string         `json:"contract_id"`
	TenantID       string         `json:"tenant_id"`
	Period         string         `json:"period"`
	GPUMinutes     int64          `json:"gpu_minutes" doc:"GPU-minutes promised in the month."`
	DownGPUMinutes int64          `json:"down_gpu_minutes" doc:"A minute with any down second is a down minute."`
	Availability   string         `json:"availability_percent" doc:"Rounded to four decimals for display; tiers compare exactly."`
	Tier           string         `json:"tier,omitempty" doc:"The tier reached, e.g. below 99.9%."`
	Percent        string         `json:"credit_percent" doc:"Of the month's charge, after the cap."`
	ChargeMicros   int64          `json:"charge_micros"`
	CreditMicros   int64          `json:"credit_micros"`
	Charge         string         `json:"charge" doc:"charge_micros in the currency's units, e.g. 1365388.80."`
	Credit         string         `json:"credit" doc:"credit_micros in the currency's units."`
	Down           []DownInterval `json:"down,omitempty"`
	AsOf           time.Time      `json:"as_of,omitzero" doc:"Down time is counted up to here: the month's end once it is over; while it is open, now, and availability assumes nothing more goes down."`
}

// ComputeCredit measures a reservation's availability in a month per
// GPU-minute and the credit its contract's tiers give:
//
//   - promised: every minute of the month within the reservation's window,
//     less announced maintenance the contract excludes, × its GPUs;
//   - down: per slot, every minute with any down second (overlapping
//     intervals of a slot count once; excluded minutes do not count), ×
//     the slot's GPUs;
//   - availability = (promised − down) / promised, compared with each tier's
//     threshold exactly (rationals, no floating point): a tier applies when
//     availability is strictly below it; the largest credit applies, capped
//     by the contract; exactly 99.9% earns nothing from a "below 99.9" tier;
//   - credit = charge × percent, rounded once, half to even.
func ComputeCredit(in SLAInput) Credit {
	r := in.Reservation
	c := Credit{ReservationID: r.ID, ContractID: r.ContractID, TenantID: r.TenantID, Period: MonthOf(in.Start), ChargeMicros: in.ChargeMicros, Percent: "0",
		Charge: money(in.ChargeMicros), Credit: money(0)}
	from, to := maxTime(r.Shape.Start, in.Start), in.End
	if r.Shape.End != nil {
		to = minTime(*r.Shape.End, to)
	}
	lo, hi := minuteOf(from), minuteCeil(to)
	if hi <= lo {
		c.Availability = "100.0000"
		return c
	}
	excluded := map[int64]bool{}
	for _, w := range in.Excluded {
		for m := max(lo, minuteOf(w.From)); m < min(hi, minuteCeil(w.To)); m++ {
			excluded[m] = true
		}
	}
	minutes := hi - lo - int64(len(excluded))
	c.GPUMinutes = minutes * int64(r.Shape.GPUs)
	// Down minutes per slot.
	slots := map[string]map[int64]bool{}
	gpus := map[string]int{}
	for _, d := range in.Down {
		if !d.To.After(d.From) {
			continue
		}
		set := slots[d.Slot]
		if set == nil {
			set = map[int64]bool{}
			slots[d.Slot] = set
		}
		gpus[d.Slot] = max(gpus[d.Slot], d.GPUs)
		for m := max(lo, minuteOf(d.From)); m < min(hi, minuteCeil(d.To)); m++ {
			if !excluded[m] {
				set[m] = true
			}
		}
		c.Down = append(c.Down, d)
	}
	for slot, set := range slots {
		c.DownGPUMinutes += int64(len(set)) * int64(gpus[slot])
	}
	c.DownGPUMinutes = min(c.DownGPUMinutes, c.GPUMinutes)
	sort.Slice(c.Down, func(i, j int) bool {
		if !c.Down[i].From.Equal(c.Down[j].From) {
			return c.Down[i].From.Before(c.Down[j].From)
		}
		return c.Down[i].Slot < c.Down[j].Slot
	})
	if c.GPUMinutes == 0 {
		c.Availability = "100.0000"
		return c
	}
	avail := big.NewRat(c.GPUMinutes-c.DownGPUMinutes, c.GPUMinutes)
	avail.Mul(avail, big.NewRat(100, 1))
	c.Availability = decimal(avail, 4)
	best := new(big.Rat)
	for _, t := range in.SLA.CreditTiers {
		below, pct := exact(t.Below), exact(t.Percent)
		if avail.Cmp(below) < 0 && pct.Cmp(best) > 0 {
			best = pct
			c.Tier = "below " + strconv.FormatFloat(t.Below, 'f', -1, 64) + "%"
		}
	}
	if capPct := exact(in.SLA.CreditCapPercent); in.SLA.CreditCapPercent > 0 && best.Cmp(capPct) > 0 {
		best = capPct
		c.Tier += fmt.Sprintf(", capped at %s%%", strconv.FormatFloat(in.SLA.CreditCapPercent, 'f', -1, 64))
	}
	c.Percent = best.FloatString(2)
	credit := new(big.Rat).Mul(big.NewRat(in.ChargeMicros, 1), best)
	c.CreditMicros = roundHalfEven(credit.Quo(credit, big.NewRat(100, 1)))
	c.Credit = money(c.CreditMicros)
	return c
}

// exact is a contract's decimal percent as the exact rational its text
// says (99.9 is 999/10, not the nearest binary fraction).
func exact(f float64) *big.Rat {
	r, _ := new(big.Rat).SetString(strconv.FormatFloat(f, 'f', -1, 64))
	return r
}

func minuteOf(t time.Time) int64   { return t.Unix() / 60 }
func minuteCeil(t time.Time) int64 { return (t.UnixMicro() + 60_000_000 - 1) / 60_000_000 }
