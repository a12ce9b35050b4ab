package console_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/fleet"
	"github.com/neocloud/neocloud/tenant"
)

// The finance page: the month's summary, utilization, revenue with the
// identity, backlog and unit economics; the utilization chart's hours sum
// to the fleet; the revenue chart covers twelve months; none of it for a
// tenant.
func TestFinancePage(t *testing.T) {
	s := startAt(t, time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC))
	s.apply(t, fleet.GenerateOptions{Site: "s1", Region: "us-south", Timezone: "UTC", SKU: h100, GPUs: 128, Levels: []string{"hall", "rack"}, Fanout: []int{1, 16}})
	s.mu.Lock()
	s.now = time.Date(2027, 1, 20, 12, 30, 0, 0, time.UTC)
	s.mu.Unlock()

	c := browser(t, s.URL, s.Token)
	code, page := get(t, c, s.URL+"/finance")
	if code != 200 || !strings.Contains(page, "<h1>Finance</h1>") || !strings.Contains(page, "finance-util-chart") || !strings.Contains(page, "finance-revenue-chart") ||
		!strings.Contains(page, "the identity holds") || !strings.Contains(page, `href="/finance"`) || !strings.Contains(page, "idle") {
		t.Fatalf("/finance: %d %.3000s", code, page)
	}
	code, body := get(t, c, s.URL+"/finance/utilization.json?site=s1")
	var util map[string][]float64
	if code != 200 || json.Unmarshal([]byte(body), &util) != nil || len(util["t"]) != 19*24+13 {
		t.Fatalf("/finance/utilization.json: %d %.500s", code, body)
	}
	for i := range util["t"] {
		sum := 0.0
		for k, v := range util {
			if k != "t" {
				sum += v[i]
			}
		}
		if sum < 127.999 || sum > 128.001 {
			t.Fatalf("hour %d: %v GPUs in the categories, want 128", i, sum)
		}
	}
	code, body = get(t, c, s.URL+"/finance/revenue.json?site=s1")
	var rev map[string][]float64
	if code != 200 || json.Unmarshal([]byte(body), &rev) != nil || len(rev["t"]) != 12 || len(rev["recognized"]) != 12 {
		t.Fatalf("/finance/revenue.json: %d %.500s", code, body)
	}
	ctx := context.Background()
	if _, err := s.Tenants.Create(ctx, tenant.CreateInput{Name: "acme"}); err != nil {
		t.Fatal(err)
	}
	_, secret, err := s.Tenants.CreateToken(ctx, opP, tenant.CreateTokenInput{Name: "acme-admin", Role: neocloud.RoleTenantAdmin, Tenant: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	tc := browser(t, s.URL, secret)
	for _, path := range []string{"/finance", "/finance/utilization.json?site=s1", "/finance/revenue.json?site=s1"} {
		if code, _ := get(t, tc, s.URL+path); code != http.StatusNotFound {
			t.Errorf("tenant on %s: %d, want 404", path, code)
		}
	}
}
