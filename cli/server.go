package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/agents"
	"github.com/neocloud/neocloud/audit"
	"github.com/neocloud/neocloud/billing"
	"github.com/neocloud/neocloud/console"
	"github.com/neocloud/neocloud/finance"
	"github.com/neocloud/neocloud/fleet"
	"github.com/neocloud/neocloud/httpapi"
	"github.com/neocloud/neocloud/idempotency"
	"github.com/neocloud/neocloud/power"
	"github.com/neocloud/neocloud/sales"
	"github.com/neocloud/neocloud/sqlstore"
	"github.com/neocloud/neocloud/tenant"
)

// Version is set at build time with -ldflags "-X …/cli.Version=…".
var Version = "dev"

func roleOf(s string) neocloud.Role { return neocloud.Role(s) }

func printJSON(w io.Writer, v any) {
	b, _ := json.MarshalIndent(v, "", "  ")
	fmt.Fprintln(w, string(b))
}

// ServerOptions configure a server process.
type ServerOptions struct {
	Listen      string // HOST:PORT; port 0 picks a free one
	DataDir     string // SQLite database directory
	DatabaseURL string // postgres://… overrides DataDir
	Bootstrap   string // NEOCLOUD_BOOTSTRAP_TOKEN
	// IdempotencyLease: how long a request with an Idempotency-Key blocks
	// retries with the same key before they may take it over.
	IdempotencyLease time.Duration
	Logger           *slog.Logger
	// RateLimit and RateBurst bound each token's requests per second.
	RateLimit float64
	RateBurst int
	// Policy is the selling policy; Seams the provisioning, network and
	// sanitize drivers (simulated, finishing at once, when nil).
	Policy sales.Policy
	Seams  *Seams
	// NoLifecycle leaves the lifecycle loop off (tests drive it);
	// LifecycleEvery is its cadence (default 1 s).
	NoLifecycle    bool
	LifecycleEvery time.Duration
	// Liveness is the policy for nodes whose agents fall silent;
	// HeartbeatS the cadence agents are told (default 10 s). Silent nodes
	// are judged every half interval, with the lifecycle loop.
	Liveness    agents.Liveness
	HeartbeatS  int
	Remediation agents.Remediation
	Checks      agents.ActiveChecks
	// Now is the control plane's clock (default time.Now); TimeScale says
	// how fast it runs against real time (the demo's accelerated clock),
	// so that silence is judged in real heartbeat intervals.
	Now       func() time.Time
	TimeScale float64
	// Banner is shown on every console page; SampleEvery is how often the
	// console records the fleet's use for its charts (default 5 s).
	Banner      string
	SampleEvery time.Duration
	// BillingClosed is told of each month closed (the demo says so).
	BillingClosed func(billing.Period)
}

// Seams are the drivers of the allocation lifecycle.
type Seams struct {
	Provision sales.Provisioner
	Network   sales.NetworkAttacher
	Sanitize  sales.Sanitizer
}

// Running is a started server.
type Running struct {
	URL   string
	Token string // the first operator-admin secret, if created on this start
	Store *sqlstore.DB
	Sales *sales.Service
	// Fleet and Agents are the running services (the demo drives them).
	Fleet   *fleet.Service
	Agents  *agents.Service
	Tenants *tenant.Service
	Billing *billing.Service
	Console *console.Console
	api     *httpapi.Server
	srv     *httpapi.Front
	done    chan struct{}
	stop    context.CancelFunc
	// replica is this server's record in the store; recorded closes when
	// the loop renewing it has stopped.
	replica  neocloud.Replica
	recorded chan struct{}

	closeOnce sync.Once
	closeErr  error
}

