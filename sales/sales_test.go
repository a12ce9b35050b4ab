package sales_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/fleet"
	"github.com/neocloud/neocloud/internal/testdb"
	"github.com/neocloud/neocloud/placement"
	"github.com/neocloud/neocloud/pricing"
	"github.com/neocloud/neocloud/sales"
	"github.com/neocloud/neocloud/sqlstore"
	"github.com/neocloud/neocloud/tenant"
)

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

var epoch = time.Date(2027, 1, 4, 0, 0, 0, 0, time.UTC)

// world is a small site (1 hall, 2 pods of 2 sus of 2 racks of 4 nodes: 32
// H100 nodes, 256 GPUs), two tenants, a price book and a sales service on
// a settable clock.
type world struct {
	t       *testing.T
	db      *sqlstore.DB
	clock   *clock
	fleet   *fleet.Service
	tenants *tenant.Service
	sales   *sales.Service
	op      neocloud.Principal
	acme    neocloud.Principal
	beta    neocloud.Principal
}

func newWorld(t *testing.T, db *sqlstore.DB) *world { return newWorldWith(t, db, nil) }

// newWorldWith is newWorld with the site's generator options adjusted.
func newWorldWith(t *testing.T, db *sqlstore.DB, adjust func(*fleet.GenerateOptions)) *world {
	t.Helper()
	ctx := context.Background()
	w := &world{t: t, db: db, clock: &clock{t: epoch}}
	w.fleet = fleet.NewService(db, db)
	w.fleet.Now = w.clock.Now
	if err := w.fleet.Load(ctx); err != nil {
		t.Fatal(err)
	}
	sku, _ := fleet.CatalogSKU("h100-sxm5-80gb")
	var b bytes.Buffer
	o := fleet.ColossusOptions(sku, 256)
	o.Fanout = []int{2, 2, 2, 4}
	if adjust != nil {
		adjust(&o)
	}
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
	w.tenants = tenant.NewService(db)
	w.op = neocloud.Principal{TokenID: "tok_op", Role: neocloud.RoleOperatorAdmin}
	for _, name := range []string{"acme", "beta"} {
		tn, err := w.tenants.Create(ctx, tenant.CreateInput{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		p := neocloud.Principal{TokenID: "tok_" + name, Role: neocloud.RoleTenantAdmin, TenantID: tn.ID}
		if name == "acme" {
			w.acme = p
		} else {
			w.beta = p
		}
	}
	w.sales = sales.NewService(db, db, w.fleet, w.tenants)
	w.sales.Now = w.clock.Now
	for _, p := range []sales.PriceInput{
		{SKU: "h100-sxm5-80gb", Class: placement.ClassReserved, List: "2.50", TermDiscounts: []pricing.Tier{{Min: 30 * 86400, Percent: 10}}},
		{SKU: "h100-sxm5-80gb", Class: placement.ClassOnDemand, List: "3.20"},
		{SKU: "h100-sxm5-80gb", Class: placement.ClassSpot, SpotFloor: "0.80", SpotCeiling: "2.40"},
	} {
		if _, err := w.sales.SetPrice(ctx, w.op, p); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

// run steps the lifecycle until nothing is due.
func (w *world) run() {
	w.t.Helper()
	for i := 0; ; i++ {
		n, err := w.sales.Step(context.Background())
		if err != nil {
			w.t.Fatal(err)
		}
		if n == 0 {
			return
		}
		if i > 1000 {
			w.t.Fatal("the lifecycle does not settle")
		}
	}
}

// advance moves the clock in steps of at most a minute, running the
// lifecycle at each.
func (w *world) advance(d time.Duration) {
	w.t.Helper()
	end := w.clock.Now().Add(d)
	for w.clock.Now().Before(end) {
		w.clock.Add(min(time.Minute, end.Sub(w.clock.Now())))
		w.run()
	}
}

// advanceBy moves the clock by d in steps of at most step.
func (w *world) advanceBy(d, step time.Duration) {
	w.t.Helper()
	end := w.clock.Now().Add(d)
	for w.clock.Now().Before(end) {
		w.clock.Add(min(step, end.Sub(w.clock.Now())))
		w.run()
	}
}

func (w *world) reservation(id string) sales.Reservation {
	w.t.Helper()
	r, err := w.sales.Reservation(context.Background(), w.op, id)
	if err != nil {
		w.t.Fatal(err)
	}
	return r
}

func (w *world) allocStates(id string) map[sales.AllocationState]int {
	w.t.Helper()
	as, err := w.sales.Allocations(context.Background(), w.op, id)
	if err != nil {
		w.t.Fatal(err)
	}
	out := map[sales.AllocationState]int{}
	for _, a := range as {
		out[a.State]++
	}
	return out
}

func (w *world) events(p neocloud.Principal) []string {
	w.t.Helper()
	evs, err := w.sales.Events(context.Background(), p, 0, 10000)
	if err != nil {
		w.t.Fatal(err)
	}
	var out []string
	for _, e := range evs {
		out = append(out, e.Kind)
	}
	return out
}

func reserved(gpus int, start time.Time, d time.Duration, within string) sales.ShapeInput {
	return sales.ShapeInput{SKU: "h100-sxm5-80gb", GPUs: gpus, Class: placement.ClassReserved, Start: &start, DurationS: int64(d / time.Second), Within: within}
}

func TestReservedLifecycle(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sqlstore.DB) {
		w := newWorld(t, db)
		ctx := context.Background()
		w.sales.Provisioner = &sales.SimStage{Duration: 10 * time.Minute}
		w.sales.Network = &sales.SimStage{Duration: 2 * time.Minute}
		w.sales.Sanitizer = &sales.SimStage{Duration: 40 * time.Minute}
		start := epoch.Add(24 * time.Hour)

		// A quote with a hold, then the reservation from it.
		q, err := w.sales.CreateQuote(ctx, w.acme, sales.QuoteInput{ShapeInput: reserved(64, start, 30*24*time.Hour, "su"), Hold: true})
		if err != nil {
			t.Fatal(err)
		}
		if !q.Offer.Available || !q.Hold || len(q.Nodes) != 8 {
			t.Fatalf("quote: %+v", q)
		}
		// 64 GPUs × 720 h at $2.50 less 10% for a 30-day term.
		if q.Offer.RateMicros != 2_250_000 || *q.Offer.TotalMicros != 2_250_000*64*720 {
			t.Fatalf("price: rate %d total %d", q.Offer.RateMicros, *q.Offer.TotalMicros)
		}
		r, err := w.sales.Reserve(ctx, w.acme, sales.ReserveInput{Quote: q.ID})
		if err != nil {
			t.Fatal(err)
		}
		if r.State != sales.ReservationScheduled || r.Bound || len(r.Nodes) != 8 {
			t.Fatalf("reservation: %+v", r)
		}
		for i, n := range r.Nodes {
			if n.NodeID != q.Nodes[i].NodeID {
				t.Fatalf("the reservation did not take the held nodes: %v vs %v", r.Nodes, q.Nodes)
			}
		}
		c, err := w.sales.Contract(ctx, w.acme, r.ContractID)
		if err != nil || c.Kind != placement.ClassReserved || c.Terms.CommitmentMicros != *q.Offer.TotalMicros || c.Terms.BillingSchedule != "monthly_in_advance" {
			t.Fatalf("contract %+v, %v", c, err)
		}
		if _, err := w.sales.Reserve(ctx, w.acme, sales.ReserveInput{Quote: q.ID}); neocloud.ErrorKind(err) != neocloud.KindConflict {
			t.Fatalf("a used quote reserved again: %v", err)
		}

		// Nothing happens until the lead time (30 minutes) before start.
		w.advance(23*time.Hour + 29*time.Minute)
		if r = w.reservation(r.ID); r.Bound {
			t.Fatalf("bound %v before the lead time", w.clock.Now())
		}
		w.advance(time.Minute)
		if r = w.reservation(r.ID); !r.Bound || w.allocStates(r.ID)[sales.AllocationProvisioning] != 8 {
			t.Fatalf("not provisioning at the lead time: %+v %v", r, w.allocStates(r.ID))
		}
		// Provisioned after 10 minutes, but ready only at the start.
		w.advance(15 * time.Minute)
		if r = w.reservation(r.ID); r.State != sales.ReservationScheduled {
			t.Fatalf("active before its start: %v", r.State)
		}
		w.advance(15 * time.Minute)
		if r = w.reservation(r.ID); r.State != sales.ReservationActive {
			t.Fatalf("not active at its start: %v %v", r.State, w.allocStates(r.ID))
		}
		as, _ := w.sales.Allocations(ctx, w.acme, r.ID)
		for _, a := range as {
			if a.ReadyAt == nil || !a.ReadyAt.Equal(start) {
				t.Fatalf("allocation ready at %v, want the start %v", a.ReadyAt, start)
			}
		}
		// Another tenant cannot take those nodes while it runs, nor see it.
		if _, err := w.sales.Reservation(ctx, w.beta, r.ID); neocloud.ErrorKind(err) != neocloud.KindNotFound {
			t.Fatalf("another tenant sees the reservation: %v", err)
		}

		// Extension on the same nodes.
		newEnd := r.Shape.End.Add(7 * 24 * time.Hour)
		if r, err = w.sales.Extend(ctx, w.acme, r.ID, newEnd); err != nil || !r.Shape.End.Equal(newEnd) {
			t.Fatalf("extend: %v %v", r.Shape.End, err)
		}

		// At its end: releasing through detach and sanitize, then ended.
		w.clock.Set(newEnd)
		w.run()
		if r = w.reservation(r.ID); r.State != sales.ReservationEnding || w.allocStates(r.ID)[sales.AllocationReleasing] != 8 {
			t.Fatalf("at the end: %v %v", r.State, w.allocStates(r.ID))
		}
		w.advance(time.Hour)
		if r = w.reservation(r.ID); r.State != sales.ReservationEnded || w.allocStates(r.ID)[sales.AllocationEnded] != 8 {
			t.Fatalf("after sanitize: %v %v", r.State, w.allocStates(r.ID))
		}
		as, _ = w.sales.Allocations(ctx, w.acme, r.ID)
		for _, a := range as {
			if a.SanitizedAt == nil || a.EndedAt == nil || a.EndedAt.Before(*a.SanitizedAt) {
				t.Fatalf("allocation ended without sanitize: %+v", a)
			}
		}
		got := strings.Join(w.events(w.acme), " ")
		for _, want := range []string{"reservation.scheduled", "reservation.bound", "allocation.provisioning", "allocation.ready", "reservation.active", "reservation.extended", "reservation.ending", "allocation.releasing", "allocation.ended", "reservation.ended"} {
			if !strings.Contains(got, want) {
				t.Errorf("events lack %s: %s", want, got)
			}
		}
		if evs := w.events(w.beta); len(evs) != 0 {
			t.Errorf("beta sees acme's events: %v", evs)
		}
	})
}

func TestOnDemandSpotAndCancel(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sqlstore.DB) {
		w := newWorld(t, db)
		ctx := context.Background()
		od, err := w.sales.Reserve(ctx, w.acme, sales.ReserveInput{ShapeInput: sales.ShapeInput{SKU: "h100-sxm5-80gb", GPUs: 16, Class: placement.ClassOnDemand}})
		if err != nil {
			t.Fatal(err)
		}
		// A partition sold as a VM.
		vm, err := w.sales.Reserve(ctx, w.beta, sales.ReserveInput{ShapeInput: sales.ShapeInput{SKU: "h100-sxm5-80gb", GPUs: 2, Class: placement.ClassSpot}})
		if err != nil {
			t.Fatal(err)
		}
		if len(vm.Nodes) != 1 || len(vm.Nodes[0].GPUs) != 2 {
			t.Fatalf("partition: %+v", vm.Nodes)
		}
		w.run()
		if r := w.reservation(od.ID); r.State != sales.ReservationActive || r.Shape.End != nil {
			t.Fatalf("on-demand: %v", r.State)
		}
		if r := w.reservation(vm.ID); r.State != sales.ReservationActive {
			t.Fatalf("spot: %v", r.State)
		}
		// The standing contract is reused.
		od2, err := w.sales.Reserve(ctx, w.acme, sales.ReserveInput{ShapeInput: sales.ShapeInput{SKU: "h100-sxm5-80gb", GPUs: 8, Class: placement.ClassOnDemand}})
		if err != nil || od2.ContractID != od.ContractID {
			t.Fatalf("standing contract not reused: %v %v", od2.ContractID, err)
		}
		w.advance(2 * time.Hour)
		if _, err := w.sales.Cancel(ctx, w.acme, od.ID); err != nil {
			t.Fatal(err)
		}
		w.run()
		if r := w.reservation(od.ID); r.State != sales.ReservationEnded {
			t.Fatalf("cancelled on-demand: %v %v", r.State, w.allocStates(od.ID))
		}
		if _, err := w.sales.Cancel(ctx, w.acme, od.ID); neocloud.ErrorKind(err) != neocloud.KindConflict {
			t.Fatalf("cancel twice: %v", err)
		}
		// A future reservation cancelled before it is bound.
		fut, err := w.sales.Reserve(ctx, w.beta, sales.ReserveInput{ShapeInput: reserved(8, w.clock.Now().Add(48*time.Hour), 24*time.Hour, "")})
		if err != nil {
			t.Fatal(err)
		}
		if r, err := w.sales.Cancel(ctx, w.beta, fut.ID); err != nil || r.State != sales.ReservationCancelled {
			t.Fatalf("cancel scheduled: %v %v", r.State, err)
		}
		if _, err := w.sales.Cancel(ctx, w.acme, fut.ID); neocloud.ErrorKind(err) != neocloud.KindNotFound {
			t.Fatalf("another tenant's cancel: %v", err)
		}
	})
}

