// Package agent is the node agent: it joins the control plane with a site
// join token, keeps its node's own credential, and reports its GPUs'
// telemetry in heartbeats numbered without gaps. GPUs are read through the
// GPUs interface: simulated here (power that follows load, a monotonic
// energy counter, heat, injectable faults); NVML comes behind the same
// interface.
package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/neocloud/neocloud/client"
	"github.com/neocloud/neocloud/wire"
)

// Version is the agent's version, sent in every message.
const Version = "0.1.0"

// GPUs is how the agent reads its GPUs.
type GPUs interface {
	Info() []wire.GPUInfo
	// Sample reads every GPU at now; XID events are those since the last
	// sample.
	Sample(now time.Time) []wire.GPUSample
}

// ErrNoNVML says the node has no NVIDIA management library: without
// simulated GPUs there is nothing to report.
var ErrNoNVML = errors.New("no NVIDIA management library (libnvidia-ml) on this node, and this build reads GPUs through simulation only: run with --simulate-gpus N")

// Options configure an agent.
type Options struct {
	Server    string
	JoinToken string
	Hostname  string
	Serial    string
	StateDir  string // keeps the node's credential and the last sequence number
	Interval  time.Duration
	GPUs      GPUs
	Log       io.Writer
	// NoticeAddr, when set, serves the node-local notices endpoint there
	// (e.g. 127.0.0.1:8777): GET /notices answers the node's assignment and
	// any preemption or maintenance notice, for the tenant's jobs.
	NoticeAddr string
	// Execute carries out a command that passed the fence (nil: the
	// agent's own handling).
	Execute func(wire.Command) error
	// ChecksDir holds host checks (NHC-style): every executable in it runs
	// before each report, with a timeout; a non-zero exit is a failed check
	// whose first line of output is the message.
	ChecksDir    string
	CheckTimeout time.Duration
	// BurnInCommand, ResetCommand and RebootCommand run a burn-in (e.g.
	// "dcgmi diag -r 3"), a GPU reset and a reboot on a real node; empty:
	// the GPUs' own (simulated) or, for a burn-in, a check that every GPU
	// answers.
	BurnInCommand, ResetCommand, RebootCommand string
	// SanitizeCommand wipes a real node for its next tenant (local disks,
	// GPU memory, keys); without it a real node's sanitize fails.
	SanitizeCommand string
	// HostRoot is the node's sysfs ("/sys") for real NICs and uptime;
	// empty for a simulated node (its NICs are simulated, its uptime the
	// agent's).
	HostRoot string
	// Now stamps reports (default time.Now); the demo's agents report on
	// its accelerated clock, every Interval of real time.
	Now func() time.Time
	// NoStream leaves the push stream closed: assignment changes and
	// commands then come only with heartbeat answers (many agents in one
	// process would otherwise hold two descriptors each).
	NoStream bool
	// Transport carries the agent's requests (nil: Go's default); agents
	// sharing a process share one with a bounded pool of connections.
	Transport http.RoundTripper
}

// state is what the agent keeps between runs.
type state struct {
	NodeID     string           `json:"node_id"`
	Credential string           `json:"credential"`
	Seq        int64            `json:"seq"`
	Assignment *wire.Assignment `json:"assignment,omitempty"`
}

func (o *Options) statePath() string { return filepath.Join(o.StateDir, "agent.json") }

func (o *Options) load() (state, error) {
	var st state
	b, err := os.ReadFile(o.statePath())
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(b, &st)
}

// save writes the state atomically (a crash leaves the old or the new).
func (o *Options) save(st state) error {
	if err := os.MkdirAll(o.StateDir, 0o700); err != nil {
		return err
	}
	b, _ := json.Marshal(st)
	tmp := o.statePath() + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, o.statePath())
}

