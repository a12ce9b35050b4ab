// Package demo runs a living GPU site in one process: the server on the
// embedded store, a generated Colossus-shaped site, a simulated agent per
// node reporting over HTTP as real agents do (every few real seconds), a
// clock running faster than real time, seeded tenants and contracts,
// customers arriving and leaving, internal training backfilling what is
// idle, GPUs failing at a rate scaled from Meta's Llama 3 figures, and a
// technician repairing what failed. The console shows it all.
package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/agent"
	"github.com/neocloud/neocloud/agents"
	"github.com/neocloud/neocloud/billing"
	"github.com/neocloud/neocloud/cli"
	"github.com/neocloud/neocloud/fleet"
	"github.com/neocloud/neocloud/sales"
)

// Options configure a demo.
type Options struct {
	Listen  string // HOST:PORT (default 127.0.0.1:8080; port 0 picks a free one)
	DataDir string // "" : a temporary directory, removed at the end
	GPUs    int    // default 8,192
	// Speed is how many seconds of the control plane's clock pass in a
	// real second (default 60); heartbeats stay on a real-time cadence.
	Speed float64
	// FailureRate scales the failure rate from Meta's Llama 3 figures
	// (419 unexpected interruptions in 54 days on 16,384 H100s): default
	// 1; negative, no failures.
	FailureRate float64
	HeartbeatS  int    // default 10 (real seconds)
	Seed        uint64 // default 1
	// FirstFailure is when (real time after the agents start) the first
	// failure comes (default 30 s).
	FirstFailure time.Duration
	// SampleEvery is how often (real time) the console records the
	// fleet's use for its charts (default 5 s).
	SampleEvery time.Duration
	Out         io.Writer    // the console's URL, tokens, then a status line now and then
	Logger      *slog.Logger // the server's log (default: warnings and worse to stderr)
}

// MetaFailuresPerGPUHour is the rate of unexpected interruptions per
// GPU-hour in Meta's Llama 3 training: 419 in 54 days on 16,384 H100s.
const MetaFailuresPerGPUHour = 419.0 / (54 * 24 * 16384)

// Clock runs from a base time at Speed times real time.
type Clock struct {
	mu    sync.Mutex
	base  time.Time
	real  time.Time
	speed float64
}

// NewClock starts a clock at base.
func NewClock(base time.Time, speed float64) *Clock {
	return &Clock{base: base.UTC(), real: time.Now(), speed: speed}
}

// Now is the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.base.Add(time.Duration(float64(time.Since(c.real)) * c.speed))
}

// Real is how long in real time a span of the clock's time takes.
func (c *Clock) Real(d time.Duration) time.Duration { return time.Duration(float64(d) / c.speed) }

// state is what the demo keeps in its data directory to resume.
type state struct {
	Now           time.Time `json:"now"`
	OperatorToken string    `json:"operator_token"`
	TenantToken   string    `json:"tenant_token"`
	Site          string    `json:"site"`
}

// Demo is a running demo.
type Demo struct {
	URL           string
	OperatorToken string
	TenantToken   string
	Clock         *Clock
	Server        *cli.Running

	o       Options
	dir     string
	tempDir bool
	st      state
	op      neocloud.Principal
	nodes   map[string]*simNode // by node id
	busy    atomic.Pointer[map[string]bool]
	failed  atomic.Int64
	// noStream: the agents hold no push streams (too many for the
	// process's open-file limit).
	noStream  bool
	transport http.RoundTripper // the agents' shared connection pool
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closed    sync.Once
	err       error
	outages   outages
}

// simNode is one simulated node: its GPUs and its agent.
type simNode struct {
	id, hostname, serial string
	gpus                 *agent.Simulated
	mu                   sync.Mutex
	stop                 context.CancelFunc // the running agent's, nil when stopped (a hung node)
}