func TestProvisioningFailureReplacesTheNode(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sqlstore.DB) {
		w := newWorld(t, db)
		ctx := context.Background()
		w.sales.Provisioner = &failing{fail: map[string]bool{}}
		r, err := w.sales.Reserve(ctx, w.acme, sales.ReserveInput{ShapeInput: sales.ShapeInput{SKU: "h100-sxm5-80gb", GPUs: 24, Class: placement.ClassOnDemand, Within: "rack"}})
		if err != nil {
			t.Fatal(err)
		}
		bad := r.Nodes[0]
		w.sales.Provisioner.(*failing).fail[bad.NodeID] = true
		w.advance(5 * time.Minute)
		r = w.reservation(r.ID)
		if r.State != sales.ReservationActive || len(r.Nodes) != 3 {
			t.Fatalf("after replacement: %v nodes %d %v", r.State, len(r.Nodes), w.allocStates(r.ID))
		}
		for _, n := range r.Nodes {
			if n.NodeID == bad.NodeID {
				t.Fatal("the failed node is still in the reservation")
			}
			if rackOf(n.Domain) != rackOf(bad.Domain) {
				t.Fatalf("replacement %s is outside the rack %s", n.Domain, rackOf(bad.Domain))
			}
		}
		if st := w.allocStates(r.ID); st[sales.AllocationEnded] != 1 || st[sales.AllocationReady] != 3 {
			t.Fatalf("allocations: %v", st)
		}
		if n, _ := w.fleet.Snapshot.Node(bad.NodeID); !n.Cordoned {
			t.Fatal("the failed node was not taken out of service")
		}
		if got := strings.Join(w.events(w.acme), " "); !strings.Contains(got, "allocation.retrying") || !strings.Contains(got, "node.replaced") {
			t.Fatalf("events: %s", got)
		}
		// A one-node reservation whose rack has no node that provisions:
		// replaced until none is left, then failed.
		one, err := w.sales.Reserve(ctx, w.beta, sales.ReserveInput{ShapeInput: sales.ShapeInput{SKU: "h100-sxm5-80gb", GPUs: 8, Class: placement.ClassOnDemand, Within: "rack"}})
		if err != nil {
			t.Fatal(err)
		}
		w.fleet.Snapshot.Each(fleet.NodeFilter{Domain: rackOf(one.Nodes[0].Domain)}, func(n *fleet.Node) { w.sales.Provisioner.(*failing).fail[n.ID] = true })
		w.advance(30 * time.Minute)
		if one = w.reservation(one.ID); one.State != sales.ReservationFailed || !strings.Contains(one.Reason, "no node could be provisioned") {
			t.Fatalf("after every node of its rack failed: %v %q %v", one.State, one.Reason, w.allocStates(one.ID))
		}
		if got := strings.Join(w.events(w.beta), " "); !strings.Contains(got, "node.replacement_failed") || !strings.Contains(got, "reservation.failed") {
			t.Fatalf("beta's events: %s", got)
		}
		// The GPUs it went without are on record (downtime for the SLA),
		// closed when it ended.
		if len(one.Shortfalls) != 1 || one.Shortfalls[0].GPUs != 8 || one.Shortfalls[0].Until == nil || one.Shortfalls[0].Until.Before(one.Shortfalls[0].Since) {
			t.Fatalf("shortfalls: %+v", one.Shortfalls)
		}
	})
}