// Run joins if needed and reports every Interval until ctx ends. A
// heartbeat the server did not acknowledge is sent again, with the same
// sequence number, before any newer one.
func Run(ctx context.Context, o Options) error {
	if o.GPUs == nil {
		return ErrNoNVML
	}
	if o.Interval == 0 {
		o.Interval = 10 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	logf := func(format string, args ...any) {
		if o.Log != nil {
			fmt.Fprintf(o.Log, format+"\n", args...)
		}
	}
	st, err := o.load()
	if err != nil {
		return err
	}
	if st.Credential == "" {
		if o.JoinToken == "" {
			return errors.New("this node has not joined: give --join-token")
		}
		c := o.client(o.JoinToken)
		var jr wire.JoinResponse
		if err := c.Do(ctx, http.MethodPost, "/v1/agent/join", nil, wire.JoinRequest{Version: wire.Version, Hostname: o.Hostname, Serial: o.Serial, GPUs: o.GPUs.Info(), AgentVersion: Version, DriverVersion: driverOf(o.GPUs)}, &jr); err != nil {
			return fmt.Errorf("join: %w", err)
		}
		st = state{NodeID: jr.NodeID, Credential: jr.Credential, Seq: max(0, jr.NextSeq-1)}
		if err := o.save(st); err != nil {
			return err
		}
		if jr.HeartbeatS > 0 && o.Interval == 10*time.Second {
			o.Interval = time.Duration(jr.HeartbeatS) * time.Second
		}
		logf("joined as node %s", st.NodeID)
	}
	c := o.client(st.Credential)
	c.Retries = 0
	start := time.Now()
	sp, err := openSpool(filepath.Join(o.StateDir, "spool.jsonl"), o.maxSpool())
	if err != nil {
		return err
	}
	fence := &Fence{}
	skuCap := 0 // the power-capped SKU's cap applied, watts
	fence.Set(st.Assignment)
	// Commands run in the background (a burn-in takes minutes; reports go
	// on meanwhile); their outcomes travel with the next report.
	var resMu sync.Mutex
	var results []wire.Result
	done := map[string]bool{}
	// dispatch runs commands not yet run, whether they came in a heartbeat
	// answer or on the push stream.
	dispatch := func(cmds []wire.Command) {
		for _, cmd := range cmds {
			resMu.Lock()
			seen := done[cmd.ID]
			done[cmd.ID] = true
			resMu.Unlock()
			if seen {
				continue // running, or its result is on its way
			}
			go func(cmd wire.Command) {
				r := o.run(fence, cmd, logf)
				resMu.Lock()
				results = append(results, r)
				resMu.Unlock()
			}(cmd)
		}
	}
	if o.NoticeAddr != "" {
		stop, err := serveNotices(o.NoticeAddr, st.NodeID, fence, o.GPUs)
		if err != nil {
			return err
		}
		defer stop()
	}
	// The push stream brings assignment changes (notices) and urgent
	// commands at once; the heartbeat answers bring them too, should the
	// stream be down.
	go func() {
		for ctx.Err() == nil && !o.NoStream {
			err := c.Stream(ctx, "/v1/agent/stream", nil, "", func(_, event string, data []byte) error {
				switch event {
				case "assignment":
					var a *wire.Assignment
					if err := json.Unmarshal(data, &a); err == nil {
						fence.Set(a)
					}
				case "commands":
					var cmds []wire.Command
					if err := json.Unmarshal(data, &cmds); err == nil {
						dispatch(cmds)
					}
				}
				return nil
			})
			if err != nil && ctx.Err() == nil {
				logf("push stream: %v", err)
			}
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}()
	t := time.NewTicker(o.Interval)
	defer t.Stop()
	for {
		// 1. Sample, number and spool: a report exists on disk before it
		// is sent.
		now := o.Now().UTC()
		st.Seq++
		resMu.Lock()
		hb := wire.Heartbeat{Version: wire.Version, Seq: st.Seq, At: now, GPUs: o.GPUs.Sample(now), UptimeS: int64(time.Since(start) / time.Second), AgentVersion: Version, DriverVersion: driverOf(o.GPUs), Results: results}
		results = nil // they travel with this report now, spooled until delivered
		resMu.Unlock()
		hb.Checks = o.runChecks(ctx)
		if n, ok := o.GPUs.(NICs); ok {
			hb.NICs = n.NICs()
		} else if o.HostRoot != "" {
			hb.NICs = HostNICs(o.HostRoot)
		}
		if o.HostRoot != "" {
			if u := HostUptime(filepath.Join(o.HostRoot, "..", "proc")); u >= 0 {
				hb.UptimeS = u
			}
		}
		if dropped, err := sp.add(hb); err != nil {
			return err
		} else if dropped > 0 {
			logf("spool full: %d oldest reports dropped", dropped)
		}
		if err := o.save(st); err != nil {
			return err
		}
		// 2. Send the spool in order until one does not get through.
		sent := 0
		for _, h := range sp.items {
			var ans wire.HeartbeatAnswer
			if err := c.Do(ctx, http.MethodPost, "/v1/agent/heartbeat", nil, h, &ans); err != nil {
				// Cut off: keep the current assignment, do nothing destructive.
				logf("report %d not delivered (%d spooled): %v", h.Seq, len(sp.items)-sent, err)
				break
			}
			if c, ok := o.GPUs.(Crasher); ok && c.CrashNow() {
				return ErrCrashed // delivered, not yet dropped from the spool
			}
			sent++
			fence.Set(ans.Assignment)
			st.Assignment = ans.Assignment
			if ans.PowerCapW > 0 && ans.PowerCapW != skuCap {
				// A power-capped SKU: hold every GPU to its cap (once; a
				// shedding cap ordered later stays until lifted).
				if err := capAll(o.GPUs, ans.PowerCapW); err != nil {
					logf("power cap %d W: %v", ans.PowerCapW, err)
				} else {
					skuCap = ans.PowerCapW
				}
			}
			dispatch(ans.Commands)
		}
		if err := sp.drop(sent); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (o *Options) client(token string) *client.Client {
	c := client.New(o.Server, token)
	if o.Transport != nil {
		c.HTTP.Transport = o.Transport
	}
	return c
}

// RunCommand carries out one command as the agent would (the fence
// first), and says how it went.
func (o *Options) RunCommand(f *Fence, c wire.Command) wire.Result {
	return o.run(f, c, func(string, ...any) {})
}

// run carries out a command that passes the fence and says how it went.
func (o *Options) run(f *Fence, c wire.Command, logf func(string, ...any)) wire.Result {
	if err := f.Allow(c); err != nil {
		logf("command %s (%s) refused: %v", c.ID, c.Kind, err)
		return wire.Result{ID: c.ID, State: "refused", Message: err.Error()}
	}
	exec := o.Execute
	var done string // what a sanitize did, for its record
	if exec == nil {
		exec = o.execute
		switch c.Kind {
		case "health_check":
			exec = func(wire.Command) error { return o.healthCheck(f) }
		case "sanitize":
			exec = func(wire.Command) (err error) { done, err = o.sanitize(); return err }
		}
	}
	if err := exec(c); errors.Is(err, ErrGaveWay) {
		logf("command %s (%s) stopped: %v", c.ID, c.Kind, err)
		return wire.Result{ID: c.ID, State: "refused", Message: err.Error()}
	} else if err != nil {
		logf("command %s (%s) failed: %v", c.ID, c.Kind, err)
		return wire.Result{ID: c.ID, State: "failed", Message: err.Error()}
	}
	logf("command %s (%s) done", c.ID, c.Kind)
	return wire.Result{ID: c.ID, State: "done", Message: done}
}

// Wiper is GPUs that wipe themselves (simulated): the sanitize steps done.
type Wiper interface {
	Wipe(ctx context.Context) ([]string, error)
}

// sanitize wipes the node for its next tenant: the configured command on a
// real node, the GPUs' own wipe on a simulated one. It says what it did
// ("; " between steps); a real node without a command fails rather than
// claim a wipe it did not do.
func (o *Options) sanitize() (string, error) {
	if o.SanitizeCommand != "" {
		b, err := exec.Command("/bin/sh", "-c", o.SanitizeCommand).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("%v: %s", err, strings.TrimSpace(string(b)))
		}
		return "ran " + o.SanitizeCommand, nil
	}
	w, ok := o.GPUs.(Wiper)
	if !ok {
		return "", errors.New("no sanitize command is configured on this node (--sanitize-command)")
	}
	steps, err := w.Wipe(context.Background())
	return strings.Join(steps, "; "), err
}

// ErrGaveWay is a health check stopped because the node got work.
var ErrGaveWay = errors.New("gave way to work: the node was assigned while it was being checked")

// Checker is GPUs that run their own active health check (simulated).
type Checker interface {
	HealthCheck(ctx context.Context) error
}

// healthCheck is an active check of an idle node: the host checks, every
// GPU answering, and the GPUs' own check where they have one. It stops, and
// says it gave way, as soon as the node is assigned.
func (o *Options) healthCheck(f *Fence) error {
	if a, _ := f.Current(); a != nil {
		return ErrGaveWay
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	gaveWay := make(chan struct{})
	go func() {
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if a, _ := f.Current(); a != nil {
					close(gaveWay)
					cancel()
					return
				}
			}
		}
	}()
	var errs []string
	for _, c := range o.runChecks(ctx) {
		if !c.OK {
			errs = append(errs, c.Name+": "+c.Message)
		}
	}
	for _, g := range o.GPUs.Sample(time.Now()) {
		if g.Lost {
			errs = append(errs, fmt.Sprintf("gpu %d is not visible to the driver", g.Index))
		}
	}
	if ch, ok := o.GPUs.(Checker); ok {
		if err := ch.HealthCheck(ctx); err != nil {
			errs = append(errs, err.Error())
		}
	}
	select {
	case <-gaveWay:
		return ErrGaveWay
	default:
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

// Driverer is GPUs that know their driver's version.
type Driverer interface {
	Driver() string
}

func driverOf(g GPUs) string {
	if d, ok := g.(Driverer); ok {
		return d.Driver()
	}
	return ""
}

// NICs is GPUs that also report the node's network links.
type NICs interface {
	NICs() []wire.NICSample
}

// runChecks runs every executable in ChecksDir, in name order.
func (o *Options) runChecks(ctx context.Context) []wire.Check {
	if o.ChecksDir == "" {
		return nil
	}
	entries, err := os.ReadDir(o.ChecksDir)
	if err != nil {
		return []wire.Check{{Name: "checks-dir", OK: false, Message: err.Error()}}
	}
	timeout := o.CheckTimeout
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	var out []wire.Check
	for _, e := range entries {
		info, err := e.Info()
		if err != nil || e.IsDir() || info.Mode()&0o111 == 0 {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, timeout)
		b, err := exec.CommandContext(cctx, filepath.Join(o.ChecksDir, e.Name())).CombinedOutput()
		cancel()
		c := wire.Check{Name: e.Name(), OK: err == nil}
		if err != nil {
			msg := strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0])
			if msg == "" {
				msg = err.Error()
			}
			if cctx.Err() == context.DeadlineExceeded {
				msg = fmt.Sprintf("timed out after %v", timeout)
			}
			c.Message = msg
		}
		out = append(out, c)
	}
	return out
}

// PowerCapper is GPUs whose power can be capped.
type PowerCapper interface {
	SetPowerCap(gpu int, watts int) error
}

// capAll caps every GPU at watts.
func capAll(gpus GPUs, watts int) error {
	pc, ok := gpus.(PowerCapper)
	if !ok {
		return errors.New("these GPUs cannot be capped")
	}
	for _, g := range gpus.Info() {
		if err := pc.SetPowerCap(g.Index, watts); err != nil {
			return err
		}
	}
	return nil
}

// Resetter is GPUs that can be reset and the node rebooted (simulated
// ones; a real node does it through ResetCommand and RebootCommand).
type Resetter interface {
	ResetGPU(gpu int) error
	Reboot() error
}

// BurnIner is GPUs that run their own burn-in.
type BurnIner interface {
	BurnIn(ctx context.Context) error
}

// execute is the agent's own handling of commands: a power cap goes to
// every GPU; a GPU reset or a reboot to the GPUs' own, or the configured
// command; a burn-in to the GPUs' own, the configured command, or a check
// that every GPU answers; drain, health check and sanitize are
// acknowledged (the simulated node's are instant).
func (o *Options) execute(c wire.Command) error {
	switch c.Kind {
	case "gpu_reset", "reboot":
		if cmd := map[string]string{"gpu_reset": o.ResetCommand, "reboot": o.RebootCommand}[c.Kind]; cmd != "" {
			return exec.Command("/bin/sh", "-c", cmd).Run()
		}
		r, ok := o.GPUs.(Resetter)
		if !ok {
			return fmt.Errorf("no %s command is configured on this node", c.Kind)
		}
		if c.Kind == "reboot" {
			return r.Reboot()
		}
		for _, g := range o.GPUs.Info() {
			if err := r.ResetGPU(g.Index); err != nil {
				return err
			}
		}
	case "burn_in":
		if o.BurnInCommand != "" {
			if b, err := exec.Command("/bin/sh", "-c", o.BurnInCommand).CombinedOutput(); err != nil {
				return fmt.Errorf("%v: %s", err, strings.TrimSpace(string(b)))
			}
			return nil
		}
		if b, ok := o.GPUs.(BurnIner); ok {
			return b.BurnIn(context.Background())
		}
		for _, g := range o.GPUs.Sample(time.Now()) {
			if g.Lost {
				return fmt.Errorf("gpu %d is not visible to the driver", g.Index)
			}
		}
	case "power_cap":
		return capAll(o.GPUs, c.PowerW)
	}
	return nil
}

// Fence holds the node's current assignment and refuses destructive
// commands from older generations, and sanitizing while work is assigned.
// It is safe for concurrent use.
type Fence struct {
	mu  sync.Mutex
	cur *wire.Assignment
	gen int64 // the highest generation seen
}

// Set records the assignment the server last answered (nil: idle).
func (f *Fence) Set(a *wire.Assignment) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cur = a
	if a != nil && a.Generation > f.gen {
		f.gen = a.Generation
	}
}

// Current returns the assignment and the highest generation seen.
func (f *Fence) Current() (*wire.Assignment, int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cur, f.gen
}

// ErrStale is a destructive command from an older assignment generation.
var ErrStale = errors.New("stale: the command is from an older assignment generation")

// Allow says whether a command may run now.
func (f *Fence) Allow(c wire.Command) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if wire.Destructive(c.Kind) && c.Generation < f.gen {
		return fmt.Errorf("%w (%d < %d)", ErrStale, c.Generation, f.gen)
	}
	if (c.Kind == "sanitize" || c.Kind == "burn_in") && f.cur != nil {
		return fmt.Errorf("the node is assigned: it is never %s while it serves work", map[string]string{"sanitize": "sanitized", "burn_in": "burned in"}[c.Kind])
	}
	return nil
}

