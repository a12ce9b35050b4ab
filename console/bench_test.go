package console_test

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/fleet"
	"github.com/neocloud/neocloud/sales"
	"github.com/neocloud/neocloud/tenant"
)

// BenchmarkPages measures console pages over HTTP on a 196,608-GPU site
// (24,576 nodes) with one hall leased and delivered (6,144 allocations).
func BenchmarkPages(b *testing.B) {
	ctx := context.Background()
	r := start(b, filepath.Join(b.TempDir(), "data"))
	defer r.Close()
	setup := time.Now()
	r.apply(b, fleet.ColossusOptions(h100, 196608))
	if _, err := r.Tenants.Create(ctx, tenant.CreateInput{Name: "acme"}); err != nil {
		b.Fatal(err)
	}
	if _, err := r.Sales.CreateLease(ctx, opP, sales.LeaseInput{Tenant: "acme", Site: "colossus-1", Domain: "h1", Start: r.clock(), DurationS: 365 * 86400, Rate: "1.85"}); err != nil {
		b.Fatal(err)
	}
	r.runUntilActive(b, 1)
	uses, _ := r.Store.NodeUses(ctx)
	b.Logf("site of %d nodes, %d live allocations, set up in %v", r.Fleet.Snapshot.Count(fleet.NodeFilter{}), len(uses), time.Since(setup).Round(time.Millisecond))

	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	resp, err := c.PostForm(r.URL+"/login", url.Values{"token": {r.Token}})
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	node := r.Fleet.Snapshot.Nodes(fleet.NodeFilter{Domain: "h1/p01/su01/r1"}, neocloud.Page{Limit: 1})[0]
	for _, p := range []struct{ name, path string }{
		{"overview", "/"},
		{"topology-site", "/topology"},
		{"topology-site-by-tenant", "/topology?by=tenant"},
		{"topology-hall", "/topology?domain=h1"},
		{"topology-pod", "/topology?domain=h1/p01"},
		{"topology-rack", "/topology?domain=h1/p01/su01/r1"},
		{"node", "/nodes/" + node.ID},
		{"reservations", "/reservations"},
		{"events", "/events"},
	} {
		b.Run(p.name, func(b *testing.B) {
			size := 0
			for b.Loop() {
				r.Console.Changed() // read allocations every time, as after a change
				resp, err := c.Get(r.URL + p.path)
				if err != nil {
					b.Fatal(err)
				}
				n, _ := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatalf("%s: %d", p.path, resp.StatusCode)
				}
				size = int(n)
			}
			b.ReportMetric(float64(size)/1024, "KiB/page")
		})
	}
}
