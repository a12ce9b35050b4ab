package demo_test

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/neocloud/neocloud/client"
	"github.com/neocloud/neocloud/demo"
)

var update = flag.Bool("update", false, "refresh docs/console.png and docs/tenant.png from the browser tests")

// chromium finds Debian's chromium; without it the browser tests skip,
// except under CI, where they fail.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("no chromium on this machine: .ci/run installs Debian's chromium")
	}
	t.Skip("no chromium on this machine (apt-get install chromium)")
	return ""
}

// browserCtx starts a headless chromium for the test.
func browserCtx(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true), chromedp.WindowSize(1400, 1000))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	ctx, cancel = context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// shot saves a screenshot to the test's temp dir (or $NEOCLOUD_SCREENSHOTS),
// or with -update (only the overview) to docs/console.png for the README.
func shot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	b, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	dir := os.Getenv("NEOCLOUD_SCREENSHOTS") // keep them somewhere to look at
	if dir == "" {
		dir = t.TempDir()
	}
	path := filepath.Join(dir, name+".png")
	if *update && (name == "console" || name == "tenant") {
		path = filepath.Join("..", "docs", name+".png")
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d KB)", path, len(b)/1024)
}

// TestConsoleInABrowser drives the operator console of a running demo in
// headless Chromium: sign in, the overview's chart, the heatmap and its
// drill-down, a node page with its chart, a drain seen taking effect, and
// the tenant's token refused on operator pages.
func TestConsoleInABrowser(t *testing.T) {
	ctx := browserCtx(t)
	var out lockedBuffer
	o := small(filepath.Join(t.TempDir(), "demo"), &out)
	o.Speed, o.HeartbeatS, o.SampleEvery = 120, 1, 250*time.Millisecond
	if *update {
		o.GPUs, o.HeartbeatS, o.FirstFailure = 8192, 2, 15*time.Second // the README's picture: the default demo's site
	}
	d, err := demo.Start(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	base := d.URL

	// Sign in as the operator through the login form.
	if err := chromedp.Do(ctx,
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), d.OperatorToken),
	); err != nil {
		t.Fatalf("sign in: %v", err)
	}
	if _, err := chromedp.RunResponse(ctx, chromedp.Submit(chromedp.CSS("#token"))); err != nil {
		t.Fatalf("sign in: %v", err)
	}
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS("#util-chart"))); err != nil {
		t.Fatalf("overview after sign in: %v", err)
	}
	// The utilization chart draws once the series has points.
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.querySelector("#util-chart .uplot") !== null`, chromedp.WithPollingTimeout(45*time.Second))); err != nil {
		t.Fatalf("no utilization chart: %v", err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/")); err != nil {
		t.Fatal(err)
	}
	// For the README's picture, let the site live a while first.
	points := 2
	if *update {
		points = 120
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](fmt.Sprintf(`Number((document.querySelector("#util-chart") || {dataset: {}}).dataset.drawn) >= %d`, points),
		chromedp.WithPollingTimeout(90*time.Second), chromedp.WithPollingInterval(time.Second))); err != nil {
		t.Fatalf("no utilization chart of %d points after a reload: %v", points, err)
	}
	shot(t, ctx, "console")

	// The heatmap: two halls, painted; drill down to a rack.
	if _, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(`nav a[href="/topology"]`))); err != nil {
		t.Fatalf("topology: %v", err)
	}
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS("#heatmap canvas.cells"))); err != nil {
		t.Fatalf("topology: %v", err)
	}
	painted, err := chromedp.Run(ctx, chromedp.Poll[int](`(() => { const cs = [...document.querySelectorAll("#heatmap canvas.cells")]; return cs.length === 2 && cs.every(c => c.height > 0) ? cs.length : 0 })()`, chromedp.WithPollingTimeout(10*time.Second)))
	if err != nil || painted != 2 {
		t.Fatalf("heatmap: %d painted tiles, %v", painted, err)
	}
	shot(t, ctx, "topology")
	for _, level := range []string{"hall", "pod", "su", "rack"} {
		if _, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(`#heatmap a.tile`))); err != nil {
			t.Fatalf("drill into a %s: %v", level, err)
		}
		crumb, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`nav.crumbs a:last-child`)))
		if err != nil || !strings.HasPrefix(crumb, level+" ") {
			t.Fatalf("after clicking a %s tile: crumb %q, %v", level, crumb, err)
		}
	}
	// A rack's nodes; open one in service (not cordoned, failed or in
	// repair), which can be drained.
	inService := `#heatmap a.node:not([data-code="m"]):not([data-code="f"]):not([data-code="u"]):not([data-code="r"]):not([data-code="x"])`
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(inService))); err != nil {
		t.Fatalf("rack nodes: %v", err)
	}
	if _, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(inService))); err != nil {
		t.Fatalf("node page: %v", err)
	}
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS("#node-status"))); err != nil {
		t.Fatalf("node page: %v", err)
	}
	// Its telemetry chart draws from the agent's reports.
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`(() => { const c = document.querySelector("#node-chart"); return c.querySelector(".uplot") !== null && Number(c.dataset.drawn) > 0 })()`, chromedp.WithPollingTimeout(60*time.Second), chromedp.WithPollingInterval(time.Second))); err != nil {
		loc, _ := chromedp.Run(ctx, chromedp.Location())
		t.Fatalf("no telemetry chart on %s: %v", loc, err)
	}
	// Its GPUs' live chart fills report by report (one a second here).
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`Number((document.querySelector("#gpu-chart") || {dataset: {}}).dataset.drawn) >= 2 && document.querySelectorAll("#gpu-chart .u-legend .u-series").length === 9`,
		chromedp.WithPollingTimeout(30*time.Second), chromedp.WithPollingInterval(500*time.Millisecond))); err != nil {
		dbg, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`(() => { const c = document.querySelector("#gpu-chart"); return c ? c.outerHTML.slice(0, 400) + " drawn=" + c.dataset.drawn + " rows=" + c.querySelectorAll(".u-legend .u-series").length : "none" })()`))
		t.Fatalf("no live GPU chart: %v\n%s", err, dbg)
	}
	// The last report's table has a row per GPU.
	if rows, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#gpu-table tbody tr").length`)); err != nil || rows != 8 {
		t.Fatalf("GPU table: %d rows, %v", rows, err)
	}
	// Drain it: the status block changes in place.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`button[value="drain"]`))); err != nil {
		t.Fatalf("drain: %v", err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.querySelector("#cordoned").textContent === "true"`, chromedp.WithPollingTimeout(20*time.Second))); err != nil {
		html, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("#node-status")))
		t.Fatalf("drain not shown: %v\n%s", err, html)
	}
	// Invoices: the usage metered per hour draws as a chart.
	if _, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(`nav a[href="/invoices"]`))); err != nil {
		t.Fatalf("invoices: %v", err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`(() => { const c = document.querySelector("#billing-chart"); return c !== null && c.querySelector(".uplot") !== null && Number(c.dataset.drawn) > 0 })()`,
		chromedp.WithPollingTimeout(60*time.Second), chromedp.WithPollingInterval(time.Second))); err != nil {
		t.Fatalf("no usage chart on the invoices page: %v", err)
	}
	shot(t, ctx, "node")
	// Finance: utilization by hour and revenue by month draw as charts.
	if _, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(`nav a[href="/finance"]`))); err != nil {
		t.Fatalf("finance: %v", err)
	}
	for _, id := range []string{"finance-util-chart", "finance-revenue-chart"} {
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`(() => { const c = document.querySelector("#`+id+`"); return c !== null && c.querySelector(".uplot") !== null && Number(c.dataset.drawn) > 0 })()`,
			chromedp.WithPollingTimeout(60*time.Second), chromedp.WithPollingInterval(time.Second))); err != nil {
			t.Fatalf("no %s on the finance page: %v", id, err)
		}
	}

	// Sign out, sign in with the tenant's token: operator pages are 404.
	if _, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(`header form button`))); err != nil {
		t.Fatalf("sign out: %v", err)
	}
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS("#token")), chromedp.SendKeys(chromedp.CSS("#token"), d.TenantToken)); err != nil {
		t.Fatalf("tenant sign in: %v", err)
	}
	if _, err := chromedp.RunResponse(ctx, chromedp.Submit(chromedp.CSS("#token"))); err != nil {
		t.Fatalf("tenant sign in: %v", err)
	}
	// Signed in, the tenant lands in its portal.
	if txt, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("main h1"))); err != nil || txt != "Reservations" {
		t.Fatalf("tenant signed in: %q %v", txt, err)
	}
	for _, p := range []string{"/topology", "/health", "/events", "/invoices", "/finance"} {
		resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(base+p))
		if err != nil {
			t.Fatal(err)
		}
		if resp.Status != 404 {
			t.Errorf("tenant on %s: %d, want 404", p, resp.Status)
		}
	}
}

// TestTenantPortalInABrowser drives the tenant portal of a running demo
// in headless Chromium as acme's tenant-admin: sign in, request a quote
// through the form by keyboard, reserve it, watch the reservation become
// ready, open one of its nodes and see its GPUs report, report the node,
// and download an invoice PDF and the emissions report.
func TestTenantPortalInABrowser(t *testing.T) {
	ctx := browserCtx(t)
	var out lockedBuffer
	d, err := demo.Start(context.Background(), small(filepath.Join(t.TempDir(), "demo"), &out))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	base := d.URL
	// Every portal URL seen on acme's pages: links, data and forms.
	found := map[string]bool{}
	collect := func() {
		links, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll('a[href^="/my/"], [data-src^="/my/"], [hx-get^="/my/"], form[action^="/my/"]')).map(e => e.getAttribute("href") || e.getAttribute("data-src") || e.getAttribute("hx-get") || ("POST " + e.getAttribute("action")))`))
		if err != nil {
			t.Fatalf("links: %v", err)
		}
		for _, l := range links {
			found[l] = true
		}
	}
	text := func(sel string) string {
		v, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`(document.querySelector(`+"`"+sel+"`"+`) || {textContent: ""}).textContent.trim()`))
		return v
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS("#token")), chromedp.SendKeys(chromedp.CSS("#token"), d.TenantToken)); err != nil {
		t.Fatalf("sign in: %v", err)
	}
	if _, err := chromedp.RunResponse(ctx, chromedp.Submit(chromedp.CSS("#token"))); err != nil {
		t.Fatalf("sign in: %v", err)
	}
	if h := text("h1"); h != "Reservations" {
		t.Fatalf("after sign in: %q", h)
	}
	collect()
	// The quote form by keyboard: Tab moves through the labelled fields in
	// order; Enter in a field submits.
	if _, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(`nav a[href="/my/quote"]`))); err != nil {
		t.Fatalf("quote page: %v", err)
	}
	if err := chromedp.Do(ctx, chromedp.Focus(chromedp.CSS("#sku")), chromedp.KeyEvent("\t")); err != nil {
		t.Fatal(err)
	}
	if id, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.activeElement.id`)); id != "gpus" {
		t.Fatalf("Tab from the SKU went to %q, want gpus", id)
	}
	// The demo's clock runs 600× here: a quote lasts 15 of its minutes,
	// 1.5 s. One that ran out before Reserve (a slow machine) is asked for
	// again, as a tenant would.
	for try := 1; ; try++ {
		if err := chromedp.Do(ctx, chromedp.SetValue(chromedp.CSS("#class"), "on_demand"), chromedp.Clear(chromedp.CSS("#gpus")), chromedp.SendKeys(chromedp.CSS("#gpus"), "8")); err != nil {
			t.Fatal(err)
		}
		if _, err := chromedp.RunResponse(ctx, chromedp.SendKeys(chromedp.CSS("#gpus"), "\r")); err != nil {
			t.Fatalf("submit the quote: %v", err)
		}
		if a := text("#available"); a != "yes" {
			t.Fatalf("the offer: available %q: %s", a, text("main"))
		}
		if try == 1 {
			shot(t, ctx, "tenant-quote")
		}
		if _, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS("#reserve"))); err != nil {
			t.Fatalf("reserve: %v", err)
		}
		if loc, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`location.pathname`)); strings.HasPrefix(loc, "/my/reservations/") {
			break
		}
		body := text("body")
		if try == 5 || !strings.Contains(body, "expired") {
			t.Fatalf("reserve (try %d): %s", try, body)
		}
		t.Logf("reserve (try %d): %s; asking for a quote again", try, body)
		if _, err := chromedp.RunResponse(ctx, chromedp.Navigate(base+"/my/quote")); err != nil {
			t.Fatalf("quote page: %v", err)
		}
	}
	// Ready: the page says so once the lifecycle has provisioned it.
	for deadline := time.Now().Add(90 * time.Second); text("#state") != "active"; time.Sleep(time.Second) {
		if time.Now().After(deadline) {
			page, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`location.href + "\n" + document.documentElement.outerHTML.slice(0, 3000)`))
			t.Fatalf("the reservation never became active: %s\n%s\ndemo's output:\n%s", text("main"), page, tail(out.String(), 3000))
		}
		if err := chromedp.Do(ctx, chromedp.Reload()); err != nil {
			t.Fatal(err)
		}
	}
	if r := text("#ready"); r != "1" {
		t.Fatalf("%s of 1 node ready", r)
	}
	collect()
	if _, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(`#nodes a[href^="/my/nodes/"]`))); err != nil {
		t.Fatalf("the node: %v", err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.querySelectorAll("#gpus tbody tr td.num").length >= 8`, chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		t.Fatalf("the node's GPUs never reported: %v: %s", err, text("main"))
	}
	shot(t, ctx, "tenant")
	collect()
	// Report it: a reason, the confirmation, submit.
	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.CSS("#reason-report"), "NCCL all-reduce hangs on this node"), chromedp.Click(chromedp.CSS("#confirm-report"))); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.RunResponse(ctx, chromedp.Submit(chromedp.CSS("#reason-report"))); err != nil {
		t.Fatalf("report: %v", err)
	}
	if msg := text(`[role="status"]`); !strings.Contains(msg, "report recorded") {
		t.Fatalf("after the report: %q %s", msg, text("main"))
	}
	if got := text(`#reports td.state`); got != "open" {
		t.Fatalf("the report on the node's page: %q", got)
	}
	// An operator, in a browser session of its own, finds the report on
	// the health page and declines it, saying why; the tenant's node page
	// then shows it declined, with the reason.
	host := text("main h1")[len("Node "):]
	opCtx, cancelOp := chromedp.NewContext(ctx, chromedp.WithNewBrowserContext())
	defer cancelOp()
	if err := chromedp.Do(opCtx, chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS("#token")), chromedp.SendKeys(chromedp.CSS("#token"), d.OperatorToken)); err != nil {
		t.Fatalf("operator sign in: %v", err)
	}
	if _, err := chromedp.RunResponse(opCtx, chromedp.Submit(chromedp.CSS("#token"))); err != nil {
		t.Fatalf("operator sign in: %v", err)
	}
	if _, err := chromedp.RunResponse(opCtx, chromedp.Click(chromedp.CSS(`nav a[href="/health"]`))); err != nil {
		t.Fatalf("health page: %v", err)
	}
	reportID, _ := chromedp.Run(opCtx, chromedp.Evaluate[string](`([...document.querySelectorAll("#reports tr[data-id]")].find(tr => tr.textContent.includes("`+host+`")) || {dataset: {}}).dataset.id || ""`))
	if reportID == "" {
		html, _ := chromedp.Run(opCtx, chromedp.OuterHTML(chromedp.CSS("main")))
		t.Fatalf("no report of %s on the health page:\n%.2000s", host, html)
	}
	shot(t, opCtx, "health-report")
	if err := chromedp.Do(opCtx, chromedp.SendKeys(chromedp.CSS("#decline-reason-"+reportID), "dcgmi diag -r 3 passed; NCCL tests within spec")); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.RunResponse(opCtx, chromedp.Click(chromedp.CSS("#decline-"+reportID))); err != nil {
		t.Fatalf("decline: %v", err)
	}
	status, _ := chromedp.Run(opCtx, chromedp.Evaluate[string](`(document.querySelector('[role="status"]') || {textContent: ""}).textContent + " rows:" + document.querySelectorAll('#reports tr[data-id="`+reportID+`"]').length`))
	if !strings.Contains(status, reportID+" of "+host+" declined") || !strings.HasSuffix(status, "rows:0") {
		html, _ := chromedp.Run(opCtx, chromedp.OuterHTML(chromedp.CSS("body")))
		t.Fatalf("after declining: %q\n%.1500s", status, html)
	}
	shot(t, opCtx, "health-report-declined")
	if _, err := chromedp.RunResponse(ctx, chromedp.Reload()); err != nil {
		t.Fatal(err)
	}
	if got, why := text(`#reports td.state`), text(`#reports`); got != "declined" || !strings.Contains(why, "NCCL tests within spec") {
		t.Fatalf("the report on the tenant's node page after the decline: %q: %s", got, why)
	}
	// The portal's Break-fix page lists it too.
	if _, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(`nav a[href="/my/break-fix"]`))); err != nil {
		t.Fatalf("break-fix page: %v", err)
	}
	if got := text(`#break-fix tr[data-id="` + reportID + `"]`); !strings.Contains(got, "declined") || !strings.Contains(got, "NCCL tests within spec") || !strings.Contains(got, host) {
		t.Fatalf("the report on the portal's break-fix page: %q", got)
	}
	collect()
	// Downloads: an invoice PDF (once the demo's month closes) and the
	// emissions report.
	fetchType := func(sel string) string {
		v, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`(() => { const a = document.querySelector(`+"`"+sel+"`"+`); return a ? fetch(a.href).then(r => r.ok ? r.headers.get("content-type") + " " + r.status : "status " + r.status) : Promise.resolve("no link") })()`, chromedp.EvalAwaitPromise))
		return v
	}
	for deadline := time.Now().Add(120 * time.Second); ; time.Sleep(2 * time.Second) {
		if err := chromedp.Do(ctx, chromedp.Navigate(base+"/my/invoices")); err != nil {
			t.Fatal(err)
		}
		if got := fetchType(`a[href$="format=pdf"]`); got != "no link" {
			if got != "application/pdf 200" {
				t.Fatalf("invoice PDF: %s", got)
			}
			collect()
			if _, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(`main table a[href^="/my/invoices/inv_"]`))); err != nil {
				t.Fatalf("an invoice: %v", err)
			}
			collect()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no invoice for acme: %s", text("main"))
		}
	}
	if _, err := chromedp.RunResponse(ctx, chromedp.Navigate(base+"/my/emissions")); err != nil {
		t.Fatal(err)
	}
	if got := fetchType(`a[href*="/my/emissions/export"][href$="format=pdf"]`); got != "application/pdf 200" {
		t.Fatalf("emissions PDF: %s: %s", got, text("main"))
	}
	collect()

	// Gamma, another tenant, replays every URL of acme's objects found on
	// acme's pages: each answers 404; its forms, posted, too.
	var tok struct{ Secret string }
	if err := client.New(base, d.OperatorToken).Do(context.Background(), http.MethodPost, "/v1/tokens", nil,
		map[string]any{"name": "gamma-admin", "role": "tenant-admin", "tenant": "gamma"}, &tok); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(`header form button`))); err != nil {
		t.Fatalf("sign out: %v", err)
	}
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS("#token")), chromedp.SendKeys(chromedp.CSS("#token"), tok.Secret)); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.RunResponse(ctx, chromedp.Submit(chromedp.CSS("#token"))); err != nil {
		t.Fatal(err)
	}
	objects := regexp.MustCompile(`/my/(reservations|invoices|nodes)/[^/?]+`)
	replayed := 0
	for l := range found {
		if !objects.MatchString(l) {
			continue
		}
		if path, ok := strings.CutPrefix(l, "POST "); ok {
			status, err := chromedp.Run(ctx, chromedp.Evaluate[int](`fetch(`+"`"+path+"`"+`, {method: "POST", body: new URLSearchParams({confirm: "yes", reason: "not mine"})}).then(r => r.status)`, chromedp.EvalAwaitPromise))
			if err != nil || status != 404 {
				t.Errorf("gamma posts acme's %s: %d %v", path, status, err)
			}
		} else {
			resp, err := chromedp.RunResponse(ctx, chromedp.Navigate(base+l))
			if err != nil || resp.Status != 404 {
				t.Errorf("gamma on acme's %s: %v %v", l, resp, err)
			}
		}
		replayed++
	}
	t.Logf("gamma replayed %d of acme's URLs (of %d found)", replayed, len(found))
	if replayed < 8 {
		t.Fatalf("only %d of acme's URLs replayed: %v", replayed, found)
	}
}

// tail is the last n bytes of s.
func tail(s string, n int) string { return s[max(0, len(s)-n):] }