// A failed node whose constraint has no spare left is replaced by a node
// spot work holds: the spot work gets its notice, and the replacement is
// bound once it has left, linked to the failed allocation (time to ready
// and downtime run from the failure).
func TestFailedNodeReplacedFromSpot(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sqlstore.DB) {
		w := newWorld(t, db)
		ctx := context.Background()
		r, bad, failed := w.replacementWaitsForSpot(ctx)
		// The reservation's other nodes are told at once, and again when
		// the replacement is bound.
		failedAt := r.Replacing[0].FailedAt
		notice := func() string {
			t.Helper()
			a, err := w.sales.NodeAssignment(ctx, r.Nodes[1].NodeID)
			if err != nil || a == nil {
				t.Fatalf("assignment: %v %+v", err, a)
			}
			for _, n := range a.Notices {
				if n.Kind == "replacement" && n.Deadline.Equal(failedAt) {
					return n.Reason
				}
			}
			return ""
		}
		if got := notice(); !strings.Contains(got, "node "+bad.Hostname+" failed;") || !strings.Contains(got, "waiting for the work reclaimed from it") {
			t.Fatalf("the notice while waiting: %q", got)
		}
		w.advance(30 * time.Minute)
		if got := notice(); !strings.Contains(got, "node "+bad.Hostname+" failed;") || !strings.Contains(got, "(ready)") {
			t.Fatalf("the notice once bound: %q", got)
		}
		r = w.reservation(r.ID)
		if st := w.allocStates(r.ID); st[sales.AllocationReady] != 3 || st[sales.AllocationEnded] != 1 || len(r.Replacing) != 0 || !r.Bound {
			t.Fatalf("after the spot work left: %v, replacing %+v, bound %v", st, r.Replacing, r.Bound)
		}
		var repl sales.Allocation
		as, _ := db.Allocations(ctx, r.ID)
		for _, a := range as {
			if a.Replaces != "" {
				repl = a
			}
		}
		if repl.Replaces != failed.ID || repl.FailedAt == nil || repl.ReadyAt == nil || rackOf(r.Nodes[0].Domain) != rackOf(bad.Domain) {
			t.Fatalf("the replacement: %+v in %s", repl, r.Nodes[0].Domain)
		}
		if got := strings.Join(w.events(w.acme), " "); !strings.Contains(got, "node.replaced") || !strings.Contains(got, "node.replacement_ready") {
			t.Fatalf("acme's events: %s", got)
		}
	})
}

// replacementWaitsForSpot makes acme's three nodes in a rack whose fourth
// holds spot work (beta's, on every other node too), fails one of acme's,
// and checks that its replacement waits for the spot work, told to leave.
// It returns acme's reservation, the failed node and its allocation.
func (w *world) replacementWaitsForSpot(ctx context.Context) (sales.Reservation, sales.NodeGPUs, sales.Allocation) {
	t := w.t
	t.Helper()
	r, err := w.sales.Reserve(ctx, w.acme, sales.ReserveInput{ShapeInput: sales.ShapeInput{SKU: "h100-sxm5-80gb", GPUs: 24, Class: placement.ClassOnDemand, Within: "rack"}})
	if err != nil {
		t.Fatal(err)
	}
	w.advance(5 * time.Minute)
	sp, err := w.sales.Reserve(ctx, w.beta, sales.ReserveInput{ShapeInput: sales.ShapeInput{SKU: "h100-sxm5-80gb", GPUs: 232, Class: placement.ClassSpot}})
	if err != nil {
		t.Fatal(err)
	}
	w.advance(5 * time.Minute)
	if st := w.allocStates(sp.ID); st[sales.AllocationReady] != 29 {
		t.Fatalf("spot: %v", st)
	}
	r = w.reservation(r.ID)
	bad := r.Nodes[0]
	failed, err := w.db.LastNodeAllocation(ctx, bad.NodeID)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := w.sales.NodeFailed(ctx, bad.NodeID, "gpu 3: XID 79", true); err != nil || n != 1 {
		t.Fatalf("node failed: %d %v", n, err)
	}
	r = w.reservation(r.ID)
	if len(r.Replacing) != 1 || r.Replacing[0].Replaces != failed.ID || r.Bound {
		t.Fatalf("the replacement waits for the spot work: bound %v, %+v", r.Bound, r.Replacing)
	}
	if got := strings.Join(w.events(w.beta), " "); !strings.Contains(got, "reservation.preempting") {
		t.Fatalf("the spot work was not told: %s", got)
	}
	return r, bad, failed
}

// A reservation cancelled while a replacement waits for reclaimed work
// ends like any other: its allocations are released, none is left
// holding a node, and the node it went without counts as a shortfall
// from the failure to the end.
func TestCancelWhileAReplacementWaits(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sqlstore.DB) {
		w := newWorld(t, db)
		ctx := context.Background()
		r, bad, failed := w.replacementWaitsForSpot(ctx)
		w.advance(time.Minute)
		if _, err := w.sales.Cancel(ctx, w.acme, r.ID); err != nil {
			t.Fatalf("cancel: %v", err)
		}
		w.advance(30 * time.Minute)
		r = w.reservation(r.ID)
		st := w.allocStates(r.ID)
		if r.State != sales.ReservationEnded || st[sales.AllocationEnded] != 3 || len(st) != 1 || len(r.Replacing) != 0 {
			t.Fatalf("after cancelling: %s, allocations %v, replacing %+v", r.State, st, r.Replacing)
		}
		if len(r.Shortfalls) != 1 || r.Shortfalls[0].Allocation != failed.ID || r.Shortfalls[0].Node != bad.Hostname || r.Shortfalls[0].GPUs != 8 ||
			r.Shortfalls[0].Until == nil || !r.Shortfalls[0].Until.After(r.Shortfalls[0].Since) {
			t.Fatalf("shortfalls: %+v", r.Shortfalls)
		}
		// Nothing of acme's holds a node any more.
		for _, n := range r.Nodes {
			if a, err := db.LastNodeAllocation(ctx, n.NodeID); err == nil && a.ReservationID == r.ID && a.State.Live() {
				t.Fatalf("node %s still held: %+v", n.Hostname, a)
			}
		}
	})
}

func rackOf(domain string) string { return domain[:strings.LastIndexByte(domain, '/')] }

// failing is a provisioner that always fails on chosen nodes.
type failing struct{ fail map[string]bool }

func (f *failing) Begin(_ context.Context, w sales.Work) (time.Time, error) {
	return w.Now.Add(time.Minute), nil
}

func (f *failing) Check(_ context.Context, w sales.Work) (bool, error) {
	if f.fail[w.Allocation.NodeID] {
		return true, fmt.Errorf("image did not boot")
	}
	return true, nil
}