// Injector is GPUs that take injected faults (simulated).
type Injector interface {
	Inject(Fault)
}

// serveNotices serves the node-local notices endpoint, and for simulated
// GPUs POST /faults to inject a fault (JSON Fault).
func serveNotices(addr, nodeID string, f *Fence, gpus GPUs) (func(), error) {
	mux := http.NewServeMux()
	if inj, ok := gpus.(Injector); ok {
		mux.HandleFunc("POST /faults", func(w http.ResponseWriter, r *http.Request) {
			var ft Fault
			if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&ft); err != nil {
				http.Error(w, "a fault as JSON: "+err.Error(), http.StatusBadRequest)
				return
			}
			if ft.GPU < 0 || ft.GPU >= len(gpus.Info()) {
				http.Error(w, fmt.Sprintf("gpu: no GPU %d", ft.GPU), http.StatusUnprocessableEntity)
				return
			}
			inj.Inject(ft)
			w.WriteHeader(http.StatusNoContent)
		})
	}
	mux.HandleFunc("GET /notices", func(w http.ResponseWriter, _ *http.Request) {
		a, _ := f.Current()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(struct {
			NodeID     string           `json:"node_id"`
			Assignment *wire.Assignment `json:"assignment"`
		}{nodeID, a})
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	return func() { srv.Close() }, nil
}

// maxSpool is how many reports the spool keeps: seven days at the default
// ten-second rate, whatever the interval.
func (o *Options) maxSpool() int { return 7 * 24 * 360 }

// spool is the reports not yet acknowledged, oldest first, kept in a file
// of JSON lines so that a restart loses none.
type spool struct {
	path  string
	max   int
	items []wire.Heartbeat
}

func openSpool(path string, max int) (*spool, error) {
	sp := &spool{path: path, max: max}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return sp, nil
	}
	if err != nil {
		return nil, err
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var hb wire.Heartbeat
		if json.Unmarshal(line, &hb) == nil {
			sp.items = append(sp.items, hb)
		}
	}
	return sp, nil
}

