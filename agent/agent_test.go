package agent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/neocloud/neocloud/agent"
	"github.com/neocloud/neocloud/agents"
	"github.com/neocloud/neocloud/cli"
	"github.com/neocloud/neocloud/client"
	"github.com/neocloud/neocloud/fleet"
	"github.com/neocloud/neocloud/wire"
)

// TestSimulatedAgent joins a simulated node, reports, keeps its sequence
// across a restart without joining again, and an injected fault reaches the
// node's health.
func TestSimulatedAgent(t *testing.T) {
	n := newNode(t, 64)
	srv, op, sku, host, serial := n.srv, n.op, n.sku, n.host, n.serial
	ctx := context.Background()
	gpus := agent.NewSimulated(8, sku.GPUModel, sku.GPUMemoryMiB, 700)
	opts := agent.Options{Server: srv.URL, JoinToken: n.join, Hostname: host, Serial: serial, StateDir: filepath.Join(t.TempDir(), "agent"), Interval: 30 * time.Millisecond, GPUs: gpus}
	state := func() agents.State {
		var st agents.State
		op.Do(ctx, http.MethodGet, "/v1/nodes/"+host+"/agent", nil, nil, &st)
		return st
	}
	run := func(d time.Duration) {
		rctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		if err := agent.Run(rctx, opts); err != nil {
			t.Fatal(err)
		}
	}
	run(400 * time.Millisecond)
	first := state()
	if first.Seq < 3 || len(first.Heartbeat.GPUs) != 8 || first.Heartbeat.GPUs[0].PowerW <= 0 {
		t.Fatalf("after the first run: %+v", first)
	}
	// Restarted without a join token (it was single-use): it goes on.
	opts.JoinToken = ""
	gpus.Inject(agent.Fault{GPU: 2, XID: 79})
	run(300 * time.Millisecond)
	second := state()
	if second.Seq <= first.Seq || second.Health != fleet.HealthFailed || second.Heartbeat.GPUs[0].EnergyJ < first.Heartbeat.GPUs[0].EnergyJ {
		t.Fatalf("after the restart: seq %d → %d, health %s, energy %d → %d", first.Seq, second.Seq, second.Health, first.Heartbeat.GPUs[0].EnergyJ, second.Heartbeat.GPUs[0].EnergyJ)
	}
	// Every report's sample is kept once, its energy the sum of its GPUs'.
	var samples struct{ Items []agents.Sample }
	if err := op.Do(ctx, http.MethodGet, "/v1/nodes/"+host+"/samples", url.Values{"to_seq": {fmt.Sprint(second.Seq)}}, nil, &samples); err != nil {
		t.Fatal(err)
	}
	if int64(len(samples.Items)) != second.Seq || samples.Items[0].Seq != 1 || samples.Items[len(samples.Items)-1].Seq != second.Seq {
		t.Fatalf("%d samples for %d reports", len(samples.Items), second.Seq)
	}
	var sum uint64
	for _, g := range second.Heartbeat.GPUs {
		sum += g.EnergyJ
	}
	if last := samples.Items[len(samples.Items)-1]; last.EnergyJ != sum {
		t.Fatalf("last sample %d J, its report's GPUs %d J", last.EnergyJ, sum)
	}
	if _, err := op.Raw(ctx, http.MethodGet, "/v1/nodes/"+host+"/samples", url.Values{"from_seq": {"5"}, "to_seq": {"4"}}, nil, ""); err == nil || !strings.Contains(err.Error(), "to_seq") {
		t.Fatalf("a backwards range: %v", err)
	}
	var fn fleet.Node
	if err := op.Do(ctx, http.MethodGet, "/v1/nodes/"+host, nil, nil, &fn); err != nil || fn.Health != fleet.HealthFailed {
		t.Fatalf("the node: %v %v %v", fn.Health, fn.HealthReasons, err)
	}
	// An operator sees the report and the last hour with the node.
	var out, errb bytes.Buffer
	if rc := cli.Main([]string{"--server", srv.URL, "--token", srv.Token, "node", "show", host}, &out, &errb); rc != 0 {
		t.Fatalf("node show: %d %s", rc, errb.String())
	}
	for _, want := range []string{"AGENT  report", "XID 79", "POWER W", "ib7", "LAST HOUR"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("node show lacks %q:\n%s", want, out.String())
		}
	}
}

func TestNoGPUsNoAgent(t *testing.T) {
	if err := agent.Run(context.Background(), agent.Options{Server: "http://127.0.0.1:1"}); err != agent.ErrNoNVML {
		t.Fatalf("without GPUs: %v", err)
	}
}

func TestSimulatedEnergyFollowsPower(t *testing.T) {
	g := agent.NewSimulated(2, "H100", 81559, 700)
	g.Load = func(gpu int, _ time.Time) float64 { return float64(gpu) } // GPU 0 idle, GPU 1 flat out
	t0 := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	g.Sample(t0)
	s := g.Sample(t0.Add(10 * time.Second))
	if s[0].PowerW != 70 || s[1].PowerW != 700 || s[0].EnergyJ != 700 || s[1].EnergyJ != 7000 {
		t.Fatalf("samples: %+v", s)
	}
	if err := g.SetPowerCap(1, 400); err != nil {
		t.Fatal(err)
	}
	g.Inject(agent.Fault{GPU: 0, Hot: true, RowRemap: true})
	s = g.Sample(t0.Add(15 * time.Second))
	if s[1].PowerW != 400 || s[1].EnergyJ != 9000 || fmt.Sprint(s[1].Throttle) != "[power_cap]" || fmt.Sprint(s[0].Throttle) != "[hw_thermal]" || !s[0].RowRemapPending || s[0].RowRemapFailed || s[1].RowRemapPending {
		t.Fatalf("capped, hot and remapping: %+v", s)
	}
	g.Inject(agent.Fault{GPU: 1, Lost: true})
	if s := g.Sample(t0.Add(20 * time.Second)); !s[1].Lost || s[1].EnergyJ != 9000 {
		t.Fatalf("a lost GPU: %+v", s[1])
	}
}

