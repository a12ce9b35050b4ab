package billing

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/big"
	"math/rand/v2"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/neocloud/neocloud/agents"
	"github.com/neocloud/neocloud/placement"
	"github.com/neocloud/neocloud/pricing"
	"github.com/neocloud/neocloud/sales"
)

// month draws a tenant's month of work: a reserved contract billed in
// advance with power pass-through, a standing on-demand and a spot
// contract, allocations on their reservations ready and released at random
// instants (some across the month's edges), hourly energy readings with
// the odd counter reset, price book changes and a spot series.
func month(t *rapid.T) *scenario {
	s := newScenario("2027-01")
	start, end := s.in.Start, s.in.End
	instant := func(label string, from, to time.Time) time.Time {
		us := rapid.Int64Range(0, to.Sub(from).Microseconds()-1).Draw(t, label)
		return from.Add(time.Duration(us) * time.Microsecond)
	}
	rEnd := instant("reserved end", start.Add(10*24*time.Hour), end.Add(20*24*time.Hour))
	rStart := instant("reserved start", start.Add(-5*24*time.Hour), rEnd.Add(-time.Hour))
	c := s.contract("ctr_res", placement.ClassReserved, rapid.Int64Range(1, 5_000_000).Draw(t, "reserved rate"), rStart, &rEnd, "monthly_in_advance",
		rsv("rsv_res", 8*rapid.IntRange(1, 4).Draw(t, "reserved nodes"), rStart, &rEnd))
	c.Terms.PowerPassThrough = true
	s.contract("ctr_od", placement.ClassOnDemand, 3_000_000, start.AddDate(0, -2, 0), nil, "monthly_in_arrears", rsv("rsv_od", 8, start.AddDate(0, -2, 0), nil))
	s.contract("ctr_spot", placement.ClassSpot, 1_000_000, start.AddDate(0, -2, 0), nil, "monthly_in_arrears", rsv("rsv_spot", 8, start.AddDate(0, -2, 0), nil))
	for i := range rapid.IntRange(0, 3).Draw(t, "price changes") {
		s.in.Prices = append(s.in.Prices, pricing.Price{SKU: "h100", Class: "on_demand", ListMicros: rapid.Int64Range(1, 9_000_000).Draw(t, "list"),
			// Distinct instants, as the book's unique key keeps them; two
			// may share a second.
			EffectiveAt: instant(fmt.Sprint("price ", i), start.AddDate(0, -1, 0), end).Add(time.Duration(i) * time.Microsecond)})
	}
	for i := range rapid.IntRange(0, 6).Draw(t, "spot points") {
		s.in.Spot = append(s.in.Spot, SpotPoint{SiteID: "sit_1", SKU: "h100", RateMicros: rapid.Int64Range(0, 3_000_000).Draw(t, "spot"),
			At: instant(fmt.Sprint("spot ", i), start, end).Truncate(time.Second).Add(time.Duration(i) * time.Microsecond)})
	}
	kinds := []struct{ contract, class, rsv string }{{"ctr_res", "reserved", "rsv_res"}, {"ctr_od", "on_demand", "rsv_od"}, {"ctr_spot", "spot", "rsv_spot"}}
	for i := range rapid.IntRange(1, 5).Draw(t, "allocations") {
		k := kinds[rapid.IntRange(0, 2).Draw(t, "kind")]
		ready := instant("ready", start.Add(-6*time.Hour), end.Add(-time.Minute))
		var released *time.Time
		if rapid.Bool().Draw(t, "released") {
			released = ptr(instant("released", ready.Add(time.Second), minTime(end.Add(6*time.Hour), ready.Add(30*time.Hour))))
		}
		node, id := fmt.Sprintf("nod_%d", i), fmt.Sprintf("alc_%d", i)
		s.alloc(id, k.contract, k.class, k.rsv, node, ready, released)
		// Readings: at ready, hourly while ready, at release.
		e := uint64(rapid.Int64Range(0, 1e12).Draw(t, "counter"))
		s.energy(node, id, "ready", ready, func(int) uint64 { return e })
		stop := end.Add(time.Hour)
		if released != nil {
			stop = *released
		}
		for h := ready.Truncate(time.Hour).Add(time.Hour); h.Before(stop); h = h.Add(time.Hour) {
			e += uint64(rapid.Int64Range(0, 3_000_000).Draw(t, "joules"))
			if rapid.IntRange(0, 40).Draw(t, "reset") == 0 {
				e = uint64(rapid.Int64Range(0, 1_000_000).Draw(t, "after reset"))
			}
			v := e
			s.energy(node, "", "hourly", h.Add(time.Duration(rapid.IntRange(0, 900).Draw(t, "lag ms"))*time.Millisecond), func(int) uint64 { return v })
		}
		if released != nil {
			e += 1000
			v := e
			s.energy(node, id, "released", *released, func(int) uint64 { return v })
		}
	}
	return s
}

