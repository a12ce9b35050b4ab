package relay

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// MetricsPath is where a relay serves its own metrics (Prometheus text
// format) on the agents' listener; every other path is the server's.
const MetricsPath = "/relay/metrics"

// metricsHandler serves r's counts, read when scraped: the heartbeat path
// counts with atomics alone.
func (r *Relay) metricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	counter := func(name, help string, v func() int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(v()) })
	}
	gauge := func(name, help string, v func() int64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return float64(v()) })
	}
	s := &r.stats
	reg.MustRegister(
		counter("neocloud_relay_heartbeats_total", "Heartbeats the server answered through the relay.", s.heartbeats.Load),
		counter("neocloud_relay_heartbeat_batches_total", "Writes of heartbeats to the server (heartbeats_total / this is the mean batch).", s.batches.Load),
		counter("neocloud_relay_server_connections_total", "Connections to the server opened to carry heartbeats.", s.dials.Load),
		counter("neocloud_relay_heartbeats_unanswered_total", "Heartbeats the relay answered 502: the server did not answer (the agent sends them again).", s.unanswered.Load),
		counter("neocloud_relay_heartbeats_too_large_total", "Heartbeats refused with 413 for their size, without reaching the server.", s.tooLarge.Load),
		counter("neocloud_relay_proxied_requests_total", "Requests other than heartbeats passed through to the server.", s.proxied.Load),
		counter("neocloud_relay_proxied_failures_total", "Passed-through requests the relay answered 502: the server did not answer.", s.proxyFailed.Load),
		gauge("neocloud_relay_largest_batch", "The most heartbeats one write to the server has carried.", s.largest.Load),
		gauge("neocloud_relay_lines_out_of_reach", "Connections to the server that could not be opened again and are waiting before the next try.", s.outOfReach.Load),
		gauge("neocloud_relay_queued_heartbeats", "Heartbeats waiting for a connection to the server.", r.queued),
	)
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}

// queued counts the heartbeats waiting on the relay's lines.
func (r *Relay) queued() int64 {
	var n int64
	for _, l := range r.lines {
		l.mu.Lock()
		n += int64(len(l.queue))
		l.mu.Unlock()
	}
	return n
}