// StartServer opens the store, bootstraps the operator token, and serves
// until Close.
func StartServer(ctx context.Context, o ServerOptions) (*Running, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	target := o.DatabaseURL
	if target == "" {
		target = filepath.Join(o.DataDir, "neocloud.db")
	}
	db, err := sqlstore.Open(ctx, target)
	if err != nil {
		return nil, err
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	tenants := tenant.NewService(db)
	tenants.Now = o.Now
	boot, err := tenants.Bootstrap(ctx, o.Bootstrap)
	if err != nil {
		db.Close()
		return nil, err
	}
	if boot.Revoked {
		o.Logger.Warn("NEOCLOUD_BOOTSTRAP_TOKEN names a revoked token: it stays revoked and signs nothing in; unset it, or set a new secret to add an operator-admin token")
	}
	secret := boot.Secret
	fl := fleet.NewService(db, db)
	fl.Now = o.Now
	if err := fl.Load(ctx); err != nil {
		db.Close()
		return nil, err
	}
	sv := sales.NewService(db, db, fl, tenants)
	sv.Now = o.Now
	sv.Logger = o.Logger
	sv.Policy = o.Policy.WithDefaults()
	if o.Seams != nil {
		sv.Provisioner, sv.Network, sv.Sanitizer = o.Seams.Provision, o.Seams.Network, o.Seams.Sanitize
	}
	ag := agents.NewService(db, db, fl, tenants)
	ag.Now, ag.Started, ag.TimeScale = o.Now, o.Now().UTC(), o.TimeScale
	if db.Dialect == sqlstore.Postgres {
		// Other servers may write the same database: what is cached in
		// memory is read again after this long.
		tenants.SharedTTL, ag.SharedTTL, sv.SharedTTL = 10*time.Second, 10*time.Second, 10*time.Second
		fl.Shared = true
		sv.Lead, sv.Fence = LifecycleLease(db, ag.Instance, o.Logger)
	}
	ag.Liveness, ag.Remediation, ag.Checks = o.Liveness, o.Remediation, o.Checks
	if o.HeartbeatS > 0 {
		ag.HeartbeatS = o.HeartbeatS
	}
	agents.Connect(ag, sv)
	ag.OutOfBand = &agents.SimBMC{} // out-of-band controllers are simulated for now
	// Nodes with agents are sanitized by them; the rest by the seam's
	// simulated (or configured) driver.
	// An agent hears of a sanitize and reports it done with its heartbeats
	// (or at once over its push stream): look every half interval.
	poll := time.Duration(ag.HeartbeatS) * time.Second / 2
	if o.TimeScale > 1 {
		poll = time.Duration(float64(poll) * o.TimeScale)
	}
	sv.Sanitizer = &agents.Sanitizer{Service: ag, Fallback: sv.Sanitizer, Poll: min(poll, 30*time.Minute)}
	sv.OnAllocation = func(ctx context.Context, a sales.Allocation, edge string) error {
		return ag.RecordEnergy(ctx, a.NodeID, a.GPUs, edge, a.ID)
	}
	bl := billing.NewService(db, db)
	bl.Now, bl.Logger, bl.Resolve, bl.SpotRates, bl.Closed = o.Now, o.Logger, tenants.Resolve, spotRates(sv), o.BillingClosed
	pw := power.NewService(db, db, fl.Snapshot)
	pw.Now, pw.Logger, pw.Resolve = o.Now, o.Logger, tenants.Resolve
	fs := finance.NewService(db, fl.Snapshot)
	fs.Billing, fs.Power, fs.Now, fs.Resolve, fs.Prices = bl, pw, o.Now, tenants.Resolve, db.Prices
	sv.PowerCheck = pw.Admit
	opShed := neocloud.Principal{TokenID: "load shedding", Role: neocloud.RoleOperatorAdmin}
	shedder := power.Shedder{
		Nodes: func(ctx context.Context, siteID string) ([]power.ShedNode, error) {
			live, err := db.LiveNodeWork(ctx, siteID)
			if err != nil {
				return nil, err
			}
			skus, err := db.SKUs(ctx)
			if err != nil {
				return nil, err
			}
			floor := map[string]int{}
			for _, k := range skus {
				floor[k.Name] = k.GPUMaxPowerW / 2
			}
			draw, err := ag.GPUPower(ctx)
			if err != nil {
				return nil, err
			}
			contracts := map[string]sales.Contract{}
			var out []power.ShedNode
			for id, w := range live {
				n, ok := fl.Snapshot.Node(id)
				if !ok {
					continue
				}
				sn := power.ShedNode{NodeID: id, ReservationID: w[0], Class: w[1], GPUs: len(n.GPUs), GPUDrawW: draw[id], CapFloorW: floor[n.SKU]}
				if power.Committed(w[1]) && w[1] != "on_demand" {
					c, ok := contracts[w[2]]
					if !ok {
						if c, err = db.Contract(ctx, w[2]); err != nil {
							return nil, err
						}
						contracts[w[2]] = c
					}
					sn.CapFloorW = c.Terms.PowerCapFloorW // 0: the contract allows no cap
				}
				out = append(out, sn)
			}
			sort.Slice(out, func(i, j int) bool { return out[i].NodeID < out[j].NodeID })
			return out, nil
		},
		Cap: func(ctx context.Context, nodeID string, watts int) error {
			_, err := ag.Order(ctx, opShed, nodeID, agents.CommandInput{Kind: "power_cap", PowerW: watts})
			return err
		},
		Preempt: func(ctx context.Context, reservationID string) error {
			_, err := sv.Cancel(ctx, opShed, reservationID)
			return err
		},
		Record: db.PutPowerEvent,
	}
	powerLoad := func(ctx context.Context, siteID string) (map[string]power.NodeLoad, error) {
		classes, err := db.LiveNodeClasses(ctx, siteID)
		if err != nil {
			return nil, err
		}
		out := map[string]power.NodeLoad{}
		draw, err := ag.GPUPower(ctx)
		if err != nil {
			return nil, err
		}
		for id, w := range draw {
			out[id] = power.NodeLoad{GPUPowerW: w}
		}
		for id, c := range classes {
			l := out[id]
			l.Class = c
			out[id] = l
		}
		return out, nil
	}
	// Replicas are listed by the wall clock (each records itself by it),
	// whatever clock the control plane runs on. On SQLite this one is the
	// store's only server: it takes no leases and does what their holders
	// do.
	replicas := func(ctx context.Context) ([]neocloud.Replica, error) {
		rs, err := db.Replicas(ctx, time.Now().UTC())
		for i := range rs {
			if rs[i].ID == ag.Instance && db.Dialect == sqlstore.SQLite {
				rs[i].Leads = []string{"lifecycle", "liveness"}
			}
		}
		return rs, err
	}
	metrics := newFleetMetrics(fl, ag, replicas, ag.Instance)
	api := httpapi.New(httpapi.Config{
		Tenants: tenants, Fleet: fl, Sales: sv, Agents: ag, Billing: bl, Power: pw, PowerLoad: powerLoad, Shedder: &shedder, Finance: fs, Audit: db, Idempotency: db.Idempotency(), Tx: db, Ping: db.Ping,
		Logger: o.Logger, Version: Version, IdempotencyLease: o.IdempotencyLease, RateLimit: o.RateLimit, RateBurst: o.RateBurst, Now: o.Now,
		Replicas: replicas, Replica: ag.Instance, Metrics: []prometheus.Collector{metrics},
	})
	con, err := console.New(console.Config{Tenants: tenants, Fleet: fl, Sales: sv, Agents: ag, Billing: bl, Power: pw, PowerLoad: powerLoad, Finance: fs, Store: db, API: api.Handler(), Now: o.Now,
		Version: Version, Logger: o.Logger, Banner: o.Banner, Replicas: replicas, Replica: ag.Instance,
		Audit: func(ctx context.Context, r audit.Record) error {
			return db.InTx(ctx, func(ctx context.Context) error { _, err := db.AppendAudit(ctx, r); return err })
		}})
	if err != nil {
		db.Close()
		return nil, err
	}
	metrics.con.Store(con)
	// Allocations change with the events the sales service writes: the
	// console reads them again then.
	notify := sv.Notify
	sv.Notify = func() {
		con.Changed()
		if notify != nil {
			notify()
		}
	}
	pw.Notify = func() { sv.Notify() } // permit warnings wake event followers
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("listen %s: %w", o.Listen, err)
	}
	host, _ := os.Hostname()
	started := time.Now().UTC()
	rep := neocloud.Replica{ID: ag.Instance, Host: host, Addr: ln.Addr().String(), PID: int64(os.Getpid()), Version: Version, StartedAt: started, SeenAt: started}
	if err := db.PutReplica(ctx, rep); err != nil {
		ln.Close()
		db.Close()
		return nil, fmt.Errorf("record this replica: %w", err)
	}
	o.Logger.Info("replica", "id", rep.ID, "addr", rep.Addr, "version", Version)
	bg, stop := context.WithCancel(context.Background())
	r := &Running{URL: "http://" + ln.Addr().String(), Token: secret, Store: db, done: make(chan struct{}), stop: stop, api: api,
		Console: con, replica: rep, recorded: make(chan struct{})}
	go func() {
		defer close(r.recorded)
		ticks(bg, neocloud.ReplicaEvery, func() {
			rep.SeenAt = time.Now().UTC()
			if err := db.PutReplica(bg, rep); err != nil && bg.Err() == nil {
				o.Logger.Warn("record this replica", "err", err)
			}
		})
	}()
	// Agents' heartbeats are answered by the front itself; every other
	// connection is net/http's.
	r.srv = &httpapi.Front{Server: &http.Server{Handler: withConsole(api.Handler(), con.Handler()), ReadHeaderTimeout: 10 * time.Second},
		Fast: httpapi.FastPath, Handler: api.Handler()}
	go func() {
		defer close(r.done)
		if err := r.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			o.Logger.Error("serve", "err", err)
		}
	}()
	go purgeIdempotencyKeys(bg, db.Idempotency(), o.Logger)
	if db.Dialect == sqlstore.Postgres {
		go syncFleet(bg, fl, FleetSyncEvery, o.Logger)
	}
	sample := o.SampleEvery
	if sample == 0 {
		sample = 5 * time.Second
	}
	go con.Run(bg, sample)
	go hourly(bg, ag, o.Now, o.TimeScale, o.Logger)
	if !o.NoLifecycle {
		// Meter, record spot prices and close months every minute of the
		// control plane's clock.
		go bl.Run(bg, max(time.Second, time.Duration(float64(time.Minute)/max(1, o.TimeScale))))
		go pw.Run(bg, max(time.Second, time.Duration(float64(time.Minute)/max(1, o.TimeScale))))
		sweepEvery := time.Duration(ag.HeartbeatS) * time.Second / 2
		if o.LifecycleEvery > 0 && o.LifecycleEvery < sweepEvery {
			sweepEvery = o.LifecycleEvery
		}
		go sweep(bg, ag, sweepEvery, o.Logger)
		every := o.LifecycleEvery
		if every == 0 {
			every = time.Second
		}
		go sv.Run(bg, every)
	}
	r.Sales, r.Fleet, r.Agents, r.Tenants, r.Billing = sv, fl, ag, tenants, bl
	return r, nil
}

