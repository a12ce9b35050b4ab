package demo

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/agent"
	"github.com/neocloud/neocloud/agents"
	"github.com/neocloud/neocloud/fleet"
	"github.com/neocloud/neocloud/placement"
	"github.com/neocloud/neocloud/sales"
)

// startAgents starts one simulated agent per node, spread over one
// heartbeat interval; agents that joined before (a resumed demo) carry on
// with their stored credentials.
func (d *Demo) startAgents(ctx context.Context) error {
	srv := d.Server
	site, ok := srv.Fleet.Snapshot.Site(d.st.Site)
	if !ok {
		return fmt.Errorf("the demo's site %q is not in the store", d.st.Site)
	}
	_, join, err := srv.Agents.CreateJoinToken(ctx, d.op, agents.JoinTokenInput{Site: site.ID, MaxUses: int64(srv.Fleet.Snapshot.Count(fleet.NodeFilter{SiteID: site.ID})) + 1, TTLS: 86400})
	if err != nil {
		return err
	}
	nodes := srv.Fleet.Snapshot.Nodes(fleet.NodeFilter{SiteID: site.ID}, neocloud.Page{Limit: math.MaxInt32})
	// A push stream costs two descriptors in this process (both ends);
	// without room for them all, agents hear through heartbeat answers.
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && uint64(2*len(nodes)+4096) > lim.Cur {
		d.noStream = true
		fmt.Fprintf(d.o.Out, "%d agents: push streams off (the open-file limit is %d), commands come with heartbeat answers\n", len(nodes), lim.Cur)
	}
	// The agents share a transport: a bounded pool of connections, kept
	// open, so that thousands of agents in one process queue for a
	// connection instead of each opening its own when the server is busy
	// (push streams, when on, hold one each beyond it).
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 256
	if d.noStream {
		tr.MaxConnsPerHost = 256
	}
	d.transport = tr
	sku, _ := fleet.CatalogSKU(DemoSKU)
	interval := time.Duration(d.o.HeartbeatS) * time.Second
	for i, n := range nodes {
		sn := &simNode{id: n.ID, hostname: n.Hostname, serial: n.Serial, gpus: agent.NewSimulated(len(n.GPUs), sku.GPUModel, sku.GPUMemoryMiB, sku.MaxGPUPowerW())}
		sn.gpus.Host = n.Serial
		sn.gpus.SetBurnIn(time.Minute, 0)
		sn.gpus.SetHealthCheck(2 * time.Second)
		host := n.Hostname
		phase := float64(i)
		sn.gpus.Load = func(g int, t time.Time) float64 {
			if b := d.busy.Load(); b != nil && (*b)[host] {
				return 0.82 + 0.12*math.Sin(float64(t.Unix())/900+phase+float64(g)/3)
			}
			return 0.02
		}
		d.nodes[n.ID] = sn
	}
	// The leased hall's nodes sit on metered PDU outlets: their BMCs give
	// billing node input energy; the other halls' is estimated.
	if bmc, ok := srv.Agents.OutOfBand.(*agents.SimBMC); ok {
		if halls, err := srv.Fleet.Snapshot.Domains(site, "hall"); err == nil && len(halls) > 1 {
			metered := map[string]*simNode{}
			prefix := halls[len(halls)-1].Path + "/"
			for _, n := range nodes {
				if strings.HasPrefix(n.Domain+"/", prefix) {
					metered[n.ID] = d.nodes[n.ID]
				}
			}
			bmc.SetEnergyMeter(func(id string) (uint64, bool) {
				if sn, ok := metered[id]; ok {
					return sn.gpus.NodeEnergyJ(), true
				}
				return 0, false
			})
		}
	}
	for i, n := range nodes {
		delay := time.Duration(int64(interval) * int64(i) / int64(max(1, len(nodes))))
		d.runAgent(ctx, d.nodes[n.ID], join, delay)
	}
	return nil
}