// add appends a report to the file (synced) and the queue; beyond the
// bound the oldest go, and add says how many.
func (sp *spool) add(hb wire.Heartbeat) (int, error) {
	f, err := os.OpenFile(sp.path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return 0, err
	}
	b, _ := json.Marshal(hb)
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return 0, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return 0, err
	}
	if err := f.Close(); err != nil {
		return 0, err
	}
	sp.items = append(sp.items, hb)
	dropped := 0
	if len(sp.items) > sp.max {
		dropped = len(sp.items) - sp.max
		return dropped, sp.drop(dropped)
	}
	return 0, nil
}

// drop removes the n oldest reports (delivered, or over the bound).
func (sp *spool) drop(n int) error {
	if n == 0 {
		return nil
	}
	sp.items = sp.items[n:]
	var b bytes.Buffer
	for _, hb := range sp.items {
		line, _ := json.Marshal(hb)
		b.Write(line)
		b.WriteByte('\n')
	}
	tmp := sp.path + ".tmp"
	if err := os.WriteFile(tmp, b.Bytes(), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, sp.path)
}

// Simulated is a simulated node's GPUs. It is safe for concurrent use.
type Simulated struct {
	// Host names the simulated machine: its GPUs' UUIDs derive from it,
	// distinct across a simulated fleet and the same on every start.
	Host   string
	mu     sync.Mutex
	gpus   []simGPU
	nics   []simNIC
	model  string
	memMiB int
	maxW   float64
	idleW  float64
	last   time.Time
	// burn-in time and failure chance
	burnInFor  time.Duration
	burnInFail float64
	checkFor   time.Duration
	crash      bool
	// platformJ is the rest of the node's energy (CPUs, memory, NICs,
	// fans), integrated at PlatformW with the GPUs.
	platformJ float64
	// Load returns each GPU's utilization (0–1) at a time: by default a
	// slow wave, so that power, heat and energy move.
	Load func(gpu int, t time.Time) float64
}

