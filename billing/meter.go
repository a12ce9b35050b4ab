package billing

import (
	"math/big"
	"sort"
	"strconv"
	"time"

	"github.com/neocloud/neocloud/agents"
	"github.com/neocloud/neocloud/sales"
)

// NodeGPU is the pseudo GPU index of a node's input energy meter (its
// out-of-band controller) among energy readings.
const NodeGPU = agents.NodeMeterGPU

// Metered is an allocation with what its reservation says about it: the
// meter's input.
type Metered struct {
	sales.Allocation
	ContractID string
	Class      string
	SKU        string
	SiteID     string
	// ReservationGPUs is the reservation's size (its volume tier).
	ReservationGPUs int
	// NodeGPUs is the node's GPU count (its metered input energy is shared
	// by GPU); GPUShare the SKU's GPU share of node power.
	NodeGPUs int
	GPUShare float64
}

// DefaultGPUShare is the share of an HGX H100/H200 node's input power its
// eight GPUs draw (about 5.6 kW of 10.2 kW), used where a SKU names none.
const DefaultGPUShare = 0.55

// Derive returns an allocation's usage records for the UTC hours of
// [from, to) it was ready in: GPU-seconds per second from ready to release
// (instants truncated to the second), and energy from its node's counter
// readings. Energy between two consecutive readings of a GPU belongs to
// the hour of the earlier one (within the allocation's hours); a counter
// that went backwards was reset, and the later reading is the energy since
// the reset. Readings are the allocation's own (at ready and release) and
// the node's hourly ones in between; the order they come in does not
// matter. Records carry no DerivedAt.
func Derive(m Metered, readings []agents.EnergyReading, from, to time.Time) []UsageRecord {
	a := m.Allocation
	if a.ReadyAt == nil {
		return nil
	}
	start := a.ReadyAt.UTC().Truncate(time.Second)
	end := to
	if a.ReleasedAt != nil {
		end = a.ReleasedAt.UTC().Truncate(time.Second)
	}
	if !end.After(start) {
		return nil
	}
	gpus := len(a.GPUs)
	if gpus == 0 {
		gpus = m.NodeGPUs
	}
	firstHour, lastHour := start.Truncate(time.Hour), end.Add(-time.Microsecond).Truncate(time.Hour)
	// Energy between readings is clamped into the allocation's own hours
	// (not the pass's): a reading after the pass belongs to a later one.
	allocLast := time.Unix(1<<40, 0).UTC()
	if a.ReleasedAt != nil {
		allocLast = lastHour
	}
	byHour := map[time.Time]*UsageRecord{}
	var out []*UsageRecord
	for h := maxTime(firstHour, from.Truncate(time.Hour)); h.Before(to) && !h.After(lastHour); h = h.Add(time.Hour) {
		s, e := maxTime(start, h), minTime(end, h.Add(time.Hour))
		if !e.After(s) {
			continue
		}
		r := &UsageRecord{
			ID: RecordID(a.ID, h, 0), AllocationID: a.ID, Hour: h, ReservationID: a.ReservationID, ContractID: m.ContractID,
			TenantID: a.TenantID, Class: m.Class, SKU: m.SKU, SiteID: m.SiteID, NodeID: a.NodeID, Start: s, End: e,
			GPUs: gpus, ReservationGPUs: m.ReservationGPUs, GPUSeconds: int64(e.Sub(s)/time.Second) * int64(gpus), EnergySource: SourceEstimated,
		}
		byHour[h] = r
		out = append(out, r)
	}
	if len(out) == 0 {
		return nil
	}

	// Energy, per GPU (and the node meter), from consecutive readings.
	want := map[int]bool{NodeGPU: true}
	if len(a.GPUs) == 0 {
		for g := 0; g < m.NodeGPUs; g++ {
			want[g] = true
		}
	}
	for _, g := range a.GPUs {
		want[g] = true
	}
	series := map[int][]agents.EnergyReading{}
	for _, r := range readings {
		if r.NodeID != a.NodeID || !want[r.GPU] {
			continue
		}
		own := r.AllocationID == a.ID
		inside := r.Reason == "hourly" && !r.At.Before(*a.ReadyAt) && (a.ReleasedAt == nil || !r.At.After(*a.ReleasedAt))
		if own || inside {
			series[r.GPU] = append(series[r.GPU], r)
		}
	}
	nodeJ := map[time.Time]int64{}
	nodeSeen := map[time.Time]bool{}
	for g, rs := range series {
		sort.Slice(rs, func(i, j int) bool {
			if !rs[i].At.Equal(rs[j].At) {
				return rs[i].At.Before(rs[j].At)
			}
			return reasonOrder(rs[i].Reason) < reasonOrder(rs[j].Reason)
		})
		for i := 1; i < len(rs); i++ {
			p, q := rs[i-1], rs[i]
			d := q.EnergyJ
			if q.EnergyJ >= p.EnergyJ {
				d = q.EnergyJ - p.EnergyJ
			}
			h := p.At.UTC().Truncate(time.Hour)
			h = maxTime(firstHour, minTime(allocLast, h))
			r := byHour[h]
			if r == nil {
				continue
			}
			if g == NodeGPU {
				nodeJ[h] += int64(d)
				nodeSeen[h] = true
			} else {
				r.GPUEnergyJ += int64(d)
			}
		}
	}
	share := m.GPUShare
	if share <= 0 || share > 1 {
		share = DefaultGPUShare
	}
	shareRat, _ := new(big.Rat).SetString(strconv.FormatFloat(share, 'f', -1, 64))
	// An hour with no delta at all (a few seconds between two readings'
	// hours) takes the node's source when its meter is read.
	nodeMetered := len(series[NodeGPU]) > 0
	res := make([]UsageRecord, 0, len(out))
	for _, r := range out {
		if nodeSeen[r.Hour] || (nodeMetered && r.GPUEnergyJ == 0) {
			// The node's metered input energy, shared by its GPUs.
			r.EnergyJ = roundHalfEven(big.NewRat(nodeJ[r.Hour]*int64(r.GPUs), int64(max(1, m.NodeGPUs))))
			r.EnergySource = SourceNodeOOB
		} else {
			r.EnergyJ = roundHalfEven(new(big.Rat).Quo(big.NewRat(r.GPUEnergyJ, 1), shareRat))
		}
		res = append(res, *r)
	}
	return res
}

