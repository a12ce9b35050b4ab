package agent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/neocloud/neocloud/agent"
	"github.com/neocloud/neocloud/agents"
	"github.com/neocloud/neocloud/cli"
	"github.com/neocloud/neocloud/client"
	"github.com/neocloud/neocloud/fleet"
	"github.com/neocloud/neocloud/relay"
	"github.com/neocloud/neocloud/wire"
)

// cable is a TCP link from a relay to the server that a test can cut: cut
// closes every connection over it and refuses new ones until mend.
type cable struct {
	ln    net.Listener
	mu    sync.Mutex
	down  bool
	conns []net.Conn
}

func newCable(t *testing.T, to string) *cable {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &cable{ln: ln}
	t.Cleanup(func() {
		ln.Close()
		c.cut()
	})
	go func() {
		for {
			a, err := ln.Accept()
			if err != nil {
				return
			}
			c.mu.Lock()
			if c.down {
				c.mu.Unlock()
				a.Close()
				continue
			}
			b, err := net.Dial("tcp", to)
			if err != nil {
				c.mu.Unlock()
				a.Close()
				continue
			}
			c.conns = append(c.conns, a, b)
			c.mu.Unlock()
			go func() { io.Copy(b, a); b.Close() }()
			go func() { io.Copy(a, b); a.Close() }()
		}
	}()
	return c
}

func (c *cable) url() string { return "http://" + c.ln.Addr().String() }

func (c *cable) cut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.down = true
	for _, x := range c.conns {
		x.Close()
	}
	c.conns = nil
}

func (c *cable) mend() {
	c.mu.Lock()
	c.down = false
	c.mu.Unlock()
}

// startRelay serves a relay to server on loopback until the test ends.
func startRelay(t *testing.T, server string, conns int) (*relay.Relay, string) {
	t.Helper()
	r, err := relay.New(relay.Options{Server: server, Conns: conns, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cli.ServeRelay(ctx, ln, r) }()
	t.Cleanup(func() { cancel(); <-done })
	return r, "http://" + ln.Addr().String()
}

// TestAgentsThroughARelay: a rack of real agents reports through a relay
// on two connections to the server, through a cut of those connections.
// Each joins and gets pushed commands through the relay's proxy; their
// heartbeats go pipelined, each answered with the server's answer; the
// reports sent while the server was out of reach arrive after, every one
// stored once; and the relay had each delivered heartbeat answered once,
// or twice where the cut lost its first answer.
func TestAgentsThroughARelay(t *testing.T) {
	n := newNode(t, 256) // 32 nodes
	ctx := context.Background()
	var nodes struct{ Items []fleet.Node }
	if err := n.op.Do(ctx, http.MethodGet, "/v1/nodes", url.Values{"limit": {"100"}}, nil, &nodes); err != nil || len(nodes.Items) != 32 {
		t.Fatalf("%d nodes, %v", len(nodes.Items), err)
	}
	var jt struct{ Secret string }
	if err := n.op.Do(ctx, http.MethodPost, "/v1/sites/colossus-1/join-tokens", nil, map[string]any{"max_uses": 32, "ttl_s": 600}, &jt); err != nil {
		t.Fatal(err)
	}
	link := newCable(t, strings.TrimPrefix(n.srv.URL, "http://"))
	rl, via := startRelay(t, link.url(), 2)

	rctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	ran := make(chan wire.Command, 4)
	for i, nd := range nodes.Items {
		opts := agent.Options{Server: via, JoinToken: jt.Secret, Hostname: nd.Hostname, Serial: nd.Serial, StateDir: filepath.Join(t.TempDir(), fmt.Sprint(i)),
			Interval: 25 * time.Millisecond, GPUs: agent.NewSimulated(8, n.sku.GPUModel, n.sku.GPUMemoryMiB, 700)}
		if i == 0 {
			opts.Execute = func(c wire.Command) error { ran <- c; return nil }
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := agent.Run(rctx, opts); err != nil {
				t.Errorf("agent %s: %v", nd.Hostname, err)
			}
		}()
	}
	seqs := func() map[string]int64 {
		out := map[string]int64{}
		for _, nd := range nodes.Items {
			var st agents.State
			n.op.Do(ctx, http.MethodGet, "/v1/nodes/"+nd.Hostname+"/agent", nil, nil, &st)
			out[nd.Hostname] = st.Seq
		}
		return out
	}
	waitAll := func(atLeast map[string]int64, what string) map[string]int64 {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			now, behind := seqs(), ""
			for h, s := range now {
				if s < atLeast[h]+3 {
					behind = h
				}
			}
			if behind == "" {
				return now
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %s reported only up to %d", what, behind, now[behind])
			}
		}
	}
	before := waitAll(map[string]int64{}, "through the relay")

	// A command reaches its agent on its push stream, through the proxy.
	var c agents.NodeCommand
	if err := n.op.Do(ctx, http.MethodPost, "/v1/nodes/"+nodes.Items[0].Hostname+"/commands", nil, map[string]any{"kind": "power_cap", "power_w": 450}, &c); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-ran:
		if got.ID != c.ID {
			t.Fatalf("ran %+v, ordered %+v", got, c.Command)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the command never reached the agent")
	}

	st0 := rl.Stats()
	if st0.Dials != 2 {
		t.Errorf("%d connections opened for heartbeats before the cut, want the relay's two", st0.Dials)
	}
	// The server out of reach for a while, then back.
	link.cut()
	time.Sleep(500 * time.Millisecond)
	cut := seqs()
	link.mend()
	waitAll(cut, "after the cut")
	stop()
	wg.Wait()

	final := seqs()
	var sent int64
	for _, nd := range nodes.Items {
		h := nd.Hostname
		var samples struct{ Items []agents.Sample }
		if err := n.op.Do(ctx, http.MethodGet, "/v1/nodes/"+h+"/samples", url.Values{"to_seq": {fmt.Sprint(final[h])}}, nil, &samples); err != nil {
			t.Fatal(err)
		}
		for i, s := range samples.Items {
			if s.Seq != int64(i+1) {
				t.Fatalf("%s: sample %d has seq %d: reports lost or repeated", h, i, s.Seq)
			}
		}
		if int64(len(samples.Items)) != final[h] {
			t.Fatalf("%s: %d samples for %d reports", h, len(samples.Items), final[h])
		}
		sent += final[h]
	}
	st := rl.Stats()
	t.Logf("relay: %+v; seqs before the cut %v", st, before)
	// Each report was answered through the relay once, or twice when its
	// first answer was lost in the cut (at most one an agent).
	if st.Heartbeats < sent || st.Heartbeats > sent+int64(len(nodes.Items)) {
		t.Errorf("the relay had %d heartbeats answered; the agents delivered %d", st.Heartbeats, sent)
	}
	if st.Largest < 2 {
		t.Errorf("no batch carried more than one heartbeat: %+v", st)
	}
	if st.Dials <= st0.Dials {
		t.Errorf("no connection opened after the cut: %+v", st)
	}
}