type simNIC struct {
	down   bool
	errors uint64
}

type simGPU struct {
	capW    float64
	energyJ float64
	tempC   float64
	xids    []wire.XID
	lost    bool
	eccU    uint64
	hot     bool
	// An uncorrectable HBM error remaps its row at the next reset; when
	// no spare row is left, the remap fails.
	remapPending, remapFailed bool
	slowLink                  bool
}

// NewSimulated returns n simulated GPUs of a model.
func NewSimulated(n int, model string, memMiB int, maxW float64) *Simulated {
	s := &Simulated{gpus: make([]simGPU, n), nics: make([]simNIC, n), model: model, memMiB: memMiB, maxW: maxW, idleW: maxW / 10}
	for i := range s.gpus {
		s.gpus[i].tempC = 35
	}
	s.Load = func(g int, t time.Time) float64 {
		return 0.5 + 0.45*math.Sin(float64(t.Unix())/600+float64(g))
	}
	return s
}

// Info lists the simulated GPUs.
func (s *Simulated) Info() []wire.GPUInfo {
	out := make([]wire.GPUInfo, len(s.gpus))
	for i := range out {
		out[i] = wire.GPUInfo{Index: i, UUID: simUUID(s.Host, i), Model: s.model, MemoryMiB: s.memMiB}
	}
	return out
}

