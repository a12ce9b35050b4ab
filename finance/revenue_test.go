package finance

import (
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/neocloud/neocloud/billing"
	"github.com/neocloud/neocloud/sales"
)

// genCharges draws charges over 2027: take-or-pay months of contracts,
// usage and credits, invoiced before, during or after their service, or
// not yet.
func genCharges(t *rapid.T) []Charge {
	var cs []Charge
	for i := range rapid.IntRange(1, 30).Draw(t, "charges") {
		start := t0.Add(time.Duration(rapid.Int64Range(0, 300*24).Draw(t, "start_h")) * time.Hour)
		end := start.Add(time.Duration(rapid.Int64Range(1, 40*24*3600).Draw(t, "len_s")) * time.Second)
		kind := rapid.SampledFrom([]string{"commitment", "usage", "energy", "credit"}).Draw(t, "kind")
		amount := rapid.Int64Range(1, 5_000_000_000_000).Draw(t, "amount")
		if kind == "credit" {
			amount = -amount / 10
		}
		c := Charge{Key: string(rune('a' + i)), TenantID: rapid.SampledFrom([]string{"t1", "t2", "t3", "t4", "t5", "t6"}).Draw(t, "tenant"),
			ContractID: rapid.SampledFrom([]string{"c1", "c2", "c3"}).Draw(t, "contract"), Kind: kind, Class: "reserved",
			AmountMicros: amount, ServiceStart: start, ServiceEnd: end, Signed: t0.AddDate(0, -2, 0)}
		if rapid.Bool().Draw(t, "issued") {
			at := start.Add(time.Duration(rapid.Int64Range(-40*24, 60*24).Draw(t, "issue_h")) * time.Hour)
			c.IssuedAt = &at
		}
		cs = append(cs, c)
	}
	return cs
}

// Over any span: recognized + Δdeferred − Δunbilled = invoiced, to the
// micro-unit; and, no contract being signed within it, the backlog falls
// by exactly the committed charges recognized in it.
func TestRevenueReconciles(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		cs := genCharges(t)
		from := t0.Add(time.Duration(rapid.Int64Range(-30*24, 360*24).Draw(t, "from_h")) * time.Hour)
		to := from.Add(time.Duration(rapid.Int64Range(1, 120*24*3600).Draw(t, "span_s")) * time.Second)
		r := RecognizeRevenue(cs, from, to, nil)
		// Independent sums, charge by charge.
		var inv, rec int64
		for _, c := range cs {
			if c.IssuedAt != nil && !c.IssuedAt.Before(from) && c.IssuedAt.Before(to) {
				inv += c.AmountMicros
			}
			rec += c.Earned(to) - c.Earned(from)
		}
		if r.Invoiced.Micros != inv || r.Recognized.Micros != rec {
			t.Fatalf("invoiced %d (want %d), recognized %d (want %d)", r.Invoiced.Micros, inv, r.Recognized.Micros, rec)
		}
		if got := r.Recognized.Micros + (r.DeferredEnd.Micros - r.DeferredStart.Micros) - (r.UnbilledEnd.Micros - r.UnbilledStart.Micros); got != r.Invoiced.Micros || r.Identity != "holds" {
			t.Fatalf("recognized + Δdeferred − Δunbilled = %d, invoiced %d", got, r.Invoiced.Micros)
		}
		var committed int64
		for _, c := range cs {
			if c.Committed() {
				committed += c.Earned(to) - c.Earned(from)
			}
		}
		b0, b1 := ComputeBacklog(cs, from), ComputeBacklog(cs, to)
		if b0.Total.Micros-b1.Total.Micros != committed {
			t.Fatalf("backlog fell by %d, committed charges recognized %d", b0.Total.Micros-b1.Total.Micros, committed)
		}
		var years int64
		for _, y := range b0.ByYear {
			years += y.Amount.Micros
		}
		if years != b0.Total.Micros {
			t.Fatalf("backlog by year sums to %d, total %d", years, b0.Total.Micros)
		}
	})
}

// A charge is earned evenly over its service period and wholly by its end.
func TestEarnedEvenly(t *testing.T) {
	c := Charge{AmountMicros: 3_000_000, ServiceStart: t0, ServiceEnd: t0.Add(3 * time.Hour)}
	for h, want := range []int64{0, 1_000_000, 2_000_000, 3_000_000, 3_000_000} {
		if got := c.Earned(t0.Add(time.Duration(h) * time.Hour)); got != want {
			t.Errorf("after %d h: %d, want %d", h, got, want)
		}
	}
	if c.Earned(t0.Add(-time.Hour)) != 0 {
		t.Error("earned before its service")
	}
}

// A phased contract's month is earned as its capacity is delivered: the
// charge splits over the reservations' spans by GPU-seconds, the parts
// summing to the charge.
func TestCommitmentByCapacity(t *testing.T) {
	mar, apr := time.Date(2027, 3, 1, 0, 0, 0, 0, time.UTC), time.Date(2027, 4, 1, 0, 0, 0, 0, time.UTC)
	phase2 := mar.AddDate(0, 0, 20)
	w := billing.ContractWork{Reservations: []sales.Reservation{
		{State: sales.ReservationActive, Shape: sales.Shape{GPUs: 16, Start: mar.AddDate(0, -1, 0), End: &apr}},
		{State: sales.ReservationActive, Shape: sales.Shape{GPUs: 16, Start: phase2, End: &apr}},
		{State: sales.ReservationCancelled, Shape: sales.Shape{GPUs: 64, Start: mar, End: &apr}},
	}}
	c := Charge{Key: "commit:c:2027-03", Kind: "commitment", AmountMicros: 1_000_000_001, ServiceStart: mar, ServiceEnd: apr}
	parts := byCapacity(c, w)
	if len(parts) != 2 || parts[0].AmountMicros+parts[1].AmountMicros != c.AmountMicros || !parts[1].ServiceStart.Equal(phase2) {
		t.Fatalf("parts %+v", parts)
	}
	// 31 days × 16 GPUs against 11 days × 16 GPUs.
	if want := roundHalfEven(mulDiv(1_000_000_001, 31, 42)); parts[0].AmountMicros != want {
		t.Fatalf("the first phase's part: %d, want %d", parts[0].AmountMicros, want)
	}
	if earned := parts[0].Earned(phase2) + parts[1].Earned(phase2); earned != parts[0].Earned(phase2) || earned == 0 {
		t.Fatalf("by phase 2's start: %d earned", earned)
	}
}