// consolePaths are the console's routes; everything else is the API's.
var consolePaths = []string{"/{$}", "/login", "/logout", "/assets/", "/clock", "/topology", "/nodes/", "/utilization.json", "/reservations", "/reservations/",
	"/contracts", "/quotes", "/maintenance", "/health", "/health/", "/events", "/invoices", "/invoices/", "/power", "/power/", "/finance", "/finance/", "/my", "/my/"}

// withConsole serves the console's pages next to the API.
func withConsole(api, con http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", api)
	for _, p := range consolePaths {
		mux.Handle(p, con)
	}
	return mux
}

// purgeIdempotencyKeys forgets keys older than the retention, hourly.
func purgeIdempotencyKeys(ctx context.Context, s idempotency.Store, log *slog.Logger) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if n, err := s.Purge(ctx, time.Now().Add(-idempotency.Retention)); err != nil && ctx.Err() == nil {
			log.Warn("purge idempotency keys", "err", err)
		} else if n > 0 {
			log.Info("purged idempotency keys", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// LifecycleLease is the reservations' lifecycle's turn-taking among servers
// sharing a database: the holder of the "lifecycle" lease steps it (binds,
// provisions, readies, releases, sanitizes), renewing the lease at every
// step, each step fenced by it; another takes over 10 s after the holder
// stops. lead takes the lease, and the log says when this server takes it
// and when it loses it; fence is the steps' fence.
func LifecycleLease(db *sqlstore.DB, instance string, log *slog.Logger) (lead func(ctx context.Context) (bool, error), fence func(ctx context.Context) error) {
	l := db.Lease("lifecycle", instance, 10*time.Second)
	was := false
	return func(ctx context.Context) (bool, error) {
		held, err := l.Take(ctx)
		if err == nil && held != was {
			was = held
			if held {
				log.Info("this server steps the reservations' lifecycle now", "lease", "lifecycle", "instance", instance)
			} else {
				log.Info("another server steps the reservations' lifecycle now", "lease", "lifecycle", "instance", instance)
			}
		}
		return held, err
	}, l.Fence
}

// FleetSyncEvery is how often a server on PostgreSQL reads what other
// servers changed in the fleet (sites, nodes: their health, lifecycle,
// cordons) into its snapshot.
const FleetSyncEvery = 2 * time.Second

// syncFleet keeps the fleet snapshot current with other servers' writes.
func syncFleet(ctx context.Context, fl *fleet.Service, every time.Duration, log *slog.Logger) {
	ticks(ctx, every, func() {
		if _, err := fl.Sync(ctx); err != nil && ctx.Err() == nil {
			log.Warn("fleet sync", "err", err)
		}
	})
}

// ticks calls fn every interval until ctx ends.
func ticks(ctx context.Context, every time.Duration, fn func()) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		fn()
	}
}