func invoiceBytes(t *rapid.T, in RateInput) []byte {
	invs, err := Rate(in)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	for _, inv := range invs {
		var sum int64
		for _, l := range inv.Lines {
			sum += l.AmountMicros
		}
		if sum != inv.SubtotalMicros || inv.SubtotalMicros+inv.TaxMicros != inv.TotalMicros {
			t.Fatalf("lines %d, subtotal %d, tax %d, total %d", sum, inv.SubtotalMicros, inv.TaxMicros, inv.TotalMicros)
		}
		j, _ := json.Marshal(inv)
		c, err := CSV(inv)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(j)
		b.Write(c)
	}
	return b.Bytes()
}

// Re-deriving, duplicating or reordering the underlying events (energy
// readings, allocations, records, price points) gives byte-identical
// invoices, whose lines sum to their totals; the GPU-seconds metered are
// exactly each allocation's ready seconds in the month.
func TestInvoicesArePureFunctionsOfTheirEvents(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s := month(t)
		s.derive(s.in.Start, s.in.End)
		want := invoiceBytes(t, s.in)

		// Metered seconds: every allocation's, clipped to the month.
		var metered, expect int64
		for _, r := range s.in.Records {
			metered += r.GPUSeconds
		}
		for _, m := range s.allocs {
			from := maxTime(m.ReadyAt.Truncate(time.Second), s.in.Start)
			to := s.in.End
			if m.ReleasedAt != nil {
				to = minTime(m.ReleasedAt.Truncate(time.Second), to)
			}
			if to.After(from) {
				expect += int64(to.Sub(from)/time.Second) * 8
			}
		}
		if metered != expect {
			t.Fatalf("metered %d GPU-seconds, allocations were ready %d", metered, expect)
		}

		// The same events, shuffled and partly duplicated, derived hour by
		// hour in several passes, then derived again.
		rng := rand.New(rand.NewPCG(rapid.Uint64().Draw(t, "seed"), 1))
		o := *s
		o.readings = append([]agents.EnergyReading(nil), s.readings...)
		for _, r := range s.readings {
			if rng.IntN(3) == 0 {
				o.readings = append(o.readings, r)
			}
		}
		rng.Shuffle(len(o.readings), func(i, j int) { o.readings[i], o.readings[j] = o.readings[j], o.readings[i] })
		o.allocs = append([]Metered(nil), s.allocs...)
		rng.Shuffle(len(o.allocs), func(i, j int) { o.allocs[i], o.allocs[j] = o.allocs[j], o.allocs[i] })
		o.in.Records = nil
		cut := s.in.Start.Add(time.Duration(rng.IntN(31*24)) * time.Hour)
		o.derive(s.in.Start, cut)
		o.derive(cut, s.in.End)
		// Re-deriving the whole month finds nothing to change.
		stored := map[string][]UsageRecord{}
		for _, r := range o.in.Records {
			stored[r.AllocationID+r.Hour.String()] = append(stored[r.AllocationID+r.Hour.String()], r)
		}
		for _, m := range o.allocs {
			for _, r := range Derive(m, o.readings, s.in.Start, s.in.End) {
				if i, u := Reconcile(r, stored[r.AllocationID+r.Hour.String()], time.Time{}); i != nil || u != nil {
					t.Fatalf("re-deriving changed %s: insert %v update %v", r.ID, i, u)
				}
			}
		}
		rng.Shuffle(len(o.in.Records), func(i, j int) { o.in.Records[i], o.in.Records[j] = o.in.Records[j], o.in.Records[i] })
		o.in.Contracts = append([]ContractWork(nil), s.in.Contracts...)
		rng.Shuffle(len(o.in.Contracts), func(i, j int) { o.in.Contracts[i], o.in.Contracts[j] = o.in.Contracts[j], o.in.Contracts[i] })
		o.in.Prices = append([]pricing.Price(nil), s.in.Prices...)
		rng.Shuffle(len(o.in.Prices), func(i, j int) { o.in.Prices[i], o.in.Prices[j] = o.in.Prices[j], o.in.Prices[i] })
		o.in.Spot = append([]SpotPoint(nil), s.in.Spot...)
		rng.Shuffle(len(o.in.Spot), func(i, j int) { o.in.Spot[i], o.in.Spot[j] = o.in.Spot[j], o.in.Spot[i] })
		if got := invoiceBytes(t, o.in); !bytes.Equal(got, want) {
			t.Fatalf("the invoices differ:\n%s\n%s", want, got)
		}

		// Rated from spans (as a close rates), the invoices are the same
		// bytes: the records of each allocation-month tile its span.
		spans := Spans(o.in.Records)
		for _, sp := range spans {
			if !sp.Tiles() {
				t.Fatalf("span %s does not tile: %+v", sp.ID, sp)
			}
		}
		o.in.Records = spans
		if got := invoiceBytes(t, o.in); !bytes.Equal(got, want) {
			t.Fatalf("rated from spans, the invoices differ:\n%s\n%s", want, got)
		}
	})
}