// runAgent runs a node's agent until ctx ends or the node hangs; an agent
// that crashes starts again.
func (d *Demo) runAgent(ctx context.Context, sn *simNode, join string, delay time.Duration) {
	actx, stop := context.WithCancel(ctx)
	sn.mu.Lock()
	sn.stop = stop
	sn.mu.Unlock()
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		select {
		case <-actx.Done():
			return
		case <-time.After(delay):
		}
		for actx.Err() == nil {
			err := agent.Run(actx, agent.Options{Server: d.URL, JoinToken: join, Hostname: sn.hostname, Serial: sn.serial, StateDir: filepath.Join(d.dir, "agents", sn.hostname),
				Interval: time.Duration(d.o.HeartbeatS) * time.Second, GPUs: sn.gpus, Now: d.Clock.Now, NoStream: d.noStream, Transport: d.transport})
			if err != nil && !errors.Is(err, agent.ErrCrashed) && actx.Err() == nil {
				d.o.Logger.Warn("demo agent", "node", sn.hostname, "err", err)
			}
			select {
			case <-actx.Done():
			case <-time.After(time.Second):
			}
		}
	}()
}

// hang stops a node's agent: the node falls silent.
func (sn *simNode) hang() {
	sn.mu.Lock()
	defer sn.mu.Unlock()
	if sn.stop != nil {
		sn.stop()
		sn.stop = nil
	}
}

func (sn *simNode) hung() bool {
	sn.mu.Lock()
	defer sn.mu.Unlock()
	return sn.stop == nil
}

// refreshBusy reads which nodes serve ready work, for the simulated load.
func (d *Demo) refreshBusy(ctx context.Context) error {
	us, err := d.Server.Store.NodeUses(ctx)
	if err != nil {
		return err
	}
	m := map[string]bool{}
	for _, u := range us {
		if u.State == sales.AllocationReady {
			if n, ok := d.Server.Fleet.Snapshot.Node(u.NodeID); ok {
				m[n.Hostname] = true
			}
		}
	}
	d.busy.Store(&m)
	return nil
}

// running is a customer's open-ended reservation and when it ends.
type running struct {
	id, tenant string
	until      time.Time
}

// traffic returns the loop that brings customers: on-demand and spot work
// arriving at random (rates per hour of the demo's clock, scaled with the
// site) and ending after a while, and the operator's training kept queued.
func (d *Demo) traffic() func(context.Context) error {
	rng := rand.New(rand.NewPCG(d.o.Seed, 7))
	var mu sync.Mutex
	var open []running
	last := d.Clock.Now()
	// Customers' open-ended work from before a resume ends in the next
	// hours too.
	for _, class := range []placement.Class{placement.ClassOnDemand, placement.ClassSpot} {
		rs, err := d.Server.Store.RecentReservations(context.Background(), sales.ReservationFilter{Class: class}, 10000)
		if err != nil {
			d.o.Logger.Warn("demo: open work", "err", err)
			continue
		}
		for _, r := range rs {
			if !r.State.Terminal() && r.State != sales.ReservationEnding {
				open = append(open, running{r.ID, r.TenantID, last.Add(time.Duration(1+rng.IntN(12)) * time.Hour)})
			}
		}
	}
	scale := float64(d.o.GPUs) / 8192
	return func(ctx context.Context) error {
		mu.Lock()
		defer mu.Unlock()
		now := d.Clock.Now()
		hours := now.Sub(last).Hours()
		last = now
		sv := d.Server.Sales
		if err := d.train(ctx); err != nil {
			return fmt.Errorf("training: %w", err)
		}
		arrivals := []struct {
			tenant string
			class  placement.Class
			rate   float64 // per hour
			gpus   func() int
			within string
			hours  func() float64
		}{
			{"delta", placement.ClassOnDemand, 2 * scale, func() int { return 8 * (1 + rng.IntN(8)) }, "", func() float64 { return 1 + 11*rng.Float64() }},
			{"gamma", placement.ClassOnDemand, 1 * scale, func() int { return []int{1, 2, 4, 8, 16, 64}[rng.IntN(6)] }, "", func() float64 { return 0.5 + 6*rng.Float64() }},
			{"spotco", placement.ClassSpot, 1.5 * scale, func() int { return 64 * (1 + rng.IntN(6)) }, "su", func() float64 { return 2 + 20*rng.Float64() }},
		}
		for _, a := range arrivals {
			for k := poisson(rng, a.rate*hours); k > 0; k-- {
				t, err := d.Server.Tenants.Resolve(ctx, d.op, a.tenant)
				if err != nil {
					return err
				}
				p := neocloud.Principal{TokenID: "demo-" + a.tenant, Role: neocloud.RoleTenantAdmin, TenantID: t.ID}
				r, err := sv.Reserve(ctx, p, sales.ReserveInput{ShapeInput: sales.ShapeInput{SKU: DemoSKU, GPUs: a.gpus(), Class: a.class, Within: a.within}})
				switch {
				case err == nil:
					open = append(open, running{r.ID, t.ID, now.Add(time.Duration(a.hours() * float64(time.Hour)))})
				case neocloud.ErrorKind(err) == neocloud.KindNoCapacity:
				default:
					return fmt.Errorf("%s %s: %w", a.tenant, a.class, err)
				}
			}
		}
		slices.SortFunc(open, func(a, b running) int { return a.until.Compare(b.until) })
		for len(open) > 0 && !open[0].until.After(now) {
			e := open[0]
			open = open[1:]
			p := neocloud.Principal{TokenID: "demo", Role: neocloud.RoleTenantAdmin, TenantID: e.tenant}
			if _, err := sv.Cancel(ctx, p, e.id); err != nil && neocloud.ErrorKind(err) != neocloud.KindConflict {
				return fmt.Errorf("ending %s: %w", e.id, err)
			}
		}
		return nil
	}
}

