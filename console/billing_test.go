package console_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/fleet"
	"github.com/neocloud/neocloud/placement"
	"github.com/neocloud/neocloud/sales"
)

// The invoices page: the open month's drafts, what was issued with
// downloads, closed months and the metered usage chart; an invoice's page;
// none of it for a tenant.
func TestInvoicePages(t *testing.T) {
	ctx := context.Background()
	s := startAt(t, time.Date(2027, 1, 31, 21, 0, 0, 0, time.UTC))
	s.apply(t, fleet.GenerateOptions{Site: "s1", Region: "us-south", Timezone: "UTC", SKU: h100, GPUs: 128, Levels: []string{"hall", "rack"}, Fanout: []int{1, 16}})
	tn, secret := s.acme(t)
	if _, err := s.Sales.SetPrice(ctx, opP, sales.PriceInput{SKU: h100.Name, Class: placement.ClassOnDemand, List: "3.20"}); err != nil {
		t.Fatal(err)
	}
	p := neocloud.Principal{TokenID: "t", Role: neocloud.RoleTenantAdmin, TenantID: tn.ID}
	if _, err := s.Sales.Reserve(ctx, p, sales.ReserveInput{ShapeInput: sales.ShapeInput{SKU: h100.Name, GPUs: 16, Class: placement.ClassOnDemand}}); err != nil {
		t.Fatal(err)
	}
	s.runUntilActive(t, 1)
	s.advance(3 * time.Hour)
	_, invs, err := s.Billing.Close(ctx, opP, "2027-01")
	if err != nil || len(invs) != 1 {
		t.Fatalf("close: %v %+v", err, invs)
	}
	inv := invs[0]
	s.advance(2 * time.Hour) // two hours of February metered
	if _, err := s.Billing.Meter(ctx, s.clock()); err != nil {
		t.Fatal(err)
	}

	c := browser(t, s.URL, s.Token)
	code, page := get(t, c, s.URL+"/invoices")
	if code != 200 || !strings.Contains(page, "billing-chart") || !strings.Contains(page, inv.Number) || !strings.Contains(page, "Open month: 2027-02") || !strings.Contains(page, "<td>acme</td><td>USD</td>") {
		t.Fatalf("/invoices: %d %.3000s", code, page)
	}
	if code, page := get(t, c, s.URL+"/invoices/"+inv.ID); code != 200 || !strings.Contains(page, inv.Total+" USD") || !strings.Contains(page, "on-demand GPU-hours") {
		t.Fatalf("invoice page: %d %.2000s", code, page)
	}
	if code, page := get(t, c, s.URL+"/invoices/"+inv.ID+"/lines/1"); code != 200 || !strings.Contains(page, "usage records") || !strings.Contains(page, inv.Lines[0].Amount) {
		t.Fatalf("line page: %d %.2000s", code, page)
	}
	if code, body := get(t, c, s.URL+"/invoices/usage.json"); code != 200 || !strings.Contains(body, `16,16,16]`) {
		t.Fatalf("usage.json: %d %.300s", code, body)
	}
	resp, err := c.Get(s.URL + "/invoices/" + inv.Number + "/export?format=pdf")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/pdf" {
		t.Fatalf("PDF download: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	tc := browser(t, s.URL, secret)
	for _, path := range []string{"/invoices", "/invoices/" + inv.ID, "/invoices/" + inv.ID + "/lines/1", "/invoices/" + inv.ID + "/export?format=pdf", "/invoices/usage.json"} {
		if code, _ := get(t, tc, s.URL+path); code != http.StatusNotFound {
			t.Errorf("tenant on %s: %d, want 404", path, code)
		}
	}
}