// TestSpoolLosesNothing cuts the agent off from the server for a while:
// afterwards every report's sequence number is on the server exactly once,
// in order, and the energy counter never goes back.
func TestSpoolLosesNothing(t *testing.T) {
	n := newNode(t, 64)
	srv, op, sku := n.srv, n.op, n.sku
	ctx := context.Background()
	// A way to the server that can be cut.
	var down atomic.Bool
	target, _ := url.Parse(srv.URL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			http.Error(w, "unreachable", http.StatusBadGateway)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	defer front.Close()
	var log syncBuf
	opts := agent.Options{Server: front.URL, JoinToken: n.join, Hostname: n.host, Serial: n.serial,
		StateDir: t.TempDir(), Interval: 20 * time.Millisecond, GPUs: agent.NewSimulated(8, sku.GPUModel, sku.GPUMemoryMiB, 700), Log: &log}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- agent.Run(rctx, opts) }()
	time.Sleep(200 * time.Millisecond)
	// Cut off for 75 reports' worth: what 10 minutes are at the default
	// 10-second rate.
	down.Store(true)
	time.Sleep(1500 * time.Millisecond)
	down.Store(false)
	// The spool drains once the server is back.
	spoolLines := func() int {
		b, _ := os.ReadFile(filepath.Join(opts.StateDir, "spool.jsonl"))
		return strings.Count(string(b), "\n")
	}
	for deadline := time.Now().Add(20 * time.Second); spoolLines() > 1; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the spool did not drain: %d reports left", spoolLines())
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "not delivered") {
		t.Fatalf("the cut never showed: %s", log.String())
	}
	var fn fleet.Node
	op.Do(ctx, http.MethodGet, "/v1/nodes/"+n.host, nil, nil, &fn)
	samples, err := srv.Store.Samples(ctx, fn.ID, 0, 1<<40)
	if err != nil {
		t.Fatal(err)
	}
	// Every report the agent numbered is on the server or, if the stop
	// caught it before delivery, still in the spool, where the next start
	// sends it from.
	b, _ := os.ReadFile(filepath.Join(opts.StateDir, "agent.json"))
	var st struct{ Seq int64 }
	json.Unmarshal(b, &st)
	spooled := map[int64]bool{}
	sb, _ := os.ReadFile(filepath.Join(opts.StateDir, "spool.jsonl"))
	for _, line := range strings.Split(strings.TrimSpace(string(sb)), "\n") {
		var hb struct{ Seq int64 }
		if json.Unmarshal([]byte(line), &hb) == nil && hb.Seq > 0 {
			spooled[hb.Seq] = true
		}
	}
	if n := int64(len(samples)); n > st.Seq || len(spooled) > 3 {
		t.Fatalf("%d samples on the server and %d spooled, the agent numbered %d", n, len(spooled), st.Seq)
	}
	for seq := int64(len(samples)) + 1; seq <= st.Seq; seq++ {
		if !spooled[seq] {
			t.Fatalf("report %d is neither on the server (%d samples) nor in the spool %v", seq, len(samples), spooled)
		}
	}
	if cut := strings.Count(log.String(), "not delivered"); cut < 10 {
		t.Fatalf("only %d reports were held back: the cut did not bite", cut)
	}
	for i, s := range samples {
		if s.Seq != int64(i+1) {
			t.Fatalf("sample %d has seq %d: a report was lost or doubled", i, s.Seq)
		}
		if i > 0 && s.EnergyJ < samples[i-1].EnergyJ {
			t.Fatalf("energy went back at seq %d", s.Seq)
		}
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func TestFence(t *testing.T) {
	f := &agent.Fence{}
	if err := f.Allow(wire.Command{Kind: "sanitize", Generation: 0}); err != nil {
		t.Fatalf("sanitize an idle node: %v", err)
	}
	f.Set(&wire.Assignment{Generation: 5, Reservation: "rsv_1"})
	if err := f.Allow(wire.Command{Kind: "drain", Generation: 4}); !errors.Is(err, agent.ErrStale) {
		t.Fatalf("a stale drain: %v", err)
	}
	if err := f.Allow(wire.Command{Kind: "sanitize", Generation: 5}); err == nil {
		t.Fatal("sanitized while assigned")
	}
	if err := f.Allow(wire.Command{Kind: "health_check", Generation: 1}); err != nil {
		t.Fatalf("a health check is not destructive: %v", err)
	}
	f.Set(nil) // the work left; an old generation's order is still refused
	if err := f.Allow(wire.Command{Kind: "sanitize", Generation: 4}); !errors.Is(err, agent.ErrStale) {
		t.Fatalf("a replayed stale sanitize: %v", err)
	}
	if err := f.Allow(wire.Command{Kind: "sanitize", Generation: 5}); err != nil {
		t.Fatalf("sanitize once idle: %v", err)
	}
}

// TestNodeLocalNotices: a preemption notice for the node's spot work shows
// on the node-local endpoint by the push stream (no report comes between).
// How fast is logged, not asserted: here it takes milliseconds.
func TestNodeLocalNotices(t *testing.T) {
	n := newNode(t, 64)
	srv, op, sku := n.srv, n.op, n.sku
	ctx := context.Background()
	// Spot work on every node.
	if _, err := op.Raw(ctx, http.MethodPost, "/v1/reservations", nil, map[string]any{"tenant": "spotco", "sku": sku.Name, "gpus": 64, "class": "spot"}, ""); err != nil {
		t.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	// One report at the start, the next an hour later: the assignment and
	// the notice can only come by the push stream.
	opts := agent.Options{Server: srv.URL, JoinToken: n.join, Hostname: n.host, Serial: n.serial, StateDir: t.TempDir(),
		Interval: time.Hour, GPUs: agent.NewSimulated(8, sku.GPUModel, sku.GPUMemoryMiB, 700), NoticeAddr: addr}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go agent.Run(rctx, opts)
	notices := func() (out struct {
		Assignment *wire.Assignment `json:"assignment"`
	}) {
		res, err := http.Get("http://" + addr + "/notices")
		if err == nil {
			json.NewDecoder(res.Body).Decode(&out)
			res.Body.Close()
		}
		return out
	}
	wait := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); !ok(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s: %+v", what, notices().Assignment)
			}
		}
	}
	wait("the spot assignment", func() bool { a := notices().Assignment; return a != nil && a.Generation > 0 })
	// Committed work takes the site: the node's spot work gets 120 s.
	if _, err := op.Raw(ctx, http.MethodPost, "/v1/reservations", nil, map[string]any{"tenant": "acme", "sku": sku.Name, "gpus": 64, "class": "on_demand"}, ""); err != nil {
		t.Fatal(err)
	}
	issued := time.Now()
	wait("the preemption notice", func() bool {
		a := notices().Assignment
		return a != nil && len(a.Notices) == 1 && a.Notices[0].Kind == "preemption"
	})
	t.Logf("the notice reached the node-local endpoint %v after it was issued", time.Since(issued).Round(time.Millisecond))
	if a := notices().Assignment; a.Notices[0].Deadline.Sub(issued) < 110*time.Second {
		t.Fatalf("deadline %v is not the 120 s notice", a.Notices[0].Deadline)
	}
}

// TestRollupsAndEnergyAtBoundaries: reports fold into minute rollups, and
// the GPUs' energy counters are read when the node's allocation becomes
// ready and when it is released.
func TestRollupsAndEnergyAtBoundaries(t *testing.T) {
	n := newNode(t, 8)
	srv, op, sku, host := n.srv, n.op, n.sku, n.host
	ctx := context.Background()
	opts := agent.Options{Server: srv.URL, JoinToken: n.join, Hostname: host, Serial: n.serial, StateDir: t.TempDir(),
		Interval: 20 * time.Millisecond, GPUs: agent.NewSimulated(8, sku.GPUModel, sku.GPUMemoryMiB, 700)}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go agent.Run(rctx, opts)
	time.Sleep(200 * time.Millisecond)
	var r struct{ ID string }
	if err := op.Do(ctx, http.MethodPost, "/v1/reservations", nil, map[string]any{"tenant": "acme", "sku": sku.Name, "gpus": 8, "class": "on_demand"}, &r); err != nil {
		t.Fatal(err)
	}
	readings := func() []agents.EnergyReading {
		var l struct{ Items []agents.EnergyReading }
		op.Do(ctx, http.MethodGet, "/v1/nodes/"+host+"/energy", map[string][]string{"from": {"2000-01-01T00:00:00Z"}, "to": {"2100-01-01T00:00:00Z"}}, nil, &l)
		return l.Items
	}
	waitFor := func(what string, ok func([]agents.EnergyReading) bool) []agents.EnergyReading {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if rs := readings(); ok(rs) {
				return rs
			} else if time.Now().After(deadline) {
				t.Fatalf("no %s readings: %+v", what, rs)
			}
		}
	}
	count := func(rs []agents.EnergyReading, reason string) int {
		n := 0
		for _, x := range rs {
			if x.Reason == reason {
				n++
			}
		}
		return n
	}
	waitFor("ready", func(rs []agents.EnergyReading) bool { return count(rs, "ready") == 8 })
	time.Sleep(150 * time.Millisecond)
	if err := op.Do(ctx, http.MethodPost, "/v1/reservations/"+r.ID+"/cancel", nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	rs := waitFor("released", func(rs []agents.EnergyReading) bool { return count(rs, "released") == 8 })
	var at0, at1 uint64
	for _, x := range rs {
		if x.GPU == 0 && x.Reason == "ready" {
			at0 = x.EnergyJ
		}
		if x.GPU == 0 && x.Reason == "released" {
			at1 = x.EnergyJ
		}
	}
	if at1 < at0 {
		t.Fatalf("energy at release %d below energy at ready %d", at1, at0)
	}
	var ml struct{ Items []agents.Minute }
	op.Do(ctx, http.MethodGet, "/v1/nodes/"+host+"/minutes", map[string][]string{"from": {"2000-01-01T00:00:00Z"}, "to": {"2100-01-01T00:00:00Z"}}, nil, &ml)
	samples := int64(0)
	for _, m := range ml.Items {
		samples += m.Samples
		if m.PowerAvgW > m.PowerMaxW+1e-6 || m.EnergyLastJ < m.EnergyFirstJ {
			t.Fatalf("rollup: %+v", m)
		}
	}
	if len(ml.Items) == 0 || samples < 10 {
		t.Fatalf("rollups: %+v", ml.Items)
	}
}

