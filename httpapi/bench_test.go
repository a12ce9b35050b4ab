package httpapi_test

import (
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/neocloud/neocloud/internal/testdb"
	"github.com/neocloud/neocloud/sqlstore"
)

// BenchmarkAPI measures latency over real HTTP on loopback and reports
// p50/p99 per request: an authenticated GET and a POST with an
// Idempotency-Key (a full write: effect, audit record and stored response).
// Run: go test -run '^$' -bench API -benchtime 2000x ./httpapi/
func BenchmarkAPI(b *testing.B) {
	for _, engine := range []string{"sqlite", "postgres"} {
		open := func(b *testing.B) *sqlstore.DB {
			if engine == "sqlite" {
				return testdb.SQLite(b)
			}
			return testdb.Postgres(b)
		}
		b.Run(engine+"/GET-tenant", func(b *testing.B) {
			e := newEnvTB(b, open(b))
			sec := e.secrets["a/tenant-admin"]
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				r := e.do("GET", "/v1/tenants/tenant-a", sec, nil)
				lat = append(lat, time.Since(t0))
				if r.status != 200 {
					b.Fatal(r.status)
				}
			}
			report(b, lat)
		})
		b.Run(engine+"/POST-tenant-idempotent", func(b *testing.B) {
			e := newEnvTB(b, open(b))
			op := e.secrets["operator-admin"]
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				r := e.do("POST", "/v1/tenants", op, fmt.Sprintf(`{"name":"bench-%d"}`, i), "Idempotency-Key", fmt.Sprintf("bench-%d", i))
				lat = append(lat, time.Since(t0))
				if r.status != 201 {
					b.Fatal(r.status, string(r.body))
				}
			}
			report(b, lat)
		})
	}
}

func report(b *testing.B, lat []time.Duration) {
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) }
	b.ReportMetric(q(0.50), "p50-µs")
	b.ReportMetric(q(0.99), "p99-µs")
}