// poisson draws a Poisson count with mean m.
func poisson(rng *rand.Rand, m float64) int {
	l, k, p := math.Exp(-m), 0, 1.0
	for {
		p *= rng.Float64()
		if p <= l {
			return k
		}
		k++
	}
}

// A fault kind and its share of unexpected interruptions, after Meta's
// Llama 3 breakdown (faulty GPUs and HBM3 first, then network, then
// hosts that hang).
type faultKind struct {
	name  string
	share float64
	fails bool // the node fails (the others degrade it)
	apply func(sn *simNode, gpu int)
}

var faultKinds = []faultKind{
	{"GPU fell off the bus (XID 79)", 0.40, true, func(sn *simNode, g int) { sn.gpus.Inject(agent.Fault{GPU: g, XID: 79}) }},
	{"uncorrectable HBM error, row remap failed", 0.22, true, func(sn *simNode, g int) {
		sn.gpus.Inject(agent.Fault{GPU: g, XID: 48, ECC: 1, RemapFailed: true})
	}},
	{"NVLink error (XID 74)", 0.13, false, func(sn *simNode, g int) { sn.gpus.Inject(agent.Fault{GPU: g, XID: 74}) }},
	{"InfiniBand link down", 0.10, false, func(sn *simNode, g int) { sn.gpus.Inject(agent.Fault{GPU: g, LinkDown: true}) }},
	{"host hung (silent)", 0.15, true, func(sn *simNode, _ int) { sn.hang() }},
}

// failures injects faults into the simulated nodes: the first soon after
// the start, into a node serving committed work, then at random at the
// scaled rate.
func (d *Demo) failures(ctx context.Context) {
	if d.o.FailureRate <= 0 {
		return
	}
	rng := rand.New(rand.NewPCG(d.o.Seed, 11))
	perRealSecond := MetaFailuresPerGPUHour * d.o.FailureRate * float64(d.o.GPUs) * d.o.Speed / 3600
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		wait := d.o.FirstFailure
		first, started := true, time.Now()
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			if first && time.Since(started) < d.o.FirstFailure+time.Minute {
				// The first failure strikes committed work: wait for some
				// to be ready (within the first minute or so).
				ok, err := d.committedReady(ctx)
				if err != nil && ctx.Err() == nil {
					d.o.Logger.Warn("demo failure", "err", err)
				}
				if !ok {
					wait = time.Second
					continue
				}
			}
			if err := d.fail(ctx, rng, first); err != nil && ctx.Err() == nil {
				d.o.Logger.Warn("demo failure", "err", err)
			}
			first = false
			wait = time.Duration(rng.ExpFloat64() / perRealSecond * float64(time.Second))
		}
	}()
}