// TestCommands: an operator's power cap reaches the agent, is applied to
// the GPUs and reported done; sanitizing a node that serves work is
// refused at the server.
func TestCommands(t *testing.T) {
	n := newNode(t, 8)
	srv, op, sku, host := n.srv, n.op, n.sku, n.host
	ctx := context.Background()
	gpus := agent.NewSimulated(8, sku.GPUModel, sku.GPUMemoryMiB, 700)
	gpus.Load = func(int, time.Time) float64 { return 1 } // flat out
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go agent.Run(rctx, agent.Options{Server: srv.URL, JoinToken: n.join, Hostname: host, Serial: n.serial, StateDir: t.TempDir(), Interval: 30 * time.Millisecond, GPUs: gpus})
	var c agents.NodeCommand
	if err := op.Do(ctx, http.MethodPost, "/v1/nodes/"+host+"/commands", nil, map[string]any{"kind": "power_cap", "power_w": 400}, &c); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(30 * time.Millisecond) {
		var l struct{ Items []agents.NodeCommand }
		op.Do(ctx, http.MethodGet, "/v1/nodes/"+host+"/commands", nil, nil, &l)
		if len(l.Items) == 1 && l.Items[0].State == "done" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the power cap did not complete: %+v", l.Items)
		}
	}
	if s := gpus.Sample(time.Now()); s[0].PowerW != 400 {
		t.Fatalf("power after the cap: %v W", s[0].PowerW)
	}
	// Assigned, the node is not sanitized.
	if err := op.Do(ctx, http.MethodPost, "/v1/reservations", nil, map[string]any{"tenant": "acme", "sku": sku.Name, "gpus": 8, "class": "on_demand"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := op.Do(ctx, http.MethodPost, "/v1/nodes/"+host+"/commands", nil, map[string]any{"kind": "sanitize"}, nil); client.StatusOf(err) != 409 {
		t.Fatalf("sanitize an assigned node: %v", err)
	}
}

// TestPowerCappedSKU: nodes of a power-capped SKU (H100 at 500 W) are
// held to the cap by their agents without any command, and the SKU is
// priced on its own.
func TestPowerCappedSKU(t *testing.T) {
	sku, _ := fleet.CatalogSKU("h100-sxm5-80gb")
	sku.Name, sku.PowerCapW, sku.Partitions, sku.PartitionDelivery = "h100-sxm5-80gb-500w", 500, nil, ""
	n := newNodeOf(t, 8, sku)
	ctx := context.Background()
	gpus := agent.NewSimulated(8, sku.GPUModel, sku.GPUMemoryMiB, 700)
	gpus.Load = func(int, time.Time) float64 { return 1 } // flat out
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go agent.Run(rctx, agent.Options{Server: n.srv.URL, JoinToken: n.join, Hostname: n.host, Serial: n.serial, StateDir: t.TempDir(), Interval: 30 * time.Millisecond, GPUs: gpus})
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(30 * time.Millisecond) {
		s := gpus.Sample(time.Now())
		if s[0].PowerW == 500 && s[7].PowerW == 500 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GPUs draw %v W and %v W, want the SKU's 500 W cap", s[0].PowerW, s[7].PowerW)
		}
	}
	if err := n.op.Do(ctx, http.MethodPost, "/v1/prices", nil, map[string]any{"sku": sku.Name, "class": "reserved", "price_per_gpu_hour": "2.10"}, nil); err != nil {
		t.Fatal(err)
	}
	var q struct {
		Offer struct {
			PricePerGPUHour string `json:"price_per_gpu_hour"`
		}
	}
	if err := n.op.Do(ctx, http.MethodPost, "/v1/quotes", nil, map[string]any{"tenant": "acme", "sku": sku.Name, "gpus": 8, "class": "reserved",
		"start": time.Now().Add(48 * time.Hour).UTC().Truncate(time.Hour), "duration_s": 86400}, &q); err != nil || q.Offer.PricePerGPUHour != "2.10" {
		t.Fatalf("a quote of the capped SKU: %v %+v", err, q)
	}
}

// TestHostChecksAndLinks: a failing host check and a NIC without link make
// the node degraded, with the reasons; once both pass, it is ok again.
func TestHostChecksAndLinks(t *testing.T) {
	n := newNode(t, 8)
	srv, op, sku, host := n.srv, n.op, n.sku, n.host
	ctx := context.Background()
	checks := t.TempDir()
	os.WriteFile(filepath.Join(checks, "10-ok"), []byte("#!/bin/sh\nexit 0\n"), 0o755)
	os.WriteFile(filepath.Join(checks, "20-disk"), []byte("#!/bin/sh\necho /scratch is 99% full\nexit 1\n"), 0o755)
	os.WriteFile(filepath.Join(checks, "README"), []byte("not a check"), 0o644)
	gpus := agent.NewSimulated(8, sku.GPUModel, sku.GPUMemoryMiB, 700)
	gpus.Inject(agent.Fault{GPU: 2, LinkDown: true})
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go agent.Run(rctx, agent.Options{Server: srv.URL, JoinToken: n.join, Hostname: host, Serial: n.serial, StateDir: t.TempDir(),
		Interval: 30 * time.Millisecond, GPUs: gpus, ChecksDir: checks})
	node := func() fleet.Node {
		var n fleet.Node
		op.Do(ctx, http.MethodGet, "/v1/nodes/"+host, nil, nil, &n)
		return n
	}
	waitNode := func(what string, ok func(fleet.Node) bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !ok(node()); time.Sleep(30 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %+v %v", what, node().Health, node().HealthReasons)
			}
		}
	}
	waitNode("degraded by the check and the link", func(n fleet.Node) bool {
		r := strings.Join(n.HealthReasons, "; ")
		return n.Health == fleet.HealthDegraded && strings.Contains(r, "20-disk: /scratch is 99% full") && strings.Contains(r, "nic ib2: link down")
	})
	// Replaced by a rename: rewriting a script the agent may be running
	// at that moment fails (text file busy).
	fixed := filepath.Join(t.TempDir(), "20-disk")
	if err := os.WriteFile(fixed, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(fixed, filepath.Join(checks, "20-disk")); err != nil {
		t.Fatal(err)
	}
	gpus.Inject(agent.Fault{GPU: 2, LinkUp: true})
	waitNode("ok again", func(n fleet.Node) bool { return n.Health == fleet.HealthOK && len(n.HealthReasons) == 0 })
}

