// Package finance computes what an operator reports from neocloud's own
// records: utilization that adds up to the fleet every hour, revenue
// recognized by service period with its deferred and unbilled balances,
// backlog and concentration, unit economics, and the rent-versus-lease
// what-if.
package finance

import (
	"slices"
	"sort"
	"time"
)

// Utilization categories, in precedence order: a GPU counts in the first
// that holds it at each instant.
const (
	Down        = "down"        // failed, in repair, burn-in or sanitizing
	Maintenance = "maintenance" // in a planned maintenance window
	Lease       = "lease"
	Reserved    = "reserved"
	OnDemand    = "on_demand"
	Spot        = "spot"
	Internal    = "internal"
	Spare       = "spare" // a spare node's GPUs not otherwise used
	Idle        = "idle"  // sellable, unsold
)

// nCategories is len(Categories).
const nCategories = 9

// Categories lists the categories in precedence order.
var Categories = []string{Down, Maintenance, Lease, Reserved, OnDemand, Spot, Internal, Spare, Idle}

// work classes in the order they take a node's GPUs.
var classes = []string{Lease, Reserved, OnDemand, Spot, Internal}

// Interval is a half-open span of time.
type Interval struct {
	From, To time.Time
}

// Work is an allocation's GPUs on a node over a span.
type Work struct {
	From, To time.Time
	GPUs     int
	Class    string
}

// NodeTime is what utilization needs of a node over a period: its GPUs,
// whether it is a spare, since when it is in the fleet, and its down
// spans, maintenance windows and work.
type NodeTime struct {
	NodeID      string
	GPUs        int
	Spare       bool
	Since       time.Time
	Down        []Interval
	Maintenance []Interval
	Work        []Work
}

// Hourly is GPU-seconds by category, hour by hour: Series[c][h] is
// category Categories[c] in hour Hours[h].
type Hourly struct {
	Hours  []time.Time
	Series [][]int64
}

// Account counts each GPU of each node, second by second over [from, to),
// in the first category that holds it, and sums the GPU-seconds by hour.
// Every hour's categories sum to the GPUs in the fleet that hour × its
// seconds.
func Account(nodes []NodeTime, from, to time.Time) Hourly {
	from, to = from.UTC().Truncate(time.Hour), to.UTC()
	n := int((to.Sub(from) + time.Hour - 1) / time.Hour)
	out := Hourly{Hours: make([]time.Time, n), Series: make([][]int64, len(Categories))}
	for h := range n {
		out.Hours[h] = from.Add(time.Duration(h) * time.Hour)
	}
	for c := range out.Series {
		out.Series[c] = make([]int64, n)
	}
	f0, t0 := from.Unix(), to.Unix()
	type event struct {
		at    int64
		kind  int // 0 down, 1 maintenance, 2+k work of classes[k]
		delta int
	}
	var evs []event
	clip := func(a, b time.Time) (int64, int64, bool) {
		x, y := max(a.Unix(), f0), min(b.Unix(), t0)
		return x, y, x < y
	}
	for i := range nodes {
		nd := &nodes[i]
		start := max(f0, nd.Since.Unix())
		if start >= t0 || nd.GPUs <= 0 {
			continue
		}
		evs = evs[:0]
		for _, d := range nd.Down {
			if a, b, ok := clip(d.From, d.To); ok {
				evs = append(evs, event{a, 0, 1}, event{b, 0, -1})
			}
		}
		for _, m := range nd.Maintenance {
			if a, b, ok := clip(m.From, m.To); ok {
				evs = append(evs, event{a, 1, 1}, event{b, 1, -1})
			}
		}
		for _, w := range nd.Work {
			k := slices.Index(classes, w.Class)
			if k < 0 || w.GPUs <= 0 {
				continue
			}
			if a, b, ok := clip(w.From, w.To); ok {
				evs = append(evs, event{a, 2 + k, w.GPUs}, event{b, 2 + k, -w.GPUs})
			}
		}
		sort.Slice(evs, func(i, j int) bool { return evs[i].at < evs[j].at })
		var down, maint int
		var busy [5]int
		var shares [nCategories]int64
		emit := func(a, b int64) {
			if a >= b {
				return
			}
			shares = [nCategories]int64{}
			switch {
			case down > 0:
				shares[0] = int64(nd.GPUs)
			case maint > 0:
				shares[1] = int64(nd.GPUs)
			default:
				left := nd.GPUs
				for k := range classes {
					g := min(max(busy[k], 0), left)
					shares[2+k] = int64(g)
					left -= g
				}
				if nd.Spare {
					shares[7] = int64(left)
				} else {
					shares[8] = int64(left)
				}
			}
			for a < b {
				h := (a - f0) / 3600
				end := min(b, f0+(h+1)*3600)
				for c, g := range shares {
					if g != 0 {
						out.Series[c][h] += g * (end - a)
					}
				}
				a = end
			}
		}
		cur := start
		for _, e := range evs {
			if e.at > cur {
				emit(cur, e.at)
				cur = e.at
			}
			switch e.kind {
			case 0:
				down += e.delta
			case 1:
				maint += e.delta
			default:
				busy[e.kind-2] += e.delta
			}
		}
		emit(cur, t0)
	}
	return out
}
