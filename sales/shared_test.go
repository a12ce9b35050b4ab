package sales_test

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/fleet"
	"github.com/neocloud/neocloud/internal/testdb"
	"github.com/neocloud/neocloud/placement"
	"github.com/neocloud/neocloud/sales"
	"github.com/neocloud/neocloud/sqlstore"
	"github.com/neocloud/neocloud/tenant"
)

// sharedWorld is a world on a fresh PostgreSQL database (or a skip), and
// second, which starts another server's sales service on that database:
// connections, fleet snapshot and memory of its own, the world's clock.
func sharedWorld(t *testing.T) (*world, func() (*sales.Service, *sqlstore.DB)) {
	url := testdb.PostgresURL(t)
	open := func() *sqlstore.DB {
		db, err := sqlstore.Open(context.Background(), url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	w := newWorld(t, open())
	return w, func() (*sales.Service, *sqlstore.DB) {
		db := open()
		fl := fleet.NewService(db, db)
		fl.Now = w.clock.Now
		if err := fl.Load(context.Background()); err != nil {
			t.Fatal(err)
		}
		s := sales.NewService(db, db, fl, tenant.NewService(db))
		s.Now = w.clock.Now
		return s, db
	}
}

// together sends n requests at once, request i to servers[i%len(servers)],
// and returns how many went through; one refused with a message that
// lacks refusal fails the test.
func together(t *testing.T, servers []*sales.Service, n int, refusal string, req func(s *sales.Service, i int) error) int {
	t.Helper()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		s := servers[i%len(servers)]
		wg.Go(func() { errs[i] = req(s, i) })
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !strings.Contains(err.Error(), refusal):
			t.Errorf("a request refused for another reason: %v", err)
		}
	}
	return ok
}

// countingStage is a seam that takes a minute and counts its Begins by
// allocation, for every server that shares it.
type countingStage struct {
	mu     sync.Mutex
	begins map[string]int
}

func (c *countingStage) Begin(_ context.Context, w sales.Work) (time.Time, error) {
	c.mu.Lock()
	c.begins[w.Allocation.ID]++
	c.mu.Unlock()
	return w.Now.Add(time.Minute), nil
}

func (c *countingStage) Check(context.Context, sales.Work) (bool, error) { return true, nil }