// TestSanitizeThroughTheAgent: a released node is sanitized by its agent,
// under the generation of the allocation being released, before the
// allocation ends.
func TestSanitizeThroughTheAgent(t *testing.T) {
	n := newNode(t, 8)
	srv, op, sku, host := n.srv, n.op, n.sku, n.host
	ctx := context.Background()
	var sanitized []wire.Command
	var mu sync.Mutex
	opts := agent.Options{Server: srv.URL, JoinToken: n.join, Hostname: host, Serial: n.serial, StateDir: t.TempDir(), Interval: 30 * time.Millisecond,
		GPUs: agent.NewSimulated(8, sku.GPUModel, sku.GPUMemoryMiB, 700),
		Execute: func(c wire.Command) error {
			if c.Kind == "sanitize" {
				mu.Lock()
				sanitized = append(sanitized, c)
				mu.Unlock()
			}
			return nil
		}}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go agent.Run(rctx, opts)
	time.Sleep(150 * time.Millisecond) // joined
	var r struct{ ID string }
	if err := op.Do(ctx, http.MethodPost, "/v1/reservations", nil, map[string]any{"tenant": "acme", "sku": sku.Name, "gpus": 8, "class": "on_demand"}, &r); err != nil {
		t.Fatal(err)
	}
	allocs := func() []struct {
		State   string
		BoundAt time.Time `json:"bound_at"`
	} {
		var l struct {
			Items []struct {
				State   string
				BoundAt time.Time `json:"bound_at"`
			}
		}
		op.Do(ctx, http.MethodGet, "/v1/reservations/"+r.ID+"/allocations", nil, nil, &l)
		return l.Items
	}
	for deadline := time.Now().Add(5 * time.Second); len(allocs()) == 0 || allocs()[0].State != "ready"; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("never ready: %+v", allocs())
		}
	}
	if err := op.Do(ctx, http.MethodPost, "/v1/reservations/"+r.ID+"/cancel", nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); allocs()[0].State != "ended"; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("never ended: %+v", allocs())
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(sanitized) != 1 || sanitized[0].Generation != allocs()[0].BoundAt.UnixMicro() {
		t.Fatalf("sanitize commands run: %+v (allocation bound at %v)", sanitized, allocs()[0].BoundAt)
	}
}

// node is a site on a server with one node for an agent to run as: prices
// for on-demand and spot, tenants acme and spotco, and a join token.
type node struct {
	srv                *cli.Running
	op                 *client.Client
	sku                fleet.SKU
	host, serial, join string
}

// newNode starts a server (lifecycle every 20 ms) on a generated site of
// gpus GPUs in one rack; the agent joins as its first node.
func newNode(t *testing.T, gpus int) node {
	t.Helper()
	sku, _ := fleet.CatalogSKU("h100-sxm5-80gb")
	return newNodeOf(t, gpus, sku)
}

