package billing

import (
	"fmt"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/neocloud/neocloud/sales"
)

var tiers = sales.SLA{CreditTiers: []sales.CreditTier{{Below: 99.9, Percent: 10}, {Below: 99, Percent: 25}, {Below: 95, Percent: 100}}, CreditCapPercent: 50}

// slaOf: a 1-GPU reservation of exactly 1,000 minutes in January, down for
// the given minutes (one slot), charged 1,000.00.
func slaOf(downMinutes int) Credit {
	start := at("2027-01-10T00:00:00Z")
	end := start.Add(1000 * time.Minute)
	in := SLAInput{Reservation: sales.Reservation{ID: "rsv_1", Shape: sales.Shape{GPUs: 1, Start: start, End: &end}}, SLA: tiers,
		Start: at("2027-01-01T00:00:00Z"), End: at("2027-02-01T00:00:00Z"), ChargeMicros: 1_000_000_000}
	if downMinutes > 0 {
		// Starting 30 s into the first minute, ending 31 s into the last:
		// every minute with a down second counts whole.
		from := start.Add(30 * time.Second)
		in.Down = []DownInterval{{Slot: "alc_1", GPUs: 1, From: from, To: from.Add(time.Duration(downMinutes-1)*time.Minute + time.Second), Cause: DownFailed}}
	}
	return ComputeCredit(in)
}

// Golden credits at the tier edges, one minute either side, and the cap.
func TestCreditTierEdges(t *testing.T) {
	for _, c := range []struct {
		down    int
		avail   string
		percent string
		credit  int64
	}{
		{0, "100.0000", "0.00", 0},
		{1, "99.9000", "0.00", 0}, // exactly 99.9%: no credit
		{2, "99.8000", "10.00", 100_000_000},
		{9, "99.1000", "10.00", 100_000_000},
		{10, "99.0000", "10.00", 100_000_000}, // exactly 99.0%: still the 10% tier
		{11, "98.9000", "25.00", 250_000_000},
		{49, "95.1000", "25.00", 250_000_000},
		{50, "95.0000", "25.00", 250_000_000}, // exactly 95.0%
		{51, "94.9000", "50.00", 500_000_000}, // 100%, capped at 50%
		{1000, "0.0000", "50.00", 500_000_000},
	} {
		got := slaOf(c.down)
		if got.GPUMinutes != 1000 || got.DownGPUMinutes != int64(c.down) || got.Availability != c.avail || got.Percent != c.percent || got.CreditMicros != c.credit {
			t.Errorf("%d down minutes: %+v, want %s%% → %s%% = %d", c.down, got, c.avail, c.percent, c.credit)
		}
	}
}

// Overlapping intervals of one slot count once; announced maintenance the
// contract excludes counts neither as promised nor as down; a second slot
// adds its own GPUs' minutes.
func TestCreditCountsMinutesOnce(t *testing.T) {
	start := at("2027-01-10T00:00:00Z")
	end := start.Add(1000 * time.Minute)
	in := SLAInput{Reservation: sales.Reservation{ID: "rsv_1", Shape: sales.Shape{GPUs: 16, Start: start, End: &end}}, SLA: tiers,
		Start: at("2027-01-01T00:00:00Z"), End: at("2027-02-01T00:00:00Z"), ChargeMicros: 1_000_000_000,
		Down: []DownInterval{
			{Slot: "alc_1", GPUs: 8, From: start.Add(100 * time.Minute), To: start.Add(110 * time.Minute), Cause: DownFailed},
			{Slot: "alc_1", GPUs: 8, From: start.Add(105 * time.Minute), To: start.Add(112 * time.Minute), Cause: DownReported},
			{Slot: "alc_2", GPUs: 8, From: start.Add(500 * time.Minute), To: start.Add(520 * time.Minute), Cause: DownDegraded},
		},
		Excluded: []Window{{From: start.Add(510 * time.Minute), To: start.Add(530 * time.Minute)}}}
	got := ComputeCredit(in)
	// Promised: (1,000 − 20) × 16; down: 12 × 8 + 10 × 8.
	if got.GPUMinutes != 980*16 || got.DownGPUMinutes != 12*8+10*8 || len(got.Down) != 3 {
		t.Fatalf("%+v", got)
	}
}

// Credits never decrease as downtime grows.
func TestCreditsGrowWithDowntime(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		start := at("2027-01-01T00:00:00Z")
		end := start.Add(time.Duration(rapid.IntRange(60, 31*24*60).Draw(t, "minutes")) * time.Minute)
		in := SLAInput{Reservation: sales.Reservation{ID: "rsv_1", Shape: sales.Shape{GPUs: 8 * rapid.IntRange(1, 64).Draw(t, "nodes"), Start: start, End: &end}}, SLA: tiers,
			Start: start, End: at("2027-02-01T00:00:00Z"), ChargeMicros: rapid.Int64Range(0, 1e15).Draw(t, "charge")}
		prev := ComputeCredit(in)
		for i := range rapid.IntRange(1, 30).Draw(t, "intervals") {
			from := start.Add(time.Duration(rapid.Int64Range(0, int64(end.Sub(start)/time.Second)).Draw(t, "from")) * time.Second)
			in.Down = append(in.Down, DownInterval{Slot: fmt.Sprint("alc_", rapid.IntRange(0, 5).Draw(t, "slot")), GPUs: 8, From: from,
				To: from.Add(time.Duration(rapid.IntRange(1, 48*3600).Draw(t, "seconds")) * time.Second), Cause: DownFailed})
			got := ComputeCredit(in)
			if got.DownGPUMinutes < prev.DownGPUMinutes || got.CreditMicros < prev.CreditMicros {
				t.Fatalf("interval %d: down %d → %d, credit %d → %d", i, prev.DownGPUMinutes, got.DownGPUMinutes, prev.CreditMicros, got.CreditMicros)
			}
			if got.CreditMicros > in.ChargeMicros/2+1 {
				t.Fatalf("credit %d beyond the cap of half of %d", got.CreditMicros, in.ChargeMicros)
			}
			prev = got
		}
	})
}