// committedReady says whether some lease or reserved work is ready.
func (d *Demo) committedReady(ctx context.Context) (bool, error) {
	us, err := d.Server.Store.NodeUses(ctx)
	for _, u := range us {
		if u.State == sales.AllocationReady && (u.Class == placement.ClassReserved || u.Class == placement.ClassLease) {
			return true, nil
		}
	}
	return false, err
}

// fail breaks one healthy node; the first failure strikes committed work.
func (d *Demo) fail(ctx context.Context, rng *rand.Rand, committed bool) error {
	var candidates []string
	if committed {
		us, err := d.Server.Store.NodeUses(ctx)
		if err != nil {
			return err
		}
		for _, u := range us {
			if u.State == sales.AllocationReady && (u.Class == placement.ClassReserved || u.Class == placement.ClassLease) {
				candidates = append(candidates, u.NodeID)
			}
		}
	}
	if len(candidates) == 0 {
		d.Server.Fleet.Snapshot.Each(fleet.NodeFilter{Lifecycle: fleet.LifecycleAvailable, Health: fleet.HealthOK}, func(n *fleet.Node) {
			candidates = append(candidates, n.ID)
		})
	}
	slices.Sort(candidates)
	candidates = slices.Compact(candidates)
	for range 5 {
		if len(candidates) == 0 {
			return nil
		}
		id := candidates[rng.IntN(len(candidates))]
		sn := d.nodes[id]
		if sn == nil || sn.hung() {
			continue
		}
		// The first failure is the most common hard one: a GPU off the bus.
		k := faultKinds[0]
		if !committed {
			x := rng.Float64()
			k = faultKinds[len(faultKinds)-1]
			for _, f := range faultKinds {
				if x < f.share {
					k = f
					break
				}
				x -= f.share
			}
		}
		gpu := rng.IntN(len(sn.gpus.Info()))
		k.apply(sn, gpu)
		d.failed.Add(1)
		d.o.Logger.Info("demo: fault injected", "node", sn.hostname, "gpu", gpu, "fault", k.name)
		return nil
	}
	return nil
}

// RepairTime is how long (on the demo's clock) a technician takes to get
// to a node in repair.
const RepairTime = 4 * time.Hour

// technician repairs nodes whose repair ticket has waited RepairTime:
// their GPUs are whole again, a hung host is restarted, and the repair is
// declared done (burn-in, then sanitize, then service, through the
// agent). Quarantined nodes wait for an operator.
func (d *Demo) technician(ctx context.Context) error {
	ag := d.Server.Agents
	tickets, err := ag.Store.Tickets(ctx, "", true)
	if err != nil {
		return err
	}
	now := d.Clock.Now()
	join := ""
	for _, t := range tickets {
		if t.State != "open" || t.Quarantined || now.Sub(t.OpenedAt) < RepairTime {
			continue
		}
		sn := d.nodes[t.NodeID]
		if sn == nil {
			continue
		}
		sn.gpus.Repair()
		if sn.hung() {
			d.runAgent(ctx, sn, join, 0) // joined before: its stored credential is used
		}
		if _, err := ag.RepairDone(ctx, t.NodeID, false); err != nil && neocloud.ErrorKind(err) != neocloud.KindConflict {
			return fmt.Errorf("repair of %s: %w", sn.hostname, err)
		}
	}
	return nil
}

// Tenants' reports. Now and then a tenant's engineers report one of their
// committed nodes for something its agent does not see (a hang, a slow
// link). A third of them are the first sign of a fault the agent then
// sees, which fails the node and so confirms the report; the rest wait for
// an operator on the console's Health page, and the site's on-call
// declines those still open after ReportWait.
const (
	// ReportEvery is the mean time between reports on the demo's clock
	// (at the default failure rate).
	ReportEvery = 3 * time.Hour
	// ReportWait is how long (on the demo's clock) a report waits for an
	// operator before the on-call declines it.
	ReportWait = 2 * time.Hour
	// reporter is the token id the demo's reports are made under: the
	// on-call declines only these.
	reporter = "demo-support"
)

