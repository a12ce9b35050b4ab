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

// The power page: each site's firm capacity and domains, the month's
// energy and emissions by party with downloads, and the hourly chart's
// data; none of it for a tenant.
func TestPowerPage(t *testing.T) {
	s := startAt(t, time.Date(2027, 1, 20, 12, 0, 0, 0, time.UTC))
	s.apply(t, fleet.GenerateOptions{Site: "s1", Region: "us-south", Timezone: "UTC", SKU: h100, GPUs: 128, Levels: []string{"hall", "rack"}, Fanout: []int{1, 16}})

	c := browser(t, s.URL, s.Token)
	code, page := get(t, c, s.URL+"/power")
	if code != 200 || !strings.Contains(page, "Power and environment") || !strings.Contains(page, "power-chart") || !strings.Contains(page, "feed-1") ||
		!strings.Contains(page, "Energy and emissions, 2027-01") || !strings.Contains(page, `href="/power"`) {
		t.Fatalf("/power: %d %.3000s", code, page)
	}
	code, body := get(t, c, s.URL+"/power/series.json?site=s1")
	var series map[string][]float64
	if code != 200 || json.Unmarshal([]byte(body), &series) != nil || series["facility_kw"] == nil || series["generation_kw"] == nil {
		t.Fatalf("/power/series.json: %d %.500s", code, body)
	}
	resp, err := c.Get(s.URL + "/power/export?site=s1&period=2027-01&format=pdf")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/pdf" {
		t.Fatalf("PDF download: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if code, _ := get(t, c, s.URL+"/power/export?site=s1&period=2027-13&format=pdf"); code != http.StatusUnprocessableEntity && code != http.StatusBadRequest {
		t.Fatalf("a bad period: %d", code)
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
	for _, path := range []string{"/power", "/power/series.json?site=s1", "/power/export?site=s1&period=2027-01&format=pdf"} {
		if code, _ := get(t, tc, s.URL+path); code != http.StatusNotFound {
			t.Errorf("tenant on %s: %d, want 404", path, code)
		}
	}
}
