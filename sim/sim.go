// Package sim runs the control plane over simulated time, offline: the
// real services on an embedded store with a simulated clock, driven by
// seeded arrivals of work. It answers what-if questions (how long do
// commitments wait for reclaimed capacity, what does the operator's own
// training get from what is idle) without a server or a fleet.
package sim

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/fleet"
	"github.com/neocloud/neocloud/placement"
	"github.com/neocloud/neocloud/sales"
	"github.com/neocloud/neocloud/sqlstore"
	"github.com/neocloud/neocloud/tenant"
)

// Options size a hybrid run.
type Options struct {
	GPUs     int           // site size (default 8,192: the demo's)
	Days     int           // simulated days (default 30)
	Seed     uint64        // arrivals (default 1)
	Step     time.Duration // lifecycle cadence in simulated time (default 5m)
	Progress io.Writer
}

// clock is the simulated clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

// Hybrid simulates a month of a site: a whole-pod lease delivered weekly,
// reserved clusters, on-demand and spot users arriving at random, and the
// operator's elastic training backfilling whatever is idle. It prints how
// long committed work waited for its capacity (the reclaim guarantee) and
// the hybrid report: what internal work used and lost.
func Hybrid(ctx context.Context, w io.Writer, o Options) error {
	_, err := RunHybrid(ctx, w, o)
	return err
}

// Result is what a hybrid run measured.
type Result struct {
	Committed int                         // committed reservations that became active
	Late      int                         // of them, later than the guarantee (plus step granularity)
	Refused   int                         // committed requests refused for capacity
	Internal  sales.InternalReport        // the hybrid report
	Used      map[placement.Class]float64 // GPU-hours by class
	LeaseGPUs int                         // GPUs of the lease ready at the end
}