// newNodeOf is newNode with nodes of a given SKU.
func newNodeOf(t *testing.T, gpus int, sku fleet.SKU) node {
	t.Helper()
	srv, err := cli.StartServer(context.Background(), cli.ServerOptions{Listen: "127.0.0.1:0", DataDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), LifecycleEvery: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	ctx := context.Background()
	op := client.New(srv.URL, srv.Token)
	var spec bytes.Buffer
	o := fleet.ColossusOptions(sku, gpus)
	o.Fanout = []int{1, 1, 1, gpus / sku.GPUsPerNode}
	if _, err := fleet.Generate(&spec, o); err != nil {
		t.Fatal(err)
	}
	calls := []struct {
		path string
		body any
	}{
		{"/v1/fleet/apply", spec.Bytes()},
		{"/v1/prices", map[string]any{"sku": sku.Name, "class": "on_demand", "price_per_gpu_hour": "3"}},
		{"/v1/prices", map[string]any{"sku": sku.Name, "class": "spot", "spot_floor": "1", "spot_ceiling": "2"}},
		{"/v1/tenants", map[string]any{"name": "acme"}},
		{"/v1/tenants", map[string]any{"name": "spotco"}},
	}
	for _, c := range calls {
		if _, err := op.Raw(ctx, http.MethodPost, c.path, nil, c.body, ""); err != nil {
			t.Fatal(err)
		}
	}
	var jt struct{ Secret string }
	if err := op.Do(ctx, http.MethodPost, "/v1/sites/colossus-1/join-tokens", nil, map[string]any{"max_uses": 1, "ttl_s": 600}, &jt); err != nil {
		t.Fatal(err)
	}
	parsed, _ := fleet.ParseSpec(spec.Bytes())
	return node{srv: srv, op: op, sku: sku, host: parsed.Nodes[0].Hostname, serial: parsed.Nodes[0].Serial, join: jt.Secret}
}

// TestXID79ReplacedWithinTheSU: a GPU of a reserved node falls off the bus
// (XID 79, reported by the node's own agent): the node is failed and taken
// out of service, its allocation ends, and a replacement in the same su is
// bound and made ready; the tenant gets a node.replaced event.
func TestXID79ReplacedWithinTheSU(t *testing.T) {
	n := newNode(t, 64)
	srv, op, sku := n.srv, n.op, n.sku
	ctx := context.Background()
	var r struct {
		ID    string
		Nodes []struct{ Hostname, Domain string }
	}
	if err := op.Do(ctx, http.MethodPost, "/v1/reservations", nil, map[string]any{"tenant": "acme", "sku": sku.Name, "gpus": 16, "class": "on_demand", "within": "su"}, &r); err != nil {
		t.Fatal(err)
	}
	type alloc struct {
		State    string
		Hostname string
	}
	allocs := func() []alloc {
		var l struct{ Items []alloc }
		op.Do(ctx, http.MethodGet, "/v1/reservations/"+r.ID+"/allocations", nil, nil, &l)
		return l.Items
	}
	ready := func() map[string]bool {
		out := map[string]bool{}
		for _, a := range allocs() {
			if a.State == "ready" {
				out[a.Hostname] = true
			}
		}
		return out
	}
	for deadline := time.Now().Add(5 * time.Second); len(ready()) != 2; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("never ready: %+v", allocs())
		}
	}
	before := ready()
	victim := r.Nodes[0].Hostname
	var fn fleet.Node
	if err := op.Do(ctx, http.MethodGet, "/v1/nodes/"+victim, nil, nil, &fn); err != nil {
		t.Fatal(err)
	}
	gpus := agent.NewSimulated(8, sku.GPUModel, sku.GPUMemoryMiB, 700)
	gpus.Host = fn.Serial
	opts := agent.Options{Server: srv.URL, JoinToken: n.join, Hostname: victim, Serial: fn.Serial, StateDir: t.TempDir(), Interval: 30 * time.Millisecond, GPUs: gpus}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go agent.Run(rctx, opts)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var st agents.State
		if op.Do(ctx, http.MethodGet, "/v1/nodes/"+victim+"/agent", nil, nil, &st) == nil && st.Seq >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the agent never reported")
		}
	}
	// The reservation's other node runs an agent too, with its node-local
	// endpoint: the tenant's job there hears of the replacement.
	peer := r.Nodes[1].Hostname
	var pn fleet.Node
	op.Do(ctx, http.MethodGet, "/v1/nodes/"+peer, nil, nil, &pn)
	var jt2 struct{ Secret string }
	if err := op.Do(ctx, http.MethodPost, "/v1/sites/colossus-1/join-tokens", nil, map[string]any{"max_uses": 1, "ttl_s": 600}, &jt2); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	noticeAddr := ln.Addr().String()
	ln.Close()
	go agent.Run(rctx, agent.Options{Server: srv.URL, JoinToken: jt2.Secret, Hostname: peer, Serial: pn.Serial, StateDir: t.TempDir(), Interval: 30 * time.Millisecond,
		GPUs: agent.NewSimulated(8, sku.GPUModel, sku.GPUMemoryMiB, 700), NoticeAddr: noticeAddr})
	time.Sleep(200 * time.Millisecond)
	gpus.Inject(agent.Fault{GPU: 3, XID: 79})
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var got struct {
			Assignment *wire.Assignment `json:"assignment"`
		}
		if resp, err := http.Get("http://" + noticeAddr + "/notices"); err == nil {
			json.NewDecoder(resp.Body).Decode(&got)
			resp.Body.Close()
		}
		if got.Assignment != nil && len(got.Assignment.Notices) > 0 && got.Assignment.Notices[0].Kind == "replacement" && strings.Contains(got.Assignment.Notices[0].Reason, victim) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the peer's node-local notices: %+v", got.Assignment)
		}
	}
	var now map[string]bool
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		now = ready()
		if len(now) == 2 && !now[victim] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no replacement ready: %+v", allocs())
		}
	}
	// The notice follows the replacement: ready now.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var got struct {
			Assignment *wire.Assignment `json:"assignment"`
		}
		if resp, err := http.Get("http://" + noticeAddr + "/notices"); err == nil {
			json.NewDecoder(resp.Body).Decode(&got)
			resp.Body.Close()
		}
		if got.Assignment != nil && len(got.Assignment.Notices) > 0 && strings.HasSuffix(got.Assignment.Notices[0].Reason, "(ready)") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the peer's notice after the replacement became ready: %+v", got.Assignment)
		}
	}
	var repl string
	for h := range now {
		if !before[h] {
			repl = h
		}
	}
	var rn fleet.Node
	op.Do(ctx, http.MethodGet, "/v1/nodes/"+repl, nil, nil, &rn)
	if repl == "" || rn.Domain[:strings.LastIndex(rn.Domain, "/")] != fn.Domain[:strings.LastIndex(fn.Domain, "/")] {
		t.Fatalf("replacement %q in %s, the failed node in %s", repl, rn.Domain, fn.Domain)
	}
	if err := op.Do(ctx, http.MethodGet, "/v1/nodes/"+victim, nil, nil, &fn); err != nil || fn.Health != fleet.HealthFailed || !fn.Cordoned {
		t.Fatalf("the failed node: health %s, cordoned %v, %v", fn.Health, fn.Cordoned, err)
	}
	var evs struct {
		Items []struct {
			Kind string
			Data map[string]any
		}
	}
	if err := op.Do(ctx, http.MethodGet, "/v1/events", url.Values{"tenant": {"acme"}}, nil, &evs); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range evs.Items {
		if e.Kind == "node.replaced" && e.Data["failed"] == victim && e.Data["replacement"] == repl {
			found = true
		}
	}
	if !found {
		t.Fatalf("no node.replaced event: %+v", evs.Items)
	}
	readyEvent := false
	for deadline := time.Now().Add(5 * time.Second); !readyEvent && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		op.Do(ctx, http.MethodGet, "/v1/events", url.Values{"tenant": {"acme"}}, nil, &evs)
		for _, e := range evs.Items {
			if ttr, ok := e.Data["time_to_ready_s"].(float64); e.Kind == "node.replacement_ready" && e.Data["node"] == repl && ok && ttr >= 0 {
				readyEvent = true
			}
		}
	}
	if !readyEvent {
		t.Fatalf("no node.replacement_ready event with the time to ready: %+v", evs.Items)
	}
	// The replacement records how long the reservation was short a node.
	var full struct {
		Items []struct {
			Hostname string
			Replaces string
			ReadyAt  *time.Time `json:"ready_at"`
			FailedAt *time.Time `json:"failed_at"`
		}
	}
	op.Do(ctx, http.MethodGet, "/v1/reservations/"+r.ID+"/allocations", nil, nil, &full)
	recorded := false
	for _, a := range full.Items {
		if a.Hostname == repl && a.Replaces != "" && a.ReadyAt != nil && a.FailedAt != nil && !a.ReadyAt.Before(*a.FailedAt) && a.ReadyAt.Sub(*a.FailedAt) < 10*time.Second {
			recorded = true
		}
	}
	if !recorded {
		t.Fatalf("no time to ready on the replacement: %+v", full.Items)
	}

	// The failed node is in repair, with a ticket naming the GPU.
	var tickets struct{ Items []agents.RepairTicket }
	if err := op.Do(ctx, http.MethodGet, "/v1/repairs", url.Values{"node": {victim}}, nil, &tickets); err != nil || len(tickets.Items) != 1 {
		t.Fatalf("repair tickets: %+v %v", tickets.Items, err)
	}
	tk := tickets.Items[0]
	if tk.State != agents.TicketOpen || len(tk.GPUs) != 8 || !tk.GPUs[3].Suspect || tk.GPUs[3].UUID != gpus.Info()[3].UUID || tk.GPUs[3].UUID == tk.GPUs[2].UUID || tk.GPUs[2].Suspect || !strings.Contains(strings.Join(tk.Reasons, ";"), "XID 79") {
		t.Fatalf("the ticket: %+v", tk)
	}
	op.Do(ctx, http.MethodGet, "/v1/nodes/"+victim, nil, nil, &fn)
	if fn.Lifecycle != fleet.LifecycleRepair {
		t.Fatalf("the failed node is %s, not in repair", fn.Lifecycle)
	}
	// It says where the technician finds the node.
	if tk.Hostname != victim || tk.Serial != fn.Serial || tk.Domain != fn.Domain || fn.Serial == "" || fn.Domain == "" {
		t.Fatalf("the ticket's node: %s, serial %q, in %q; the node's: serial %q, in %q", tk.Hostname, tk.Serial, tk.Domain, fn.Serial, fn.Domain)
	}
	// Repaired: burn-in, then sanitize, through its agent, then service.
	gpus.Repair()
	if err := op.Do(ctx, http.MethodPost, "/v1/nodes/"+victim+"/repair-done", nil, map[string]any{}, &tk); err != nil || tk.State != agents.TicketBurnIn {
		t.Fatalf("repair-done: %+v %v", tk, err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		op.Do(ctx, http.MethodGet, "/v1/nodes/"+victim, nil, nil, &fn)
		if fn.Lifecycle == fleet.LifecycleAvailable {
			break
		}
		if time.Now().After(deadline) {
			op.Do(ctx, http.MethodGet, "/v1/repairs", url.Values{"node": {victim}, "all": {"true"}}, nil, &tickets)
			t.Fatalf("never back in service: %s, tickets %+v", fn.Lifecycle, tickets.Items)
		}
	}
	var recs struct{ Items []agents.SanitizeRecord }
	if err := op.Do(ctx, http.MethodGet, "/v1/nodes/"+victim+"/sanitize-records", nil, nil, &recs); err != nil || len(recs.Items) != 1 || recs.Items[0].Result != "done" || recs.Items[0].TicketID != tk.ID ||
		!strings.Contains(strings.Join(recs.Items[0].Steps, ";"), "memory of 8 GPUs cleared") {
		t.Fatalf("sanitize records: %+v %v", recs.Items, err)
	}
	var cmds struct{ Items []agents.NodeCommand }
	op.Do(ctx, http.MethodGet, "/v1/nodes/"+victim+"/commands", nil, nil, &cmds)
	kinds := map[string]string{}
	for _, c := range cmds.Items {
		kinds[c.Kind] = c.State
	}
	if kinds["burn_in"] != "done" || kinds["sanitize"] != "done" {
		t.Fatalf("the agent's commands: %+v", cmds.Items)
	}
	if fn.Health != fleet.HealthOK || fn.Cordoned {
		t.Fatalf("back in service: health %s, cordoned %v", fn.Health, fn.Cordoned)
	}
}