func TestBadInputChangesNothing(t *testing.T) {
	w := newWorld(t, testdb.SQLite(t))
	ctx := context.Background()
	q, err := w.sales.CreateQuote(ctx, w.acme, sales.QuoteInput{ShapeInput: reserved(8, epoch.Add(time.Hour), time.Hour, "")})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		in    sales.ReserveInput
		p     neocloud.Principal
		kind  neocloud.Kind
		field string
	}{
		{"past start", sales.ReserveInput{ShapeInput: reserved(8, epoch.Add(-time.Hour), time.Hour, "")}, w.acme, neocloud.KindInvalid, "body.start"},
		{"not a node multiple", sales.ReserveInput{ShapeInput: reserved(12, epoch.Add(time.Hour), time.Hour, "")}, w.acme, neocloud.KindInvalid, "body.gpus"},
		{"not a partition", sales.ReserveInput{ShapeInput: reserved(3, epoch.Add(time.Hour), time.Hour, "")}, w.acme, neocloud.KindInvalid, "body.gpus"},
		{"unknown sku", sales.ReserveInput{ShapeInput: sales.ShapeInput{SKU: "a100", GPUs: 8, Class: placement.ClassOnDemand}}, w.acme, neocloud.KindInvalid, "body.sku"},
		{"bare-metal partition", sales.ReserveInput{ShapeInput: sales.ShapeInput{SKU: "h100-sxm5-80gb", GPUs: 4, Class: placement.ClassOnDemand, Delivery: sales.DeliveryBareMetal}}, w.acme, neocloud.KindInvalid, "body.delivery"},
		{"unknown level", sales.ReserveInput{ShapeInput: reserved(8, epoch.Add(time.Hour), time.Hour, "row")}, w.acme, neocloud.KindInvalid, "body.within"},
		{"reserved without duration", sales.ReserveInput{ShapeInput: reserved(8, epoch.Add(time.Hour), 0, "")}, w.acme, neocloud.KindInvalid, "body.duration_s"},
		{"another tenant's quote", sales.ReserveInput{Quote: q.ID}, w.beta, neocloud.KindNotFound, ""},
		{"missing quote", sales.ReserveInput{Quote: "quo_01JZZZZZZZZZZZZZZZZZZZZZZZ"}, w.acme, neocloud.KindNotFound, ""},
		{"too large", sales.ReserveInput{ShapeInput: reserved(512, epoch.Add(time.Hour), time.Hour, "")}, w.acme, neocloud.KindNoCapacity, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := w.sales.Reserve(ctx, c.p, c.in)
			var ne *neocloud.Error
			if neocloud.ErrorKind(err) != c.kind || (c.field != "" && (!asError(err, &ne) || ne.Field != c.field)) {
				t.Fatalf("got %v (kind %s), want kind %s on field %q", err, neocloud.ErrorKind(err), c.kind, c.field)
			}
		})
	}
	// An expired quote.
	w.clock.Add(16 * time.Minute)
	w.run()
	if _, err := w.sales.Reserve(ctx, w.acme, sales.ReserveInput{Quote: q.ID}); neocloud.ErrorKind(err) != neocloud.KindConflict {
		t.Fatalf("expired quote: %v", err)
	}
	rs, err := w.sales.Reservations(ctx, w.op, sales.ReservationFilter{}, neocloud.Page{})
	if err != nil || len(rs) != 0 {
		t.Fatalf("bad input left %d reservations (%v)", len(rs), err)
	}
	if evs := w.events(w.op); strings.Contains(strings.Join(evs, " "), "reservation") {
		t.Fatalf("bad input left events: %v", evs)
	}
}

func asError(err error, out **neocloud.Error) bool { return errors.As(err, out) }

func TestHoldsQuotasAndExpiry(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sqlstore.DB) {
		w := newWorld(t, db)
		ctx := context.Background()
		w.sales.Policy.MaxHolds = 2
		start := epoch.Add(48 * time.Hour)
		// Two holds of half the site each: the site is then fully held.
		var held []sales.Quote
		for i := 0; i < 2; i++ {
			q, err := w.sales.CreateQuote(ctx, w.acme, sales.QuoteInput{ShapeInput: reserved(128, start, 24*time.Hour, "pod"), Hold: true})
			if err != nil || !q.Offer.Available {
				t.Fatalf("hold %d: %+v %v", i, q.Offer, err)
			}
			held = append(held, q)
		}
		if _, err := w.sales.CreateQuote(ctx, w.acme, sales.QuoteInput{ShapeInput: reserved(8, start, time.Hour, ""), Hold: true}); neocloud.ErrorKind(err) != neocloud.KindConflict {
			t.Fatalf("a third hold past the cap: %v", err)
		}
		// Another tenant finds nothing free then, and is told when.
		q, err := w.sales.CreateQuote(ctx, w.beta, sales.QuoteInput{ShapeInput: reserved(8, start, time.Hour, "")})
		if err != nil || q.Offer.Available || q.Offer.EarliestStart == nil || q.Offer.EarliestStart.Before(start.Add(24*time.Hour)) {
			t.Fatalf("beta during acme's holds: %+v %v", q.Offer, err)
		}
		// Holds expire with the quote; the capacity is free again.
		w.advance(16 * time.Minute)
		q, err = w.sales.CreateQuote(ctx, w.beta, sales.QuoteInput{ShapeInput: reserved(8, start, time.Hour, "")})
		if err != nil || !q.Offer.Available {
			t.Fatalf("beta after the holds expired: %+v %v", q.Offer, err)
		}
		if got := strings.Count(strings.Join(w.events(w.acme), " "), "quote.expired"); got < 2 {
			t.Fatalf("acme was told of %d expiries, want 2", got)
		}
		for _, h := range held {
			if _, err := w.sales.Reserve(ctx, w.acme, sales.ReserveInput{Quote: h.ID}); neocloud.ErrorKind(err) != neocloud.KindConflict {
				t.Fatalf("reserving an expired hold: %v", err)
			}
		}
		// Quotas count what overlaps in time.
		if _, err := w.sales.SetQuota(ctx, w.op, "beta", "h100-sxm5-80gb", placement.ClassReserved, 64); err != nil {
			t.Fatal(err)
		}
		if _, err := w.sales.Reserve(ctx, w.beta, sales.ReserveInput{ShapeInput: reserved(48, start, 24*time.Hour, "")}); err != nil {
			t.Fatal(err)
		}
		if _, err := w.sales.Reserve(ctx, w.beta, sales.ReserveInput{ShapeInput: reserved(24, start.Add(time.Hour), time.Hour, "")}); neocloud.ErrorKind(err) != neocloud.KindConflict {
			t.Fatalf("past the quota: %v", err)
		}
		if _, err := w.sales.Reserve(ctx, w.beta, sales.ReserveInput{ShapeInput: reserved(24, start.Add(25*time.Hour), time.Hour, "")}); err != nil {
			t.Fatalf("after the first ends, within quota: %v", err)
		}
		// Spot follows utilization: dearer on a busier site.
		spot := sales.ShapeInput{SKU: "h100-sxm5-80gb", GPUs: 8, Class: placement.ClassSpot}
		idle, err := w.sales.CreateQuote(ctx, w.beta, sales.QuoteInput{ShapeInput: spot})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.sales.Reserve(ctx, w.acme, sales.ReserveInput{ShapeInput: sales.ShapeInput{SKU: "h100-sxm5-80gb", GPUs: 192, Class: placement.ClassOnDemand}}); err != nil {
			t.Fatal(err)
		}
		busy, err := w.sales.CreateQuote(ctx, w.beta, sales.QuoteInput{ShapeInput: spot})
		if err != nil {
			t.Fatal(err)
		}
		// floor 0.80, ceiling 2.40: idle 0.80; 192 of 256 GPUs busy → 0.80 + 1.60 × 0.75² = 1.70.
		if idle.Offer.RateMicros != 800_000 || busy.Offer.RateMicros != 1_700_000 {
			t.Fatalf("spot rates idle %d busy %d", idle.Offer.RateMicros, busy.Offer.RateMicros)
		}
		// A node in use cannot be retired.
		rs, _ := w.sales.Reservations(ctx, w.acme, sales.ReservationFilter{Class: placement.ClassOnDemand}, neocloud.Page{})
		if _, err := w.fleet.Act(ctx, rs[0].Nodes[0].NodeID, "retire"); neocloud.ErrorKind(err) != neocloud.KindConflict {
			t.Fatalf("retiring a node in use: %v", err)
		}
	})
}

func TestTurnaroundBetweenTenants(t *testing.T) {
	w := newWorld(t, testdb.SQLite(t))
	ctx := context.Background()
	start := epoch.Add(24 * time.Hour)
	end := start.Add(24 * time.Hour)
	if _, err := w.sales.Reserve(ctx, w.acme, sales.ReserveInput{ShapeInput: reserved(256, start, 24*time.Hour, "")}); err != nil {
		t.Fatal(err)
	}
	// The same tenant may follow on at once; another only after the SKU's
	// turnaround (2 h for H100: sanitize, and burn-in when required).
	same, err := w.sales.CreateQuote(ctx, w.acme, sales.QuoteInput{ShapeInput: reserved(256, end, time.Hour, "")})
	if err != nil || !same.Offer.Available {
		t.Fatalf("same tenant right after: %+v %v", same.Offer, err)
	}
	other, err := w.sales.CreateQuote(ctx, w.beta, sales.QuoteInput{ShapeInput: reserved(256, end, time.Hour, "")})
	if err != nil || other.Offer.Available || other.Offer.EarliestStart == nil || !other.Offer.EarliestStart.Equal(end.Add(2*time.Hour)) {
		t.Fatalf("another tenant right after: %+v %v", other.Offer, err)
	}
}