// RunHybrid is Hybrid, returning what it measured too.
func RunHybrid(ctx context.Context, w io.Writer, o Options) (Result, error) {
	var res Result
	err := func() error {
		if o.GPUs == 0 {
			o.GPUs = 8192
		}
		if o.Days == 0 {
			o.Days = 30
		}
		if o.Seed == 0 {
			o.Seed = 1
		}
		if o.Step == 0 {
			o.Step = 5 * time.Minute
		}
		say := func(format string, args ...any) {
			if o.Progress != nil {
				fmt.Fprintf(o.Progress, format+"\n", args...)
			}
		}
		wall := time.Now()
		dir, err := os.MkdirTemp("", "neocloud-sim-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		db, err := sqlstore.Open(ctx, filepath.Join(dir, "sim.db"))
		if err != nil {
			return err
		}
		defer db.Close()
		t0 := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
		clk := &clock{t: t0}

		// 1. The site, the services, the tenants and prices.
		tenants := tenant.NewService(db)
		tenants.Now = clk.Now
		fl := fleet.NewService(db, db)
		fl.Now = clk.Now
		if err := fl.Load(ctx); err != nil {
			return err
		}
		sku, _ := fleet.CatalogSKU("h100-sxm5-80gb")
		var spec bytes.Buffer
		if _, err := fleet.Generate(&spec, fleet.ColossusOptions(sku, o.GPUs)); err != nil {
			return err
		}
		parsed, err := fleet.ParseSpec(spec.Bytes())
		if err != nil {
			return err
		}
		applied, err := fl.Apply(ctx, parsed)
		if err != nil {
			return err
		}
		sv := sales.NewService(db, db, fl, tenants)
		sv.Now = clk.Now
		sv.Logger = slog.New(slog.DiscardHandler)
		provision, sanitize := 10*time.Minute, 20*time.Minute
		sv.Provisioner = &sales.SimStage{Duration: provision, Jitter: 5 * time.Minute, Seed: o.Seed}
		sv.Network = &sales.SimStage{Duration: time.Minute}
		sv.Sanitizer = &sales.SimStage{Duration: sanitize}
		op := neocloud.Principal{TokenID: "tok_sim", Role: neocloud.RoleOperatorAdmin}
		ids := map[string]string{}
		for _, name := range []string{"acme", "beta", "gamma", "spotco", "train"} {
			tn, err := tenants.Create(ctx, tenant.CreateInput{Name: name, Internal: name == "train"})
			if err != nil {
				return err
			}
			ids[name] = tn.ID
		}
		for _, p := range []sales.PriceInput{
			{SKU: sku.Name, Class: placement.ClassReserved, List: "2.50"},
			{SKU: sku.Name, Class: placement.ClassOnDemand, List: "3.20"},
			{SKU: sku.Name, Class: placement.ClassSpot, SpotFloor: "0.80", SpotCeiling: "2.40"},
		} {
			if _, err := sv.SetPrice(ctx, op, p); err != nil {
				return err
			}
		}
		say("site: %d GPUs; simulating %d days from %s", applied.GPUs, o.Days, t0.Format("2006-01-02"))

		// 2. The seeded deals: a lease of the first pod, delivered in four
		// weekly phases from day 3, and elastic internal training.
		podGPUs := o.GPUs / 2
		lease, err := sv.CreateLease(ctx, op, sales.LeaseInput{Tenant: "acme", Site: applied.SiteID, Domain: "h1/p01", Start: t0.Add(3 * 24 * time.Hour),
			DurationS: 3 * 365 * 86400, Rate: "1.85", PhaseGPUs: roundDown(podGPUs/4, 256), PhaseEveryS: 7 * 86400})
		if err != nil {
			return fmt.Errorf("lease: %w", err)
		}
		// The training scheduler keeps one elastic job queued or running: a job
		// evicted whole is submitted again.
		training := ""
		train := func() error {
			if training != "" {
				r, err := sv.Reservation(ctx, op, training)
				if err != nil {
					return err
				}
				if !r.State.Terminal() && r.State != sales.ReservationEnding {
					return nil
				}
			}
			r, err := sv.Reserve(ctx, op, sales.ReserveInput{ShapeInput: sales.ShapeInput{Tenant: "train", SKU: sku.Name, Class: placement.ClassInternal,
				Elastic: &sales.ElasticInput{MinGPUs: 512, MaxGPUs: o.GPUs, StepGPUs: 256, StepWithin: "su", CheckpointS: 1800}}})
			if err != nil {
				return fmt.Errorf("internal: %w", err)
			}
			training = r.ID
			return nil
		}
		if err := train(); err != nil {
			return err
		}

		// 3. Arrivals, hour by hour; cancellations when their time comes.
		rng := rand.New(rand.NewPCG(o.Seed, 3))
		type ending struct {
			at        time.Time
			id, owner string
		}
		var ends []ending
		type commit struct {
			id         string
			asked, due time.Time
		}
		var commits []commit
		principal := func(name string) neocloud.Principal {
			return neocloud.Principal{TokenID: "tok_" + name, Role: neocloud.RoleTenantAdmin, TenantID: ids[name]}
		}
		refused := 0
		end := t0.Add(time.Duration(o.Days) * 24 * time.Hour)
		lastSay := t0
		for now := t0; now.Before(end); now = now.Add(o.Step) {
			clk.set(now)
			if now.Sub(t0)%time.Hour == 0 {
				if err := train(); err != nil {
					return err
				}
				// Spot users.
				if rng.Float64() < 0.4 {
					r, err := sv.Reserve(ctx, principal("spotco"), sales.ReserveInput{ShapeInput: sales.ShapeInput{SKU: sku.Name, GPUs: 64 * (1 + rng.IntN(8)), Class: placement.ClassSpot, Within: "su"}})
					if err == nil {
						ends = append(ends, ending{now.Add(time.Duration(2+rng.IntN(46)) * time.Hour), r.ID, "spotco"})
					}
				}
				// On-demand users.
				if rng.Float64() < 0.2 {
					who := []string{"beta", "gamma"}[rng.IntN(2)]
					r, err := sv.Reserve(ctx, principal(who), sales.ReserveInput{ShapeInput: sales.ShapeInput{SKU: sku.Name, GPUs: 8 * (1 + rng.IntN(16)), Class: placement.ClassOnDemand}})
					switch {
					case err == nil:
						commits = append(commits, commit{r.ID, now, now})
						ends = append(ends, ending{now.Add(time.Duration(1+rng.IntN(24)) * time.Hour), r.ID, who})
					case neocloud.ErrorKind(err) == neocloud.KindNoCapacity:
						refused++
					default:
						return fmt.Errorf("on-demand: %w", err)
					}
				}
				// Reserved clusters.
				if rng.Float64() < 0.06 {
					who := []string{"beta", "gamma"}[rng.IntN(2)]
					start := now.Add(time.Duration(rng.IntN(72)) * time.Hour)
					in := sales.ShapeInput{SKU: sku.Name, GPUs: 256 * (1 + rng.IntN(4)), Class: placement.ClassReserved, Start: &start, DurationS: int64(1+rng.IntN(7)) * 86400, Within: "pod"}
					r, err := sv.Reserve(ctx, principal(who), sales.ReserveInput{ShapeInput: in})
					switch {
					case err == nil:
						commits = append(commits, commit{r.ID, now, start})
					case neocloud.ErrorKind(err) == neocloud.KindNoCapacity:
						refused++
					default:
						return fmt.Errorf("reserved: %w", err)
					}
				}
			}
			sort.Slice(ends, func(i, j int) bool { return ends[i].at.Before(ends[j].at) })
			for len(ends) > 0 && !ends[0].at.After(now) {
				e := ends[0]
				ends = ends[1:]
				if _, err := sv.Cancel(ctx, principal(e.owner), e.id); err != nil && neocloud.ErrorKind(err) != neocloud.KindConflict {
					return fmt.Errorf("cancel: %w", err)
				}
			}
			for {
				n, err := sv.Step(ctx)
				if err != nil {
					return err
				}
				if n == 0 {
					break
				}
			}
			if now.Sub(lastSay) >= 5*24*time.Hour {
				lastSay = now
				say("day %d…", int(now.Sub(t0).Hours()/24))
			}
		}
		clk.set(end)

		// 4. How long committed work waited: from when it asked (or its start,
		// if later) to its reservation.active event.
		active := map[string]time.Time{}
		for after := int64(0); ; {
			evs, err := db.Events(ctx, "", after, 5000)
			if err != nil {
				return err
			}
			for _, e := range evs {
				after = e.Seq
				if e.Kind == "reservation.active" {
					if _, ok := active[e.Subject]; !ok {
						active[e.Subject] = e.At
					}
				}
			}
			if len(evs) < 5000 {
				break
			}
		}
		var waits []time.Duration
		late := 0
		// The guarantee: notice, network detach and sanitize of what leaves,
		// then provisioning (at most 15 min here); each of the six stages may
		// wait up to one lifecycle step of the simulation.
		guarantee := sv.Policy.SpotNotice + time.Minute + sanitize + provision + 5*time.Minute
		bound := guarantee + 6*o.Step
		for _, c := range commits {
			at, ok := active[c.id]
			if !ok {
				continue // not started by the end, or cancelled first
			}
			from := c.due
			if c.asked.After(from) {
				from = c.asked
			}
			d := max(0, at.Sub(from))
			waits = append(waits, d)
			if d > bound {
				late++
			}
		}
		slices.Sort(waits)
		rep, err := sv.Internal(ctx, t0, end, []string{ids["train"]})
		if err != nil {
			return err
		}
		used, err := usedByClass(ctx, db, t0, end)
		if err != nil {
			return err
		}
		view, err := sv.ContractView(ctx, op, lease.ID)
		if err != nil {
			return err
		}

		tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
		fmt.Fprintf(tw, "hybrid simulation: %d GPUs, %d days from %s, seed %d, a lifecycle step every %v (ran in %v)\n\n", applied.GPUs, o.Days, t0.Format("2006-01-02"), o.Seed, o.Step, time.Since(wall).Round(time.Millisecond))
		fmt.Fprintln(tw, "committed work: ready after its start (or request)\tn\tp50\tp99\tmax\tlater than that\t")
		fmt.Fprintf(tw, "on-demand and reserved (guarantee %v, + 6 steps of %v)\t%d\t%v\t%v\t%v\t%d\t\n", guarantee, o.Step, len(waits), q(waits, 50), q(waits, 99), q(waits, 100), late)
		fmt.Fprintf(tw, "refused for capacity\t%d\t\t\t\t\t\n\n", refused)
		fmt.Fprintln(tw, "internal training (the hybrid play)\tvalue\t")
		fmt.Fprintf(tw, "GPU-hours used\t%.0f (%.1f%% of the site's %.0f)\t\n", rep.UsedGPUh, 100*rep.UsedGPUh/(float64(applied.GPUs)*end.Sub(t0).Hours()), float64(applied.GPUs)*end.Sub(t0).Hours())
		fmt.Fprintf(tw, "GPU-hours lost to reclaims (since the last checkpoint)\t%.1f\t\n", rep.LostGPUh)
		fmt.Fprintf(tw, "reclaims: steps given back, evictions\t%d: %d, %d\t\n", rep.Reclaims, rep.Shrinks, rep.Evictions)
		fmt.Fprintf(tw, "GPUs running at the end\t%d\t\n\n", rep.RunningNow)
		fmt.Fprintf(tw, "lease of h1/p01\t%d of %d GPUs ready; %d phases\t\n\n", view.Delivery.ReadyGPUs, view.Delivery.ContractedGPUs, len(view.Delivery.Phases))
		total := float64(applied.GPUs) * end.Sub(t0).Hours()
		fmt.Fprintln(tw, "utilization by class\tGPU-hours\tshare of the site\t")
		sum := 0.0
		for _, c := range []placement.Class{placement.ClassLease, placement.ClassReserved, placement.ClassOnDemand, placement.ClassSpot, placement.ClassInternal} {
			sum += used[c]
			fmt.Fprintf(tw, "%s\t%.0f\t%.1f%%\t\n", c, used[c], 100*used[c]/total)
		}
		fmt.Fprintf(tw, "all\t%.0f\t%.1f%%\t\n", sum, 100*sum/total)
		res = Result{Committed: len(waits), Late: late, Refused: refused, Internal: rep, Used: used, LeaseGPUs: view.Delivery.ReadyGPUs}
		return tw.Flush()
	}()
	return res, err
}

func roundDown(v, step int) int { return max(step, v/step*step) }

func q(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	i := min(len(ds)-1, (len(ds)*p+99)/100-1)
	return ds[max(0, i)]
}

// usedByClass sums the GPU-hours of ready allocations in [start, end) by
// the class of their reservations.
func usedByClass(ctx context.Context, db *sqlstore.DB, start, end time.Time) (map[placement.Class]float64, error) {
	out := map[placement.Class]float64{}
	pg := neocloud.Page{Limit: 1000}
	for {
		rs, err := db.Reservations(ctx, sales.ReservationFilter{}, pg)
		if err != nil {
			return nil, err
		}
		for _, r := range rs {
			as, err := db.Allocations(ctx, r.ID)
			if err != nil {
				return nil, err
			}
			for _, a := range as {
				if a.ReadyAt == nil {
					continue
				}
				to := end
				if a.ReleasedAt != nil && a.ReleasedAt.Before(to) {
					to = *a.ReleasedAt
				}
				from := *a.ReadyAt
				if from.Before(start) {
					from = start
				}
				if to.After(from) {
					out[r.Shape.Class] += float64(len(a.GPUs)) * to.Sub(from).Hours()
				}
			}
		}
		if len(rs) < pg.Limit {
			return out, nil
		}
		pg.Cursor = neocloud.EncodeCursor(rs[len(rs)-1].ID)
	}
}
