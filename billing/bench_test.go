package billing

import (
	"fmt"
	"testing"
	"time"

	"github.com/neocloud/neocloud/placement"
)

// benchMonth is a tenant's month: n on-demand allocations of 8 GPUs, each
// ready the whole month with hourly readings, and a price change.
func benchMonth(n int) *scenario {
	s := newScenario("2027-01")
	s.contract("ctr_od", placement.ClassOnDemand, 3_000_000, at("2026-11-01T00:00:00Z"), nil, "monthly_in_arrears", rsv("rsv_od", 8*n, at("2026-11-01T00:00:00Z"), nil))
	s.contract("ctr_res", placement.ClassReserved, 2_500_000, at("2026-12-20T00:00:00Z"), ptr(at("2027-03-01T00:00:00Z")), "monthly_in_advance",
		rsv("rsv_res", 8*n, at("2026-12-20T00:00:00Z"), ptr(at("2027-03-01T00:00:00Z"))))
	s.contract("ctr_spot", placement.ClassSpot, 1_000_000, at("2026-11-01T00:00:00Z"), nil, "monthly_in_arrears", rsv("rsv_spot", 8, at("2026-11-01T00:00:00Z"), nil))
	for i := range 744 / 12 {
		s.in.Spot = append(s.in.Spot, SpotPoint{SiteID: "sit_1", SKU: "h100", At: s.in.Start.Add(time.Duration(i) * 12 * time.Hour), RateMicros: int64(800_000 + 10_000*i)})
	}
	for i := range n {
		node, id := fmt.Sprintf("nod_%d", i), fmt.Sprintf("alc_%d", i)
		kind, rsv := "ctr_od", "rsv_od"
		switch i % 3 {
		case 1:
			kind, rsv = "ctr_res", "rsv_res"
		case 2:
			kind, rsv = "ctr_spot", "rsv_spot"
		}
		s.alloc(id, kind, "on_demand", rsv, node, s.in.Start.Add(-time.Hour), nil)
		for h := s.in.Start; h.Before(s.in.End); h = h.Add(time.Hour) {
			e := uint64(h.Sub(s.in.Start) / time.Second * 700)
			s.energy(node, "", "hourly", h.Add(300*time.Millisecond), func(int) uint64 { return e })
		}
	}
	return s
}

// BenchmarkDerive: one allocation's month (744 hourly records from 5,960
// readings), per allocation.
func BenchmarkDerive(b *testing.B) {
	s := benchMonth(1)
	b.ReportAllocs()
	for b.Loop() {
		if rs := Derive(s.allocs[0], s.readings, s.in.Start, s.in.End); len(rs) != 744 {
			b.Fatal(len(rs))
		}
	}
}

// BenchmarkRate: a tenant's month of 100 allocations (74,400 records) over
// on-demand, reserved and spot contracts, rated into its invoice.
func BenchmarkRate(b *testing.B) {
	s := benchMonth(100)
	s.derive(s.in.Start, s.in.End)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := Rate(s.in); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(s.in.Records)), "records")
}
