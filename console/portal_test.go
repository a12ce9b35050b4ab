package console_test

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/billing"
	"github.com/neocloud/neocloud/fleet"
	"github.com/neocloud/neocloud/placement"
	"github.com/neocloud/neocloud/sales"
	"github.com/neocloud/neocloud/tenant"
)

var (
	hrefRE   = regexp.MustCompile(`(?:href|action|hx-get|data-src)="([^"]+)"`)
	formRE   = regexp.MustCompile(`(?s)<form method="post" action="([^"]+)"`)
	inputRE  = regexp.MustCompile(`<(?:input|select)\b[^>]*>`)
	idRE     = regexp.MustCompile(`\bid="([^"]+)"`)
	hiddenRE = regexp.MustCompile(`type="(?:hidden|submit)"`)
)

// crawl visits every portal page reachable from start (same origin, under
// /my) and returns the GET URLs and the POST form actions it found.
func crawl(t *testing.T, c *http.Client, base, start string) (gets, posts []string, pages map[string]string) {
	t.Helper()
	seen := map[string]bool{start: true}
	queue := []string{start}
	pages = map[string]string{}
	postSet := map[string]bool{}
	for len(queue) > 0 && len(pages) < 300 {
		u := queue[0]
		queue = queue[1:]
		code, body := get(t, c, base+u)
		if code != 200 {
			t.Fatalf("crawling %s: %d %.300s", u, code, body)
		}
		pages[u] = body
		for _, m := range formRE.FindAllStringSubmatch(body, -1) {
			postSet[strings.ReplaceAll(m[1], "&amp;", "&")] = true
		}
		for _, m := range hrefRE.FindAllStringSubmatch(body, -1) {
			l := strings.ReplaceAll(m[1], "&amp;", "&")
			if !strings.HasPrefix(l, "/my/") || seen[l] || postSet[l] || strings.HasPrefix(l, "/my/reserve") && !strings.HasPrefix(l, "/my/reservations") {
				continue
			}
			if strings.Contains(l, "/export?") || strings.Contains(l, "/topology?") || strings.HasSuffix(strings.Split(l, "?")[0], ".json") || strings.Contains(l, "fragment=1") {
				seen[l] = true // a download or data: fetched, not parsed
				if code, body := get(t, c, base+l); code != 200 {
					t.Fatalf("fetching %s: %d %.300s", l, code, body)
				}
				gets = append(gets, l)
				continue
			}
			seen[l] = true
			queue = append(queue, l)
		}
		gets = append(gets, u)
	}
	for p := range postSet {
		posts = append(posts, p)
	}
	sort.Strings(posts)
	return gets, posts, pages
}

