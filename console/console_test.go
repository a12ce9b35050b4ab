package console_test

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/agents"
	"github.com/neocloud/neocloud/audit"
	"github.com/neocloud/neocloud/cli"
	"github.com/neocloud/neocloud/console"
	"github.com/neocloud/neocloud/fleet"
	"github.com/neocloud/neocloud/placement"
	"github.com/neocloud/neocloud/sales"
	"github.com/neocloud/neocloud/tenant"
)

// site starts a server with a small generated site, a tenant with a
// running on-demand reservation, and returns it with the operator's and
// the tenant's tokens.
func site(t *testing.T) (*cli.Running, string, string) {
	t.Helper()
	s, op, tenantSecret := siteServer(t)
	return s.Running, op, tenantSecret
}

// siteServer is site with the test server (its clock) itself.
func siteServer(t *testing.T) (*testServer, string, string) {
	t.Helper()
	ctx := context.Background()
	s := startAt(t, time.Now().UTC())
	s.apply(t, fleet.GenerateOptions{Site: "s1", Region: "us-south", Timezone: "UTC", SKU: h100, GPUs: 512, Levels: []string{"hall", "pod", "su", "rack"}, Fanout: []int{2, 2, 2, 4}})
	tn, secret := s.acme(t)
	if _, err := s.Sales.SetPrice(ctx, opP, sales.PriceInput{SKU: h100.Name, Class: placement.ClassOnDemand, List: "3.20"}); err != nil {
		t.Fatal(err)
	}
	p := neocloud.Principal{TokenID: "t", Role: neocloud.RoleTenantAdmin, TenantID: tn.ID}
	if _, err := s.Sales.Reserve(ctx, p, sales.ReserveInput{ShapeInput: sales.ShapeInput{SKU: h100.Name, GPUs: 16, Class: placement.ClassOnDemand}}); err != nil {
		t.Fatal(err)
	}
	s.runUntilActive(t, 1)
	return s, s.Token, secret
}

