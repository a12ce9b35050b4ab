package sales_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/internal/testdb"
	"github.com/neocloud/neocloud/placement"
	"github.com/neocloud/neocloud/sales"
	"github.com/neocloud/neocloud/tenant"
)

// TestRandomSequences runs random sequences of quotes (with and without
// holds), reservations from quotes and direct, extensions, cancellations,
// quota changes and clock jumps (expiring quotes, binding, provisioning,
// ending), and after every step checks: no GPU in two live allocations; no
// GPU held by two reservations or holds over overlapping windows (with the
// turnaround between tenants); open holds within the cap; every tenant
// within its quota at every instant; reservation states moving only as the
// state machine allows. NEOCLOUD_SEED=n replays one seed.
func TestRandomSequences(t *testing.T) {
	seeds := []uint64{1, 2, 3}
	if s := os.Getenv("NEOCLOUD_SEED"); s != "" {
		n, _ := strconv.ParseUint(s, 10, 64)
		seeds = []uint64{n}
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			w := newWorld(t, testdb.SQLite(t))
			w.sales.Policy.MaxHolds = 2
			w.sales.Provisioner = &sales.SimStage{Duration: 5 * time.Minute, Jitter: 5 * time.Minute, FailRate: 0.05, Seed: seed}
			w.sales.Sanitizer = &sales.SimStage{Duration: 20 * time.Minute}
			rng := rand.New(rand.NewPCG(seed, 11))
			ctx := context.Background()
			tenants := []neocloud.Principal{w.acme, w.beta}
			// Quotas are set first and only ever raised, so that every claim
			// is made under the quota in force.
			quotas := map[string]int64{} // tenant/class → GPUs
			setQuota := func(p neocloud.Principal, class placement.Class, gpus int64) {
				q, err := w.sales.SetQuota(ctx, w.op, p.TenantID, "h100-sxm5-80gb", class, gpus)
				if err != nil {
					t.Fatal(err)
				}
				quotas[p.TenantID+"/"+string(class)] = q.GPUs
			}
			for _, p := range tenants {
				for _, class := range []placement.Class{placement.ClassReserved, placement.ClassOnDemand} {
					setQuota(p, class, int64(8*(4+rng.IntN(12))))
				}
			}
			var quotes []sales.Quote
			var rsvs []string
			fromQuotes, leases := 0, 0
			states := map[string]sales.ReservationState{}
			fail := func(step int, format string, args ...any) {
				t.Helper()
				t.Fatalf("seed %d step %d: %s (replay with NEOCLOUD_SEED=%d)", seed, step, fmt.Sprintf(format, args...), seed)
			}
			shape := func() sales.ShapeInput {
				classes := []placement.Class{placement.ClassReserved, placement.ClassReserved, placement.ClassOnDemand, placement.ClassSpot}
				c := classes[rng.IntN(len(classes))]
				in := sales.ShapeInput{SKU: "h100-sxm5-80gb", Class: c, GPUs: 8 * (1 + rng.IntN(6))}
				if rng.IntN(5) == 0 {
					in.GPUs = []int{1, 2, 4}[rng.IntN(3)]
				} else {
					in.Within = []string{"", "rack", "su", "pod"}[rng.IntN(4)]
				}
				if c == placement.ClassReserved {
					st := w.clock.Now().Add(time.Duration(rng.IntN(72)) * time.Hour)
					in.Start, in.DurationS = &st, int64(1+rng.IntN(48))*3600
				}
				return in
			}
			train, err := w.tenants.Create(ctx, tenant.CreateInput{Name: "train", Internal: true})
			if err != nil {
				t.Fatal(err)
			}
			racks := []string{"h1/p1/su1/r1", "h1/p1/su2/r2", "h1/p2/su1/r2", "h1/p2/su2/r1"}
			start := w.clock.Now()
			for step := 0; step < 150; step++ {
				p := tenants[rng.IntN(2)]
				switch op := rng.IntN(12); {
				case op == 10:
					// Elastic internal work, growing into what is idle.
					r, err := w.sales.Reserve(ctx, w.op, sales.ReserveInput{ShapeInput: sales.ShapeInput{Tenant: train.ID, SKU: "h100-sxm5-80gb", Class: placement.ClassInternal,
						Elastic: &sales.ElasticInput{MinGPUs: 32, MaxGPUs: 32 * (1 + rng.IntN(4)), StepGPUs: 32, StepWithin: "rack", CheckpointS: 1800}}})
					if err != nil {
						fail(step, "elastic: %v", err)
					}
					rsvs = append(rsvs, r.ID)
				case op == 11:
					// A lease of one rack, in two phases.
					st := w.clock.Now().Add(time.Duration(rng.IntN(48)) * time.Hour)
					_, err := w.sales.CreateLease(ctx, w.op, sales.LeaseInput{Tenant: p.TenantID, Site: "colossus-1", Domain: racks[rng.IntN(len(racks))], Start: st,
						DurationS: int64(24+rng.IntN(96)) * 3600, Rate: "1.85", PhaseGPUs: 16, PhaseEveryS: int64(1+rng.IntN(12)) * 3600})
					if k := neocloud.ErrorKind(err); k != "" && k != neocloud.KindNoCapacity && k != neocloud.KindInvalid {
						fail(step, "lease: %v", err)
					} else if k == "" {
						leases++
					}
				case op < 2:
					q, err := w.sales.CreateQuote(ctx, p, sales.QuoteInput{ShapeInput: shape(), Hold: rng.IntN(2) == 0})
					if err == nil {
						quotes = append(quotes, q)
					} else if k := neocloud.ErrorKind(err); k != neocloud.KindConflict && k != neocloud.KindInvalid {
						fail(step, "quote: %v", err)
					}
				case op < 4 && len(quotes) > 0:
					// Mostly the latest quote, by its own tenant.
					q := quotes[len(quotes)-1]
					if rng.IntN(10) < 3 {
						q = quotes[rng.IntN(len(quotes))]
					}
					who := w.acme
					if q.TenantID == w.beta.TenantID {
						who = w.beta
					}
					if rng.IntN(10) == 0 {
						who = tenants[rng.IntN(2)]
					}
					r, err := w.sales.Reserve(ctx, who, sales.ReserveInput{Quote: q.ID})
					if err == nil {
						rsvs = append(rsvs, r.ID)
						fromQuotes++
					} else if k := neocloud.ErrorKind(err); k == neocloud.KindInternal {
						fail(step, "reserve from quote: %v", err)
					}
				case op < 6:
					r, err := w.sales.Reserve(ctx, p, sales.ReserveInput{ShapeInput: shape()})
					if err == nil {
						rsvs = append(rsvs, r.ID)
					} else if k := neocloud.ErrorKind(err); k == neocloud.KindInternal {
						fail(step, "reserve: %v", err)
					}
				case op == 6 && len(rsvs) > 0:
					r := w.reservation(rsvs[rng.IntN(len(rsvs))])
					if r.Shape.End != nil {
						_, err := w.sales.Extend(ctx, p, r.ID, r.Shape.End.Add(time.Duration(1+rng.IntN(24))*time.Hour))
						if neocloud.ErrorKind(err) == neocloud.KindInternal {
							fail(step, "extend: %v", err)
						}
					}
				case op == 7 && len(rsvs) > 0:
					_, err := w.sales.Cancel(ctx, p, rsvs[rng.IntN(len(rsvs))])
					if neocloud.ErrorKind(err) == neocloud.KindInternal {
						fail(step, "cancel: %v", err)
					}
				case op == 8:
					class := []placement.Class{placement.ClassReserved, placement.ClassOnDemand}[rng.IntN(2)]
					setQuota(p, class, quotas[p.TenantID+"/"+string(class)]+int64(8*(1+rng.IntN(4))))
				default:
					// Up to half a day, in steps of five minutes: a run
					// covers a week or so of simulated time.
					w.advanceBy(time.Duration(rng.IntN(12*60))*time.Minute, 5*time.Minute)
				}
				check(t, w, step, seed, quotas, states)
			}
			if len(rsvs) < 10 || fromQuotes == 0 {
				t.Fatalf("seed %d: only %d reservations (%d from quotes): the sequence did not exercise selling", seed, len(rsvs), fromQuotes)
			}
			t.Logf("seed %d: %d reservations, %d from quotes, %d quotes, %d leases over %v of simulated time", seed, len(rsvs), fromQuotes, len(quotes), leases, w.clock.Now().Sub(start))
		})
	}
}