// stepUntil runs the lifecycle every few simulated seconds until cond holds
// or limit passes; it returns the simulated time cond first held.
func (w *world) stepUntil(limit time.Duration, every time.Duration, cond func() bool) (time.Time, bool) {
	w.t.Helper()
	end := w.clock.Now().Add(limit)
	for {
		w.run()
		if cond() {
			return w.clock.Now(), true
		}
		if !w.clock.Now().Before(end) {
			return w.clock.Now(), false
		}
		w.clock.Add(every)
	}
}

func TestPreemptionWithNotice(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sqlstore.DB) {
		w := newWorld(t, db)
		ctx := context.Background()
		provision, sanitize := 3*time.Minute, 10*time.Minute
		w.sales.Provisioner = &sales.SimStage{Duration: provision}
		w.sales.Sanitizer = &sales.SimStage{Duration: sanitize}
		w.sales.Network = &sales.SimStage{}
		// Beta's spot work fills the site.
		var spot []string
		for i := 0; i < 4; i++ {
			r, err := w.sales.Reserve(ctx, w.beta, sales.ReserveInput{ShapeInput: sales.ShapeInput{SKU: "h100-sxm5-80gb", GPUs: 64, Class: placement.ClassSpot, Within: "su"}})
			if err != nil {
				t.Fatal(err)
			}
			spot = append(spot, r.ID)
		}
		w.advance(10 * time.Minute)
		for _, id := range spot {
			if r := w.reservation(id); r.State != sales.ReservationActive {
				t.Fatalf("spot %s: %v", id, r.State)
			}
		}

		// A reserved request now: admitted over spot, whose victims get 120 s.
		t0 := w.clock.Now()
		r, err := w.sales.Reserve(ctx, w.acme, sales.ReserveInput{ShapeInput: reserved(64, t0, 24*time.Hour, "su")})
		if err != nil {
			t.Fatalf("reserved over spot: %v", err)
		}
		var victims []string
		for _, id := range spot {
			if v := w.reservation(id); v.PreemptAt != nil {
				if !v.PreemptAt.Equal(t0.Add(120 * time.Second)) {
					t.Fatalf("victim %s deadline %v, want now + 120 s", id, v.PreemptAt)
				}
				victims = append(victims, id)
			}
		}
		if len(victims) != 1 {
			t.Fatalf("%d victims, want the one spot su the reservation took", len(victims))
		}
		evs, _ := w.sales.Events(ctx, w.beta, 0, 1000)
		last := evs[len(evs)-1]
		if last.Kind != "reservation.preempting" || last.Subject != victims[0] || strings.Contains(fmt.Sprint(last.Data), r.ID) {
			t.Fatalf("the victim's notice: %+v", last)
		}
		// Not a second early.
		w.clock.Set(t0.Add(119 * time.Second))
		w.run()
		if v := w.reservation(victims[0]); v.State != sales.ReservationActive {
			t.Fatalf("the victim was taken before its deadline: %v", v.State)
		}
		// Ready within notice + sanitize + provisioning (+ the bind retry).
		bound := t0.Add(120*time.Second + sanitize + provision + w.sales.Policy.BindRetry + 10*time.Second)
		at, ok := w.stepUntil(time.Hour, 5*time.Second, func() bool { return w.reservation(r.ID).State == sales.ReservationActive })
		if !ok || at.After(bound) {
			t.Fatalf("the reservation became active at %v (ok %v), the guarantee is %v", at, ok, bound)
		}
		if v := w.reservation(victims[0]); v.State != sales.ReservationEnded || !strings.Contains(v.Reason, "preempted") {
			t.Fatalf("the victim: %v %q", v.State, v.Reason)
		}
		for _, id := range spot {
			if id != victims[0] && w.reservation(id).State != sales.ReservationActive {
				t.Fatalf("spot %s outside the reservation's nodes was disturbed", id)
			}
		}
		// On-demand and committed work is never a victim.
		od, err := w.sales.Reserve(ctx, w.beta, sales.ReserveInput{ShapeInput: sales.ShapeInput{SKU: "h100-sxm5-80gb", GPUs: 8, Class: placement.ClassOnDemand}})
		if err == nil {
			if _, err := w.sales.Reserve(ctx, w.acme, sales.ReserveInput{ShapeInput: reserved(256, w.clock.Now(), time.Hour, "")}); neocloud.ErrorKind(err) != neocloud.KindNoCapacity {
				t.Fatalf("a whole-site request over on-demand work: %v", err)
			}
			if w.reservation(od.ID).PreemptAt != nil {
				t.Fatal("on-demand work got a preemption notice")
			}
		}
	})
}

func TestFutureCommitmentNotifiesEarly(t *testing.T) {
	w := newWorld(t, testdb.SQLite(t))
	ctx := context.Background()
	w.sales.Sanitizer = &sales.SimStage{Duration: 20 * time.Minute}
	spot, err := w.sales.Reserve(ctx, w.beta, sales.ReserveInput{ShapeInput: sales.ShapeInput{SKU: "h100-sxm5-80gb", GPUs: 256, Class: placement.ClassSpot}})
	if err != nil {
		t.Fatal(err)
	}
	w.run()
	start := w.clock.Now().Add(6 * time.Hour)
	r, err := w.sales.Reserve(ctx, w.acme, sales.ReserveInput{ShapeInput: reserved(64, start, 24*time.Hour, "")})
	if err != nil {
		t.Fatal(err)
	}
	// Told now; off by the start less the turnaround (2 h), not sooner.
	v := w.reservation(spot.ID)
	if v.PreemptAt == nil || !v.PreemptAt.Equal(start.Add(-2*time.Hour)) {
		t.Fatalf("deadline %v, want %v", v.PreemptAt, start.Add(-2*time.Hour))
	}
	if got := strings.Join(w.events(w.beta), " "); !strings.Contains(got, "reservation.preempting") {
		t.Fatalf("beta was not told at once: %s", got)
	}
	w.advance(4*time.Hour - time.Minute)
	if v := w.reservation(spot.ID); v.State != sales.ReservationActive {
		t.Fatalf("spot stopped before its deadline: %v", v.State)
	}
	w.advance(2*time.Hour + time.Minute)
	if r = w.reservation(r.ID); r.State != sales.ReservationActive {
		t.Fatalf("the commitment at its start: %v %q %v", r.State, r.Reason, w.allocStates(r.ID))
	}
	if v := w.reservation(spot.ID); v.State != sales.ReservationEnded {
		t.Fatalf("the spot work: %v", v.State)
	}
}