// A correction to an invoiced record holds exactly the difference, and
// the revisions always sum to the latest derivation.
func TestReconcileKeepsRevisionsSummingToTheLatest(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		base := UsageRecord{AllocationID: "alc_1", Hour: at("2027-01-03T10:00:00Z"), Start: at("2027-01-03T10:00:00Z"), End: at("2027-01-03T11:00:00Z"), GPUs: 8, EnergySource: SourceEstimated}
		var stored []UsageRecord
		var closedThrough time.Time // the month closes: its records of revision 0 are closed
		for i := range rapid.IntRange(1, 6).Draw(t, "derivations") {
			fresh := base
			fresh.GPUSeconds = rapid.Int64Range(0, 28_800).Draw(t, "seconds")
			fresh.GPUEnergyJ = rapid.Int64Range(0, 1e8).Draw(t, "gpu j")
			fresh.EnergyJ = rapid.Int64Range(0, 2e8).Draw(t, "j")
			fresh.ID = RecordID(fresh.AllocationID, fresh.Hour, 0)
			ins, upd := Reconcile(fresh, append([]UsageRecord(nil), stored...), closedThrough)
			switch {
			case ins != nil:
				stored = append(stored, *ins)
			case upd != nil:
				for j := range stored {
					if stored[j].ID == upd.ID {
						if stored[j].InvoiceID != "" || (stored[j].Rev == 0 && !closedThrough.IsZero()) {
							t.Fatalf("derivation %d updated closed %s", i, upd.ID)
						}
						stored[j] = *upd
					}
				}
			}
			var sum UsageRecord
			for _, r := range stored {
				sum.GPUSeconds += r.GPUSeconds
				sum.GPUEnergyJ += r.GPUEnergyJ
				sum.EnergyJ += r.EnergyJ
			}
			if sum.GPUSeconds != fresh.GPUSeconds || sum.GPUEnergyJ != fresh.GPUEnergyJ || sum.EnergyJ != fresh.EnergyJ {
				t.Fatalf("derivation %d: revisions sum to %+v, want %+v", i, sum, fresh)
			}
			if len(stored) > 0 && rapid.Bool().Draw(t, "invoice") {
				if closedThrough.IsZero() && rapid.Bool().Draw(t, "by closing the month") {
					closedThrough = at("2027-02-01T00:00:00Z")
				}
				for j := range stored {
					if stored[j].Rev > 0 || closedThrough.IsZero() {
						stored[j].InvoiceID = "inv_x"
					}
				}
			}
		}
	})
}

var _ = sales.Reservation{}

// Hours are formatted in integers where they fit, as the exact rational
// rounding would.
func TestHoursMatchesExactRounding(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s := rapid.Int64Range(-1<<50, 1<<50).Draw(t, "seconds")
		if got, want := hours(s), decimal(big.NewRat(s, 3600), 4); got != want {
			t.Fatalf("hours(%d) = %s, want %s", s, got, want)
		}
	})
}