func reasonOrder(reason string) int {
	switch reason {
	case "ready":
		return 0
	case "hourly":
		return 1
	}
	return 2
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// Reconcile compares freshly derived records with those stored for the
// same (allocation, hour), revisions included, and says what to write so
// that the stored revisions sum to the fresh values: nothing when they
// already do; an update of the latest revision while it is open;
// otherwise a new revision holding the difference, which the next invoice
// bills as an adjustment. A revision is closed once invoiced, and a
// record (revision 0) once its hour is before closedThrough, the end of
// the latest closed month; an hour of a closed month first found now is a
// revision too. Re-deriving unchanged inputs writes nothing.
func Reconcile(fresh UsageRecord, stored []UsageRecord, closedThrough time.Time) (insert, update *UsageRecord) {
	if len(stored) == 0 {
		f := fresh
		if f.Hour.Before(closedThrough) {
			f.Rev = 1
			f.ID = RecordID(f.AllocationID, f.Hour, 1)
		}
		return &f, nil
	}
	sort.Slice(stored, func(i, j int) bool { return stored[i].Rev < stored[j].Rev })
	last := stored[len(stored)-1]
	var others UsageRecord // the sum of every revision but the last
	for _, r := range stored[:len(stored)-1] {
		others.GPUSeconds += r.GPUSeconds
		others.GPUEnergyJ += r.GPUEnergyJ
		others.EnergyJ += r.EnergyJ
	}
	sum := UsageRecord{GPUSeconds: others.GPUSeconds + last.GPUSeconds, GPUEnergyJ: others.GPUEnergyJ + last.GPUEnergyJ,
		EnergyJ: others.EnergyJ + last.EnergyJ, Start: last.Start, End: last.End, GPUs: last.GPUs, EnergySource: last.EnergySource}
	if fresh.same(sum) {
		return nil, nil
	}
	diff := fresh
	if !last.closed(closedThrough) {
		diff.ID, diff.Rev = last.ID, last.Rev
		diff.GPUSeconds -= others.GPUSeconds
		diff.GPUEnergyJ -= others.GPUEnergyJ
		diff.EnergyJ -= others.EnergyJ
		return nil, &diff
	}
	diff.Rev = last.Rev + 1
	diff.ID = RecordID(fresh.AllocationID, fresh.Hour, diff.Rev)
	diff.GPUSeconds -= sum.GPUSeconds
	diff.GPUEnergyJ -= sum.GPUEnergyJ
	diff.EnergyJ -= sum.EnergyJ
	return &diff, nil
}

// closed reports whether a stored record can no longer change: invoiced,
// or of revision 0 in a closed month.
func (r UsageRecord) closed(closedThrough time.Time) bool {
	return r.InvoiceID != "" || (r.Rev == 0 && r.Hour.Before(closedThrough))
}