// TestRelayAnswers: through a relay, each heartbeat gets the server's own
// answer to it, errors included, however many are pipelined together; a
// connection the server closed while it was kept is replaced without the
// agent seeing an error; with the server out of reach the agent gets 502
// as problem+json.
func TestRelayAnswers(t *testing.T) {
	n := newNode(t, 64) // 8 nodes
	ctx := context.Background()
	link := newCable(t, strings.TrimPrefix(n.srv.URL, "http://"))
	rl, via := startRelay(t, link.url(), 1)
	var nodes struct{ Items []fleet.Node }
	if err := n.op.Do(ctx, http.MethodGet, "/v1/nodes", nil, nil, &nodes); err != nil || len(nodes.Items) != 8 {
		t.Fatalf("%d nodes, %v", len(nodes.Items), err)
	}
	var jt struct{ Secret string }
	if err := n.op.Do(ctx, http.MethodPost, "/v1/sites/colossus-1/join-tokens", nil, map[string]any{"max_uses": 8, "ttl_s": 600}, &jt); err != nil {
		t.Fatal(err)
	}
	creds := make([]string, len(nodes.Items))
	for i, nd := range nodes.Items {
		var jr wire.JoinResponse
		if err := client.New(via, jt.Secret).Do(ctx, http.MethodPost, "/v1/agent/join", nil, wire.JoinRequest{Version: wire.Version, Hostname: nd.Hostname, Serial: nd.Serial}, &jr); err != nil {
			t.Fatalf("join through the relay: %v", err)
		}
		creds[i] = jr.Credential
	}
	post := func(token, body string) (int, string, []byte) {
		req, _ := http.NewRequest(http.MethodPost, via+relay.HeartbeatPath, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, "", []byte(err.Error())
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), b
	}
	hb := func(seq int64) string {
		b, _ := json.Marshal(wire.Heartbeat{Version: wire.Version, Seq: seq, At: time.Now().UTC(), GPUs: []wire.GPUSample{{Index: 0, EnergyJ: 10, PowerW: 100}}})
		return string(b)
	}
	// Seven nodes report at once, each on connections of its own to the
	// relay, which has one to the server: node i's reports are numbered
	// from 1000i, so an answer handed to the wrong report shows. The
	// eighth reports alone below.
	var wg sync.WaitGroup
	for i, cred := range creds[1:] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := int64(1); k <= 40; k++ {
				seq := int64(1000*(i+1)) + k
				code, _, b := post(cred, hb(seq))
				var ans wire.HeartbeatAnswer
				if code != 200 || json.Unmarshal(b, &ans) != nil || ans.Acked != seq {
					t.Errorf("report %d: %d %s", seq, code, b)
					return
				}
			}
		}()
	}
	wg.Wait()
	if st := rl.Stats(); st.Largest < 2 || st.Dials != 1 {
		t.Errorf("the reports were not pipelined on one connection: %+v", st)
	}
	cred := creds[0]
	problemType := func(b []byte) string {
		var p struct{ Type string }
		json.Unmarshal(b, &p)
		return p.Type
	}
	var ans wire.HeartbeatAnswer
	if code, _, b := post(cred, hb(1)); code != 200 || json.Unmarshal(b, &ans) != nil || ans.Acked != 1 {
		t.Fatalf("a heartbeat: %d %s", code, b)
	}
	if code, ct, b := post(cred, `{"version":`); code != 400 || ct != "application/problem+json" || problemType(b) != "urn:neocloud:problem:malformed" {
		t.Errorf("a broken report: %d %s %s", code, ct, b)
	}
	if code, _, b := post("nct_not-a-credential", hb(2)); code != 401 {
		t.Errorf("a stranger's report: %d %s", code, b)
	}
	// The relay's kept connection is closed under it; the next report
	// goes on a new one.
	link.cut()
	link.mend()
	if code, _, b := post(cred, hb(2)); code != 200 || json.Unmarshal(b, &ans) != nil || ans.Acked != 2 {
		t.Errorf("after the kept connection was closed: %d %s", code, b)
	}
	link.cut()
	if code, ct, b := post(cred, hb(3)); code != 502 || ct != "application/problem+json" || problemType(b) != "urn:neocloud:problem:unavailable" {
		t.Errorf("with the server out of reach: %d %s %s", code, ct, b)
	}
	// The relay's metrics say so, on its own path.
	if m := relayMetrics(t, via); m["neocloud_relay_lines_out_of_reach"] != 1 || m["neocloud_relay_heartbeats_unanswered_total"] < 1 {
		t.Errorf("with the server out of reach, the relay's metrics say %v", m)
	}
	link.mend()
	// Once it is back, the relay reaches it again after a short wait
	// (an agent sends again at its next interval).
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		code, _, b := post(cred, hb(3))
		if code == 200 {
			if json.Unmarshal(b, &ans) != nil || ans.Acked != 3 || ans.Duplicate {
				t.Errorf("once the server is back: %s", b)
			}
			break
		}
		if code != 502 || time.Now().After(deadline) {
			t.Fatalf("once the server is back: %d %s", code, b)
		}
	}
	st := rl.Stats()
	m := relayMetrics(t, via)
	for name, want := range map[string]int64{"neocloud_relay_lines_out_of_reach": 0, "neocloud_relay_heartbeats_total": st.Heartbeats,
		"neocloud_relay_heartbeats_unanswered_total": st.Unanswered, "neocloud_relay_heartbeat_batches_total": st.Batches,
		"neocloud_relay_server_connections_total": st.Dials, "neocloud_relay_largest_batch": st.Largest, "neocloud_relay_queued_heartbeats": 0} {
		if got, ok := m[name]; !ok || got != float64(want) {
			t.Errorf("%s = %v (%v), want %d", name, got, ok, want)
		}
	}
	// 7×40 + 5 answered by the server, two of them errors.
	if st.Heartbeats != 285 || st.Unanswered < 1 {
		t.Errorf("stats %+v, want 285 heartbeats answered and some unanswered", st)
	}
	if m["neocloud_relay_proxied_requests_total"] < float64(len(creds)) {
		t.Errorf("%v requests passed through, want the %d joins at least", m["neocloud_relay_proxied_requests_total"], len(creds))
	}
}

// relayMetrics scrapes a relay's own metrics (they carry no labels).
func relayMetrics(t *testing.T, via string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(via + relay.MetricsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := map[string]float64{}
	for _, line := range strings.Split(string(b), "\n") {
		name, v, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			t.Fatalf("%s: %q", relay.MetricsPath, line)
		}
		m[name] = f
	}
	if resp.StatusCode != 200 || len(m) == 0 {
		t.Fatalf("%s: %d %s", relay.MetricsPath, resp.StatusCode, b)
	}
	return m
}