func TestPhasedLeaseDisplacesSpotWithNotice(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sqlstore.DB) {
		w := newWorld(t, db)
		ctx := context.Background()
		w.sales.Provisioner = &sales.SimStage{Duration: 5 * time.Minute}
		w.sales.Sanitizer = &sales.SimStage{Duration: 30 * time.Minute}
		// Beta's spot work fills the hall.
		var spot []string
		for i := 0; i < 4; i++ {
			r, err := w.sales.Reserve(ctx, w.beta, sales.ReserveInput{ShapeInput: sales.ShapeInput{SKU: "h100-sxm5-80gb", GPUs: 64, Class: placement.ClassSpot, Within: "su"}})
			if err != nil {
				t.Fatal(err)
			}
			spot = append(spot, r.ID)
		}
		w.advance(10 * time.Minute)
		// A committed reservation in the window is named as a conflict.
		blocker, err := w.sales.Reserve(ctx, w.beta, sales.ReserveInput{ShapeInput: reserved(8, epoch.Add(30*24*time.Hour), time.Hour, "")})
		if err != nil {
			t.Fatal(err)
		}
		start := w.clock.Now().Add(24 * time.Hour)
		in := sales.LeaseInput{Tenant: "acme", Site: "colossus-1", Domain: "h1", Start: start, DurationS: 3 * 365 * 86400, Rate: "1.85", PhaseGPUs: 96, PhaseEveryS: 7 * 86400}
		if _, err := w.sales.CreateLease(ctx, w.op, in); neocloud.ErrorKind(err) != neocloud.KindNoCapacity || !strings.Contains(err.Error(), blocker.ID) {
			t.Fatalf("a lease over committed work: %v", err)
		}
		if _, err := w.sales.Cancel(ctx, w.beta, blocker.ID); err != nil {
			t.Fatal(err)
		}
		bad := in
		bad.Replacements = -1
		if _, err := w.sales.CreateLease(ctx, w.op, bad); neocloud.ErrorKind(err) != neocloud.KindInvalid || !strings.Contains(err.Error(), "replacements_per_month") {
			t.Fatalf("a negative allowance: %v", err)
		}
		in.Replacements = 12
		c, err := w.sales.CreateLease(ctx, w.op, in)
		if err != nil {
			t.Fatal(err)
		}
		if c.Terms.SLA.ReplacementsPerMonth != 12 {
			t.Fatalf("replacements a month: %d", c.Terms.SLA.ReplacementsPerMonth)
		}
		if c.Kind != placement.ClassLease || c.Delivery.ContractedGPUs != 256 || len(c.Delivery.Phases) != 3 || c.Delivery.ReadyGPUs != 0 {
			t.Fatalf("lease: %+v %+v", c.Contract, c.Delivery)
		}
		// 1.85 × 256 GPUs × 3 × 8760 h, take-or-pay, less the weeks before
		// the second (96 GPUs × 7 d) and third (64 GPUs × 14 d) phases.
		if c.Terms.CommitmentMicros != 1_850_000*(256*3*8760-96*7*24-64*14*24) || c.Delivery.RemainingMicros != c.Terms.CommitmentMicros {
			t.Fatalf("commitment %d remaining %d", c.Terms.CommitmentMicros, c.Delivery.RemainingMicros)
		}
		for i, want := range []int{96, 96, 64} {
			if ph := c.Delivery.Phases[i]; ph.GPUs != want || !ph.Start.Equal(start.Add(time.Duration(i)*7*24*time.Hour)) {
				t.Fatalf("phase %d: %+v", i+1, ph)
			}
		}
		// Every spot reservation on leased nodes is told at once, with the
		// deadline of the first phase that needs its nodes.
		deadlines := map[string]time.Time{}
		for _, id := range spot {
			v := w.reservation(id)
			if v.PreemptAt == nil {
				t.Fatalf("spot %s on the leased hall got no notice", id)
			}
			deadlines[id] = *v.PreemptAt
		}
		// Phase by phase: ready at its start; spot for later phases runs on
		// until its own deadline.
		for i, ph := range c.Delivery.Phases {
			w.clock.Set(ph.Start.Add(-2*time.Hour - time.Minute))
			w.run()
			for id, dl := range deadlines {
				v := w.reservation(id)
				if dl.After(w.clock.Now()) && v.State != sales.ReservationActive {
					t.Fatalf("phase %d: spot %s stopped before its deadline %v", i+1, id, dl)
				}
			}
			w.advance(2*time.Hour + 2*time.Minute)
			if r := w.reservation(ph.Reservation); r.State != sales.ReservationActive {
				t.Fatalf("phase %d at its start: %v %q %v", i+1, r.State, r.Reason, w.allocStates(r.ID))
			}
			v, err := w.sales.ContractView(ctx, w.acme, c.ID)
			if err != nil {
				t.Fatal(err)
			}
			if want := []int{96, 192, 256}[i]; v.Delivery.ReadyGPUs != want {
				t.Fatalf("after phase %d: %d GPUs ready, want %d", i+1, v.Delivery.ReadyGPUs, want)
			}
			if v.Delivery.RemainingMicros >= c.Terms.CommitmentMicros {
				t.Fatal("the remaining commitment does not go down")
			}
		}
		for _, id := range spot {
			if v := w.reservation(id); v.State != sales.ReservationEnded || !strings.Contains(v.Reason, "preempted") {
				t.Fatalf("spot %s: %v %q", id, v.State, v.Reason)
			}
		}
		// The tenant sees its contract; another does not.
		if _, err := w.sales.ContractView(ctx, w.beta, c.ID); neocloud.ErrorKind(err) != neocloud.KindNotFound {
			t.Fatalf("beta sees acme's lease: %v", err)
		}
	})
}

func TestElasticInternalGrowsShrinksAndReports(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sqlstore.DB) {
		w := newWorld(t, db)
		ctx := context.Background()
		w.sales.Sanitizer = &sales.SimStage{Duration: 10 * time.Minute}
		train, err := w.tenants.Create(ctx, tenant.CreateInput{Name: "train", Internal: true})
		if err != nil {
			t.Fatal(err)
		}
		t0 := w.clock.Now()
		elastic := &sales.ElasticInput{MinGPUs: 64, MaxGPUs: 256, StepGPUs: 64, StepWithin: "su", CheckpointS: 1800}
		// Only the internal tenant runs internal work.
		if _, err := w.sales.Reserve(ctx, w.op, sales.ReserveInput{ShapeInput: sales.ShapeInput{Tenant: "acme", SKU: "h100-sxm5-80gb", Class: placement.ClassInternal, Elastic: elastic}}); neocloud.ErrorKind(err) != neocloud.KindInvalid {
			t.Fatalf("internal work for a customer: %v", err)
		}
		r, err := w.sales.Reserve(ctx, w.op, sales.ReserveInput{ShapeInput: sales.ShapeInput{Tenant: "train", SKU: "h100-sxm5-80gb", Class: placement.ClassInternal, Elastic: elastic}})
		if err != nil {
			t.Fatal(err)
		}
		// It grows into the idle site.
		w.advance(5 * time.Minute)
		if r = w.reservation(r.ID); r.State != sales.ReservationActive || r.Shape.GPUs != 256 || len(r.Elastic.Steps) != 4 {
			t.Fatalf("grown: %v %d GPUs %d steps %q", r.State, r.Shape.GPUs, len(r.Elastic.Steps), r.Reason)
		}
		// Committed work takes a su: one step is given back after the
		// internal notice (30 s), the rest runs on.
		w.advance(44 * time.Minute) // the steps started 1 min in; 49 min in now
		a1, err := w.sales.Reserve(ctx, w.acme, sales.ReserveInput{ShapeInput: reserved(64, w.clock.Now(), 24*time.Hour, "su")})
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(w.events(neocloud.Principal{Role: neocloud.RoleTenantAdmin, TenantID: train.ID}), " "); !strings.Contains(got, "reservation.shrinking") {
			t.Fatalf("no shrink notice: %s", got)
		}
		w.clock.Add(30 * time.Second)
		w.run()
		if r = w.reservation(r.ID); r.Shape.GPUs != 192 || r.Elastic.Reclaims != 1 || r.State != sales.ReservationActive {
			t.Fatalf("after one reclaim: %d GPUs, %d reclaims, %v", r.Shape.GPUs, r.Elastic.Reclaims, r.State)
		}
		// Reclaimed 49.5 min in, 48.5 min after the step started: 18.5 min
		// after its last checkpoint (every 30 min).
		if lost := r.Elastic.LostGPUh; math.Abs(lost-64*18.5/60) > 0.01 {
			t.Fatalf("lost %.2f GPU-hours, want 64 GPUs × 18.5 min", lost)
		}
		// Down to its minimum, then evicted whole.
		if _, err := w.sales.Reserve(ctx, w.acme, sales.ReserveInput{ShapeInput: reserved(128, w.clock.Now(), 24*time.Hour, "pod")}); err != nil {
			t.Fatal(err)
		}
		w.advance(time.Minute)
		if r = w.reservation(r.ID); r.Shape.GPUs != 64 || r.State != sales.ReservationActive {
			t.Fatalf("at its minimum: %d GPUs %v", r.Shape.GPUs, r.State)
		}
		if _, err := w.sales.Reserve(ctx, w.beta, sales.ReserveInput{ShapeInput: reserved(64, w.clock.Now(), time.Hour, "su")}); err != nil {
			t.Fatal(err)
		}
		w.advance(time.Minute)
		if r = w.reservation(r.ID); r.State != sales.ReservationEnding && r.State != sales.ReservationEnded {
			t.Fatalf("below its minimum it is evicted: %v %d GPUs", r.State, r.Shape.GPUs)
		}
		// A new request queues while nothing is idle, and grows once acme's
		// first reservation is given back (after sanitize).
		q, err := w.sales.Reserve(ctx, w.op, sales.ReserveInput{ShapeInput: sales.ShapeInput{Tenant: train.ID, SKU: "h100-sxm5-80gb", Class: placement.ClassInternal, Elastic: elastic}})
		if err != nil {
			t.Fatal(err)
		}
		w.advance(2 * time.Minute)
		if q = w.reservation(q.ID); q.State != sales.ReservationScheduled || !strings.Contains(q.Reason, "queued") {
			t.Fatalf("with nothing idle: %v %q", q.State, q.Reason)
		}
		if _, err := w.sales.Cancel(ctx, w.acme, a1.ID); err != nil {
			t.Fatal(err)
		}
		w.advance(20 * time.Minute)
		if q = w.reservation(q.ID); q.State != sales.ReservationActive || q.Shape.GPUs != 64 {
			t.Fatalf("after capacity came back: %v %d GPUs %q", q.State, q.Shape.GPUs, q.Reason)
		}
		// The hybrid report.
		rep, err := w.sales.Internal(ctx, t0, w.clock.Now(), []string{train.ID})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Reclaims != 4 || rep.Shrinks != 3 || rep.Evictions != 1 || rep.UsedGPUh < 256*0.8 || rep.LostGPUh <= 0 || rep.RunningNow != 64 {
			t.Fatalf("report: %+v", rep)
		}
	})
}

