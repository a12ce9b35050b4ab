package billing

import (
	"encoding/json"
	"flag"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/agents"
	"github.com/neocloud/neocloud/placement"
	"github.com/neocloud/neocloud/pricing"
	"github.com/neocloud/neocloud/sales"
)

var update = flag.Bool("update", false, "rewrite the golden invoices")

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

func ptr[T any](v T) *T { return &v }

// scenario builds one tenant's month: contracts, allocations with their
// energy readings, and whatever else rating reads.
type scenario struct {
	in       RateInput
	allocs   []Metered
	readings []agents.EnergyReading
}

func newScenario(period string) *scenario {
	start, end, err := Month("period", period)
	if err != nil {
		panic(err)
	}
	return &scenario{in: RateInput{TenantID: "ten_acme", TenantName: "acme", Period: period, Start: start, End: end,
		Profile: Profile{TenantID: "ten_acme", LegalName: "Acme AI, Inc.", Address: "1 Main St, Springfield", TaxRate: "10"},
		Seller:  Seller{Party: Party{Name: "Colossus Compute LLC", Address: "Memphis, TN", TaxID: "US-12-3456789"}, InvoicePrefix: "INV-", CreditPrefix: "CN-", PaymentTermsD: 30},
		Sites:   map[string]SiteEnergy{"sit_1": {PUE: "1.25", RateMicros: 85_000}}, IssuedAt: end.Add(time.Hour), KeepRecords: false}}
}

func (s *scenario) contract(id string, kind placement.Class, rate int64, start time.Time, end *time.Time, schedule string, rsvs ...sales.Reservation) *ContractWork {
	c := ContractWork{Contract: sales.Contract{ID: id, TenantID: "ten_acme", Kind: kind, SKU: "h100", Start: start, End: end,
		Terms: sales.Terms{RateMicros: rate, Currency: "USD", BillingSchedule: schedule}}, Reservations: rsvs}
	s.in.Contracts = append(s.in.Contracts, c)
	return &s.in.Contracts[len(s.in.Contracts)-1]
}

func rsv(id string, gpus int, start time.Time, end *time.Time) sales.Reservation {
	return sales.Reservation{ID: id, State: sales.ReservationActive, Shape: sales.Shape{Site: "sit_1", SKU: "h100", GPUs: gpus, Start: start, End: end}}
}

// alloc adds an allocation of 8 GPUs on node, ready from ready until
// released (nil: still ready).
func (s *scenario) alloc(id, contract, class, reservation, node string, ready time.Time, released *time.Time) {
	s.allocs = append(s.allocs, Metered{Allocation: sales.Allocation{ID: id, ReservationID: reservation, TenantID: "ten_acme", NodeID: node,
		GPUs: []int{0, 1, 2, 3, 4, 5, 6, 7}, ReadyAt: &ready, ReleasedAt: released},
		ContractID: contract, Class: class, SKU: "h100", SiteID: "sit_1", NodeGPUs: 8, GPUShare: 0.55})
}

// energy adds a reading of every GPU of node: each at base + joules[g].
func (s *scenario) energy(node, alloc, reason string, t time.Time, joules func(g int) uint64) {
	for g := 0; g < 8; g++ {
		s.readings = append(s.readings, agents.EnergyReading{NodeID: node, GPU: g, At: t, EnergyJ: joules(g), Reason: reason, AllocationID: alloc})
	}
}

// derive runs the meter over [from, to) for every allocation.
func (s *scenario) derive(from, to time.Time) {
	for _, m := range s.allocs {
		s.in.Records = append(s.in.Records, Derive(m, s.readings, from, to)...)
	}
}

func (s *scenario) rate(t *testing.T) []Invoice {
	t.Helper()
	invs, err := Rate(s.in)
	if err != nil {
		t.Fatal(err)
	}
	for _, inv := range invs {
		checkSums(t, inv)
	}
	return invs
}