// sweep judges silent nodes and moves repairs along, every half heartbeat
// interval (or the lifecycle's cadence, when faster).
func sweep(ctx context.Context, ag *agents.Service, every time.Duration, log *slog.Logger) {
	leads := false
	ticks(ctx, every, func() {
		res, err := ag.Sweep(ctx)
		if err != nil && ctx.Err() == nil {
			log.Warn("liveness sweep", "err", err)
		}
		if err == nil && res.Leads != leads && ag.SharedTTL > 0 {
			leads = res.Leads
			if leads {
				log.Info("this server judges liveness and moves repairs along now", "lease", "liveness")
			} else {
				log.Info("another server judges liveness now", "lease", "liveness")
			}
		}
		if _, err := ag.Remediate(ctx); err != nil && ctx.Err() == nil {
			log.Warn("remediation", "err", err)
		}
		if len(res.Unreachable)+len(res.Failed) > 0 {
			log.Info("liveness", "silent", res.Silent, "unreachable", len(res.Unreachable), "failed", len(res.Failed), "held", res.Held)
		}
	})
}

// hourly records every reporting node's energy counters and forgets old
// telemetry at the top of every hour of the control plane's clock (the
// meter splits energy at those readings).
func hourly(ctx context.Context, ag *agents.Service, now func() time.Time, scale float64, log *slog.Logger) {
	for {
		n := now()
		wait := n.Truncate(time.Hour).Add(time.Hour).Sub(n)
		if scale > 1 {
			wait = time.Duration(float64(wait) / scale)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait + time.Millisecond):
		}
		if err := ag.Hourly(ctx); err != nil && ctx.Err() == nil {
			log.Warn("hourly telemetry", "err", err)
		}
	}
}