// The portal shows a tenant its own, and nothing of another's: every URL
// found crawling tenant A's pages (links, data, downloads and forms) that
// names one of A's objects answers 404 to tenant B, who posts A's forms
// to no effect; the pages both can open show B nothing of A's. Every
// form field has a label. A tenant-member sees no admin actions and the
// API refuses them. A quote with a bad field says which; a good one can
// be reserved.
func TestPortalIsolation(t *testing.T) {
	ctx := context.Background()
	op := neocloud.Principal{TokenID: "op", Role: neocloud.RoleOperatorAdmin}
	s := startAt(t, time.Now().UTC())
	s.apply(t, fleet.GenerateOptions{Site: "s1", Region: "us-south", Timezone: "UTC", SKU: h100, GPUs: 512, Levels: []string{"hall", "pod", "su", "rack"}, Fanout: []int{2, 2, 2, 4}})
	acmeT, acmeToken := s.acme(t)
	if _, err := s.Sales.SetPrice(ctx, opP, sales.PriceInput{SKU: h100.Name, Class: placement.ClassOnDemand, List: "3.20"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Sales.Reserve(ctx, neocloud.Principal{TokenID: "a", Role: neocloud.RoleTenantAdmin, TenantID: acmeT.ID},
		sales.ReserveInput{ShapeInput: sales.ShapeInput{SKU: h100.Name, GPUs: 16, Class: placement.ClassOnDemand}}); err != nil {
		t.Fatal(err)
	}
	s.runUntilActive(t, 1)
	// A month on, the month closes: acme has an invoice (and its lines).
	s.mu.Lock()
	month := s.now.Format("2006-01")
	s.now = time.Date(s.now.Year(), s.now.Month()+1, 1, 2, 0, 0, 0, time.UTC)
	s.mu.Unlock()
	if _, err := s.Billing.Meter(ctx, s.clock()); err != nil {
		t.Fatal(err)
	}
	if _, invs, err := s.Billing.Close(ctx, op, month); err != nil || len(invs) == 0 {
		t.Fatalf("closing %s: %v (%d invoices)", month, err, len(invs))
	}
	r := s.Running
	beta, err := r.Tenants.Create(ctx, tenant.CreateInput{Name: "beta"})
	if err != nil {
		t.Fatal(err)
	}
	_, betaToken, err := r.Tenants.CreateToken(ctx, op, tenant.CreateTokenInput{Name: "beta-admin", Role: neocloud.RoleTenantAdmin, Tenant: "beta"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Sales.Reserve(ctx, neocloud.Principal{TokenID: "b", Role: neocloud.RoleTenantAdmin, TenantID: beta.ID},
		sales.ReserveInput{ShapeInput: sales.ShapeInput{SKU: h100.Name, GPUs: 8, Class: placement.ClassOnDemand}}); err != nil {
		t.Fatal(err)
	}
	acme := browser(t, r.URL, acmeToken)
	gets, posts, pages := crawl(t, acme, r.URL, "/my/reservations")
	var acmeIDs []string
	invs, _ := s.Billing.Invoices(ctx, op, "acme", billing.InvoiceFilter{}, neocloud.Page{Limit: 50})
	for _, inv := range invs {
		acmeIDs = append(acmeIDs, inv.ID)
	}
	rs, _ := r.Sales.Reservations(ctx, op, sales.ReservationFilter{}, neocloud.Page{Limit: 50})
	for _, x := range rs {
		if x.TenantID != beta.ID {
			acmeIDs = append(acmeIDs, x.ID)
			for _, n := range x.Nodes {
				acmeIDs = append(acmeIDs, n.Hostname)
			}
		}
	}
	foundNode := false
	for _, u := range gets {
		foundNode = foundNode || strings.HasPrefix(u, "/my/nodes/")
	}
	foundInvoice := false
	for _, u := range gets {
		foundInvoice = foundInvoice || strings.Contains(u, "/my/invoices/") && strings.Contains(u, "/lines/")
	}
	if len(gets) < 12 || len(posts) < 4 || !foundNode || !foundInvoice {
		t.Fatalf("the crawl found too little: %d pages and data, %d forms, a node page %v, an invoice line %v:\n%v\n%v", len(gets), len(posts), foundNode, foundInvoice, gets, posts)
	}
	t.Logf("crawled %d pages and data: %v; forms: %v", len(gets), gets, posts)
	// Labels on every field of every page.
	for u, body := range pages {
		for _, in := range inputRE.FindAllString(body, -1) {
			if hiddenRE.MatchString(in) {
				continue
			}
			m := idRE.FindStringSubmatch(in)
			if m == nil || !strings.Contains(body, `<label for="`+m[1]+`"`) {
				t.Errorf("%s: a field without a label: %s", u, in)
			}
		}
	}
	// Tenant B replays A's URLs.
	betaC := browser(t, r.URL, betaToken)
	names := func(u string) bool {
		for _, id := range acmeIDs {
			if strings.Contains(u, id) {
				return true
			}
		}
		return false
	}
	for _, u := range gets {
		code, body := get(t, betaC, r.URL+u)
		if names(u) {
			if code != http.StatusNotFound {
				t.Errorf("beta on acme's %s: %d, want 404", u, code)
			}
			continue
		}
		if code != 200 {
			t.Errorf("beta on %s: %d", u, code)
		}
		for _, id := range acmeIDs {
			if strings.Contains(body, id) {
				t.Errorf("beta's %s shows acme's %s", u, id)
			}
		}
	}
	for _, p := range posts {
		if !names(p) {
			continue
		}
		resp, err := betaC.PostForm(r.URL+p, url.Values{"confirm": {"yes"}, "reason": {"not mine"}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("beta posts acme's %s: %d, want 404", p, resp.StatusCode)
		}
	}
	if rs, _ := r.Sales.Reservations(ctx, op, sales.ReservationFilter{}, neocloud.Page{Limit: 50}); len(rs) != 2 {
		t.Errorf("%d reservations after beta's posts", len(rs))
	}

	// A member of acme: no admin actions shown, and none done.
	_, memberToken, err := r.Tenants.CreateToken(ctx, op, tenant.CreateTokenInput{Name: "acme-member", Role: neocloud.RoleTenantMember, Tenant: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	member := browser(t, r.URL, memberToken)
	for _, p := range posts {
		if !strings.HasPrefix(p, "/my/nodes/") {
			continue
		}
		node := strings.TrimSuffix(p, p[strings.LastIndex(p, "/"):])
		if _, body := get(t, member, r.URL+node); strings.Contains(body, `action="`+p+`"`) {
			t.Errorf("a member is shown %s", p)
		}
		resp, err := member.PostForm(r.URL+p, url.Values{"confirm": {"yes"}, "reason": {"slow"}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("a member posts %s: %d, want 403", p, resp.StatusCode)
		}
	}
	if _, body := get(t, member, r.URL+"/my/tokens"); strings.Contains(body, `action="/my/tokens"`) {
		t.Error("a member is shown the token form")
	}
	resp, err := member.PostForm(r.URL+"/my/tokens", url.Values{"name": {"sneaky"}, "role": {"tenant-admin"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("a member creates a token: %d, want 403", resp.StatusCode)
	}

	// An action without its confirmation is not taken.
	for _, p := range posts {
		if strings.HasSuffix(p, "/reboot") {
			resp, err := acme.PostForm(r.URL+p, url.Values{})
			if err != nil {
				t.Fatal(err)
			}
			if body := readAll(resp); resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, "Tick the confirmation") {
				t.Errorf("a reboot without confirmation: %d %.300s", resp.StatusCode, body)
			}
			break
		}
	}

	// Quote and reserve.
	resp, err = acme.PostForm(r.URL+"/my/quote", url.Values{"sku": {h100.Name}, "gpus": {"many"}, "class": {"on_demand"}})
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(resp)
	if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, `id="gpus-error"`) || !strings.Contains(body, `aria-invalid="true" aria-describedby="gpus-error"`) {
		t.Fatalf("a bad quote: %d %.2000s", resp.StatusCode, body)
	}
	resp, err = acme.PostForm(r.URL+"/my/quote", url.Values{"sku": {h100.Name}, "gpus": {"8"}, "class": {"on_demand"}})
	if err != nil {
		t.Fatal(err)
	}
	body = readAll(resp)
	m := regexp.MustCompile(`name="quote" value="([^"]+)"`).FindStringSubmatch(body)
	if resp.StatusCode != 200 || m == nil || !strings.Contains(body, `<dd id="available">yes</dd>`) {
		t.Fatalf("a quote: %d %.2000s", resp.StatusCode, body)
	}
	resp, err = acme.PostForm(r.URL+"/my/reserve", url.Values{"quote": {m[1]}})
	if err != nil {
		t.Fatal(err)
	}
	body = readAll(resp)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Request.URL.Path, "/my/reservations/rsv_") || !strings.Contains(body, "on_demand") {
		t.Fatalf("reserving the quote: %d at %s %.500s", resp.StatusCode, resp.Request.URL, body)
	}
	// The same quote again (used now): the quote form, saying why.
	resp, err = acme.PostForm(r.URL+"/my/reserve", url.Values{"quote": {m[1]}})
	if err != nil {
		t.Fatal(err)
	}
	body = readAll(resp)
	if resp.StatusCode != http.StatusConflict || !strings.Contains(body, `role="alert">quote `+m[1]+` is used. Ask for a new quote.`) || !strings.Contains(body, `id="gpus"`) {
		t.Fatalf("reserving a used quote: %d %.3000s", resp.StatusCode, body)
	}
}

// readAll reads and closes a response's body.
func readAll(resp *http.Response) string {
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
