package httpapi

import (
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the server's Prometheus series. Labels are operation ids,
// methods and status codes only: never tenant ids or other unbounded values.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	// series holds each label set's series once looked up (a lookup
	// hashes its labels): seriesKey → *series.
	series sync.Map
}

type seriesKey struct {
	op, method string
	status     int
}

type series struct {
	requests prometheus.Counter
	duration prometheus.Observer
}

func newMetrics() *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "neocloud_http_requests_total", Help: "HTTP requests by operation, method and status code.",
	}, []string{"operation", "method", "code"})
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "neocloud_http_request_duration_seconds", Help: "HTTP request latency by operation and method.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"operation", "method"})
	m.reg.MustRegister(m.requests, m.duration)
	return m
}

func (m *metrics) observe(op, method string, status int, d time.Duration) {
	if op == "" || strings.Contains(op, " ") { // unrouted: "GET /path" would be unbounded
		op = "other"
	}
	k := seriesKey{op, method, status}
	v, ok := m.series.Load(k)
	if !ok {
		v, _ = m.series.LoadOrStore(k, &series{
			requests: m.requests.WithLabelValues(op, method, strconv.Itoa(status)),
			duration: m.duration.WithLabelValues(op, method),
		})
	}
	sr := v.(*series)
	sr.requests.Inc()
	sr.duration.Observe(d.Seconds())
}