// Close stops serving (finishing requests in flight), records this replica
// stopped, gives its leases up and closes the store. Calls after the first
// return what it returned.
func (r *Running) Close() error {
	r.closeOnce.Do(func() { r.closeErr = r.close() })
	return r.closeErr
}

func (r *Running) close() error {
	r.stop()
	r.api.StopStreams()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r.srv.Shutdown(ctx)
	<-r.done
	<-r.recorded
	// Said stopped, and its leases given up: another replica takes them
	// over at its next try.
	now := time.Now().UTC()
	r.replica.SeenAt, r.replica.StoppedAt = now, &now
	err := errors.Join(r.Store.PutReplica(ctx, r.replica), r.Store.ReleaseLeases(ctx, r.replica.ID))
	return errors.Join(err, r.Store.Close())
}

func serverCmd(g *globals) *cobra.Command {
	o := ServerOptions{}
	var cpuprofile string
	cmd := &cobra.Command{Use: "server", Short: "Run the control-plane server", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return profiled(cpuprofile, func() error { return serve(c.Context(), g, o) })
		}}
	cmd.Flags().StringVar(&cpuprofile, "cpuprofile", "", "write a CPU profile to this file until the server stops")
	serverFlags(cmd, &o)
	return cmd
}

func serve(ctx context.Context, g *globals, o ServerOptions) error {
	o.Bootstrap = os.Getenv("NEOCLOUD_BOOTSTRAP_TOKEN")
	if o.DatabaseURL == "" {
		// Read here, not as the flag's default: help would print its password.
		o.DatabaseURL = os.Getenv("NEOCLOUD_DATABASE_URL")
	}
	ctx, cancel := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer cancel()
	r, err := StartServer(ctx, o)
	if err != nil {
		return err
	}
	store := "sqlite " + r.Store.Path
	if r.Store.Dialect == sqlstore.Postgres {
		store = "postgres"
	}
	fmt.Fprintf(g.stdout, "neocloud %s listening on %s (store: %s)\n", Version, r.URL, store)
	if r.Token != "" {
		fmt.Fprintf(g.stdout, "operator-admin token (shown once): %s\n", r.Token)
	}
	<-ctx.Done()
	fmt.Fprintln(g.stdout, "shutting down")
	return r.Close()
}