// TestAgentCrash: the agent dies right after a report is delivered but
// before it notes so; restarted, it sends that report again and the server
// keeps it once: every sequence number exactly once. Faults reach a
// simulated agent through its node-local endpoint.
func TestAgentCrash(t *testing.T) {
	n := newNode(t, 64)
	srv, op, sku := n.srv, n.op, n.sku
	ctx := context.Background()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	gpus := agent.NewSimulated(8, sku.GPUModel, sku.GPUMemoryMiB, 700)
	opts := agent.Options{Server: srv.URL, JoinToken: n.join, Hostname: n.host, Serial: n.serial, StateDir: t.TempDir(), Interval: 20 * time.Millisecond, GPUs: gpus, NoticeAddr: addr}
	done := make(chan error, 1)
	go func() { done <- agent.Run(ctx, opts) }()
	time.Sleep(200 * time.Millisecond)
	inject := func(body string) int {
		resp, err := http.Post("http://"+addr+"/faults", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if s := inject(`{"gpu": 9, "xid": 79}`); s != http.StatusUnprocessableEntity {
		t.Fatalf("a fault on GPU 9 of 8: %d", s)
	}
	if s := inject(`{"gpu": 0, "crash": true}`); s != http.StatusNoContent {
		t.Fatalf("the crash fault: %d", s)
	}
	select {
	case err := <-done:
		if !errors.Is(err, agent.ErrCrashed) {
			t.Fatalf("the agent ended with %v, not the crash", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the agent did not crash")
	}
	b, _ := os.ReadFile(filepath.Join(opts.StateDir, "spool.jsonl"))
	if strings.Count(string(b), "\n") == 0 {
		t.Fatal("the crash left no delivered report in the spool")
	}
	// Restarted (it has joined: no token needed), it goes on.
	opts.JoinToken = ""
	rctx, cancel := context.WithCancel(ctx)
	go func() { done <- agent.Run(rctx, opts) }()
	time.Sleep(300 * time.Millisecond)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var fn fleet.Node
	op.Do(ctx, http.MethodGet, "/v1/nodes/"+n.host, nil, nil, &fn)
	samples, err := srv.Store.Samples(ctx, fn.ID, 0, 1<<40)
	if err != nil {
		t.Fatal(err)
	}
	if len(samples) < 10 {
		t.Fatalf("only %d reports", len(samples))
	}
	for i, s := range samples {
		if s.Seq != int64(i+1) {
			t.Fatalf("sample %d has seq %d: a report was lost or doubled across the crash", i, s.Seq)
		}
	}
}

// TestCommandsPushed: an urgent command reaches the agent on its push
// stream at once, not at its next heartbeat (here a minute away).
func TestCommandsPushed(t *testing.T) {
	n := newNode(t, 64)
	srv, op, sku := n.srv, n.op, n.sku
	ctx := context.Background()
	ran := make(chan wire.Command, 4)
	opts := agent.Options{Server: srv.URL, JoinToken: n.join, Hostname: n.host, Serial: n.serial, StateDir: t.TempDir(), Interval: time.Minute,
		GPUs: agent.NewSimulated(8, sku.GPUModel, sku.GPUMemoryMiB, 700), Execute: func(c wire.Command) error { ran <- c; return nil }}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go agent.Run(rctx, opts)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var st agents.State
		if op.Do(ctx, http.MethodGet, "/v1/nodes/"+n.host+"/agent", nil, nil, &st) == nil && st.Seq >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the agent never reported")
		}
	}
	time.Sleep(200 * time.Millisecond) // its stream is open
	var c agents.NodeCommand
	if err := op.Do(ctx, http.MethodPost, "/v1/nodes/"+n.host+"/commands", nil, map[string]any{"kind": "power_cap", "power_w": 450}, &c); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-ran:
		if got.ID != c.ID || got.PowerW != 450 {
			t.Fatalf("ran %+v, ordered %+v", got, c.Command)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the command waited for the next heartbeat")
	}
	select {
	case again := <-ran:
		t.Fatalf("ran twice: %+v", again)
	case <-time.After(300 * time.Millisecond):
	}
}

// TestActiveHealthCheck: a check of an idle node that finds a fault
// degrades the node until it is remediated; a check running when the node
// gets work stops and says it gave way.
func TestActiveHealthCheck(t *testing.T) {
	n := newNode(t, 8)
	srv, op, sku := n.srv, n.op, n.sku
	ctx := context.Background()
	gpus := agent.NewSimulated(8, sku.GPUModel, sku.GPUMemoryMiB, 700)
	gpus.SetHealthCheck(50 * time.Millisecond)
	opts := agent.Options{Server: srv.URL, JoinToken: n.join, Hostname: n.host, Serial: n.serial, StateDir: t.TempDir(), Interval: 30 * time.Millisecond, GPUs: gpus}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go agent.Run(rctx, opts)
	time.Sleep(200 * time.Millisecond)
	order := func() string {
		var c agents.NodeCommand
		if err := op.Do(ctx, http.MethodPost, "/v1/nodes/"+n.host+"/commands", nil, map[string]any{"kind": "health_check"}, &c); err != nil {
			t.Fatal(err)
		}
		return c.ID
	}
	outcome := func(id string) agents.NodeCommand {
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			var l struct{ Items []agents.NodeCommand }
			op.Do(ctx, http.MethodGet, "/v1/nodes/"+n.host+"/commands", nil, nil, &l)
			for _, c := range l.Items {
				if c.ID == id && c.State != "pending" {
					return c
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("command %s never finished: %+v", id, l.Items)
			}
		}
	}
	// A remap that failed: the check fails, the node is degraded and stays so.
	gpus.Inject(agent.Fault{GPU: 5, RemapFailed: true})
	var fn fleet.Node
	for deadline := time.Now().Add(10 * time.Second); fn.Health != fleet.HealthFailed; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("a failed remap: %s", fn.Health) // the next report says so, before any check
		}
		op.Do(ctx, http.MethodGet, "/v1/nodes/"+n.host, nil, nil, &fn)
	}
	gpus.Repair()
	// Declared repaired, its failure is forgotten; then the check.
	op.Do(ctx, http.MethodPost, "/v1/nodes/"+n.host+"/repair-done", nil, map[string]any{}, nil)
	for deadline := time.Now().Add(10 * time.Second); fn.Lifecycle != fleet.LifecycleAvailable; time.Sleep(20 * time.Millisecond) {
		op.Do(ctx, http.MethodGet, "/v1/nodes/"+n.host, nil, nil, &fn)
		if time.Now().After(deadline) {
			t.Fatalf("not back in service: %s %s", fn.Lifecycle, fn.Health)
		}
	}
	if c := outcome(order()); c.State != "done" {
		t.Fatalf("a check of a healthy idle node: %+v", c)
	}
	// A fault only a deep check finds: the check fails, the node is
	// degraded, and stays so in later reports until it is remediated.
	gpus.Inject(agent.Fault{GPU: 2, SlowLink: true})
	if c := outcome(order()); c.State != "failed" || !strings.Contains(c.Message, "NVLink") {
		t.Fatalf("a check of a node with a slow link: %+v", c)
	}
	time.Sleep(150 * time.Millisecond)
	op.Do(ctx, http.MethodGet, "/v1/nodes/"+n.host, nil, nil, &fn)
	if fn.Health != fleet.HealthDegraded || !strings.Contains(strings.Join(fn.HealthReasons, ";"), "active health check failed") {
		t.Fatalf("after a failed check: %s %v", fn.Health, fn.HealthReasons)
	}
	gpus.Repair()
	if err := op.Do(ctx, http.MethodPost, "/v1/nodes/"+n.host+"/commands", nil, map[string]any{"kind": "reboot"}, nil); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); fn.Health != fleet.HealthOK; time.Sleep(20 * time.Millisecond) {
		op.Do(ctx, http.MethodGet, "/v1/nodes/"+n.host, nil, nil, &fn)
		if time.Now().After(deadline) {
			t.Fatalf("a reboot did not clear the failed check: %s %v", fn.Health, fn.HealthReasons)
		}
	}
	// The check gives way to work.
	gpus.SetHealthCheck(5 * time.Second)
	id := order()
	time.Sleep(150 * time.Millisecond) // it runs
	var r struct{ ID string }
	if err := op.Do(ctx, http.MethodPost, "/v1/reservations", nil, map[string]any{"tenant": "acme", "sku": sku.Name, "gpus": 8, "class": "on_demand"}, &r); err != nil {
		t.Fatal(err)
	}
	if c := outcome(id); c.State != "refused" || !strings.Contains(c.Message, "gave way") {
		t.Fatalf("a check when work came: %+v", c)
	}
}