func (o *Options) defaults() {
	if o.Listen == "" {
		o.Listen = "127.0.0.1:8080"
	}
	if o.GPUs == 0 {
		o.GPUs = 8192
	}
	if o.Speed <= 0 {
		o.Speed = 60
	}
	if o.HeartbeatS <= 0 {
		o.HeartbeatS = 10
		if o.GPUs > 32768 {
			o.HeartbeatS = 30 // a report every 30 s from 24,576 agents in one process
		}
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.FailureRate == 0 {
		o.FailureRate = 1
	}
	if o.FirstFailure == 0 {
		o.FirstFailure = 30 * time.Second
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
}

// Start starts the demo: the server, the site (generated and sold on a
// first start, resumed otherwise), the agents and the simulation. It
// prints the console's URL and the tokens.
func Start(ctx context.Context, o Options) (*Demo, error) {
	o.defaults()
	d := &Demo{o: o, dir: o.DataDir, nodes: map[string]*simNode{}}
	if d.dir == "" {
		dir, err := os.MkdirTemp("", "neocloud-demo-")
		if err != nil {
			return nil, err
		}
		d.dir, d.tempDir = dir, true
	}
	if err := os.MkdirAll(d.dir, 0o700); err != nil {
		return nil, err
	}
	resumed, err := d.load()
	if err != nil {
		return nil, err
	}
	if !resumed {
		// Shortly before a month ends, so that a billing period closes
		// while you watch.
		now := time.Now().UTC()
		d.st.Now = time.Date(now.Year(), now.Month()+1, 1, 0, 0, 0, 0, time.UTC).Add(-6 * time.Hour)
	}
	d.Clock = NewClock(d.st.Now, o.Speed)
	prov := 10 * time.Minute
	srv, err := cli.StartServer(ctx, cli.ServerOptions{
		Listen: o.Listen, DataDir: d.dir, Bootstrap: d.st.OperatorToken, Logger: o.Logger,
		Now: d.Clock.Now, TimeScale: o.Speed, HeartbeatS: o.HeartbeatS, LifecycleEvery: time.Second,
		Liveness: agents.Liveness{Grace: 5 * time.Minute}, Remediation: agents.Remediation{QuarantineAfter: 3},
		Checks: agents.ActiveChecks{Every: 24 * time.Hour, PerSweep: 20},
		Policy: sales.Policy{LeadTime: 30 * time.Minute, SpotNotice: 2 * time.Minute, InternalNotice: 30 * time.Second},
		Seams: &cli.Seams{Provision: &sales.SimStage{Duration: prov, Jitter: prov / 2, Seed: o.Seed},
			Network: &sales.SimStage{Duration: time.Minute}, Sanitize: &sales.SimStage{Duration: 20 * time.Minute}},
		Banner: fmt.Sprintf("Demo: a simulated site; its clock runs %g× real time.", o.Speed), SampleEvery: o.SampleEvery,
		BillingClosed: func(p billing.Period) {
			fmt.Fprintf(o.Out, "billing: %s closed at %s (demo time): %d invoices, on the console's Invoices page\n", p.Period, p.ClosedAt.Format("2006-01-02 15:04"), p.Invoices)
		},
	})
	if err != nil {
		return nil, err
	}
	d.Server, d.URL = srv, srv.URL
	if srv.Token != "" {
		d.st.OperatorToken = srv.Token
	}
	d.op = neocloud.Principal{TokenID: "demo", Role: neocloud.RoleOperatorAdmin}
	if !resumed {
		fmt.Fprintf(o.Out, "generating a site of %d GPUs and selling it…\n", o.GPUs)
		if err := d.seed(ctx); err != nil {
			srv.Close()
			return nil, fmt.Errorf("seeding the demo: %w", err)
		}
	}
	d.OperatorToken, d.TenantToken = d.st.OperatorToken, d.st.TenantToken
	if err := d.save(); err != nil {
		srv.Close()
		return nil, err
	}
	bg, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	if err := d.startAgents(bg); err != nil {
		cancel()
		srv.Close()
		return nil, err
	}
	fmt.Fprintf(o.Out, "console: %s/\n", d.URL)
	fmt.Fprintf(o.Out, "operator token: %s\n", d.OperatorToken)
	fmt.Fprintf(o.Out, "tenant token (acme, tenant-admin): %s\n", d.TenantToken)
	fmt.Fprintf(o.Out, "clock: %s UTC, %g× real time; data in %s%s\n", d.Clock.Now().Format("2006-01-02 15:04"), o.Speed, d.dir, map[bool]string{true: " (removed at the end)"}[d.tempDir])
	d.loop(bg, "traffic", time.Second*5, d.traffic())
	d.loop(bg, "busy", 5*time.Second, d.refreshBusy)
	d.loop(bg, "technician", 5*time.Second, d.technician)
	d.loop(bg, "save", 5*time.Second, func(context.Context) error { return d.save() })
	d.loop(bg, "on-call", 5*time.Second, d.onCall)
	d.failures(bg)
	d.outage(bg)
	d.reports(bg)
	return d, nil
}

// Run starts the demo and runs it until ctx ends, printing a status line
// every so often.
func Run(ctx context.Context, o Options) error {
	d, err := Start(ctx, o)
	if err != nil {
		return err
	}
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintln(d.o.Out, "stopping…")
			return d.Close()
		case <-t.C:
			fmt.Fprintln(d.o.Out, d.Status())
		}
	}
}

// Status is a one-line summary of the site now.
func (d *Demo) Status() string {
	use := 0
	if b := d.busy.Load(); b != nil {
		use = len(*b)
	}
	out := 0
	d.Server.Fleet.Snapshot.Each(fleet.NodeFilter{}, func(n *fleet.Node) {
		if n.Health == fleet.HealthFailed || n.Lifecycle == fleet.LifecycleRepair {
			out++
		}
	})
	return fmt.Sprintf("%s UTC: %d of %d nodes in use, %d failures so far, %d nodes failed or in repair", d.Clock.Now().Format("2006-01-02 15:04"), use, len(d.nodes), d.failed.Load(), out)
}

// Close stops the simulation, the agents and the server, and keeps the
// clock for a resume (or removes a temporary data directory). Calling it
// again does nothing.
func (d *Demo) Close() error {
	d.closed.Do(func() {
		d.cancel()
		d.wg.Wait()
		d.err = d.save()
		if err := d.Server.Close(); d.err == nil {
			d.err = err
		}
		if d.tempDir {
			os.RemoveAll(d.dir)
		}
	})
	return d.err
}

func (d *Demo) statePath() string { return filepath.Join(d.dir, "demo.json") }

func (d *Demo) load() (bool, error) {
	b, err := os.ReadFile(d.statePath())
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := json.Unmarshal(b, &d.st); err != nil {
		return false, fmt.Errorf("%s: %w", d.statePath(), err)
	}
	return true, nil
}

// save keeps the clock and the tokens (0600: they are secrets).
func (d *Demo) save() error {
	if d.Clock != nil {
		d.st.Now = d.Clock.Now()
	}
	b, _ := json.MarshalIndent(d.st, "", "  ")
	tmp := d.statePath() + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, d.statePath())
}

// loop runs fn every so often until ctx ends.
func (d *Demo) loop(ctx context.Context, name string, every time.Duration, fn func(context.Context) error) {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if err := fn(ctx); err != nil && ctx.Err() == nil {
				d.o.Logger.Warn("demo "+name, "err", err)
			}
		}
	}()
}
