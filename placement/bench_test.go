package placement

import (
	"testing"

	"github.com/neocloud/neocloud/fleet"
)

func colossus(b *testing.B) *Snapshot {
	b.Helper()
	sku, _ := fleet.CatalogSKU("h100-sxm5-80gb")
	site, nodes := testFleet(b, fleet.ColossusOptions(sku, 196608))
	return NewSnapshot(Build(site, sku, nodes))
}

func benchPlace(b *testing.B, r Request) {
	s := colossus(b)
	// Occupy a third of the first hall so the placer has choices to weigh.
	for i := 0; i < s.T.Nodes()/12; i += 3 {
		s.Occupy(i)
	}
	b.ReportAllocs()
	for b.Loop() {
		if res, _ := s.Place(r); res.Plan == nil {
			b.Fatal(res.Refusal.Message)
		}
	}
}

func BenchmarkPlaceNode(b *testing.B)      { benchPlace(b, Request{GPUs: 8}) }
func BenchmarkPlacePartition(b *testing.B) { benchPlace(b, Request{GPUs: 1}) }
func BenchmarkPlacePodGang(b *testing.B)   { benchPlace(b, Request{GPUs: 4096, Within: "pod"}) }
func BenchmarkPlaceSpanGang(b *testing.B)  { benchPlace(b, Request{GPUs: 8 * 1500}) }