// TestSilenceBareMetalAndManaged: two nodes' agents go silent (their
// tenants rebooted them, say). The one serving bare metal is the tenant's:
// it is never failed for silence. The managed one is failed after the
// grace and its work replaced.
func TestSilenceBareMetalAndManaged(t *testing.T) {
	srv, err := cli.StartServer(context.Background(), cli.ServerOptions{Listen: "127.0.0.1:0", DataDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		LifecycleEvery: 20 * time.Millisecond, HeartbeatS: 1,
		// Only these two nodes have agents: the breaker (a share of a
		// domain silent at once) would hold them both.
		Liveness: agents.Liveness{Missed: 2, Grace: time.Second, StartupIntervals: 1, Breaker: map[string]float64{"su": 1}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	ctx := context.Background()
	op := client.New(srv.URL, srv.Token)
	sku, _ := fleet.CatalogSKU("h100-sxm5-80gb")
	var spec bytes.Buffer
	o := fleet.ColossusOptions(sku, 16*8)
	o.Fanout = []int{1, 1, 1, 16}
	if _, err := fleet.Generate(&spec, o); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path string
		body any
	}{
		{"/v1/fleet/apply", spec.Bytes()},
		{"/v1/prices", map[string]any{"sku": sku.Name, "class": "on_demand", "price_per_gpu_hour": "3"}},
		{"/v1/tenants", map[string]any{"name": "acme"}},
	} {
		if _, err := op.Raw(ctx, http.MethodPost, c.path, nil, c.body, ""); err != nil {
			t.Fatal(err)
		}
	}
	var jt struct{ Secret string }
	if err := op.Do(ctx, http.MethodPost, "/v1/sites/colossus-1/join-tokens", nil, map[string]any{"max_uses": 2, "ttl_s": 600}, &jt); err != nil {
		t.Fatal(err)
	}
	type rsv struct {
		ID    string
		Nodes []struct{ Hostname string }
	}
	reserve := func(delivery string) rsv {
		var r rsv
		if err := op.Do(ctx, http.MethodPost, "/v1/reservations", nil, map[string]any{"tenant": "acme", "sku": sku.Name, "gpus": 8, "class": "on_demand", "delivery": delivery}, &r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	bare, managed := reserve("bare_metal"), reserve("managed")
	// Both agents report for a while, then stop.
	rctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, r := range []rsv{bare, managed} {
		var fn fleet.Node
		op.Do(ctx, http.MethodGet, "/v1/nodes/"+r.Nodes[0].Hostname, nil, nil, &fn)
		opts := agent.Options{Server: srv.URL, JoinToken: jt.Secret, Hostname: fn.Hostname, Serial: fn.Serial, StateDir: t.TempDir(), Interval: 200 * time.Millisecond,
			GPUs: agent.NewSimulated(8, sku.GPUModel, sku.GPUMemoryMiB, 700)}
		wg.Add(1)
		go func() { defer wg.Done(); agent.Run(rctx, opts) }()
	}
	time.Sleep(1500 * time.Millisecond)
	cancel()
	wg.Wait()
	health := func(host string) fleet.Health {
		var fn fleet.Node
		op.Do(ctx, http.MethodGet, "/v1/nodes/"+host, nil, nil, &fn)
		return fn.Health
	}
	for deadline := time.Now().Add(15 * time.Second); health(managed.Nodes[0].Hostname) != fleet.HealthFailed; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the silent managed node: %s", health(managed.Nodes[0].Hostname))
		}
	}
	time.Sleep(time.Second) // as long again for the bare-metal one
	if h := health(bare.Nodes[0].Hostname); h != fleet.HealthOK {
		t.Fatalf("the silent bare-metal node: %s", h)
	}
	var l struct {
		Items []struct{ State, Hostname string }
	}
	op.Do(ctx, http.MethodGet, "/v1/reservations/"+bare.ID+"/allocations", nil, nil, &l)
	if len(l.Items) != 1 || l.Items[0].State != "ready" {
		t.Fatalf("the bare-metal reservation's allocations: %+v", l.Items)
	}
	op.Do(ctx, http.MethodGet, "/v1/reservations/"+managed.ID+"/allocations", nil, nil, &l)
	replaced := false
	for _, a := range l.Items {
		replaced = replaced || a.Hostname != managed.Nodes[0].Hostname && a.State == "ready"
	}
	if !replaced {
		t.Fatalf("the managed reservation was not made whole: %+v", l.Items)
	}
}

// TestBareMetalNeedsEvidence: on bare metal the tenant has root, so its
// node's agent reporting a GPU off the bus is not enough to take the node
// from it: the node shows failed, the work stays. The tenant's report,
// confirmed by an operator, is: then it is replaced and goes to repair.
func TestBareMetalNeedsEvidence(t *testing.T) {
	n := newNode(t, 64)
	srv, op, sku := n.srv, n.op, n.sku
	ctx := context.Background()
	var r struct {
		ID    string
		Nodes []struct{ Hostname string }
	}
	if err := op.Do(ctx, http.MethodPost, "/v1/reservations", nil, map[string]any{"tenant": "acme", "sku": sku.Name, "gpus": 8, "class": "on_demand", "delivery": "bare_metal"}, &r); err != nil {
		t.Fatal(err)
	}
	host := r.Nodes[0].Hostname
	var fn fleet.Node
	op.Do(ctx, http.MethodGet, "/v1/nodes/"+host, nil, nil, &fn)
	gpus := agent.NewSimulated(8, sku.GPUModel, sku.GPUMemoryMiB, 700)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go agent.Run(rctx, agent.Options{Server: srv.URL, JoinToken: n.join, Hostname: host, Serial: fn.Serial, StateDir: t.TempDir(), Interval: 30 * time.Millisecond, GPUs: gpus})
	time.Sleep(200 * time.Millisecond)
	gpus.Inject(agent.Fault{GPU: 1, XID: 79})
	for deadline := time.Now().Add(5 * time.Second); fn.Health != fleet.HealthFailed; time.Sleep(20 * time.Millisecond) {
		op.Do(ctx, http.MethodGet, "/v1/nodes/"+host, nil, nil, &fn)
		if time.Now().After(deadline) {
			t.Fatalf("the agent's report never showed: %s", fn.Health)
		}
	}
	time.Sleep(300 * time.Millisecond)
	var l struct {
		Items []struct{ State, Hostname string }
	}
	op.Do(ctx, http.MethodGet, "/v1/reservations/"+r.ID+"/allocations", nil, nil, &l)
	var tickets struct{ Items []agents.RepairTicket }
	op.Do(ctx, http.MethodGet, "/v1/repairs", url.Values{"node": {host}}, nil, &tickets)
	if len(l.Items) != 1 || l.Items[0].State != "ready" || len(tickets.Items) != 0 || fn.Lifecycle != fleet.LifecycleAvailable {
		t.Fatalf("on the agent's word alone: allocations %+v, tickets %+v, node %s", l.Items, tickets.Items, fn.Lifecycle)
	}
	// The tenant reports it; an operator confirms.
	var tok struct{ Secret string }
	if err := op.Do(ctx, http.MethodPost, "/v1/tokens", nil, map[string]any{"name": "acme-admin", "role": "tenant-admin", "tenant": "acme"}, &tok); err != nil {
		t.Fatal(err)
	}
	var b struct{ ID string }
	if err := client.New(srv.URL, tok.Secret).Do(ctx, http.MethodPost, "/v1/nodes/"+host+"/report", nil, map[string]any{"reason": "GPU 1 gone"}, &b); err != nil {
		t.Fatal(err)
	}
	if err := op.Do(ctx, http.MethodPost, "/v1/break-fix/"+b.ID+"/confirm", nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	op.Do(ctx, http.MethodGet, "/v1/reservations/"+r.ID+"/allocations", nil, nil, &l)
	op.Do(ctx, http.MethodGet, "/v1/repairs", url.Values{"node": {host}}, nil, &tickets)
	ended := false
	for _, a := range l.Items {
		ended = ended || a.Hostname == host && a.State == "ended"
	}
	if !ended || len(tickets.Items) != 1 {
		t.Fatalf("after the confirmed report: allocations %+v, tickets %+v", l.Items, tickets.Items)
	}
}

// TestSanitizeNeedsAWipe: a real node (no simulated GPUs) without a
// sanitize command fails its sanitize rather than claim a wipe it did not
// do; with one, it runs it.
func TestSanitizeNeedsAWipe(t *testing.T) {
	o := agent.Options{GPUs: noWipe{agent.NewSimulated(1, "H100", 81559, 700)}}
	f := &agent.Fence{}
	if r := o.RunCommand(f, wire.Command{ID: "cmd_1", Kind: "sanitize"}); r.State != "failed" || !strings.Contains(r.Message, "--sanitize-command") {
		t.Fatalf("without a command: %+v", r)
	}
	mark := filepath.Join(t.TempDir(), "wiped")
	o.SanitizeCommand = "touch " + mark
	if r := o.RunCommand(f, wire.Command{ID: "cmd_2", Kind: "sanitize"}); r.State != "done" {
		t.Fatalf("with a command: %+v", r)
	}
	if _, err := os.Stat(mark); err != nil {
		t.Fatalf("the command did not run: %v", err)
	}
}

// noWipe hides the simulated GPUs' own wipe, as a real node's GPUs have none.
type noWipe struct{ agent.GPUs }

// Simulated GPUs have UUIDs shaped as NVML's, distinct across GPUs and
// hosts, and the same on every start.
func TestSimulatedUUIDs(t *testing.T) {
	shape := regexp.MustCompile(`^GPU-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	seen := map[string]bool{}
	for _, host := range []string{"SN1", "SN2"} {
		g := agent.NewSimulated(8, "H100", 81559, 700)
		g.Host = host
		again := agent.NewSimulated(8, "H100", 81559, 700)
		again.Host = host
		for i, info := range g.Info() {
			if !shape.MatchString(info.UUID) || seen[info.UUID] || again.Info()[i].UUID != info.UUID {
				t.Fatalf("%s gpu %d: %q (seen %v, again %q)", host, i, info.UUID, seen[info.UUID], again.Info()[i].UUID)
			}
			seen[info.UUID] = true
		}
	}
}

// TestReimagedNodeIsHeard: a node has reported for a long time (its
// agent's count of reports is at 100,000); an operator re-keys it and it
// is re-imaged (its agent's state is gone); the new agent joins, and its
// reports, an XID 79 among them, are applied at once rather than taken for
// replays of the old agent's.
func TestReimagedNodeIsHeard(t *testing.T) {
	n := newNode(t, 16)
	ctx := context.Background()
	seq := func() int64 {
		var st agents.State
		n.op.Do(ctx, http.MethodGet, "/v1/nodes/"+n.host+"/agent", nil, nil, &st)
		return st.Seq
	}
	var jr wire.JoinResponse
	if err := client.New(n.srv.URL, n.join).Do(ctx, http.MethodPost, "/v1/agent/join", nil, wire.JoinRequest{Version: wire.Version, Hostname: n.host, Serial: n.serial}, &jr); err != nil {
		t.Fatal(err)
	}
	old := wire.Heartbeat{Version: wire.Version, Seq: 100_000, At: time.Now().UTC(), GPUs: []wire.GPUSample{{Index: 0, PowerW: 500}}}
	if err := client.New(n.srv.URL, jr.Credential).Do(ctx, http.MethodPost, "/v1/agent/heartbeat", nil, old, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := n.op.Raw(ctx, http.MethodPost, "/v1/nodes/"+n.host+"/rekey", nil, nil, ""); err != nil {
		t.Fatal(err)
	}
	var jt struct{ Secret string }
	if err := n.op.Do(ctx, http.MethodPost, "/v1/sites/colossus-1/join-tokens", nil, map[string]any{"max_uses": 1, "ttl_s": 600}, &jt); err != nil {
		t.Fatal(err)
	}
	gpus := agent.NewSimulated(8, n.sku.GPUModel, n.sku.GPUMemoryMiB, 700)
	gpus.Inject(agent.Fault{GPU: 2, XID: 79})
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go agent.Run(rctx, agent.Options{Server: n.srv.URL, JoinToken: jt.Secret, Hostname: n.host, Serial: n.serial, StateDir: t.TempDir(), Interval: 20 * time.Millisecond, GPUs: gpus})
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var node fleet.Node
		n.op.Do(ctx, http.MethodGet, "/v1/nodes/"+n.host, nil, nil, &node)
		if node.Health == fleet.HealthFailed && seq() > old.Seq {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the re-imaged node's XID 79 was not applied: health %s, seq %d (the old agent's last %d)", node.Health, seq(), old.Seq)
		}
	}
}
