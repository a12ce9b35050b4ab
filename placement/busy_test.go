package placement

import (
	"testing"
	"time"

	"github.com/neocloud/neocloud/fleet"
)

// TestBusyGPUs counts the GPUs every kind of work holds at an instant:
// committed and preemptible work (the calendar indexes them apart), whole
// nodes and partitions, and nothing before a start or from an end on.
func TestBusyGPUs(t *testing.T) {
	sku, _ := fleet.CatalogSKU("h100-sxm5-80gb")
	site, nodes := testFleet(t, fleet.GenerateOptions{Site: "test", Region: "lab", Timezone: "UTC", SKU: sku, GPUs: 256,
		Levels: []string{"hall", "pod", "su", "rack"}, Fanout: []int{1, 2, 2, 4}})
	c := NewCalendar(Build(site, sku, nodes))
	at := func(h int) time.Time { return time.Date(2027, 1, 1, h, 0, 0, 0, time.UTC) }
	for _, w := range []struct {
		id    string
		class Class
		gpus  int
		from  int
		to    int
	}{
		{"R", ClassReserved, 32, 0, 10}, // 4 nodes
		{"S", ClassSpot, 16, 2, 6},      // 2 nodes
		{"I", ClassInternal, 64, 4, 8},  // 8 nodes
		{"P", ClassOnDemand, 2, 0, 8},   // a partition
	} {
		res, err := c.Admit(w.id, Request{GPUs: w.gpus, Class: w.class}, "t-"+w.id, at(w.from), at(w.to))
		if err != nil || res.Plan == nil {
			t.Fatalf("admit %s: %v %+v", w.id, err, res.Refusal)
		}
	}
	for _, tc := range []struct{ hour, want int }{
		{0, 32 + 2}, {2, 32 + 16 + 2}, {4, 32 + 16 + 64 + 2}, {6, 32 + 64 + 2}, {8, 32}, {10, 0},
	} {
		if got := c.BusyGPUs(at(tc.hour)); got != tc.want {
			t.Errorf("at hour %d: %d GPUs busy, want %d", tc.hour, got, tc.want)
		}
	}
	c.Drop("I")
	if got, want := c.BusyGPUs(at(5)), 32+16+2; got != want {
		t.Errorf("after dropping I: %d GPUs busy at hour 5, want %d", got, want)
	}
}
