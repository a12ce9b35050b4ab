package cli

import (
	"context"
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/agents"
	"github.com/neocloud/neocloud/console"
	"github.com/neocloud/neocloud/fleet"
)

// fleetMetrics are the fleet's and this server's Prometheus series, read
// at each scrape: nodes and GPUs by site, health and lifecycle, GPUs held
// by class and down, open incidents and repair tickets, and the work this
// server leads. Labels are bounded: sites, health, lifecycle, class
// and lease names.
type fleetMetrics struct {
	fl  *fleet.Service
	ag  *agents.Service
	con atomic.Pointer[console.Console]
	// replicas lists the replicas, each with the work it leads; self is
	// this one's id.
	replicas func(ctx context.Context) ([]neocloud.Replica, error)
	self     string
	nodes    *prometheus.Desc
	gpus     *prometheus.Desc
	held     *prometheus.Desc
	down     *prometheus.Desc
	inc      *prometheus.Desc
	tickets  *prometheus.Desc
	lease    *prometheus.Desc
}

// newFleetMetrics returns the series of fl and ag; those of the console's
// samples once con is set.
func newFleetMetrics(fl *fleet.Service, ag *agents.Service, replicas func(ctx context.Context) ([]neocloud.Replica, error), self string) *fleetMetrics {
	return &fleetMetrics{fl: fl, ag: ag, replicas: replicas, self: self,
		nodes:   prometheus.NewDesc("neocloud_nodes", "Nodes by site, health and lifecycle.", []string{"site", "health", "lifecycle"}, nil),
		gpus:    prometheus.NewDesc("neocloud_gpus", "GPUs by site and their node's lifecycle.", []string{"site", "lifecycle"}, nil),
		held:    prometheus.NewDesc("neocloud_gpus_held", "GPUs held by live allocations, by class (sampled every few seconds).", []string{"class"}, nil),
		down:    prometheus.NewDesc("neocloud_gpus_down", "GPUs of nodes failed or unreachable, or in repair, burn-in or sanitizing (sampled every few seconds).", nil, nil),
		inc:     prometheus.NewDesc("neocloud_incidents_open", "Open incidents: domains gone silent at once, held from automatic failing.", nil, nil),
		tickets: prometheus.NewDesc("neocloud_repair_tickets_open", "Repair tickets open (repair, burn-in, sanitizing).", nil, nil),
		lease:   prometheus.NewDesc("neocloud_leader", "1 when this server leads the loop now, as the store's lease says (lifecycle: steps reservations; liveness: judges nodes); summed over replicas, 1.", []string{"loop"}, nil),
	}
}

func (m *fleetMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.nodes, m.gpus, m.held, m.down, m.inc, m.tickets, m.lease} {
		ch <- d
	}
}

func (m *fleetMetrics) Collect(ch chan<- prometheus.Metric) {
	names := map[string]string{}
	for _, st := range m.fl.Snapshot.Sites() {
		names[st.ID] = st.Name
	}
	type nodeKey struct{ site, health, lifecycle string }
	type gpuKey struct{ site, lifecycle string }
	nodes, gpus := map[nodeKey]int{}, map[gpuKey]int{}
	m.fl.Snapshot.Each(fleet.NodeFilter{}, func(n *fleet.Node) {
		nodes[nodeKey{names[n.SiteID], string(n.Health), string(n.Lifecycle)}]++
		gpus[gpuKey{names[n.SiteID], string(n.Lifecycle)}] += len(n.GPUs)
	})
	for k, v := range nodes {
		ch <- prometheus.MustNewConstMetric(m.nodes, prometheus.GaugeValue, float64(v), k.site, k.health, k.lifecycle)
	}
	for k, v := range gpus {
		ch <- prometheus.MustNewConstMetric(m.gpus, prometheus.GaugeValue, float64(v), k.site, k.lifecycle)
	}
	if p, ok := m.latest(); ok {
		for class, v := range p.ByClass {
			ch <- prometheus.MustNewConstMetric(m.held, prometheus.GaugeValue, float64(v), class)
		}
		ch <- prometheus.MustNewConstMetric(m.down, prometheus.GaugeValue, float64(p.Down))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if incs, err := m.ag.Incidents(ctx, true); err == nil {
		ch <- prometheus.MustNewConstMetric(m.inc, prometheus.GaugeValue, float64(len(incs)))
	} else {
		ch <- prometheus.NewInvalidMetric(m.inc, err)
	}
	open := false
	if n, err := m.ag.Store.CountTickets(ctx, agents.TicketFilter{Closed: &open}); err == nil {
		ch <- prometheus.MustNewConstMetric(m.tickets, prometheus.GaugeValue, float64(n))
	} else {
		ch <- prometheus.NewInvalidMetric(m.tickets, err)
	}
	rs, err := m.replicas(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(m.lease, err)
		return
	}
	var mine []string
	for _, r := range rs {
		if r.ID == m.self {
			mine = r.Leads
		}
	}
	for _, name := range []string{"lifecycle", "liveness"} {
		v := 0.0
		if slices.Contains(mine, name) {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(m.lease, prometheus.GaugeValue, v, name)
	}
}

func (m *fleetMetrics) latest() (console.Point, bool) {
	if con := m.con.Load(); con != nil {
		return con.Latest()
	}
	return console.Point{}, false
}