// A node of elastic internal work fails: the step that held it is given
// back whole (not replaced node by node), the rest runs on, and the job
// grows again into idle capacity.
func TestElasticStepGivenBackWhenANodeFails(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sqlstore.DB) {
		w := newWorld(t, db)
		ctx := context.Background()
		if _, err := w.tenants.Create(ctx, tenant.CreateInput{Name: "train", Internal: true}); err != nil {
			t.Fatal(err)
		}
		elastic := &sales.ElasticInput{MinGPUs: 64, MaxGPUs: 128, StepGPUs: 64, StepWithin: "su", CheckpointS: 1800}
		r, err := w.sales.Reserve(ctx, w.op, sales.ReserveInput{ShapeInput: sales.ShapeInput{Tenant: "train", SKU: "h100-sxm5-80gb", Class: placement.ClassInternal, Elastic: elastic}})
		if err != nil {
			t.Fatal(err)
		}
		w.advance(5 * time.Minute)
		if r = w.reservation(r.ID); len(r.Elastic.Steps) != 2 {
			t.Fatalf("grown: %d steps", len(r.Elastic.Steps))
		}
		failed := r.Elastic.Steps[0].Nodes[0]
		others := r.Elastic.Steps[0].Nodes[1:]
		kept := r.Elastic.Steps[1].ID
		n, err := w.sales.NodeFailed(ctx, failed, "gpu 3: XID 79", false)
		if err != nil || n != 1 {
			t.Fatalf("NodeFailed: %d %v", n, err)
		}
		r = w.reservation(r.ID)
		if len(r.Elastic.Steps) != 1 || r.Elastic.Steps[0].ID != kept || r.Shape.GPUs != 64 {
			t.Fatalf("after the failure: %d GPUs, steps %+v", r.Shape.GPUs, r.Elastic.Steps)
		}
		for _, nd := range r.Nodes {
			if nd.NodeID == failed {
				t.Fatalf("the failed node is still the reservation's")
			}
		}
		got := strings.Join(w.events(w.op), " ")
		if !strings.Contains(got, "reservation.shrunk") || strings.Contains(got, "node.replaced") {
			t.Fatalf("events: %s", got)
		}
		// The step's other nodes are released through sanitize (invariant
		// 6); the failed node's allocation ends at once, for repair.
		as, err := w.sales.Allocations(ctx, w.op, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		states := map[string]sales.AllocationState{}
		for _, a := range as {
			if a.State != sales.AllocationEnded || states[a.NodeID] == "" {
				states[a.NodeID] = a.State
			}
		}
		if states[failed] != sales.AllocationEnded {
			t.Errorf("the failed node's allocation: %s", states[failed])
		}
		for _, n := range others {
			if states[n] != sales.AllocationReleasing {
				t.Errorf("node %s of the given-back step: %s, want releasing (sanitize)", n, states[n])
			}
		}
		// It grows back, elsewhere.
		w.advance(30 * time.Minute)
		if r = w.reservation(r.ID); r.Shape.GPUs != 128 {
			t.Fatalf("regrown: %d GPUs", r.Shape.GPUs)
		}
		for _, nd := range r.Nodes {
			if nd.NodeID == failed {
				t.Fatalf("grew back onto the failed node")
			}
		}
	})
}

func TestMaintenanceRollsThroughALease(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sqlstore.DB) {
		w := newWorld(t, db)
		ctx := context.Background()
		rack := "h1/p1/su1/r1"
		lease, err := w.sales.CreateLease(ctx, w.op, sales.LeaseInput{Tenant: "acme", Site: "colossus-1", Domain: rack, Start: epoch.Add(24 * time.Hour), DurationS: 60 * 86400, Rate: "1.85"})
		if err != nil {
			t.Fatal(err)
		}
		ph := lease.Delivery.Phases[0].Reservation
		// A lease promises 14 days of notice.
		if _, err := w.sales.CreateMaintenance(ctx, w.op, sales.MaintenanceInput{Site: "colossus-1", Domain: rack, Start: epoch.Add(2 * 24 * time.Hour), DurationS: 4 * 3600, Reason: "firmware"}); neocloud.ErrorKind(err) != neocloud.KindConflict || !strings.Contains(err.Error(), ph) {
			t.Fatalf("maintenance inside the notice: %v", err)
		}
		// Beta's future reservation on one of those nodes moves around it.
		fut, err := w.sales.Reserve(ctx, w.beta, sales.ReserveInput{ShapeInput: reserved(8, epoch.Add(20*24*time.Hour), 24*time.Hour, "")})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.sales.CreateMaintenance(ctx, w.op, sales.MaintenanceInput{Site: "colossus-1", Nodes: []string{fut.Nodes[0].NodeID}, Start: epoch.Add(19 * 24 * time.Hour), DurationS: 3 * 86400, Reason: "psu swap"}); err != nil {
			t.Fatal(err)
		}
		if moved := w.reservation(fut.ID); moved.Nodes[0].NodeID == fut.Nodes[0].NodeID {
			t.Fatal("the future reservation was not moved around the maintenance")
		}
		start := epoch.Add(15 * 24 * time.Hour)
		m, err := w.sales.CreateMaintenance(ctx, w.op, sales.MaintenanceInput{Site: "colossus-1", Domain: rack, Start: start, DurationS: 4 * 3600, Reason: "firmware"})
		if err != nil {
			t.Fatal(err)
		}
		// One node out at a time: four batches, one after another.
		if len(m.Batches) != 4 || len(m.Touched) != 1 || m.Touched[0] != ph {
			t.Fatalf("maintenance: %d batches, touched %v", len(m.Batches), m.Touched)
		}
		for i, b := range m.Batches {
			if len(b.Nodes) != 1 || !b.Start.Equal(start.Add(time.Duration(i)*4*time.Hour)) {
				t.Fatalf("batch %d: %+v", i, b)
			}
		}
		if got := strings.Join(w.events(w.acme), " "); !strings.Contains(got, "maintenance.scheduled") {
			t.Fatalf("acme was not told: %s", got)
		}
		// The lease runs; the maintenance rolls through it.
		w.clock.Set(start.Add(-time.Hour))
		w.run()
		if st := w.allocStates(ph); st[sales.AllocationReady] != 4 {
			t.Fatalf("before the maintenance: %v", st)
		}
		for i := range m.Batches {
			w.clock.Set(start.Add(time.Duration(i)*4*time.Hour + 30*time.Minute))
			w.run()
			if st := w.allocStates(ph); st[sales.AllocationReady] != 3 {
				t.Fatalf("during batch %d: %v", i+1, st)
			}
		}
		w.clock.Set(start.Add(16*time.Hour + time.Minute))
		w.run()
		w.advance(30 * time.Minute)
		if st := w.allocStates(ph); st[sales.AllocationReady] != 4 {
			t.Fatalf("after the maintenance: %v", st)
		}
		if m, _ = w.db.Maintenance(ctx, m.ID); m.State != "done" {
			t.Fatalf("maintenance %s", m.State)
		}
		got := strings.Join(w.events(w.acme), " ")
		if strings.Count(got, "maintenance.started") != 4 || strings.Count(got, "maintenance.ended") != 4 {
			t.Fatalf("acme's events: %s", got)
		}
	})
}

