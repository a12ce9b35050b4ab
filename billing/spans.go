package billing

import (
	"sort"
	"time"
)

// A span is an allocation's use over one UTC month: the sum of its
// records (revision 0) of the month's hours, with Start the first
// record's start, End the last one's end and Records how many it sums.
// A close rates spans, not hours: an allocation's hours tile its ready
// interval, so rating the span per second gives the same amounts, and a
// month of a 200k-GPU site is a million spans instead of ten million
// records. A span whose records do not tile it (the GPU count changed,
// or an hour is missing) is rated from its records.

// MonthStart is the first instant of t's UTC month.
func MonthStart(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
}

// SpanID names an allocation's span of a month (rating orders by it).
func SpanID(allocationID string, month time.Time) string {
	return "spn:" + allocationID + ":" + MonthOf(month)
}

// Tiles reports whether a span's records tile it: one GPU count over
// [Start, End) and the GPU-seconds that makes. Rating a span that tiles
// equals rating its records.
func (r UsageRecord) Tiles() bool {
	return r.GPUs > 0 && int64(r.End.Sub(r.Start)/time.Second)*int64(r.GPUs) == r.GPUSeconds
}

// Spans sums records of revision 0 into spans (revisions are rated on
// their own and have none), in span id order. A span whose records have
// different GPU counts (theirs or their reservation's) has GPUs -1.
func Spans(rs []UsageRecord) []UsageRecord {
	type key struct {
		alloc string
		month int64
	}
	idx := map[key]int{}
	var out []UsageRecord
	for _, r := range rs {
		if r.Rev != 0 {
			continue
		}
		m := MonthStart(r.Hour)
		k := key{r.AllocationID, m.Unix()}
		i, ok := idx[k]
		if !ok {
			sp := r
			sp.ID, sp.Hour, sp.Records, sp.InvoiceID = SpanID(r.AllocationID, m), m, 1, ""
			idx[k] = len(out)
			out = append(out, sp)
			continue
		}
		sp := &out[i]
		if r.Start.Before(sp.Start) {
			sp.Start = r.Start
		}
		if r.End.After(sp.End) {
			sp.End = r.End
		}
		if r.GPUs != sp.GPUs || r.ReservationGPUs != sp.ReservationGPUs {
			sp.GPUs = -1
		}
		if r.EnergySource != sp.EnergySource {
			sp.EnergySource = SourceMixed
		}
		sp.GPUSeconds += r.GPUSeconds
		sp.GPUEnergyJ += r.GPUEnergyJ
		sp.EnergyJ += r.EnergyJ
		sp.Records++
		if r.DerivedAt.After(sp.DerivedAt) {
			sp.DerivedAt = r.DerivedAt
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// SourceBits encodes energy sources as a span stores them (1: node_oob,
// 2: estimated, 3: both); SourceOfBits reads them back.
func SourceBits(src string) int {
	switch src {
	case SourceNodeOOB:
		return 1
	case SourceEstimated:
		return 2
	case SourceMixed:
		return 3
	}
	return 0
}

// SourceOfBits is the source a span's bits stand for.
func SourceOfBits(b int) string {
	switch b {
	case 1:
		return SourceNodeOOB
	case 2:
		return SourceEstimated
	}
	return SourceMixed
}