// simUUID is a simulated GPU's UUID, shaped as NVML's
// (GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx), from its host and index.
func simUUID(host string, index int) string {
	h := sha256.Sum256(fmt.Appendf(nil, "%s/gpu/%d", host, index))
	x := hex.EncodeToString(h[:16])
	return "GPU-" + x[:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:]
}

// Fault is something to inject into a simulated GPU (or its NIC: one
// InfiniBand NIC per GPU, ib0…).
type Fault struct {
	GPU      int    `json:"gpu"`
	XID      int    `json:"xid,omitempty"`       // an XID event (0: none)
	Lost     bool   `json:"lost,omitempty"`      // the GPU falls off the bus
	ECC      uint64 `json:"ecc,omitempty"`       // uncorrected ECC errors
	Hot      bool   `json:"hot,omitempty"`       // thermal runaway
	LinkDown bool   `json:"link_down,omitempty"` // the GPU's NIC loses its link
	LinkUp   bool   `json:"link_up,omitempty"`   // … and gets it back (a flap is down, then up)
	// RowRemap is an HBM row remap waiting for a reset; RemapFailed, one
	// that found no spare row.
	RowRemap    bool `json:"row_remap,omitempty"`
	RemapFailed bool `json:"remap_failed,omitempty"`
	// SlowLink is a fault only a deep check finds: the GPU's NVLink
	// bandwidth below the floor (reports look healthy).
	SlowLink bool `json:"slow_link,omitempty"`
	// Crash kills the agent right after its next report is delivered,
	// before it notes the delivery: on restart it sends that report again.
	Crash bool `json:"crash,omitempty"`
}