// failing are the fault kinds that fail a node.
var failing = func() (out []faultKind) {
	for _, k := range faultKinds {
		if k.fails {
			out = append(out, k)
		}
	}
	return out
}()

var reportReasons = []string{
	"NCCL all-reduce hangs on this node",
	"training steps 30% slower whenever this node is in the job",
	"InfiniBand errors in our job logs on this node",
	"a GPU here runs 15 °C hotter than its peers",
}

// reports files tenants' reports at random, the first FirstFailure plus
// half a minute after the start.
func (d *Demo) reports(ctx context.Context) {
	if d.o.FailureRate <= 0 {
		return
	}
	rng := rand.New(rand.NewPCG(d.o.Seed, 13))
	mean := d.Clock.Real(time.Duration(float64(ReportEvery) / d.o.FailureRate))
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		wait := d.o.FirstFailure + 30*time.Second
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			if err := d.report(ctx, rng); err != nil && ctx.Err() == nil {
				d.o.Logger.Warn("demo report", "err", err)
			}
			wait = time.Duration(rng.ExpFloat64() * float64(mean))
		}
	}()
}

// report has a tenant report one of its ready committed nodes.
func (d *Demo) report(ctx context.Context, rng *rand.Rand) error {
	us, err := d.Server.Store.NodeUses(ctx)
	if err != nil {
		return err
	}
	var candidates []sales.NodeUse
	for _, u := range us {
		if sn := d.nodes[u.NodeID]; sn != nil && !sn.hung() && u.State == sales.AllocationReady && (u.Class == placement.ClassReserved || u.Class == placement.ClassLease) {
			candidates = append(candidates, u)
		}
	}
	if len(candidates) == 0 {
		return nil
	}
	slices.SortFunc(candidates, func(a, b sales.NodeUse) int {
		return strings.Compare(a.NodeID+a.ReservationID, b.NodeID+b.ReservationID)
	})
	u := candidates[rng.IntN(len(candidates))]
	p := neocloud.Principal{TokenID: reporter, Role: neocloud.RoleTenantAdmin, TenantID: u.TenantID}
	b, err := d.Server.Sales.NodeBreakFix(ctx, p, u.NodeID, sales.BreakFixReport, sales.BreakFixInput{Reason: reportReasons[rng.IntN(len(reportReasons))]})
	if err != nil {
		return err
	}
	sn := d.nodes[u.NodeID]
	d.o.Logger.Info("demo: node reported by its tenant", "node", sn.hostname, "report", b.ID)
	if rng.IntN(3) > 0 {
		return nil
	}
	// The first sign of a real fault: the agent sees it a quarter of an
	// hour later, and the node's failure confirms the report.
	k, gpu := failing[rng.IntN(len(failing))], rng.IntN(len(sn.gpus.Info()))
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		select {
		case <-ctx.Done():
		case <-time.After(d.Clock.Real(15 * time.Minute)):
			k.apply(sn, gpu)
			d.failed.Add(1)
			d.o.Logger.Info("demo: fault injected", "node", sn.hostname, "gpu", gpu, "fault", k.name)
		}
	}()
	return nil
}

// onCall declines the demo's reports that have waited ReportWait for an
// operator: diagnostics found nothing.
func (d *Demo) onCall(ctx context.Context) error {
	open, err := d.Server.Sales.BreakFixes(ctx, d.op, sales.BreakFixFilter{Kind: sales.BreakFixReport, State: sales.BreakFixOpen}, neocloud.Page{Limit: neocloud.MaxLimit})
	if err != nil {
		return err
	}
	now := d.Clock.Now()
	for _, b := range open {
		if b.CreatedBy != reporter || now.Sub(b.CreatedAt) < ReportWait {
			continue
		}
		_, err := d.Server.Sales.DeclineReport(ctx, d.op, b.ID, sales.DeclineInput{Reason: "on-call: dcgmi diag -r 3 and NCCL tests passed on this node; no fault found"})
		if err != nil && neocloud.ErrorKind(err) != neocloud.KindConflict {
			return err
		}
	}
	return nil
}