func TestMaintenanceReplacesFromSpares(t *testing.T) {
	// One spare per rack.
	w := newWorldWith(t, testdb.SQLite(t), func(o *fleet.GenerateOptions) { o.SpareLevel, o.Spares = "rack", 1 })
	ctx := context.Background()
	r, err := w.sales.Reserve(ctx, w.acme, sales.ReserveInput{ShapeInput: sales.ShapeInput{SKU: "h100-sxm5-80gb", GPUs: 24, Class: placement.ClassOnDemand, Within: "rack"}})
	if err != nil {
		t.Fatal(err)
	}
	w.run()
	node := r.Nodes[0]
	start := w.clock.Now().Add(8 * 24 * time.Hour)
	if _, err := w.sales.CreateMaintenance(ctx, w.op, sales.MaintenanceInput{Site: "colossus-1", Nodes: []string{node.NodeID}, Start: start, DurationS: 4 * 3600, Reason: "bios"}); err != nil {
		t.Fatal(err)
	}
	w.clock.Set(start)
	w.run()
	w.advance(10 * time.Minute)
	r = w.reservation(r.ID)
	if r.State != sales.ReservationActive || len(r.Nodes) != 3 || holds(r, node.NodeID) {
		t.Fatalf("during maintenance: %v, nodes %+v", r.State, r.Nodes)
	}
	spare := r.Nodes[len(r.Nodes)-1]
	for _, n := range r.Nodes {
		if rackOf(n.Domain) != rackOf(node.Domain) {
			t.Fatalf("replacement %s left the rack %s", n.Domain, rackOf(node.Domain))
		}
	}
	if fn, _ := w.fleet.Snapshot.Node(spare.NodeID); !fn.Spare && !anySpare(w, r) {
		t.Fatalf("no spare took the node's place: %+v", r.Nodes)
	}
	if st := w.allocStates(r.ID); st[sales.AllocationReady] != 3 {
		t.Fatalf("allocations: %v", st)
	}
	if got := strings.Join(w.events(w.acme), " "); !strings.Contains(got, "node.replaced") {
		t.Fatalf("events: %s", got)
	}
}

func anySpare(w *world, r sales.Reservation) bool {
	for _, n := range r.Nodes {
		if fn, _ := w.fleet.Snapshot.Node(n.NodeID); fn.Spare {
			return true
		}
	}
	return false
}

func holds(r sales.Reservation, node string) bool {
	for _, n := range r.Nodes {
		if n.NodeID == node {
			return true
		}
	}
	return false
}

func TestSitePolicySetsTheNotice(t *testing.T) {
	w := newWorld(t, testdb.SQLite(t))
	ctx := context.Background()
	// The site declares ten minutes of notice for spot work.
	sku, _ := fleet.CatalogSKU("h100-sxm5-80gb")
	var b bytes.Buffer
	o := fleet.ColossusOptions(sku, 256)
	o.Fanout = []int{2, 2, 2, 4}
	fleet.Generate(&b, o)
	text := strings.Replace(b.String(), "site:\n", "site:\n  policy:\n    spot_notice_s: 600\n", 1)
	spec, err := fleet.ParseSpec([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if res, err := w.fleet.Apply(ctx, spec); err != nil || !res.SiteChanged {
		t.Fatalf("apply the policy: %+v %v", res, err)
	}
	spot, err := w.sales.Reserve(ctx, w.beta, sales.ReserveInput{ShapeInput: sales.ShapeInput{SKU: "h100-sxm5-80gb", GPUs: 256, Class: placement.ClassSpot}})
	if err != nil {
		t.Fatal(err)
	}
	w.run()
	now := w.clock.Now()
	if _, err := w.sales.Reserve(ctx, w.acme, sales.ReserveInput{ShapeInput: sales.ShapeInput{SKU: "h100-sxm5-80gb", GPUs: 8, Class: placement.ClassOnDemand}}); err != nil {
		t.Fatal(err)
	}
	if v := w.reservation(spot.ID); v.PreemptAt == nil || !v.PreemptAt.Equal(now.Add(10*time.Minute)) {
		t.Fatalf("deadline %v, want the site's 10 minutes", v.PreemptAt)
	}
	// A negative notice is refused with the field.
	if _, err := fleet.ParseSpec([]byte(strings.Replace(text, "spot_notice_s: 600", "spot_notice_s: -1", 1))); err == nil || !strings.Contains(err.Error(), "site.policy") {
		t.Fatalf("negative notice: %v", err)
	}
}

func TestLeaseDisplacesInternalWorkWithNotice(t *testing.T) {
	w := newWorld(t, testdb.SQLite(t))
	ctx := context.Background()
	if _, err := w.tenants.Create(ctx, tenant.CreateInput{Name: "train", Internal: true}); err != nil {
		t.Fatal(err)
	}
	r, err := w.sales.Reserve(ctx, w.op, sales.ReserveInput{ShapeInput: sales.ShapeInput{Tenant: "train", SKU: "h100-sxm5-80gb", Class: placement.ClassInternal,
		Elastic: &sales.ElasticInput{MinGPUs: 64, MaxGPUs: 256, StepGPUs: 64, StepWithin: "su", CheckpointS: 3600}}})
	if err != nil {
		t.Fatal(err)
	}
	w.advance(5 * time.Minute)
	if r = w.reservation(r.ID); r.Shape.GPUs != 256 {
		t.Fatalf("internal work did not fill the idle site: %d GPUs", r.Shape.GPUs)
	}
	// A two-phase lease of one rack from three hours on: the internal step
	// holding that rack's su is told now and given back by the first
	// phase's start less the turnaround.
	start := w.clock.Now().Add(3 * time.Hour)
	c, err := w.sales.CreateLease(ctx, w.op, sales.LeaseInput{Tenant: "acme", Site: "colossus-1", Domain: "h1/p1/su1/r1", Start: start, DurationS: 30 * 86400, Rate: "1.85", PhaseGPUs: 16, PhaseEveryS: 3600})
	if err != nil {
		t.Fatal(err)
	}
	r = w.reservation(r.ID)
	var reclaimAt *time.Time
	for _, st := range r.Elastic.Steps {
		if st.ReclaimAt != nil {
			reclaimAt = st.ReclaimAt
		}
	}
	if reclaimAt == nil || !reclaimAt.Equal(start.Add(-2*time.Hour)) {
		t.Fatalf("the step's reclaim deadline %v, want the first phase's start less turnaround %v", reclaimAt, start.Add(-2*time.Hour))
	}
	w.advance(time.Hour - 2*time.Minute)
	if r = w.reservation(r.ID); r.Shape.GPUs != 256 {
		t.Fatalf("given back before its deadline: %d GPUs", r.Shape.GPUs)
	}
	w.advance(2*time.Hour + 5*time.Minute)
	if r = w.reservation(r.ID); r.Shape.GPUs != 192 || r.State != sales.ReservationActive {
		t.Fatalf("after the deadline: %d GPUs %v", r.Shape.GPUs, r.State)
	}
	v, _ := w.sales.ContractView(ctx, w.acme, c.ID)
	if v.Delivery.ReadyGPUs != 16 {
		t.Fatalf("first phase: %d GPUs ready", v.Delivery.ReadyGPUs)
	}
	w.advance(time.Hour)
	if v, _ = w.sales.ContractView(ctx, w.acme, c.ID); v.Delivery.ReadyGPUs != 32 {
		t.Fatalf("second phase: %d GPUs ready", v.Delivery.ReadyGPUs)
	}
}

// A copy of a reservation can be changed the ways the sales code changes
// reservations without changing the original.
func TestReservationCloneIsIndependent(t *testing.T) {
	at := epoch
	orig := sales.Reservation{ID: "rsv_1", Nodes: make([]sales.NodeGPUs, 2, 8), Shortfalls: []sales.Shortfall{{Node: "n1"}},
		Elastic: &sales.Elastic{Steps: []sales.Step{{ID: "rsv_1/s0", Nodes: []string{"n1"}}}}}
	c := sales.CloneReservation(orig)
	c.Nodes = append(c.Nodes, sales.NodeGPUs{NodeID: "n3"})
	c.Shortfalls[0].Until = &at
	c.Elastic.Steps[0].ReclaimAt = &at
	c.Elastic.LostGPUh = 5
	c.Elastic.Steps = append(c.Elastic.Steps, sales.Step{ID: "rsv_1/s1"})
	if orig.Shortfalls[0].Until != nil || orig.Elastic.Steps[0].ReclaimAt != nil || orig.Elastic.LostGPUh != 0 || len(orig.Elastic.Steps) != 1 || orig.Nodes[:3][2].NodeID != "" {
		t.Fatalf("the original changed: %+v %+v", orig.Shortfalls, orig.Elastic)
	}
}