// ErrCrashed is the simulated agent crash a Fault asked for.
var ErrCrashed = errors.New("simulated agent crash")

// Crasher is GPUs that can make their agent crash (simulated).
type Crasher interface {
	// CrashNow reports (once) that the agent should crash now.
	CrashNow() bool
}

// CrashNow reports an injected crash, once.
func (s *Simulated) CrashNow() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.crash
	s.crash = false
	return c
}

// SetPowerCap caps a simulated GPU's power.
func (s *Simulated) SetPowerCap(gpu int, watts int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if gpu < 0 || gpu >= len(s.gpus) {
		return fmt.Errorf("no GPU %d", gpu)
	}
	if float64(watts) < s.idleW || float64(watts) > s.maxW {
		return fmt.Errorf("%d W is outside %.0f–%.0f W", watts, s.idleW, s.maxW)
	}
	s.gpus[gpu].capW = float64(watts)
	return nil
}

// BurnInFor is how long a simulated burn-in takes; BurnInFailRate the
// chance one fails on healthy GPUs (a lost GPU or a failed remap always
// fails it).
func (s *Simulated) SetBurnIn(d time.Duration, failRate float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.burnInFor, s.burnInFail = d, failRate
}

// SetHealthCheck sets how long a simulated active health check takes.
func (s *Simulated) SetHealthCheck(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checkFor = d
}

// HealthCheck is a simulated active check: it takes its time (stopping
// when ctx ends) and fails as a deep test would.
func (s *Simulated) HealthCheck(ctx context.Context) error {
	s.mu.Lock()
	d := s.checkFor
	s.mu.Unlock()
	return s.deepTest(ctx, d, 0)
}

// BurnIn loads every GPU for the burn-in time and checks them.
func (s *Simulated) BurnIn(ctx context.Context) error {
	s.mu.Lock()
	d, rate := s.burnInFor, s.burnInFail
	s.mu.Unlock()
	return s.deepTest(ctx, d, rate)
}

// deepTest runs for d (or until ctx ends), then fails on a GPU off the
// bus, a failed remap or a slow link, else with chance failRate.
func (s *Simulated) deepTest(ctx context.Context, d time.Duration, failRate float64) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, g := range s.gpus {
		switch {
		case g.lost:
			return fmt.Errorf("gpu %d is not visible to the driver", i)
		case g.remapFailed:
			return fmt.Errorf("gpu %d: HBM row remap failed", i)
		case g.slowLink:
			return fmt.Errorf("gpu %d: NVLink bandwidth below the floor", i)
		}
	}
	if failRate > 0 && rand.Float64() < failRate {
		return errors.New("NCCL all-reduce bandwidth below the floor")
	}
	return nil
}

// Wipe is a simulated sanitize: GPU memory cleared and every GPU reset.
func (s *Simulated) Wipe(context.Context) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.gpus {
		if s.gpus[i].lost {
			return nil, fmt.Errorf("gpu %d is not visible to the driver", i)
		}
	}
	for i := range s.gpus {
		g := &s.gpus[i]
		g.remapPending = g.remapFailed
		g.eccU, g.xids, g.capW = 0, nil, 0
	}
	return []string{"local disks wiped (simulated)", fmt.Sprintf("memory of %d GPUs cleared", len(s.gpus)), fmt.Sprintf("%d GPUs reset", len(s.gpus))}, nil
}

// ResetGPU resets a simulated GPU: pending row remaps take effect and the
// volatile ECC counts clear; a GPU off the bus stays off.
func (s *Simulated) ResetGPU(gpu int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if gpu < 0 || gpu >= len(s.gpus) {
		return fmt.Errorf("no GPU %d", gpu)
	}
	g := &s.gpus[gpu]
	if g.lost {
		return fmt.Errorf("gpu %d is not visible to the driver", gpu)
	}
	g.remapPending = g.remapFailed
	g.eccU, g.xids, g.capW = 0, nil, 0
	return nil
}