func check(t *testing.T, w *world, step int, seed uint64, quotas map[string]int64, states map[string]sales.ReservationState) {
	t.Helper()
	ctx := context.Background()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("seed %d step %d: %s (replay with NEOCLOUD_SEED=%d)", seed, step, fmt.Sprintf(format, args...), seed)
	}
	now := w.clock.Now()
	rs, err := w.sales.Reservations(ctx, w.op, sales.ReservationFilter{}, neocloud.Page{Limit: 1000})
	if err != nil {
		fail("%v", err)
	}
	qs, err := w.sales.Quotes(ctx, w.op, "", neocloud.Page{Limit: 1000})
	if err != nil {
		fail("%v", err)
	}
	type claim struct {
		id, tenant, class string
		gpus              int
		start, end        time.Time
		nodes             []sales.NodeGPUs
		preemptible       bool
	}
	var claims []claim
	forever := time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
	live := map[string]string{}
	for _, r := range rs {
		// State moves are legal.
		if old, ok := states[r.ID]; ok && old != r.State {
			if err := legal(old, r.State); err != nil {
				fail("reservation %s: %v", r.ID, err)
			}
		}
		states[r.ID] = r.State
		if r.PreemptAt != nil && !r.Shape.Class.Preemptible() {
			fail("%s work %s was given a preemption notice", r.Shape.Class, r.ID)
		}
		as, err := w.sales.Allocations(ctx, w.op, r.ID)
		if err != nil {
			fail("%v", err)
		}
		for _, a := range as {
			if a.State == sales.AllocationEnded {
				continue
			}
			for _, g := range a.GPUs {
				k := fmt.Sprintf("%s/%d", a.NodeID, g)
				if other, ok := live[k]; ok {
					fail("GPU %s in live allocations of %s and %s", k, other, r.ID)
				}
				live[k] = r.ID
			}
		}
		// The reclaim guarantee: committed work is ready within an hour of
		// its start (notice, sanitize and provisioning, a retry, steps of a
		// minute) unless its nodes failed.
		if !r.Shape.Class.Preemptible() && r.State == sales.ReservationScheduled && now.Sub(r.Shape.Start) > time.Hour && !strings.Contains(r.Reason, "no replacement") {
			fail("%s reservation %s is still %s %v after its start (%q)", r.Shape.Class, r.ID, r.State, now.Sub(r.Shape.Start), r.Reason)
		}
		if r.State.Terminal() || r.State == sales.ReservationEnding {
			continue
		}
		end := forever
		if r.Shape.End != nil {
			end = *r.Shape.End
		}
		claims = append(claims, claim{r.ID, r.TenantID, string(r.Shape.Class), r.Shape.GPUs, r.Shape.Start, end, r.Nodes, r.Shape.Class.Preemptible()})
	}
	holds := map[string]int{}
	for _, q := range qs {
		if q.State != "open" || !q.Hold || !now.Before(q.ExpiresAt) {
			continue
		}
		holds[q.TenantID]++
		end := forever
		if q.Shape.End != nil {
			end = *q.Shape.End
		}
		claims = append(claims, claim{q.ID, q.TenantID, string(q.Shape.Class), q.Shape.GPUs, q.Shape.Start, end, q.Nodes, q.Shape.Class.Preemptible()})
	}
	for tn, n := range holds {
		if n > w.sales.Policy.MaxHolds {
			fail("tenant %s has %d open holds, the cap is %d", tn, n, w.sales.Policy.MaxHolds)
		}
	}
	// No GPU claimed twice over overlapping windows by committed work
	// (a turnaround apart between tenants).
	turnaround := 2 * time.Hour
	type use struct {
		c          claim
		start, end time.Time
	}
	byGPU := map[string][]use{}
	for _, c := range claims {
		if c.preemptible {
			continue
		}
		for _, n := range c.nodes {
			gpus := n.GPUs
			if len(gpus) == 0 {
				gpus = []int{0, 1, 2, 3, 4, 5, 6, 7}
			}
			for _, g := range gpus {
				k := fmt.Sprintf("%s/%d", n.NodeID, g)
				for _, u := range byGPU[k] {
					gap := time.Duration(0)
					if u.c.tenant != c.tenant {
						gap = turnaround
					}
					if u.start.Before(c.end.Add(gap)) && c.start.Before(u.end.Add(gap)) {
						fail("GPU %s claimed by %s [%v, %v) and %s [%v, %v)", k, u.c.id, u.start, u.end, c.id, c.start, c.end)
					}
				}
				byGPU[k] = append(byGPU[k], use{c, c.start, c.end})
			}
		}
	}
	// Quotas: at every claim's start, the tenant's overlapping claims of
	// that class stay within its quota.
	for key, q := range quotas {
		for _, c := range claims {
			if c.tenant+"/"+c.class != key {
				continue
			}
			sum := 0
			for _, d := range claims {
				if d.tenant+"/"+d.class == key && !d.start.After(c.start) && d.end.After(c.start) {
					sum += d.gpus
				}
			}
			if int64(sum) > q {
				fail("tenant %s holds %d %s GPUs at %v, quota %d", c.tenant, sum, c.class, c.start, q)
			}
		}
	}
}

func legal(from, to sales.ReservationState) error {
	// A step may pass through several states (scheduled → active → ending).
	seen := map[sales.ReservationState]bool{from: true}
	frontier := []sales.ReservationState{from}
	for len(frontier) > 0 {
		s := frontier[0]
		frontier = frontier[1:]
		for _, n := range []sales.ReservationState{sales.ReservationPending, sales.ReservationScheduled, sales.ReservationActive, sales.ReservationEnding, sales.ReservationEnded, sales.ReservationCancelled, sales.ReservationFailed} {
			if !seen[n] && s.Move(n) == nil {
				if n == to {
					return nil
				}
				seen[n] = true
				frontier = append(frontier, n)
			}
		}
	}
	return fmt.Errorf("%s cannot become %s", from, to)
}