// browser is an HTTP client with a cookie jar, signed in with token.
func browser(t *testing.T, base, token string) *http.Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	resp, err := c.PostForm(base+"/login", url.Values{"token": {token}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if at := resp.Request.URL.Path; resp.StatusCode != http.StatusOK || at != "/" && at != "/my/reservations" {
		t.Fatalf("login: %d at %s", resp.StatusCode, resp.Request.URL)
	}
	return c
}

func get(t *testing.T, c *http.Client, u string) (int, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// hxPost posts form to u as htmx does, and answers the status and the
// fragment.
func hxPost(t *testing.T, c *http.Client, u string, form url.Values) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("HX-Request", "true")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestLoginPageAndOperatorPages(t *testing.T) {
	r, opToken, _ := site(t)
	// / answers the login page itself, with no redirect.
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Get(r.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `name="token"`) || !strings.Contains(string(body), `<label for="token">`) {
		t.Fatalf("/ without a session: %d %.300s", resp.StatusCode, body)
	}
	// A wrong token does not sign in.
	jar, _ := cookiejar.New(nil)
	bad := &http.Client{Jar: jar}
	resp, err = bad.PostForm(r.URL+"/login", url.Values{"token": {"nct_nope"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	u, _ := url.Parse(r.URL)
	if resp.StatusCode != http.StatusUnauthorized || len(jar.Cookies(u)) != 0 {
		t.Errorf("bad token: %d, cookies %v", resp.StatusCode, jar.Cookies(u))
	}
	if recs, err := r.Store.Audit(context.Background(), audit.Filter{Action: "console-login"}, neocloud.Page{Limit: 10}); err != nil || len(recs) != 1 || recs[0].Result != audit.ResultDenied || recs[0].Actor != "anonymous" {
		t.Errorf("audit of the refused sign-in: %+v %v", recs, err)
	}

	// The session cookie is the token, out of scripts' and other sites' reach.
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err = noFollow.PostForm(r.URL+"/login", url.Values{"token": {opToken}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var session *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == console.CookieName {
			session = ck
		}
	}
	if resp.StatusCode != http.StatusSeeOther || session == nil || !session.HttpOnly || session.SameSite != http.SameSiteStrictMode || session.Value != opToken {
		t.Fatalf("login: %d, cookie %+v", resp.StatusCode, session)
	}

	c := browser(t, r.URL, opToken)
	code, page := get(t, c, r.URL+"/")
	if code != 200 || !strings.Contains(page, "512</div><div>GPUs on 64 nodes") || !strings.Contains(page, "util-chart") {
		t.Fatalf("overview: %d %.500s", code, page)
	}
	// The on-demand reservation's 16 GPUs are in use, by class.
	if !strings.Contains(page, `<th scope="row">on_demand</th><td class="num">16</td>`) {
		t.Errorf("overview does not count the on-demand GPUs: %.2000s", page)
	}
	for _, p := range []string{"/topology", "/topology?domain=h1", "/topology?domain=h1/p1/su1/r1&by=tenant", "/reservations", "/contracts", "/quotes", "/maintenance", "/health", "/events"} {
		if code, body := get(t, c, r.URL+p); code != 200 || !strings.Contains(body, "</main>") {
			t.Errorf("%s: %d %.300s", p, code, body)
		}
	}
	// The heatmap: one tile per hall at the top, cells for every node.
	_, topo := get(t, c, r.URL+"/topology")
	if n := strings.Count(topo, `class="tile`); n != 2 {
		t.Errorf("site level: %d tiles, want 2 halls", n)
	}
	_, leaf := get(t, c, r.URL+"/topology?domain=h1/p1/su1/r1")
	if n := strings.Count(leaf, `class="node"`); n != 4 {
		t.Errorf("rack level: %d nodes, want 4", n)
	}
	// The utilization series counts the reservation's GPUs.
	if err := r.Console.Record(context.Background()); err != nil {
		t.Fatal(err)
	}
	pts := r.Console.Series()
	if last := pts[len(pts)-1]; last.GPUs != 512 || last.ByClass["on_demand"] != 16 {
		t.Errorf("utilization point = %+v", last)
	}
	if code, body := get(t, c, r.URL+"/utilization.json"); code != 200 || !strings.Contains(body, `"on_demand":[`) {
		t.Errorf("utilization.json: %d %.200s", code, body)
	}
}

func TestTenantTokenGetsNotFound(t *testing.T) {
	r, _, tenantToken := site(t)
	c := browser(t, r.URL, tenantToken)
	n := r.Fleet.Snapshot.Nodes(fleet.NodeFilter{}, neocloud.Page{Limit: 1})[0]
	for _, p := range []string{"/topology", "/nodes/" + n.ID, "/nodes/" + n.ID + "/telemetry.json", "/reservations", "/contracts", "/health", "/events", "/utilization.json", "/clock", "/nodes/" + n.ID + "/gpus.json"} {
		if code, _ := get(t, c, r.URL+p); code != http.StatusNotFound {
			t.Errorf("tenant on %s: %d, want 404", p, code)
		}
	}
	// The home page is the tenant's portal.
	if code, body := get(t, c, r.URL+"/"); code != 200 || !strings.Contains(body, "<h1>Reservations</h1>") || !strings.Contains(body, `aria-label="Portal"`) {
		t.Errorf("tenant on /: %d %.300s", code, body)
	}
	// Actions too, and nothing changes.
	resp, err := c.Post(r.URL+"/nodes/"+n.ID+"/drain", "application/x-www-form-urlencoded", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	after, _ := r.Fleet.Snapshot.Node(n.ID)
	if resp.StatusCode != http.StatusNotFound || after.Cordoned {
		t.Errorf("tenant drain: %d, cordoned %v", resp.StatusCode, after.Cordoned)
	}
	// No session at all: 404 as well.
	if code, _ := get(t, http.DefaultClient, r.URL+"/topology"); code != http.StatusNotFound {
		t.Errorf("anonymous /topology: %d", code)
	}
	// Each refusal left its audit record (invariant 8): the tenant's page
	// views and action by its token, the anonymous one as anonymous.
	recs, err := r.Store.Audit(context.Background(), audit.Filter{Action: "console-page"}, neocloud.Page{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	byTenant, anonymous := 0, 0
	for _, rec := range recs {
		switch {
		case rec.Result != audit.ResultDenied || rec.Status != http.StatusNotFound:
			t.Errorf("record %+v", rec)
		case rec.ActorRole == string(neocloud.RoleTenantAdmin):
			byTenant++
		case rec.Actor == "anonymous" && rec.Object == "/topology":
			anonymous++
		}
	}
	if byTenant != 11 || anonymous != 1 {
		t.Errorf("denied console requests audited: %d by the tenant (want 10 pages and 1 action), %d anonymous (want 1)", byTenant, anonymous)
	}
	if v, err := audit.Verify(context.Background(), r.Store); err != nil || !v.OK {
		t.Errorf("the audit chain with the console's records: %+v %v", v, err)
	}
}

func TestDrainThroughTheAPI(t *testing.T) {
	r, opToken, _ := site(t)
	c := browser(t, r.URL, opToken)
	n := r.Fleet.Snapshot.Nodes(fleet.NodeFilter{Lifecycle: fleet.LifecycleAvailable}, neocloud.Page{Limit: 1})[0]

	// Another site's form cannot act with the operator's session.
	req, _ := http.NewRequest(http.MethodPost, r.URL+"/nodes/"+n.ID+"/drain", nil)
	req.Header.Set("Origin", "https://evil.example")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if cur, _ := r.Fleet.Snapshot.Node(n.ID); resp.StatusCode != http.StatusForbidden || cur.Cordoned {
		t.Fatalf("cross-site drain: %d, cordoned %v", resp.StatusCode, cur.Cordoned)
	}
	// The refusal is audited, once.
	if refused, err := r.Store.Audit(context.Background(), audit.Filter{Action: "console-post"}, neocloud.Page{Limit: 100}); err != nil || len(refused) != 1 {
		t.Fatalf("audited cross-site refusals: %d (%v)", len(refused), err)
	}

	code, frag := hxPost(t, c, r.URL+"/nodes/"+n.ID+"/drain", nil)
	if code != 200 || !strings.HasPrefix(strings.TrimSpace(frag), `<section id="node-status"`) || !strings.Contains(frag, `<dd id="cordoned">true</dd>`) {
		t.Fatalf("drain: %d %.600s", code, frag)
	}
	if cur, _ := r.Fleet.Snapshot.Node(n.ID); !cur.Cordoned {
		t.Errorf("after drain: %+v", cur)
	}
	// It went through the API: audited as the operator's token.
	entries, err := r.Store.Audit(context.Background(), audit.Filter{Action: "drain-node"}, neocloud.Page{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range entries {
		if e.Object == n.ID && e.Result == "ok" && e.ActorRole == string(neocloud.RoleOperatorAdmin) {
			found = true
		}
	}
	if !found {
		t.Errorf("no audit entry for the drain of %s", n.ID)
	}
	// An illegal move answers the API's reason in the fragment and changes
	// nothing.
	if _, frag := hxPost(t, c, r.URL+"/nodes/"+n.ID+"/repair-done", nil); !strings.Contains(frag, `class="error"`) {
		t.Errorf("maintenance of a node in maintenance: %.600s", frag)
	}
}

// A tenant's report is listed on the health page; an operator-viewer's
// confirmation is refused by the API and changes nothing; an
// operator-admin's fails the node, through the API (audited as its token).
func TestConfirmReportFromHealth(t *testing.T) {
	r, opToken, tenantToken := site(t)
	ctx := context.Background()
	rs, err := r.Sales.Reservations(ctx, opP, sales.ReservationFilter{State: sales.ReservationActive}, neocloud.Page{Limit: 1})
	if err != nil || len(rs) != 1 {
		t.Fatalf("acme's reservation: %v %d", err, len(rs))
	}
	node, _ := r.Fleet.Snapshot.Node(rs[0].Nodes[0].NodeID)
	b := report(t, r.URL, tenantToken, node.Hostname)

	admin := browser(t, r.URL, opToken)
	if code, page := get(t, admin, r.URL+"/"); code != 200 || !strings.Contains(page, `<div class="big" id="open-reports">1</div>`) {
		t.Fatalf("the overview's count of open reports: %d %.3000s", code, page)
	}
	_, viewerToken, err := r.Tenants.CreateToken(ctx, opP, tenant.CreateTokenInput{Name: "viewer", Role: neocloud.RoleOperatorViewer})
	if err != nil {
		t.Fatal(err)
	}
	viewer := browser(t, r.URL, viewerToken)
	if code, page := get(t, viewer, r.URL+"/health"); code != 200 || !strings.Contains(page, `data-id="`+b.ID+`"`) || strings.Contains(page, `id="confirm-`+b.ID+`"`) {
		t.Fatalf("the viewer's health page: %d, the report listed without actions? %.2000s", code, page)
	}
	post := func(c *http.Client, action string, form url.Values) (int, string) {
		t.Helper()
		resp, err := c.PostForm(r.URL+"/health/reports/"+b.ID+"/"+action, form)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		page, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(page)
	}
	if code, page := post(viewer, "confirm", nil); code != http.StatusForbidden || !strings.Contains(page, `role="alert"`) {
		t.Fatalf("a viewer's confirmation: %d %.2000s", code, page)
	}
	if got, _ := r.Sales.BreakFixRequest(ctx, opP, b.ID); got.State != sales.BreakFixOpen {
		t.Fatalf("a refused confirmation changed the report: %+v", got)
	}

	if code, page := post(admin, "decline", url.Values{"reason": {""}}); code != http.StatusUnprocessableEntity || !strings.Contains(page, "say why the report is declined") {
		t.Fatalf("a decline without a reason: %d %.2000s", code, page)
	}
	code, page := post(admin, "confirm", nil)
	if code != http.StatusOK || !strings.Contains(page, "Report "+b.ID+" of "+node.Hostname+" confirmed.") || strings.Contains(page, `data-id="`+b.ID+`"`) {
		t.Fatalf("confirm: %d %.2000s", code, page)
	}
	if got, _ := r.Sales.BreakFixRequest(ctx, opP, b.ID); got.State != sales.BreakFixConfirmed {
		t.Fatalf("after the confirmation: %+v", got)
	}
	if _, overview := get(t, admin, r.URL+"/"); !strings.Contains(overview, `<div class="big" id="open-reports">0</div>`) {
		t.Fatalf("the overview's count after the confirmation: %.3000s", overview)
	}
	// The tenant's replacement of another of its nodes shows on the
	// contracts page, against its contract's allowance.
	c, err := r.Sales.Contract(ctx, opP, rs[0].ContractID)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, r.URL+"/v1/nodes/"+rs[0].Nodes[1].NodeID+"/replace", strings.NewReader(`{"reason":"slow NVLink"}`))
	req.Header.Set("Authorization", "Bearer "+tenantToken)
	req.Header.Set("Content-Type", "application/json")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("the tenant's replacement: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	if _, page := get(t, admin, r.URL+"/contracts"); !strings.Contains(page, fmt.Sprintf(`<td class="num">1 of %d</td>`, c.Terms.SLA.ReplacementsPerMonth)) {
		t.Fatalf("the contracts page after a replacement: %.3000s", page)
	}
	// Its repair ticket is on the page, saying where the node is.
	if want := `<td><a href="/nodes/` + node.ID + `">` + node.Hostname + `</a></td><td>` + node.Domain + `</td><td>` + node.Serial + `</td>`; !strings.Contains(page, want) {
		t.Fatalf("no repair ticket %s on the page: %.3000s", want, page)
	}
	if n, _ := r.Fleet.Snapshot.Node(node.ID); n.Lifecycle != fleet.LifecycleRepair {
		t.Fatalf("the confirmed node: %s", n.Lifecycle)
	}
	entries, err := r.Store.Audit(ctx, audit.Filter{Action: "confirm-report"}, neocloud.Page{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	var results []string
	for _, e := range entries {
		results = append(results, e.ActorRole+" "+e.Result)
	}
	slices.Sort(results)
	if want := []string{"operator-admin ok", "operator-viewer denied"}; !slices.Equal(results, want) {
		t.Fatalf("confirm-report audited as %v, want %v", results, want)
	}
}

// The utilization series survives a restart of the server on its store.
func TestUtilizationSurvivesARestart(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	s := start(t, dir)
	s.apply(t, fleet.GenerateOptions{Site: "s1", Region: "us-south", Timezone: "UTC", SKU: h100, GPUs: 64, Levels: []string{"rack"}, Fanout: []int{8}})
	s.advance(time.Minute)
	if err := s.Console.Record(ctx); err != nil {
		t.Fatal(err)
	}
	before := s.Console.Series()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = start(t, dir)
	defer s.Close()
	// The sampler may have recorded a point of its own at either start:
	// the recorded one must be there again.
	after := s.Console.Series()
	kept := false
	for _, p := range after {
		kept = kept || (p.GPUs == 64 && p.At.Equal(before[len(before)-1].At))
	}
	if len(before) == 0 || before[len(before)-1].GPUs != 64 || !kept {
		t.Fatalf("before %+v, after %+v", before, after)
	}
}

// report has a tenant's user report a node (hostname or id) as broken.
func report(t *testing.T, base, token, node string) sales.BreakFix {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/v1/nodes/"+node+"/report", strings.NewReader(`{"reason":"NCCL all-reduce hangs"}`))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b sales.BreakFix
	json.NewDecoder(resp.Body).Decode(&b)
	if resp.StatusCode != http.StatusCreated || b.ID == "" {
		t.Fatalf("report: %d %+v", resp.StatusCode, b)
	}
	return b
}

// The Health page pages through tenants' reports (oldest first) and open
// repair tickets (newest first), with exact counts, and lists the repairs
// closed lately apart: an old open ticket is never hidden behind newer
// closed ones.
func TestHealthPagePages(t *testing.T) {
	r, opToken, tenantToken := site(t)
	ctx := context.Background()
	rs, err := r.Sales.Reservations(ctx, opP, sales.ReservationFilter{State: sales.ReservationActive}, neocloud.Page{Limit: 1})
	if err != nil || len(rs) != 1 || len(rs[0].Nodes) < 2 {
		t.Fatalf("acme's reservation: %v %+v", err, rs)
	}
	var reports []string
	for _, n := range rs[0].Nodes[:2] {
		reports = append(reports, report(t, r.URL, tenantToken, n.NodeID).ID)
	}
	// Two open tickets, the oldest first, then a closed one newer than
	// both.
	nodes := r.Fleet.Snapshot.Nodes(fleet.NodeFilter{}, neocloud.Page{Limit: 100})
	at := time.Now().UTC().Add(-time.Hour)
	var open []string
	for i := range 3 {
		tk := agents.RepairTicket{ID: neocloud.NewID("rpr_"), NodeID: nodes[len(nodes)-1-i].ID, State: agents.TicketOpen, Reasons: []string{fmt.Sprintf("gpu %d: XID 79", i)},
			OpenedAt: at.Add(time.Duration(i) * time.Minute), UpdatedAt: at}
		if i == 2 {
			closed := at.Add(10 * time.Minute)
			tk.State, tk.ClosedAt = agents.TicketClosed, &closed
		} else {
			open = append(open, tk.ID)
		}
		if err := r.Store.InsertTicket(ctx, tk); err != nil {
			t.Fatal(err)
		}
	}
	admin := browser(t, r.URL, opToken)
	rows := func(page, table string) []string {
		t.Helper()
		i := strings.Index(page, `<table id="`+table+`">`)
		if i < 0 {
			return nil
		}
		body := page[i:]
		body = body[:strings.Index(body, "</table>")]
		var ids []string
		for _, m := range regexp.MustCompile(`<tr data-id="([^"]+)"`).FindAllStringSubmatch(body, -1) {
			ids = append(ids, m[1])
		}
		return ids
	}
	next := func(page, id string) string {
		t.Helper()
		m := regexp.MustCompile(`<a href="([^"]+)" id="` + id + `"`).FindStringSubmatch(page)
		if m == nil {
			t.Fatalf("no %s link in %.3000s", id, page)
		}
		return r.URL + html.UnescapeString(m[1])
	}
	code, page := get(t, admin, r.URL+"/health?per=1")
	if code != 200 || !slices.Equal(rows(page, "reports"), reports[:1]) || !strings.Contains(page, `<p id="reports-shown">1 of 2, oldest first.`) ||
		!slices.Equal(rows(page, "tickets"), open[1:]) || !strings.Contains(page, `<p id="tickets-shown">1 of 2, newest first.`) ||
		len(rows(page, "closed-tickets")) != 1 {
		t.Fatalf("the first pages: %d reports %v, tickets %v, closed %v\n%.4000s", code, rows(page, "reports"), rows(page, "tickets"), rows(page, "closed-tickets"), page)
	}
	// The reports' next page keeps the tickets' place, and the other way.
	_, page = get(t, admin, next(page, "reports-next"))
	if got := rows(page, "reports"); !slices.Equal(got, reports[1:]) || !slices.Equal(rows(page, "tickets"), open[1:]) || strings.Contains(page, `id="reports-next"`) {
		t.Fatalf("the reports' second page: %v, tickets %v", got, rows(page, "tickets"))
	}
	_, page = get(t, admin, next(page, "tickets-next"))
	if got := rows(page, "tickets"); !slices.Equal(got, open[:1]) || !slices.Equal(rows(page, "reports"), reports[1:]) {
		t.Fatalf("the tickets' second page: %v, reports %v", got, rows(page, "reports"))
	}
	// The API pages the same way.
	var l struct {
		Items      []agents.RepairTicket
		NextCursor string `json:"next_cursor"`
	}
	req, _ := http.NewRequest(http.MethodGet, r.URL+"/v1/repairs?limit=1", nil)
	req.Header.Set("Authorization", "Bearer "+opToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&l)
	resp.Body.Close()
	if len(l.Items) != 1 || l.Items[0].ID != open[1] || l.NextCursor == "" {
		t.Fatalf("GET /v1/repairs?limit=1: %+v", l)
	}
}

// An operator-admin fails a node found broken from its page, with a
// reason (without one, nothing changes): the tenant's work on it is
// replaced and its repair opens.
func TestFailNodeFromItsPage(t *testing.T) {
	r, opToken, _ := site(t)
	ctx := context.Background()
	rs, err := r.Sales.Reservations(ctx, opP, sales.ReservationFilter{State: sales.ReservationActive}, neocloud.Page{Limit: 1})
	if err != nil || len(rs) != 1 {
		t.Fatalf("acme's reservation: %v %d", err, len(rs))
	}
	n := rs[0].Nodes[0]
	admin := browser(t, r.URL, opToken)
	if _, page := get(t, admin, r.URL+"/nodes/"+n.NodeID); !strings.Contains(page, `<input id="fail-reason" name="reason" required`) {
		t.Fatalf("no fail action on the node page: %.3000s", page)
	}
	fail := func(reason string) (int, string) {
		t.Helper()
		return hxPost(t, admin, r.URL+"/nodes/"+n.NodeID+"/fail", url.Values{"reason": {reason}})
	}
	if _, frag := fail(""); !strings.Contains(frag, `role="alert"`) || !strings.Contains(frag, "reason") {
		t.Fatalf("a failure without a reason: %.2000s", frag)
	}
	if got, _ := r.Fleet.Snapshot.Node(n.NodeID); got.Health == fleet.HealthFailed {
		t.Fatalf("failed without a reason")
	}
	code, frag := fail("burnt smell from GPU 5")
	got, _ := r.Fleet.Snapshot.Node(n.NodeID)
	if code != 200 || got.Health != fleet.HealthFailed || got.Lifecycle != fleet.LifecycleRepair || !strings.Contains(frag, "failed by an operator: burnt smell from GPU 5") {
		t.Fatalf("fail: %d, node %s %s: %.2000s", code, got.Health, got.Lifecycle, frag)
	}
	if r2, _ := r.Sales.Reservation(ctx, opP, rs[0].ID); slices.ContainsFunc(r2.Nodes, func(x sales.NodeGPUs) bool { return x.NodeID == n.NodeID }) {
		t.Fatalf("the failed node still in the reservation: %+v", r2.Nodes)
	}
}

// A failed node whose replacement waits for the spot work reclaimed from
// its node shows, on the operator's reservation page and the tenant's, as
// a replacement on its way.
func TestWaitingReplacementShown(t *testing.T) {
	s, opToken, tenantToken := siteServer(t)
	ctx := context.Background()
	if _, err := s.Sales.SetPrice(ctx, opP, sales.PriceInput{SKU: h100.Name, Class: placement.ClassSpot, SpotFloor: "0.80", SpotCeiling: "2.40"}); err != nil {
		t.Fatal(err)
	}
	beta, err := s.Tenants.Create(ctx, tenant.CreateInput{Name: "beta"})
	if err != nil {
		t.Fatal(err)
	}
	bp := neocloud.Principal{TokenID: "t", Role: neocloud.RoleTenantAdmin, TenantID: beta.ID}
	if _, err := s.Sales.Reserve(ctx, bp, sales.ReserveInput{ShapeInput: sales.ShapeInput{SKU: h100.Name, GPUs: 496, Class: placement.ClassSpot}}); err != nil {
		t.Fatal(err)
	}
	s.runUntilActive(t, 2)
	rs, err := s.Sales.Reservations(ctx, opP, sales.ReservationFilter{Class: placement.ClassOnDemand}, neocloud.Page{Limit: 1})
	if err != nil || len(rs) != 1 {
		t.Fatalf("acme's reservation: %v %+v", err, rs)
	}
	failed := rs[0].Nodes[0]
	if n, err := s.Sales.NodeFailed(ctx, failed.NodeID, "gpu 3: XID 79", true); err != nil || n != 1 {
		t.Fatalf("node failed: %d %v", n, err)
	}
	r, _ := s.Sales.Reservation(ctx, opP, rs[0].ID)
	if len(r.Replacing) != 1 {
		t.Fatalf("no replacement waits: %+v", r)
	}
	repl := r.Replacing[0].NodeID
	host, _ := s.Fleet.Snapshot.Node(repl)
	want := failed.Hostname + " failed "
	for _, c := range []struct{ token, path string }{{opToken, "/reservations/" + r.ID}, {tenantToken, "/my/reservations/" + r.ID}} {
		code, page := get(t, browser(t, s.URL, c.token), s.URL+c.path)
		if code != 200 || !strings.Contains(page, `<ul id="waiting"><li>`+want) || !strings.Contains(page, host.Hostname+" replaces it once the work reclaimed from it has left") {
			t.Fatalf("%s: %d %.3000s", c.path, code, page)
		}
	}
}

// An incident on the Health page links to its domain on the topology
// page, where the operator finds its silent nodes.
func TestIncidentLinksToItsDomain(t *testing.T) {
	r, opToken, _ := site(t)
	ctx := context.Background()
	st := r.Fleet.Snapshot.Sites()[0]
	inc := agents.Incident{ID: neocloud.NewID(agents.PrefixIncident), Kind: "silent_domain", SiteID: st.ID, Level: "su", Domain: "h1/p1/su1",
		Silent: 8, Nodes: 32, Message: "8 of 32 reporting nodes of su h1/p1/su1 silent at once", OpenedAt: time.Now().UTC()}
	if err := r.Store.PutIncidents(ctx, []agents.Incident{inc}); err != nil {
		t.Fatal(err)
	}
	admin := browser(t, r.URL, opToken)
	_, page := get(t, admin, r.URL+"/health")
	m := regexp.MustCompile(`<a href="(/topology\?[^"]+)">su h1/p1/su1</a>`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no link to the incident's domain in %.4000s", page)
	}
	u, err := url.Parse(html.UnescapeString(m[1]))
	if err != nil || u.Query().Get("site") != st.ID || u.Query().Get("domain") != "h1/p1/su1" {
		t.Fatalf("the link %q: %v", m[1], err)
	}
	if code, topo := get(t, admin, r.URL+u.String()); code != 200 || !strings.Contains(topo, `data-path="h1/p1/su1/r1"`) {
		t.Fatalf("the incident's domain: %d %.2000s", code, topo)
	}
}

// The Health page lists the control plane's replicas: on SQLite the one
// server, up, leading both loops.
func TestHealthPageListsReplicas(t *testing.T) {
	r, opToken, _ := site(t)
	_, page := get(t, browser(t, r.URL, opToken), r.URL+"/health")
	rows := regexp.MustCompile(`(?s)<tr data-id="(srv_[0-9A-Z]+)" data-state="([a-z]+)"><td>[^<]*</td>.*?</tr>`).FindAllStringSubmatch(page, -1)
	if len(rows) != 1 || rows[0][2] != "up" || !strings.Contains(rows[0][0], "(this one)") || !strings.Contains(rows[0][0], "<td>lifecycle, liveness</td>") {
		t.Fatalf("replicas on the Health page: %q in %.6000s", rows, page)
	}
}

// A tenant's availability page measures each committed reservation of the
// month up to now, with the failed node's down interval and its evidence;
// a month yet to come, which the reservation runs into, has nothing to
// measure.
func TestTenantAvailabilityPage(t *testing.T) {
	ctx := context.Background()
	s := startAt(t, time.Date(2027, 3, 10, 8, 0, 0, 0, time.UTC))
	s.apply(t, fleet.GenerateOptions{Site: "s1", Region: "us-south", Timezone: "UTC", SKU: h100, GPUs: 256, Levels: []string{"hall", "pod", "su", "rack"}, Fanout: []int{2, 2, 2, 2}})
	tn, secret := s.acme(t)
	if _, err := s.Sales.SetPrice(ctx, opP, sales.PriceInput{SKU: h100.Name, Class: placement.ClassReserved, List: "2.50"}); err != nil {
		t.Fatal(err)
	}
	from := s.clock().Add(time.Minute)
	r, err := s.Sales.Reserve(ctx, neocloud.Principal{TokenID: "t", Role: neocloud.RoleTenantAdmin, TenantID: tn.ID},
		sales.ReserveInput{ShapeInput: sales.ShapeInput{SKU: h100.Name, GPUs: 16, Class: placement.ClassReserved, Start: &from, DurationS: 30 * 86400}})
	if err != nil {
		t.Fatal(err)
	}
	s.runUntilActive(t, 1)
	r, _ = s.Sales.Reservation(ctx, opP, r.ID)
	failed := r.Nodes[0]
	if n, err := s.Sales.NodeFailed(ctx, failed.NodeID, "gpu 3: XID 79 GPU has fallen off the bus", true); err != nil || n != 1 {
		t.Fatalf("node failed: %d %v", n, err)
	}
	s.advance(10 * time.Minute)
	acme := browser(t, s.URL, secret)
	code, page := get(t, acme, s.URL+"/my/availability")
	asOf := s.clock().Format("2006-01-02 15:04")
	if code != 200 || !strings.Contains(page, "/my/reservations/"+r.ID) || !strings.Contains(page, "as of "+asOf) ||
		!strings.Contains(page, "<td>"+failed.Hostname+"</td>") || !strings.Contains(page, "XID 79") {
		t.Fatalf("availability of 2027-03 as of %s: %d %.4000s", asOf, code, page)
	}
	if code, page := get(t, acme, s.URL+"/my/availability?period=2027-04"); code != 200 || strings.Contains(page, r.ID) || !strings.Contains(page, "No committed reservation in 2027-04 so far") {
		t.Fatalf("availability of a month yet to come: %d %.4000s", code, page)
	}
}

// A quarantined node's repair-done on its page asks the operator to
// confirm the review; without it the node stays in repair, with it the
// node goes to burn-in.
func TestQuarantinedNodeReviewedFromItsPage(t *testing.T) {
	r, opToken, _ := site(t)
	ctx := context.Background()
	r.Agents.Remediation.QuarantineAfter = 1 // its first failure quarantines it
	idle := r.Fleet.Snapshot.Nodes(fleet.NodeFilter{Lifecycle: fleet.LifecycleAvailable}, neocloud.Page{Limit: 1})
	if len(idle) != 1 {
		t.Fatal("no available node")
	}
	host := idle[0]
	if tk, err := r.Agents.FailNode(ctx, host.ID, "smoke from the PSU"); err != nil || !tk.Quarantined {
		t.Fatalf("fail: %v %+v", err, tk)
	}
	admin := browser(t, r.URL, opToken)
	_, page := get(t, admin, r.URL+"/nodes/"+host.ID)
	if !strings.Contains(page, `<input type="checkbox" id="repair-force" name="force" value="true" required>`) || !strings.Contains(page, "quarantined for operator review") {
		t.Fatalf("no review asked of a quarantined node's repair-done: %.4000s", page)
	}
	if _, frag := hxPost(t, admin, r.URL+"/nodes/"+host.ID+"/repair-done", nil); !strings.Contains(frag, `role="alert"`) || !strings.Contains(frag, "quarantined") {
		t.Fatalf("repair-done without the review: %.2000s", frag)
	}
	if got, _ := r.Fleet.Snapshot.Node(host.ID); got.Lifecycle != fleet.LifecycleRepair {
		t.Fatalf("repair-done without the review moved the node to %s", got.Lifecycle)
	}
	code, frag := hxPost(t, admin, r.URL+"/nodes/"+host.ID+"/repair-done", url.Values{"force": {"true"}})
	if got, _ := r.Fleet.Snapshot.Node(host.ID); code != 200 || got.Lifecycle != fleet.LifecycleBurnIn || strings.Contains(frag, `role="alert"`) {
		t.Fatalf("repair-done after the review: %d, node %s: %.2000s", code, got.Lifecycle, frag)
	}
}