// Reboot resets every GPU that answers.
func (s *Simulated) Reboot() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.gpus {
		g := &s.gpus[i]
		if !g.lost {
			g.remapPending = g.remapFailed
			g.eccU, g.xids, g.capW = 0, nil, 0
		}
		g.hot = false
	}
	return nil
}

// Repair is a technician's work on the simulated node: every GPU is whole
// again (replaced where it had failed) and every NIC has its link.
func (s *Simulated) Repair() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.gpus {
		s.gpus[i] = simGPU{energyJ: s.gpus[i].energyJ, tempC: s.gpus[i].tempC}
	}
	for i := range s.nics {
		s.nics[i].down = false
	}
}

// Inject applies a fault; it shows in the next sample.
func (s *Simulated) Inject(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := &s.gpus[f.GPU]
	if f.XID != 0 {
		g.xids = append(g.xids, wire.XID{Code: f.XID, At: time.Now().UTC()})
	}
	// XID 79 is the driver saying the GPU fell off the bus: it is gone
	// until the node is repaired.
	g.lost = g.lost || f.Lost || f.XID == 79
	g.eccU += f.ECC
	g.hot = g.hot || f.Hot
	s.crash = s.crash || f.Crash
	g.slowLink = g.slowLink || f.SlowLink
	g.remapPending = g.remapPending || f.RowRemap || f.RemapFailed
	g.remapFailed = g.remapFailed || f.RemapFailed
	if f.LinkDown {
		s.nics[f.GPU].down = true
		s.nics[f.GPU].errors++
	}
	if f.LinkUp {
		s.nics[f.GPU].down = false
	}
}

// NICs reports the simulated NICs.
func (s *Simulated) NICs() []wire.NICSample {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]wire.NICSample, len(s.nics))
	for i, n := range s.nics {
		out[i] = wire.NICSample{Name: fmt.Sprintf("ib%d", i), Up: !n.down, Errors: n.errors}
	}
	return out
}

// PlatformW is what a simulated node draws besides its GPUs.
const PlatformW = 1800

// NodeEnergyJ is the node's input energy counter as a metered PDU outlet
// or BMC would read it: the GPUs' and the platform's energy since the
// first sample, plus 5% lost in the power supplies.
func (s *Simulated) NodeEnergyJ() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.platformJ
	for _, g := range s.gpus {
		j += g.energyJ
	}
	return uint64(j * 1.05)
}

// Sample reads the GPUs: power follows load, the energy counter integrates
// power since the last sample, temperature follows power.
func (s *Simulated) Sample(now time.Time) []wire.GPUSample {
	s.mu.Lock()
	defer s.mu.Unlock()
	dt := 0.0
	if !s.last.IsZero() {
		dt = now.Sub(s.last).Seconds()
	}
	s.last = now
	s.platformJ += PlatformW * dt
	out := make([]wire.GPUSample, len(s.gpus))
	for i := range s.gpus {
		g := &s.gpus[i]
		if g.lost {
			out[i] = wire.GPUSample{Index: i, Lost: true, EnergyJ: uint64(g.energyJ), XIDs: g.xids}
			g.xids = nil
			continue
		}
		u := math.Max(0, math.Min(1, s.Load(i, now)))
		p := s.idleW + (s.maxW-s.idleW)*u
		var throttle []string
		if g.capW > 0 && p > g.capW {
			p = g.capW
			throttle = append(throttle, wire.ThrottlePowerCap)
		}
		if g.hot {
			throttle = append(throttle, wire.ThrottleHWThermal)
		}
		g.energyJ += p * dt
		target := 35 + 45*u
		if g.hot {
			target = 95
		}
		g.tempC += (target - g.tempC) * math.Min(1, dt/60)
		if dt == 0 {
			g.tempC = target
		}
		out[i] = wire.GPUSample{Index: i, PowerW: math.Round(p*10) / 10, EnergyJ: uint64(g.energyJ), TempC: math.Round(g.tempC*10) / 10,
			UtilPct: math.Round(u * 100), MemUsedMiB: int(float64(s.memMiB) * u * 0.9), ECCUncorrected: g.eccU, XIDs: g.xids, Throttle: throttle, RowRemapPending: g.remapPending, RowRemapFailed: g.remapFailed}
		g.xids = nil
	}
	return out
}
