package demo_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/agents"
	"github.com/neocloud/neocloud/billing"
	"github.com/neocloud/neocloud/demo"
	"github.com/neocloud/neocloud/fleet"
	"github.com/neocloud/neocloud/placement"
	"github.com/neocloud/neocloud/sales"
)

// lockedBuffer is an io.Writer safe for concurrent use.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// small is a demo quick enough for a test: 512 GPUs (two halls of 32
// nodes), ten minutes of its clock per real second, a heartbeat a second.
func small(dir string, out io.Writer) demo.Options {
	return demo.Options{Listen: "127.0.0.1:0", DataDir: dir, GPUs: 512, Speed: 600, HeartbeatS: 1, FirstFailure: 3 * time.Second, Out: out,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

var urlLine = regexp.MustCompile(`https?://`)

func TestDemoSellsFailsHealsAndResumes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "demo")
	var out lockedBuffer
	ctx := context.Background()
	d, err := demo.Start(ctx, small(dir, &out))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	// The first line holding a URL is exactly the console's, followed by
	// the operator's and the tenant's tokens on their own lines.
	lines := bufio.NewScanner(strings.NewReader(out.String()))
	var got []string
	for lines.Scan() {
		got = append(got, lines.Text())
	}
	i := 0
	for i < len(got) && !urlLine.MatchString(got[i]) {
		i++
	}
	if i+2 >= len(got) || !regexp.MustCompile(`^console: http://127\.0\.0\.1:\d+/$`).MatchString(got[i]) || got[i] != "console: "+d.URL+"/" {
		t.Fatalf("output:\n%s", out.String())
	}
	if got[i+1] != "operator token: "+d.OperatorToken || got[i+2] != "tenant token (acme, tenant-admin): "+d.TenantToken {
		t.Fatalf("token lines: %q", got[i+1:i+3])
	}
	p, err := d.Server.Tenants.Authenticate(ctx, d.OperatorToken)
	if err != nil || p.Role != neocloud.RoleOperatorAdmin {
		t.Fatalf("operator token: %+v %v", p, err)
	}
	tp, err := d.Server.Tenants.Authenticate(ctx, d.TenantToken)
	if err != nil || tp.Role != neocloud.RoleTenantAdmin {
		t.Fatalf("tenant token: %+v %v", tp, err)
	}
	// The clock starts shortly before a month ends.
	if now := d.Clock.Now(); now.AddDate(0, 0, 1).Month() == now.Month() {
		t.Errorf("the demo starts at %v, not on a month's last day", now)
	}

	// Seeded: a lease of a whole hall in phases, two reserved clusters,
	// internal training; agents report; the first failure comes and the
	// committed work it struck gets a replacement.
	op := neocloud.Principal{TokenID: "t", Role: neocloud.RoleOperatorViewer}
	deadline := time.Now().Add(60 * time.Second)
	var replaced, leaseActive, reservedActive, internal bool
	for time.Now().Before(deadline) && !(replaced && leaseActive && reservedActive && internal) {
		time.Sleep(500 * time.Millisecond)
		rs, err := d.Server.Sales.Reservations(ctx, op, sales.ReservationFilter{State: sales.ReservationActive}, neocloud.Page{Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			switch r.Shape.Class {
			case placement.ClassLease:
				leaseActive = true
			case placement.ClassReserved:
				reservedActive = true
			case placement.ClassInternal:
				internal = true
			}
		}
		evs, err := d.Server.Store.RecentEvents(ctx, 10, "node.replaced")
		if err != nil {
			t.Fatal(err)
		}
		replaced = len(evs) > 0
	}
	if !replaced || !leaseActive || !reservedActive || !internal {
		t.Fatalf("after a minute: replaced %v, lease active %v, reserved active %v, internal running %v\n%s", replaced, leaseActive, reservedActive, internal, d.Status())
	}
	cs, err := d.Server.Sales.Contracts(ctx, op, "", neocloud.Page{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	var lease sales.ContractView
	for _, c := range cs {
		if c.Kind == placement.ClassLease {
			lease, _ = d.Server.Sales.ContractView(ctx, op, c.ID)
		}
	}
	if lease.Delivery == nil || len(lease.Delivery.Phases) != 4 || lease.Terms.Lease == nil || lease.Terms.Lease.Domain != "h2" {
		t.Fatalf("the lease: %+v %+v %+v", lease.Contract, lease.Terms.Lease, lease.Delivery)
	}
	// The month ends six demo hours after the start: the server closes it
	// by itself, while the demo runs, and numbers each tenant's invoice.
	deadline = time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) && !strings.Contains(out.String(), "billing: ") {
		time.Sleep(500 * time.Millisecond)
	}
	ps, err := d.Server.Billing.Periods(ctx)
	if err != nil || len(ps) != 1 || !strings.Contains(out.String(), "billing: "+ps[0].Period+" closed") {
		t.Fatalf("closed months: %+v %v\n%s", ps, err, out.String())
	}
	invs, err := d.Server.Billing.Invoices(ctx, op, "", billing.InvoiceFilter{Period: ps[0].Period}, neocloud.Page{})
	if err != nil || len(invs) < 2 {
		t.Fatalf("invoices of %s: %v %+v", ps[0].Period, err, invs)
	}
	kinds, sources := map[string]int{}, ""
	for _, l := range invs[0].Lines {
		kinds[l.Kind]++
		sources += l.EnergySource + " "
	}
	// Acme's lease: commitments (this month's, the next in advance), and
	// its hall's energy metered at the nodes' input, passed through.
	if invs[0].TenantName != "acme" || invs[0].Number != "CC-000001" || invs[0].TotalMicros <= 0 || kinds[billing.LineCommitment] < 2 || kinds[billing.LineEnergy] == 0 || !strings.Contains(sources, billing.SourceNodeOOB) && !strings.Contains(sources, "mixed") {
		t.Fatalf("acme's invoice: %+v", invs[0])
	}

	// Tenants report nodes now and then: a report is confirmed by the
	// node's own failure, or, left waiting, declined by the on-call.
	var resolved []sales.BreakFix
	for deadline := time.Now().Add(90 * time.Second); len(resolved) == 0; time.Sleep(500 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no tenant's report resolved after 90 s\n%s", d.Status())
		}
		all, err := d.Server.Sales.BreakFixes(ctx, op, sales.BreakFixFilter{Kind: sales.BreakFixReport}, neocloud.Page{Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range all {
			if b.State != sales.BreakFixOpen {
				resolved = append(resolved, b)
			}
		}
	}
	for _, b := range resolved {
		if !(b.State == sales.BreakFixConfirmed && b.ConfirmedBy == sales.ConfirmedByHealth && b.ConfirmedAt.After(b.CreatedAt)) &&
			!(b.State == sales.BreakFixDeclined && b.DeclinedAt.Sub(b.CreatedAt) >= demo.ReportWait && strings.Contains(b.Resolution, "no fault found")) {
			t.Errorf("a tenant's report resolved as neither the node's failure nor the on-call would: %+v", b)
		}
	}

	// A top-of-rack switch went down for an hour: the breaker opened an
	// incident and failed none of the rack's nodes; back, they closed it.
	var og demo.Outage
	var incs []agents.Incident
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		if all := d.Outages(); len(all) == 1 && !all[0].To.IsZero() {
			og = all[0]
			if incs, err = d.Server.Agents.Incidents(ctx, false); err != nil {
				t.Fatal(err)
			}
			if len(incs) > 0 && !slices.ContainsFunc(incs, func(i agents.Incident) bool { return i.ClosedAt == nil }) {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the switch outage: %+v, incidents %+v\n%s", d.Outages(), incs, out.String())
		}
	}
	if len(og.Nodes) < 2 || !strings.Contains(out.String(), "the top-of-rack switch of "+og.Rack+" is down") {
		t.Fatalf("the outage: %+v\n%s", og, out.String())
	}
	for _, inc := range incs {
		if !strings.HasPrefix(og.Rack, inc.Domain) || inc.OpenedAt.Before(og.From) || !strings.HasPrefix(inc.Message, fmt.Sprintf("%d of %d reporting nodes", len(og.Nodes), inc.Nodes)) {
			t.Errorf("an incident not of the outage: %+v (outage %+v)", inc, og)
		}
	}
	for _, id := range og.Nodes {
		ts, err := d.Server.Agents.Store.Tickets(ctx, id, false)
		if err != nil {
			t.Fatal(err)
		}
		for _, tk := range ts {
			if strings.Contains(strings.Join(tk.Reasons, ";"), "no heartbeat") && !tk.OpenedAt.Before(og.From) {
				t.Errorf("node %s failed for silence behind the breaker: %+v", id, tk)
			}
		}
	}

	// The spot price series moved with the site's use.
	if pts, err := d.Server.Store.SpotPoints(ctx, time.Unix(0, 0), d.Clock.Now()); err != nil || len(pts) < 2 {
		t.Errorf("spot price series: %v %+v", err, pts)
	}

	// Every node's agent has joined and reports.
	nodes := d.Server.Fleet.Snapshot.Count(fleet.NodeFilter{})
	agentNodes, err := d.Server.Store.AgentNodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(agentNodes) != nodes {
		t.Errorf("%d of %d nodes have agents", len(agentNodes), nodes)
	}
	ms, err := d.Server.Store.RecentEvents(ctx, 1000)
	if err != nil {
		t.Fatal(err)
	}
	site := d.Server.Fleet.Snapshot.Sites()[0]
	mw, err := d.Server.Sales.Maintenances(ctx, site.ID)
	if err != nil || len(mw) != 1 {
		t.Errorf("maintenance windows: %v %v", mw, err)
	}
	before := d.Clock.Now()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}

	// Run again on the same directory: it resumes (same tokens, same site,
	// its clock where it stopped), without seeding again.
	out2 := &lockedBuffer{}
	d2, err := demo.Start(ctx, small(dir, out2))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d2.Close() })
	if strings.Contains(out2.String(), "generating") || d2.OperatorToken != d.OperatorToken || d2.TenantToken != d.TenantToken {
		t.Errorf("resume:\n%s", out2.String())
	}
	if now := d2.Clock.Now(); now.Before(before) || now.Sub(before) > time.Hour {
		t.Errorf("resumed clock at %v, stopped at %v", now, before)
	}
	if n := d2.Server.Fleet.Snapshot.Count(fleet.NodeFilter{}); n != nodes {
		t.Errorf("resumed with %d nodes, had %d", n, nodes)
	}
	ms2, err := d2.Server.Store.RecentEvents(ctx, 1)
	if err != nil || len(ms2) == 0 || ms2[0].Seq < ms[0].Seq {
		t.Errorf("events after resume: %v %v", ms2, err)
	}
}
