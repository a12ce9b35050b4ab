package demo

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/neocloud/neocloud/placement"
	"github.com/neocloud/neocloud/sales"
)

// A top-of-rack switch fails once, OutageAfter into the demo (its clock),
// for OutageFor: a rack serving committed work falls silent at once. The
// liveness breaker sees a quarter of an su go quiet together, opens an
// incident on the Health page and fails none of them (an hour is long past
// the three missed heartbeats and the grace that fail one silent node);
// when the switch is back they report again and the incident closes. No
// node is replaced and no downtime is counted.
const (
	OutageAfter = 2 * time.Hour
	OutageFor   = time.Hour
)

// Outage is a switch outage the demo simulated: the rack, its nodes that
// fell silent, and when (the demo's clock).
type Outage struct {
	Rack     string
	Nodes    []string // ids
	From, To time.Time
}

type outages struct {
	mu  sync.Mutex
	all []Outage
}

// Outages are the switch outages so far (To is zero while one lasts).
func (d *Demo) Outages() []Outage {
	d.outages.mu.Lock()
	defer d.outages.mu.Unlock()
	return slices.Clone(d.outages.all)
}

// outage runs the demo's switch outage (with failures on: FailureRate > 0).
func (d *Demo) outage(ctx context.Context) {
	if d.o.FailureRate <= 0 {
		return
	}
	at := d.Clock.Now().Add(OutageAfter)
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		if !d.sleepUntil(ctx, at) {
			return
		}
		rack, hung, err := d.switchDown(ctx)
		if err != nil || len(hung) == 0 {
			if err != nil && ctx.Err() == nil {
				d.o.Logger.Warn("demo outage", "err", err)
			}
			return
		}
		from := d.Clock.Now()
		d.outages.mu.Lock()
		d.outages.all = append(d.outages.all, Outage{Rack: rack, Nodes: ids(hung), From: from})
		d.outages.mu.Unlock()
		fmt.Fprintf(d.o.Out, "%s UTC: the top-of-rack switch of %s is down for %v: its %d nodes fall silent (the Health page: the breaker holds them)\n",
			from.Format("2006-01-02 15:04"), rack, OutageFor, len(hung))
		if !d.sleepUntil(ctx, from.Add(OutageFor)) {
			return
		}
		for _, sn := range hung {
			if sn.hung() {
				d.runAgent(ctx, sn, "", 0) // joined before: its stored credential is used
			}
		}
		to := d.Clock.Now()
		d.outages.mu.Lock()
		d.outages.all[len(d.outages.all)-1].To = to
		d.outages.mu.Unlock()
		fmt.Fprintf(d.o.Out, "%s UTC: the switch of %s is back; its nodes report again\n", to.Format("2006-01-02 15:04"), rack)
	}()
}

// sleepUntil waits until the demo's clock reaches t; false if ctx ended.
func (d *Demo) sleepUntil(ctx context.Context, t time.Time) bool {
	for d.Clock.Now().Before(t) {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(100 * time.Millisecond):
		}
	}
	return true
}

// switchDown silences the agents of a rack that serves committed work
// (any rack, if none does) and returns the rack and the nodes it silenced
// (those not already hung).
func (d *Demo) switchDown(ctx context.Context) (string, []*simNode, error) {
	us, err := d.Server.Store.NodeUses(ctx)
	if err != nil {
		return "", nil, err
	}
	var racks []string
	for _, u := range us {
		if u.State == sales.AllocationReady && (u.Class == placement.ClassReserved || u.Class == placement.ClassLease) {
			if n, ok := d.Server.Fleet.Snapshot.Node(u.NodeID); ok {
				racks = append(racks, n.Domain)
			}
		}
	}
	if len(racks) == 0 {
		for _, sn := range d.nodes {
			if n, ok := d.Server.Fleet.Snapshot.Node(sn.id); ok {
				racks = append(racks, n.Domain)
			}
		}
	}
	if len(racks) == 0 {
		return "", nil, nil
	}
	slices.Sort(racks)
	rack := racks[int(d.o.Seed)%len(racks)]
	var hung []*simNode
	for _, sn := range d.nodes {
		if n, ok := d.Server.Fleet.Snapshot.Node(sn.id); ok && n.Domain == rack && !sn.hung() {
			sn.hang()
			hung = append(hung, sn)
		}
	}
	slices.SortFunc(hung, func(a, b *simNode) int { return strings.Compare(a.hostname, b.hostname) })
	return rack, hung, nil
}

func ids(ns []*simNode) []string {
	out := make([]string, len(ns))
	for i, sn := range ns {
		out[i] = sn.id
	}
	return out
}