// checkSums: lines add up to the subtotal, subtotal and tax to the total.
func checkSums(t *testing.T, inv Invoice) {
	t.Helper()
	var sum int64
	for _, l := range inv.Lines {
		sum += l.AmountMicros
		if l.Amount != pricing.FormatMicros(l.AmountMicros) {
			t.Fatalf("line %d: amount %q for %d micros", l.N, l.Amount, l.AmountMicros)
		}
	}
	if sum != inv.SubtotalMicros || inv.SubtotalMicros+inv.TaxMicros != inv.TotalMicros {
		t.Fatalf("%s: lines %d, subtotal %d, tax %d, total %d", inv.ID, sum, inv.SubtotalMicros, inv.TaxMicros, inv.TotalMicros)
	}
}

// golden compares invoices with testdata/NAME.json (-update rewrites it).
func golden(t *testing.T, name string, invs []Invoice) {
	t.Helper()
	got, err := json.MarshalIndent(invs, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", name+".json")
	if *update {
		if err := os.WriteFile(path, append(got, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if d := cmp.Diff(string(want), string(got)+"\n"); d != "" {
		t.Fatalf("%s differs from the golden invoice (-want +got):\n%s", path, d)
	}
}

func line(t *testing.T, inv Invoice, kind, reservation string) Line {
	t.Helper()
	for _, l := range inv.Lines {
		if l.Kind == kind && l.ReservationID == reservation {
			return l
		}
	}
	t.Fatalf("no %s line for %q in %+v", kind, reservation, inv.Lines)
	return Line{}
}

func commitLine(t *testing.T, inv Invoice, key string) Line {
	t.Helper()
	for _, l := range inv.Lines {
		if l.ChargeKey == key {
			return l
		}
	}
	t.Fatalf("no commitment %s in %+v", key, inv.Lines)
	return Line{}
}

// A three-phase… here two-phase lease, billed monthly in advance, with
// power pass-through: January's prorated commitment of each phase and all
// of February's, the GPU-hours delivered for information, and the energy
// at cost.
func TestGoldenPhasedLeaseWithPowerPassThrough(t *testing.T) {
	s := newScenario("2027-01")
	end := at("2028-01-10T00:00:00Z")
	c := s.contract("ctr_lease", placement.ClassLease, 2_000_000, at("2027-01-10T00:00:00Z"), &end, "monthly_in_advance",
		rsv("rsv_phase1", 64, at("2027-01-10T00:00:00Z"), &end), rsv("rsv_phase2", 64, at("2027-01-20T00:00:00Z"), &end))
	c.Terms.PowerPassThrough = true
	// One node of phase 1 metered through the last hours of January; GPU 3's
	// counter resets at 22:00.
	s.alloc("alc_1", "ctr_lease", "lease", "rsv_phase1", "nod_1", at("2027-01-31T20:15:30.4Z"), nil)
	base := func(h float64) func(int) uint64 {
		return func(g int) uint64 { return uint64(1_000_000_000 + h*2_520_000) }
	}
	s.energy("nod_1", "alc_1", "ready", at("2027-01-31T20:15:30.4Z"), base(0))
	s.energy("nod_1", "", "hourly", at("2027-01-31T21:00:00.2Z"), base(0.75))
	s.energy("nod_1", "", "hourly", at("2027-01-31T22:00:00.2Z"), func(g int) uint64 {
		if g == 3 {
			return 1_000_000 // reset: 1 MJ since
		}
		return base(1.75)(g)
	})
	s.energy("nod_1", "", "hourly", at("2027-01-31T23:00:00.1Z"), func(g int) uint64 {
		if g == 3 {
			return 1_000_000 + 2_520_000
		}
		return base(2.75)(g)
	})
	s.energy("nod_1", "", "hourly", at("2027-02-01T00:00:00.3Z"), func(g int) uint64 {
		if g == 3 {
			return 1_000_000 + 2*2_520_000
		}
		return base(3.75)(g)
	})
	s.derive(s.in.Start, s.in.End)
	if len(s.in.Records) != 4 {
		t.Fatalf("records: %d, want the hours 20–23", len(s.in.Records))
	}
	invs := s.rate(t)
	golden(t, "phased_lease", invs)
	inv := invs[0]
	// January: 64 GPUs × 22 days + 64 × 12 days = 52,224 GPU-hours × 2.00.
	if l := commitLine(t, inv, "commit:ctr_lease:2027-01"); l.AmountMicros != 104_448_000_000 || l.Quantity != "52224.0000" {
		t.Fatalf("January: %+v", l)
	}
	// February in advance: 128 × 28 × 24 = 86,016 GPU-hours × 2.00.
	if l := commitLine(t, inv, "commit:ctr_lease:2027-02"); l.AmountMicros != 172_032_000_000 {
		t.Fatalf("February: %+v", l)
	}
	// Delivered: 2,669 s (ready truncated to 20:15:30) + 3 h, on 8 GPUs.
	if l := line(t, inv, LineUsage, "rsv_phase1"); l.GPUSeconds != 8*(2670+3*3600) || l.AmountMicros != 0 {
		t.Fatalf("usage: %+v", l)
	}
	// Energy: 7 GPUs × 3.75 × 2.52 MJ; GPU 3 counts 0.75 × 2.52 MJ to its
	// last reading before the reset, the 1 MJ since the reset, then two
	// hours; node energy = GPU ÷ 0.55.
	gpuJ := int64(7*3.75*2_520_000) + int64(0.75*2_520_000) + 1_000_000 + 2*2_520_000
	l := line(t, inv, LineEnergy, "rsv_phase1")
	var nodeJ int64
	for _, r := range s.in.Records {
		nodeJ += r.EnergyJ
	}
	if l.EnergyJ != nodeJ || l.EnergySource != SourceEstimated {
		t.Fatalf("energy line %+v, records %d J", l, nodeJ)
	}
	if want := float64(gpuJ) / 0.55; float64(nodeJ) < want-4 || float64(nodeJ) > want+4 {
		t.Fatalf("node energy %d J, want about %.0f", nodeJ, want)
	}
	// kWh × 1.25 × 0.085, rounded once.
	if want := roundHalfEven(ratOf(nodeJ*125*85_000, 3_600_000*100)); l.AmountMicros != want {
		t.Fatalf("energy amount %d, want %d", l.AmountMicros, want)
	}
	if inv.TaxMicros != roundHalfEven(ratOf(inv.SubtotalMicros, 10)) {
		t.Fatalf("tax %d on %d", inv.TaxMicros, inv.SubtotalMicros)
	}
}

// A reservation across a month boundary, billed in advance: January's
// invoice carries both months' parts; February's carries neither again.
func TestGoldenReservedAcrossMonths(t *testing.T) {
	s := newScenario("2027-01")
	end := at("2027-02-08T12:00:00Z")
	s.contract("ctr_res", placement.ClassReserved, 2_500_000, at("2027-01-25T12:00:00Z"), &end, "monthly_in_advance",
		rsv("rsv_r", 16, at("2027-01-25T12:00:00Z"), &end))
	invs := s.rate(t)
	golden(t, "reserved_across_months", invs)
	if l := commitLine(t, invs[0], "commit:ctr_res:2027-01"); l.AmountMicros != 16*156*2_500_000 {
		t.Fatalf("January part: %+v", l)
	}
	if l := commitLine(t, invs[0], "commit:ctr_res:2027-02"); l.AmountMicros != 16*180*2_500_000 || !l.ServiceEnd.Equal(end) {
		t.Fatalf("February part: %+v", l)
	}
	feb := newScenario("2027-02")
	feb.in.Contracts = s.in.Contracts
	feb.in.Billed = map[string]bool{"commit:ctr_res:2027-01": true, "commit:ctr_res:2027-02": true}
	if invs := feb.rate(t); len(invs) != 0 {
		t.Fatalf("February billed again: %+v", invs)
	}
	// In arrears instead: January's invoice carries January only.
	s.in.Contracts[0].Terms.BillingSchedule = "monthly_in_arrears"
	invs = s.rate(t)
	if len(invs[0].Lines) != 1 || invs[0].Lines[0].ChargeKey != "commit:ctr_res:2027-01" {
		t.Fatalf("in arrears: %+v", invs[0].Lines)
	}
}

// On-demand bursts billed per second at the price book's rate in force
// each second, across a price change, with instants truncated to seconds.
func TestGoldenOnDemandBursts(t *testing.T) {
	s := newScenario("2027-01")
	s.contract("ctr_od", placement.ClassOnDemand, 3_000_000, at("2026-11-01T00:00:00Z"), nil, "monthly_in_arrears",
		rsv("rsv_od", 8, at("2026-11-01T00:00:00Z"), nil))
	s.in.Prices = []pricing.Price{
		{SKU: "h100", Class: "on_demand", EffectiveAt: at("2027-01-15T12:00:00Z"), ListMicros: 2_800_000},
		{SKU: "h100", Class: "on_demand", EffectiveAt: at("2026-12-01T00:00:00Z"), ListMicros: 3_200_000},
		{SKU: "h100", Class: "spot", EffectiveAt: at("2026-12-01T00:00:00Z"), ListMicros: 9_000_000},
	}
	s.alloc("alc_b1", "ctr_od", "on_demand", "rsv_od", "nod_2", at("2027-01-15T11:30:00Z"), ptr(at("2027-01-15T12:30:00Z")))
	s.alloc("alc_b2", "ctr_od", "on_demand", "rsv_od", "nod_3", at("2027-01-03T09:00:00.7Z"), ptr(at("2027-01-03T09:00:10.2Z")))
	s.derive(s.in.Start, s.in.End)
	invs := s.rate(t)
	golden(t, "on_demand_bursts", invs)
	l := line(t, invs[0], LineUsage, "rsv_od")
	// (3.20 × (14,400 + 80) + 2.80 × 14,400) / 3,600 = 24.0711111… → 24.071111
	if l.AmountMicros != 24_071_111 || l.GPUSeconds != 28_880 || len(l.Rates) != 2 {
		t.Fatalf("bursts: %+v", l)
	}
}

// Spot work billed per second over the spot price series; before its
// first point, at the contract's rate.
func TestGoldenSpotAcrossPriceChanges(t *testing.T) {
	s := newScenario("2027-01")
	s.contract("ctr_spot", placement.ClassSpot, 1_100_000, at("2026-11-01T00:00:00Z"), nil, "monthly_in_arrears",
		rsv("rsv_spot", 8, at("2027-01-03T09:50:00Z"), nil))
	s.in.Spot = []SpotPoint{
		{SiteID: "sit_1", SKU: "h100", At: at("2027-01-03T10:40:00Z"), RateMicros: 900_000},
		{SiteID: "sit_1", SKU: "h100", At: at("2027-01-03T10:00:00Z"), RateMicros: 1_000_000},
		{SiteID: "sit_1", SKU: "h100", At: at("2027-01-03T10:20:00Z"), RateMicros: 1_400_000},
		{SiteID: "sit_2", SKU: "h100", At: at("2027-01-03T10:10:00Z"), RateMicros: 5_000_000},
	}
	s.alloc("alc_s", "ctr_spot", "spot", "rsv_spot", "nod_4", at("2027-01-03T09:50:00Z"), ptr(at("2027-01-03T11:00:00Z")))
	s.derive(s.in.Start, s.in.End)
	invs := s.rate(t)
	golden(t, "spot_price_changes", invs)
	// (1.10 × 4,800 + 1.00 × 9,600 + 1.40 × 9,600 + 0.90 × 9,600) / 3,600
	if l := line(t, invs[0], LineUsage, "rsv_spot"); l.AmountMicros != 10_266_667 || len(l.Rates) != 4 {
		t.Fatalf("spot: %+v", l)
	}
}

// A record of a closed month not yet invoiced (found after the close)
// becomes an adjustment line on the next invoice, never dropped.
func TestGoldenLateRecordBecomesAdjustment(t *testing.T) {
	s := newScenario("2027-01")
	s.contract("ctr_od", placement.ClassOnDemand, 3_200_000, at("2026-11-01T00:00:00Z"), nil, "monthly_in_arrears",
		rsv("rsv_od", 8, at("2026-11-01T00:00:00Z"), nil))
	s.alloc("alc_late", "ctr_od", "on_demand", "rsv_od", "nod_5", at("2026-12-31T23:00:00Z"), ptr(at("2027-01-01T00:30:00Z")))
	s.derive(at("2026-12-01T00:00:00Z"), s.in.End)
	invs := s.rate(t)
	golden(t, "late_adjustment", invs)
	adj := line(t, invs[0], LineAdjustment, "rsv_od")
	use := line(t, invs[0], LineUsage, "rsv_od")
	if adj.AmountMicros != 8*3_200_000 || use.AmountMicros != 4*3_200_000 || adj.N != 2 {
		t.Fatalf("adjustment %+v usage %+v", adj, use)
	}
}

// Internal work is never invoiced.
func TestInternalNeverInvoiced(t *testing.T) {
	s := newScenario("2027-01")
	s.contract("ctr_int", placement.ClassInternal, 0, at("2026-11-01T00:00:00Z"), nil, "", rsv("rsv_i", 8, at("2026-11-01T00:00:00Z"), nil))
	s.alloc("alc_i", "ctr_int", "internal", "rsv_i", "nod_6", at("2027-01-03T00:00:00Z"), nil)
	s.derive(s.in.Start, s.in.End)
	if len(s.in.Records) == 0 {
		t.Fatal("internal work is metered all the same")
	}
	if invs := s.rate(t); len(invs) != 0 {
		t.Fatalf("internal work invoiced: %+v", invs)
	}
}

func ratOf(a, b int64) *big.Rat { return big.NewRat(a, b) }

// Use beyond a month's commitment (a replacement overlapping the node it
// replaces) is billed at the contract's overage rate; without one, not.
func TestOverageBeyondTheCommitment(t *testing.T) {
	s := newScenario("2027-01")
	end := at("2027-01-11T00:00:00Z")
	c := s.contract("ctr_res", placement.ClassReserved, 2_500_000, at("2027-01-10T00:00:00Z"), &end, "monthly_in_arrears",
		rsv("rsv_r", 8, at("2027-01-10T00:00:00Z"), &end))
	c.Terms.OverageRateMicros = 3_000_000
	s.alloc("alc_a", "ctr_res", "reserved", "rsv_r", "nod_a", at("2027-01-10T00:00:00Z"), ptr(end))
	s.alloc("alc_b", "ctr_res", "reserved", "rsv_r", "nod_b", at("2027-01-10T12:00:00Z"), ptr(end))
	s.derive(s.in.Start, s.in.End)
	invs := s.rate(t)
	var over *Line
	for i, l := range invs[0].Lines {
		if l.Kind == LineOverage {
			over = &invs[0].Lines[i]
		}
	}
	// Used 8 × 36 GPU-hours against 8 × 24 committed: 96 GPU-hours × 3.00.
	if over == nil || over.GPUSeconds != 96*3600 || over.AmountMicros != 288_000_000 {
		t.Fatalf("overage: %+v", invs[0].Lines)
	}
	if l := commitLine(t, invs[0], "commit:ctr_res:2027-01"); l.AmountMicros != 8*24*2_500_000 {
		t.Fatalf("commitment: %+v", l)
	}
	s.in.Contracts[0].Terms.OverageRateMicros = 0
	for _, l := range s.rate(t)[0].Lines {
		if l.Kind == LineOverage {
			t.Fatalf("overage billed without an overage rate: %+v", l)
		}
	}
}

// Derived ids have the shape of every id: prefix and 26 Crockford base32
// characters, the same for the same inputs.
func TestDerivedIDsAreWellFormed(t *testing.T) {
	h := at("2027-01-03T10:00:00Z")
	for _, c := range []struct{ id, prefix string }{
		{InvoiceID("ten_x", "2027-01", "USD"), PrefixInvoice}, {RecordID("alc_x", h, 0), PrefixUsage}, {RecordID("alc_x", h, 1), PrefixUsage},
	} {
		if !neocloud.HasPrefix(c.id, c.prefix) {
			t.Errorf("%s is not a well-formed %s id", c.id, c.prefix)
		}
	}
	if RecordID("alc_x", h, 0) != RecordID("alc_x", h.In(time.FixedZone("x", 3600)), 0) || RecordID("alc_x", h, 0) == RecordID("alc_x", h, 1) ||
		InvoiceID("ten_x", "2027-01", "USD") == InvoiceID("ten_x", "2027-01", "EUR") {
		t.Fatal("derived ids are not a function of their inputs alone")
	}
}

// Where the node's out-of-band controller meters its input energy, that is
// the energy of record, shared by the allocation's GPUs; an hour without
// the meter's readings falls back to the estimate.
func TestNodeMeteredEnergyIsOfRecord(t *testing.T) {
	ready := at("2027-01-03T10:00:00.5Z")
	m := Metered{Allocation: sales.Allocation{ID: "alc_p", ReservationID: "rsv_p", TenantID: "ten_acme", NodeID: "nod_1", GPUs: []int{4, 5, 6, 7},
		ReadyAt: &ready, ReleasedAt: ptr(at("2027-01-03T13:00:00Z"))}, ContractID: "ctr", Class: "on_demand", SKU: "h100", SiteID: "sit_1", NodeGPUs: 8, GPUShare: 0.5}
	var rs []agents.EnergyReading
	read := func(gpu int, t string, j uint64, reason, alloc string) {
		rs = append(rs, agents.EnergyReading{NodeID: "nod_1", GPU: gpu, At: at(t), EnergyJ: j, Reason: reason, AllocationID: alloc})
	}
	for g := 0; g < 8; g++ { // GPUs 0–3 are another tenant's: not counted
		read(g, "2027-01-03T10:00:00.5Z", 0, "ready", "alc_p")
		read(g, "2027-01-03T11:00:00.1Z", 1_000_000, "hourly", "")
		read(g, "2027-01-03T12:00:00.1Z", 2_000_000, "hourly", "")
		read(g, "2027-01-03T13:00:00Z", 3_000_000, "released", "alc_p")
	}
	// The node meter reads 10 MJ an hour, but not at 12:00.
	read(NodeGPU, "2027-01-03T10:00:00.5Z", 50_000_000, "ready", "alc_p")
	read(NodeGPU, "2027-01-03T11:00:00.1Z", 60_000_000, "hourly", "")
	read(NodeGPU, "2027-01-03T13:00:00Z", 80_000_000, "released", "alc_p")
	recs := Derive(m, rs, at("2027-01-03T00:00:00Z"), at("2027-01-04T00:00:00Z"))
	if len(recs) != 3 {
		t.Fatalf("records: %+v", recs)
	}
	// 10:00: 10 MJ metered, half of it for 4 of 8 GPUs. 11:00: the meter's
	// next reading is at 13:00, so its 20 MJ belong to 11:00 (the earlier
	// reading's hour). 12:00: no meter reading starts there: estimated.
	want := []struct {
		j      int64
		source string
	}{{5_000_000, SourceNodeOOB}, {10_000_000, SourceNodeOOB}, {8_000_000, SourceEstimated}}
	for i, r := range recs {
		if r.GPUEnergyJ != 4_000_000 || r.EnergyJ != want[i].j || r.EnergySource != want[i].source || r.GPUs != 4 {
			t.Errorf("hour %s: %+v, want %d J %s", r.Hour.Format("15:04"), r, want[i].j, want[i].source)
		}
	}
	// Ready at 10:00:00.5 counts from 10:00:00: instants truncate to the
	// second at both ends.
	if recs[0].GPUSeconds != 4*3600 || recs[2].GPUSeconds != 4*3600 {
		t.Errorf("GPU-seconds: %d, %d, want 4 × 3,600", recs[0].GPUSeconds, recs[2].GPUSeconds)
	}
}