func serverFlags(cmd *cobra.Command, o *ServerOptions) {
	cmd.Flags().IntVar(&o.HeartbeatS, "heartbeat-s", 10, "seconds between agent heartbeats (agents are told at join)")
	cmd.Flags().IntVar(&o.Liveness.Missed, "liveness-missed", 3, "missed heartbeats that make a node unreachable")
	cmd.Flags().DurationVar(&o.Liveness.Grace, "liveness-grace", 5*time.Minute, "how long a node stays unreachable before it is failed and its work replaced")
	cmd.Flags().DurationVar(&o.Checks.Every, "check-every", 24*time.Hour, "how often each idle node gets an active health check through its agent (negative: never)")
	cmd.Flags().IntVar(&o.Checks.PerSweep, "checks-per-sweep", 50, "active health checks started at most per sweep (every half heartbeat interval)")
	cmd.Flags().IntVar(&o.Remediation.QuarantineAfter, "quarantine-after", 3, "failures in 30 days that quarantine a node for operator review")
	cmd.Flags().DurationVar(&o.Remediation.Fallback, "sim-burn-in", 10*time.Minute, "simulated burn-in and sanitize time of a repaired node without an agent")
	cmd.Flags().IntVar(&o.Liveness.StartupIntervals, "liveness-startup", 6, "heartbeat intervals after a start before any node is judged")
	cmd.Flags().StringVar(&o.Listen, "listen", "127.0.0.1:8080", "HOST:PORT to listen on (port 0 picks a free one)")
	cmd.Flags().StringVar(&o.DataDir, "data-dir", "./neocloud-data", "directory of the embedded SQLite database")
	cmd.Flags().DurationVar(&o.IdempotencyLease, "idempotency-lease", idempotency.DefaultLease, "how long a request with an Idempotency-Key blocks retries of that key (after a crash, retries wait this long)")
	cmd.Flags().StringVar(&o.DatabaseURL, "database-url", "", "postgres://… to use PostgreSQL (default NEOCLOUD_DATABASE_URL)")
	cmd.Flags().Float64Var(&o.RateLimit, "rate-limit", 50, "requests per second each token may make (0: no limit); above it, 429 with Retry-After")
	cmd.Flags().IntVar(&o.RateBurst, "rate-burst", 0, "requests a token may make at once above the rate (default 2 × rate-limit)")
	cmd.Flags().DurationVar(&o.Policy.QuoteTTL, "quote-ttl", 15*time.Minute, "how long a quote, and the capacity it holds, lasts")
	cmd.Flags().IntVar(&o.Policy.MaxHolds, "max-holds", 4, "open holds (quotes holding capacity) per tenant")
	cmd.Flags().DurationVar(&o.Policy.LeadTime, "lead-time", 30*time.Minute, "allocations are bound and provisioned this long before a reservation starts")
	cmd.Flags().DurationVar(&o.Policy.SpotNotice, "notice-spot", 120*time.Second, "notice spot work gets before committed work reclaims its nodes")
	cmd.Flags().DurationVar(&o.Policy.InternalNotice, "notice-internal", 30*time.Second, "notice internal work gets before committed work reclaims its nodes")
	var prov, net, san time.Duration
	var fail float64
	cmd.Flags().DurationVar(&prov, "sim-provision", 90*time.Second, "simulated provisioning time per node (image, keys, cluster join)")
	cmd.Flags().DurationVar(&net, "sim-network", 20*time.Second, "simulated network attach/detach time per node")
	cmd.Flags().DurationVar(&san, "sim-sanitize", 5*time.Minute, "simulated sanitize time per node")
	cmd.Flags().Float64Var(&fail, "sim-fail-rate", 0, "probability a simulated provisioning step fails (retried, then the node is replaced)")
	cmd.PreRun = func(*cobra.Command, []string) {
		o.Seams = &Seams{Provision: &sales.SimStage{Duration: prov, Jitter: prov / 3, FailRate: fail, Seed: 1},
			Network: &sales.SimStage{Duration: net}, Sanitize: &sales.SimStage{Duration: san, Jitter: san / 5}}
	}
}

// spotRates feeds billing's spot price series from the selling service.
func spotRates(sv *sales.Service) func(ctx context.Context) ([]billing.SpotPoint, error) {
	return func(ctx context.Context) ([]billing.SpotPoint, error) {
		rs, err := sv.SpotRates(ctx)
		out := make([]billing.SpotPoint, 0, len(rs))
		for _, r := range rs {
			out = append(out, billing.SpotPoint{SiteID: r.Site, SKU: r.SKU, At: r.At, RateMicros: r.RateMicros})
		}
		return out, err
	}
}