// TestLifecycleOneServerAtATime: two servers on one PostgreSQL database
// both run the reservations' lifecycle, taking turns through a lease:
// every allocation is provisioned once (a provisioning seam is a real
// system's API call), not once by each server.
func TestLifecycleOneServerAtATime(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, second := sharedWorld(t)
	other, db2 := second()
	prov := &countingStage{begins: map[string]int{}}
	var wg sync.WaitGroup
	for i, s := range []*sales.Service{w.sales, other} {
		s.SharedTTL = 10 * time.Second
		s.Provisioner = prov
		lease := []*sqlstore.DB{w.db, db2}[i].Lease("lifecycle", []string{"srv_a", "srv_b"}[i], 10*time.Second)
		s.Lead, s.Fence = lease.Take, lease.Fence
		wg.Go(func() { s.Run(ctx, time.Millisecond) })
	}
	r, err := w.sales.Reserve(ctx, w.acme, sales.ReserveInput{ShapeInput: sales.ShapeInput{SKU: "h100-sxm5-80gb", GPUs: 64, Class: placement.ClassOnDemand}})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; w.allocStates(r.ID)[sales.AllocationReady] != 8; i++ {
		if i > 2000 {
			t.Fatalf("not ready: %v", w.allocStates(r.ID))
		}
		w.clock.Add(10 * time.Second)
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	prov.mu.Lock()
	defer prov.mu.Unlock()
	if len(prov.begins) != 8 {
		t.Errorf("%d allocations provisioned, want 8", len(prov.begins))
	}
	for id, n := range prov.begins {
		if n != 1 {
			t.Errorf("allocation %s provisioned %d times, want once", id, n)
		}
	}
}

// TestLifecycleFencedByItsLease: a server that held the lifecycle lease
// and was paused past it (another took it over meanwhile) steps nothing
// when it wakes: no seam is called, nothing is written, and the new holder
// goes on.
func TestLifecycleFencedByItsLease(t *testing.T) {
	ctx := context.Background()
	w, second := sharedWorld(t)
	other, db2 := second()
	prov := &countingStage{begins: map[string]int{}}
	leases := []*sqlstore.Lease{w.db.Lease("lifecycle", "srv_a", 10*time.Second), db2.Lease("lifecycle", "srv_b", 10*time.Second)}
	for i, s := range []*sales.Service{w.sales, other} {
		s.SharedTTL, s.Provisioner, s.Fence = 10*time.Second, prov, leases[i].Fence
	}
	if held, err := leases[0].Take(ctx); !held || err != nil {
		t.Fatalf("a takes the lease: %v, %v", held, err)
	}
	r, err := w.sales.Reserve(ctx, w.acme, sales.ReserveInput{ShapeInput: sales.ShapeInput{SKU: "h100-sxm5-80gb", GPUs: 16, Class: placement.ClassOnDemand}})
	if err != nil {
		t.Fatal(err)
	}
	// a is paused past its lease; b takes it over.
	if _, err := w.db.RawDB().Exec(`UPDATE leases SET until = 0 WHERE name = 'lifecycle'`); err != nil {
		t.Fatal(err)
	}
	if held, err := leases[1].Take(ctx); !held || err != nil {
		t.Fatalf("b takes the lease over: %v, %v", held, err)
	}
	w.clock.Add(time.Minute)
	if _, err := w.sales.Step(ctx); !errors.Is(err, sqlstore.ErrLeaseLost) {
		t.Fatalf("a steps after losing its lease: %v, want ErrLeaseLost", err)
	}
	if st := w.allocStates(r.ID); st[sales.AllocationBound] != 2 || len(prov.begins) != 0 {
		t.Fatalf("after a's fenced step: allocations %v, %d provisioned; want both still bound, none", st, len(prov.begins))
	}
	if n, err := other.Step(ctx); err != nil || n == 0 || len(prov.begins) != 2 {
		t.Fatalf("b steps: %d, %v, %d provisioned; want both", n, err, len(prov.begins))
	}
}

// TestQuotaHoldsUnderConcurrentRequests: a tenant's requests that arrive
// together, to one server or to two sharing the database, reserve no more
// than its quota between them.
func TestQuotaHoldsUnderConcurrentRequests(t *testing.T) {
	ctx := context.Background()
	w, second := sharedWorld(t)
	other, _ := second()
	if _, err := w.sales.SetQuota(ctx, w.op, "acme", "h100-sxm5-80gb", placement.ClassOnDemand, 16); err != nil {
		t.Fatal(err)
	}
	const requests = 12
	ok := together(t, []*sales.Service{w.sales, other}, requests, "quota", func(s *sales.Service, _ int) error {
		_, err := s.Reserve(ctx, w.acme, sales.ReserveInput{ShapeInput: sales.ShapeInput{SKU: "h100-sxm5-80gb", GPUs: 8, Class: placement.ClassOnDemand}})
		return err
	})
	if ok != 2 {
		t.Errorf("%d of %d concurrent 8-GPU requests reserved under a 16-GPU quota, want 2", ok, requests)
	}
}

// TestHoldLimitUnderConcurrentRequests: a tenant's hold requests that
// arrive together, at two servers sharing the database, get no more open
// holds than the limit between them.
func TestHoldLimitUnderConcurrentRequests(t *testing.T) {
	ctx := context.Background()
	w, second := sharedWorld(t)
	other, _ := second()
	const requests = 10
	start := epoch.Add(48 * time.Hour)
	ok := together(t, []*sales.Service{w.sales, other}, requests, "open holds", func(s *sales.Service, _ int) error {
		_, err := s.CreateQuote(ctx, w.acme, sales.QuoteInput{ShapeInput: reserved(8, start, time.Hour, ""), Hold: true})
		return err
	})
	if limit := w.sales.Policy.WithDefaults().MaxHolds; ok != limit {
		t.Errorf("%d of %d concurrent hold requests held, want the limit, %d", ok, requests, limit)
	}
}

// TestReplacementAllowanceUnderConcurrentRequests: a tenant's requests to
// replace nodes that arrive together, at two servers sharing the
// database, take turns: as many are made as its contract allows a month,
// and the rest are refused for the allowance (none for having raced
// another).
func TestReplacementAllowanceUnderConcurrentRequests(t *testing.T) {
	ctx := context.Background()
	w, second := sharedWorld(t)
	r, err := w.sales.Reserve(ctx, w.acme, sales.ReserveInput{ShapeInput: sales.ShapeInput{SKU: "h100-sxm5-80gb", GPUs: 80, Class: placement.ClassOnDemand}})
	if err != nil {
		t.Fatal(err)
	}
	w.advance(10 * time.Minute)
	r = w.reservation(r.ID)
	c, err := w.sales.Contract(ctx, w.acme, r.ContractID)
	if err != nil {
		t.Fatal(err)
	}
	allow := c.Terms.SLA.ReplacementsPerMonth
	if len(r.Nodes) <= allow {
		t.Fatalf("%d nodes for an allowance of %d", len(r.Nodes), allow)
	}
	other, _ := second()
	// The allowance counts the tenant's own requests: made with a token of
	// its own.
	tok, _, err := w.tenants.CreateToken(ctx, w.op, tenant.CreateTokenInput{Name: "acme-admin", Role: neocloud.RoleTenantAdmin, Tenant: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	acme := w.acme
	acme.TokenID = tok.ID
	ok := together(t, []*sales.Service{w.sales, other}, len(r.Nodes), "replacements a month", func(s *sales.Service, i int) error {
		_, err := s.NodeBreakFix(ctx, acme, r.Nodes[i].NodeID, sales.BreakFixReplace, sales.BreakFixInput{Reason: "slow NVLink"})
		return err
	})
	if ok != allow {
		t.Errorf("%d of %d concurrent replacements made under an allowance of %d a month", ok, len(r.Nodes), allow)
	}
}

// TestReportClosedOnce: an operator confirming a tenant's report while
// another declines it, at two servers sharing the database, closes it
// once: one of them gets a conflict naming the state it found, and the
// tenant hears one outcome.
func TestReportClosedOnce(t *testing.T) {
	ctx := context.Background()
	w, second := sharedWorld(t)
	r, err := w.sales.Reserve(ctx, w.acme, sales.ReserveInput{ShapeInput: sales.ShapeInput{SKU: "h100-sxm5-80gb", GPUs: 16, Class: placement.ClassOnDemand}})
	if err != nil {
		t.Fatal(err)
	}
	w.advance(10 * time.Minute)
	r = w.reservation(r.ID)
	other, _ := second()
	for round := range 5 {
		b, err := w.sales.NodeBreakFix(ctx, w.acme, r.Nodes[0].NodeID, sales.BreakFixReport, sales.BreakFixInput{Reason: fmt.Sprintf("round %d: link flaps", round)})
		if err != nil {
			t.Fatal(err)
		}
		var confirmErr, declineErr error
		var wg sync.WaitGroup
		wg.Go(func() { _, confirmErr = w.sales.ConfirmReport(ctx, w.op, b.ID) })
		wg.Go(func() {
			_, declineErr = other.DeclineReport(ctx, w.op, b.ID, sales.DeclineInput{Reason: "no fault found"})
		})
		wg.Wait()
		if (confirmErr == nil) == (declineErr == nil) {
			t.Fatalf("round %d: confirm %v, decline %v; want exactly one to close the report", round, confirmErr, declineErr)
		}
		if err := cmp.Or(confirmErr, declineErr); neocloud.ErrorKind(err) != neocloud.KindConflict {
			t.Fatalf("round %d: the other: %v, want a conflict", round, err)
		}
		evs, err := w.sales.Events(ctx, w.acme, 0, 10000)
		if err != nil {
			t.Fatal(err)
		}
		outcomes := 0
		for _, e := range evs {
			if strings.HasPrefix(e.Kind, "node.report_") && e.Data["break_fix"] == b.ID {
				outcomes++
			}
		}
		if outcomes > 1 {
			t.Fatalf("round %d: acme heard %d outcomes of one report", round, outcomes)
		}
		if confirmErr == nil {
			return // the node has left the work: the report is made on a serving node
		}
	}
}

// TestQuoteUsedOnce: a quote reserved from twice at once, at two servers
// sharing the database, makes one reservation; the other request is told
// the quote is used.
func TestQuoteUsedOnce(t *testing.T) {
	ctx := context.Background()
	w, second := sharedWorld(t)
	other, _ := second()
	for round, hold := range []bool{false, true, false, true} {
		q, err := w.sales.CreateQuote(ctx, w.acme, sales.QuoteInput{ShapeInput: reserved(16, epoch.Add(time.Duration(48+round*24)*time.Hour), time.Hour, ""), Hold: hold})
		if err != nil {
			t.Fatal(err)
		}
		errs := make([]error, 2)
		var wg sync.WaitGroup
		for i, s := range []*sales.Service{w.sales, other} {
			wg.Go(func() { _, errs[i] = s.Reserve(ctx, w.acme, sales.ReserveInput{Quote: q.ID}) })
		}
		wg.Wait()
		if (errs[0] == nil) == (errs[1] == nil) {
			t.Fatalf("round %d (hold %v): %v; want exactly one reservation from the quote", round, hold, errs)
		}
		var ne *neocloud.Error
		if err := cmp.Or(errs[0], errs[1]); !errors.As(err, &ne) || ne.Kind != neocloud.KindConflict || ne.State != "used" {
			t.Fatalf("round %d: the other request: %v, want a conflict in state used", round, err)
		}
	}
}

// TestOneStandingContract: a tenant's first on-demand reservations, made
// at once at two sites through two servers sharing the database, both go
// through under one standing contract.
func TestOneStandingContract(t *testing.T) {
	ctx := context.Background()
	w, second := sharedWorld(t)
	sku, _ := fleet.CatalogSKU("h100-sxm5-80gb")
	var b bytes.Buffer
	o := fleet.ColossusOptions(sku, 64)
	o.Site = "second-site"
	if _, err := fleet.Generate(&b, o); err != nil {
		t.Fatal(err)
	}
	spec, err := fleet.ParseSpec(b.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.fleet.Apply(ctx, spec); err != nil {
		t.Fatal(err)
	}
	other, _ := second()
	first := w.fleet.Snapshot.Sites()[0].Name
	if first == o.Site {
		first = w.fleet.Snapshot.Sites()[1].Name
	}
	sites := []string{first, o.Site}
	ok := together(t, []*sales.Service{w.sales, other}, 2, "no error expected", func(s *sales.Service, i int) error {
		_, err := s.Reserve(ctx, w.beta, sales.ReserveInput{ShapeInput: sales.ShapeInput{Site: sites[i], SKU: sku.Name, GPUs: 8, Class: placement.ClassOnDemand}})
		return err
	})
	if ok != 2 {
		t.Fatalf("%d of 2 first reservations went through", ok)
	}
	cs, err := w.sales.Contracts(ctx, w.beta, "", neocloud.Page{})
	if err != nil || len(cs) != 1 {
		t.Fatalf("beta's contracts: %d, %v; want one standing contract", len(cs), err)
	}
}
