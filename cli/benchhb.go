package cli

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/neocloud/neocloud/fleet"
	"github.com/neocloud/neocloud/wire"
)

// HeartbeatBench sizes `neocloud bench heartbeats`.
type HeartbeatBench struct {
	Agents  int           // simulated agents, one node each
	For     time.Duration // how long to send heartbeats
	Clients int           // connections (the agents share them)
	// Pipeline is how many agents' requests each connection carries at
	// once, pipelined (1: one at a time).
	Pipeline int
	// Relays, when set, runs this many relays (neocloud relay, each with
	// RelayConns connections to the server) and spreads the connections
	// over them: the heartbeats reach the server as a site's agents'
	// would through relays.
	Relays, RelayConns int
	Binary             string // the neocloud binary to run the server from (default: this one)
	// Profile, when set, is where the server writes its CPU profile of the
	// heartbeats (it starts again, profiled, once the agents have joined;
	// with Streams, of the whole run); with Outage, the server started
	// after it writes its own to Profile+".after".
	Profile string
	// DatabaseURL, when set, runs the server on PostgreSQL (the database
	// is used as it is: give it an empty one).
	DatabaseURL string
	// Outage, when set, then stops the server for this long, starts it
	// again on the same store, and has every agent report at the real
	// cadence (one heartbeat per agent per 10 s) for After: a restart
	// must fail no node.
	Outage time.Duration
	After  time.Duration
	// Streams opens every agent's push stream first, as real agents hold
	// them (a connection each: mind the open-file limit).
	Streams  bool
	Progress io.Writer
}

// serverProc is a neocloud server (or relay) in a child process, so that
// its CPU time and memory are its own.
type serverProc struct {
	cmd *exec.Cmd
	url string
	// last is the last line it printed, once eof is closed (its output
	// ended).
	last string
	eof  chan struct{}
}

var listeningRE = regexp.MustCompile(`listening on (http://\S+)`)

// startServerProc runs `neocloud server` on listen (127.0.0.1:0: a free
// loopback port) over dir.
func startServerProc(bin, dir, boot, listen string, args ...string) (*serverProc, error) {
	cmd := exec.Command(bin, append([]string{"server", "--listen", listen, "--data-dir", dir, "--rate-limit", "0"}, args...)...)
	cmd.Env = append(os.Environ(), "NEOCLOUD_BOOTSTRAP_TOKEN="+boot)
	return startProc(cmd)
}

// startRelayProc runs `neocloud relay` on a free loopback port, to server.
func startRelayProc(bin, server string, conns int) (*serverProc, error) {
	return startProc(exec.Command(bin, "relay", "--listen", "127.0.0.1:0", "--server", server, "--conns", strconv.Itoa(conns)))
}

// startProc starts cmd and waits for the URL it says it listens on.
func startProc(cmd *exec.Cmd) (*serverProc, error) {
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	found := make(chan string, 1)
	p := &serverProc{cmd: cmd, eof: make(chan struct{})}
	go func() {
		defer close(p.eof)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.last = sc.Text()
			if m := listeningRE.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
	}()
	select {
	case u := <-found:
		p.url = u
		return p, nil
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("%s did not start: %s", cmd.Args[1], stderr.String())
	}
}

// cpu returns the process's CPU time so far: user+system, and system
// (the kernel's work for it: sockets, files, waking threads).
func (p *serverProc) cpu() (all, sys time.Duration, err error) { return procCPU(p.cmd.Process.Pid) }

// procCPU returns a process's CPU time so far, as cpu does.
func procCPU(pid int) (all, sys time.Duration, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// Fields after the command name (which may hold spaces) start at ") ".
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	tick := time.Second / 100 // USER_HZ is 100 on Linux
	return time.Duration(ut+st) * tick, time.Duration(st) * tick, nil
}

// rssMiB returns the process's resident memory.
func (p *serverProc) rssMiB() float64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			kb, _ := strconv.ParseFloat(strings.Fields(line)[1], 64)
			return kb / 1024
		}
	}
	return 0
}

func (p *serverProc) stop() {
	p.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() {
		<-p.eof // its output read to the end first
		p.cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
		<-done
	}
}

// benchAgent is one simulated agent: its node, credential and next report.
type benchAgent struct {
	mu      sync.Mutex
	host    string
	serial  string
	auth    string
	seq     int64
	energyJ uint64
}

// body appends the agent's next heartbeat to buf: eight GPUs at work,
// eight NICs. It writes the JSON by hand (the generator shares the
// server's two cores); TestBenchBody checks it decodes as the struct would.
func (a *benchAgent) body(buf []byte, now time.Time) []byte {
	a.seq++
	a.energyJ += 8 * 5000
	b := append(buf[:0], `{"version":`...)
	b = strconv.AppendInt(b, wire.Version, 10)
	b = append(b, `,"seq":`...)
	b = strconv.AppendInt(b, a.seq, 10)
	b = append(b, `,"at":"`...)
	b = now.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","gpus":[`...)
	for i := 0; i < 8; i++ {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"index":`...)
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, `,"power_w":`...)
		b = strconv.AppendInt(b, int64(500+i), 10)
		b = append(b, `,"energy_j":`...)
		b = strconv.AppendUint(b, a.energyJ/8, 10)
		b = append(b, `,"temp_c":60,"util_pct":90,"mem_used_mib":60000}`...)
	}
	b = append(b, `],"nics":[`...)
	for i := 0; i < 8; i++ {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"name":"ib`...)
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, `","up":true}`...)
	}
	b = append(b, `],"uptime_s":`...)
	b = strconv.AppendInt(b, a.seq*10, 10)
	return append(b, `,"agent_version":"bench"}`...)
}

// RunHeartbeatBench starts a server in its own process (SQLite, or
// PostgreSQL with DatabaseURL), joins
// Agents simulated agents over HTTP, then sends heartbeats from Clients
// concurrent requests for For, and prints heartbeats per second, latency,
// the server's CPU time per heartbeat and its memory.
func RunHeartbeatBench(ctx context.Context, w io.Writer, o HeartbeatBench) error {
	say := func(format string, args ...any) {
		if o.Progress != nil {
			fmt.Fprintf(o.Progress, format+"\n", args...)
		}
	}
	switch {
	case o.Agents < 1:
		return errors.New("--agents: at least 1")
	case o.Clients < 1:
		return errors.New("--clients: at least 1")
	case o.Pipeline < 1:
		return errors.New("--pipeline: at least 1")
	case o.Clients*o.Pipeline > o.Agents:
		// Each request in flight is another agent's.
		return fmt.Errorf("--pipeline: %d connections × %d requests in flight is more than the %d agents", o.Clients, o.Pipeline, o.Agents)
	case o.Relays < 0 || o.Relays > o.Clients:
		return fmt.Errorf("--relays: from 0 to the %d connections", o.Clients)
	case o.Relays > 0 && o.RelayConns < 1:
		return errors.New("--relay-conns: at least 1")
	}
	bin := o.Binary
	if bin == "" {
		var err error
		if bin, err = os.Executable(); err != nil {
			return err
		}
	}
	dir, err := os.MkdirTemp("", "neocloud-hbbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	const boot = "heartbeat-bench-bootstrap-0123456789"
	var args []string
	if o.DatabaseURL != "" {
		args = append(args, "--database-url", o.DatabaseURL)
	}
	profiled := append(slices.Clip(args), "--cpuprofile", o.Profile)
	first := args
	if o.Profile != "" && o.Streams {
		first = profiled // the streams would not survive a restart
	}
	srv, err := startServerProc(bin, dir, boot, "127.0.0.1:0", first...)
	if err != nil {
		return err
	}
	defer func() { srv.stop() }()
	tr := &http.Transport{MaxIdleConnsPerHost: o.Clients, MaxConnsPerHost: o.Clients, IdleConnTimeout: time.Minute}
	hc := &http.Client{Transport: tr, Timeout: time.Minute}
	callTo := func(base, method, path, auth string, body []byte, out any) error {
		req, _ := http.NewRequestWithContext(ctx, method, base+path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+auth)
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("%s: %d %s", path, resp.StatusCode, b)
		}
		if out != nil {
			return json.Unmarshal(b, out)
		}
		return nil
	}
	call := func(method, path, auth string, body []byte, out any) error {
		return callTo(srv.url, method, path, auth, body, out)
	}
	post := func(path, auth string, body []byte, out any) error {
		return call(http.MethodPost, path, auth, body, out)
	}

	// 1. A site with a node per agent, and a join token for all.
	sku, _ := fleet.CatalogSKU("h100-sxm5-80gb")
	var spec bytes.Buffer
	if _, err := fleet.Generate(&spec, fleet.ColossusOptions(sku, o.Agents*sku.GPUsPerNode)); err != nil {
		return err
	}
	parsed, err := fleet.ParseSpec(spec.Bytes())
	if err != nil {
		return err
	}
	say("applying a site of %d nodes…", len(parsed.Nodes))
	if err := post("/v1/fleet/apply", boot, spec.Bytes(), nil); err != nil {
		return err
	}
	var jt struct{ Secret string }
	jb, _ := json.Marshal(map[string]any{"max_uses": o.Agents, "ttl_s": 86400})
	if err := post("/v1/sites/"+parsed.Site.Name+"/join-tokens", boot, jb, &jt); err != nil {
		return err
	}

	// 2. Every agent joins.
	agents := make([]*benchAgent, o.Agents)
	for i := range agents {
		agents[i] = &benchAgent{host: parsed.Nodes[i].Hostname, serial: parsed.Nodes[i].Serial}
	}
	var joined atomic.Int64
	stopProgress := progressEvery(2*time.Second, func() { say("joined %d of %d agents", joined.Load(), o.Agents) })
	err = forEach(ctx, o.Clients, len(agents), func(i int) error {
		a := agents[i]
		b, _ := json.Marshal(wire.JoinRequest{Version: wire.Version, Hostname: a.host, Serial: a.serial, AgentVersion: "bench"})
		var jr wire.JoinResponse
		if err := post("/v1/agent/join", jt.Secret, b, &jr); err != nil {
			return err
		}
		a.auth = jr.Credential
		joined.Add(1)
		return nil
	})
	stopProgress()
	if err != nil {
		return err
	}
	// 2b. Push streams, as real agents hold them (each its own connection).
	rssBefore := srv.rssMiB()
	if o.Streams {
		st := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: -1}}
		var open atomic.Int64
		for _, a := range agents {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.url+"/v1/agent/stream", nil)
			req.Header.Set("Authorization", "Bearer "+a.auth)
			resp, err := st.Do(req)
			if err != nil {
				return fmt.Errorf("stream: %w", err)
			}
			if resp.StatusCode != http.StatusOK {
				resp.Body.Close()
				return fmt.Errorf("stream: %d", resp.StatusCode)
			}
			open.Add(1)
			go func() { io.Copy(io.Discard, resp.Body); resp.Body.Close() }()
		}
		time.Sleep(2 * time.Second)
		say("%d push streams open: server RSS %.0f → %.0f MiB (%.1f KiB a stream)", open.Load(), rssBefore, srv.rssMiB(), (srv.rssMiB()-rssBefore)*1024/float64(open.Load()))
	}
	if o.Profile != "" && !o.Streams {
		// The profile covers the heartbeats alone: the server starts again
		// on its store, profiled, after the agents have joined.
		srv.stop()
		if srv, err = startServerProc(bin, dir, boot, "127.0.0.1:0", profiled...); err != nil {
			return err
		}
	}
	// Every agent reports once first, so that what is measured is the
	// steady state (each node's state and credential in memory).
	say("%d agents joined; each reports once…", o.Agents)
	err = forEach(ctx, o.Clients, len(agents), func(i int) error {
		return post("/v1/agent/heartbeat", agents[i].auth, agents[i].body(nil, time.Now().UTC()), nil)
	})
	if err != nil {
		return err
	}
	// On SQLite the server folds its telemetry journal into the per-node
	// tables a minute's reports at a time: reading the site's utilization
	// (node-hours of reports) has it fold all it holds first, before the
	// heartbeats (the reports so far) and after them, so that the CPU
	// counted is all those heartbeats cost, folds included, however long
	// the run.
	settle := func() error {
		return call(http.MethodGet, "/v1/finance/utilization?site="+parsed.Site.Name+"&period="+time.Now().UTC().Format("2006-01"), boot, nil, nil)
	}
	if err := settle(); err != nil {
		return err
	}
	// Relays, when asked for, stand between the connections and the
	// server: connection (or agent) i reaches the server through
	// target(i).
	var relays []*serverProc
	defer func() {
		for _, r := range relays {
			r.stop()
		}
	}()
	for range o.Relays {
		r, err := startRelayProc(bin, srv.url, o.RelayConns)
		if err != nil {
			return err
		}
		relays = append(relays, r)
	}
	target := func(i int) string {
		if len(relays) > 0 {
			return relays[i%len(relays)].url
		}
		return srv.url
	}
	via := ""
	if len(relays) > 0 {
		via = fmt.Sprintf(" through %d relays of %d connections each", len(relays), o.RelayConns)
	}
	if o.Pipeline > 1 {
		say("heartbeats for %v over %d connections%s, %d agents' pipelined on each at once…", o.For, o.Clients, via, o.Pipeline)
	} else {
		say("heartbeats for %v over %d connections%s…", o.For, o.Clients, via)
	}
	relayCPU := func() (time.Duration, error) {
		var all time.Duration
		for _, r := range relays {
			c, _, err := r.cpu()
			if err != nil {
				return 0, err
			}
			all += c
		}
		return all, nil
	}

	// 3. Heartbeats, round robin over the agents, as fast as they are answered.
	// What the utilization read costs of itself is taken off the CPU
	// counted: read again now, with nothing to fold, it costs that alone.
	read0, readSys0, err := srv.cpu()
	if err != nil {
		return err
	}
	if err := settle(); err != nil {
		return err
	}
	cpu0, sys0, err := srv.cpu()
	if err != nil {
		return err
	}
	readCPU, readSys := cpu0-read0, sys0-readSys0
	gen0 := selfCPU()
	relay0, err := relayCPU()
	if err != nil {
		return err
	}
	var next atomic.Int64
	var failures atomic.Int64
	var firstErr atomic.Value
	lat := make([][]time.Duration, o.Clients)
	start := time.Now()
	deadline := start.Add(o.For)
	var wg sync.WaitGroup
	for c := 0; c < o.Clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			hc := &hbConn{addr: strings.TrimPrefix(target(c), "http://")}
			defer hc.close()
			depth := o.Pipeline
			as := make([]*benchAgent, 0, depth)
			auths := make([]string, 0, depth)
			bodies := make([][]byte, depth)
			for time.Now().Before(deadline) && ctx.Err() == nil {
				as, auths = as[:0], auths[:0]
				for len(as) < depth {
					a := agents[int(next.Add(1)-1)%len(agents)]
					if a.mu.TryLock() { // else its previous report is still on its way
						as = append(as, a)
					}
				}
				t0 := time.Now()
				for i, a := range as {
					bodies[i] = a.body(bodies[i], t0.UTC())
					auths = append(auths, a.auth)
				}
				err := hc.post("/v1/agent/heartbeat", auths, bodies[:len(as)])
				for _, a := range as {
					a.mu.Unlock()
				}
				if err != nil {
					failures.Add(int64(len(as)))
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				d := time.Since(t0)
				for range as {
					lat[c] = append(lat[c], d)
				}
			}
		}(c)
	}
	wg.Wait()
	elapsed := time.Since(start)
	gen1 := selfCPU()
	relay1, err := relayCPU()
	if err != nil {
		return err
	}
	if err := settle(); err != nil {
		return err
	}
	cpu1, sys1, err := srv.cpu()
	if err != nil {
		return err
	}
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	if len(all) == 0 {
		if e, ok := firstErr.Load().(error); ok {
			return e
		}
		return errors.New("no heartbeat was answered")
	}
	slices.Sort(all)
	pct := func(p float64) time.Duration { return all[min(len(all)-1, int(p*float64(len(all))))] }
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	perHB := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(len(all)) }
	relayCol, relayVal := "", ""
	if len(relays) > 0 {
		relayCol, relayVal = "relay CPU µs/hb\t", fmt.Sprintf("%.1f\t", perHB(relay1-relay0))
	}
	fmt.Fprintln(tw, "agents\tseconds\theartbeats\tper second\tp50 ms\tp99 ms\tmax ms\tserver CPU µs/hb\tof it kernel\t"+relayCol+"generator CPU µs/hb\tserver RSS MiB\tfailed\t")
	fmt.Fprintf(tw, "%d\t%.1f\t%d\t%.0f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%s%.1f\t%.0f\t%d\t\n", o.Agents, elapsed.Seconds(), len(all), float64(len(all))/elapsed.Seconds(),
		ms(pct(0.50)), ms(pct(0.99)), ms(all[len(all)-1]), perHB(cpu1-cpu0-readCPU), perHB(sys1-sys0-readSys), relayVal,
		perHB(gen1-gen0), srv.rssMiB(), failures.Load())
	tw.Flush()
	if e, ok := firstErr.Load().(error); ok {
		fmt.Fprintf(w, "first failure: %v\n", e)
	}
	// What the relays say as they stop: how many heartbeats each batch to
	// the server carried.
	reportRelays := func() {
		for i, r := range relays {
			r.stop()
			fmt.Fprintf(w, "relay %d: %s\n", i+1, r.last)
		}
		relays = nil
	}
	if o.Outage <= 0 {
		reportRelays()
		return nil
	}

	// 4. The server stops for the outage and starts again on its store.
	say("stopping the server for %v…", o.Outage)
	srv.stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(o.Outage):
	}
	after := args
	if o.Profile != "" {
		after = append(slices.Clip(args), "--cpuprofile", o.Profile+".after")
	}
	// With relays, it starts again where they expect it, and the agents
	// report through them.
	listen := "127.0.0.1:0"
	if len(relays) > 0 {
		listen = strings.TrimPrefix(srv.url, "http://")
	}
	if srv, err = startServerProc(bin, dir, boot, listen, after...); err != nil {
		return err
	}
	say("started again; every agent reports every 10 s for %v…", o.After)
	var sent atomic.Int64
	per := 10 * time.Second / time.Duration(len(agents))
	t0 := time.Now()
	// The server's CPU at the site's own cadence is measured from the
	// second round of reports on (the first reads each node's credential
	// and state from the store), or from the start when there is none.
	var steady struct {
		once sync.Once
		cpu  time.Duration
		at   time.Time
		sent int64
		err  error
	}
	mark := func() {
		steady.once.Do(func() {
			steady.cpu, _, steady.err = srv.cpu()
			steady.at, steady.sent = time.Now(), sent.Load()
		})
	}
	var latMu sync.Mutex
	var lats []time.Duration // answers' latencies, counted as the CPU is
	beats := int(o.After / per)
	if beats <= len(agents) {
		mark()
	}
	// Each agent reports at a phase of its own within the interval, as
	// real agents' timers fall (a random arrival, not an even spacing);
	// the i'th report is the agents' in the order of their phases.
	phase := make([]time.Duration, len(agents))
	for k := range phase {
		phase[k] = time.Duration(rand.Int64N(int64(10 * time.Second)))
	}
	slices.Sort(phase)
	err = forEach(ctx, o.Clients, beats, func(i int) error {
		round, k := i/len(agents), i%len(agents)
		if d := time.Until(t0.Add(time.Duration(round)*10*time.Second + phase[k])); d > 0 {
			time.Sleep(d)
		}
		counted := i >= len(agents) || beats <= len(agents)
		if i >= len(agents) {
			mark()
		}
		a := agents[k]
		a.mu.Lock()
		defer a.mu.Unlock()
		t := time.Now()
		if callTo(target(k), http.MethodPost, "/v1/agent/heartbeat", a.auth, a.body(nil, t.UTC()), nil) == nil {
			sent.Add(1)
			if counted {
				latMu.Lock()
				lats = append(lats, time.Since(t))
				latMu.Unlock()
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	cpuEnd, _, err := srv.cpu()
	if err = cmp.Or(steady.err, err); err != nil {
		return err
	}
	cpuPer := float64((cpuEnd - steady.cpu).Microseconds()) / float64(max(1, sent.Load()-steady.sent))
	cpuShare := 100 * (cpuEnd - steady.cpu).Seconds() / time.Since(steady.at).Seconds()
	count := func(h string) (int, error) {
		n := 0
		cursor := ""
		for {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.url+"/v1/nodes?limit=1000&health="+h+"&cursor="+cursor, nil)
			req.Header.Set("Authorization", "Bearer "+boot)
			resp, err := hc.Do(req)
			if err != nil {
				return 0, err
			}
			var page struct {
				Items      []json.RawMessage `json:"items"`
				NextCursor string            `json:"next_cursor"`
			}
			err = json.NewDecoder(resp.Body).Decode(&page)
			resp.Body.Close()
			if err != nil {
				return 0, err
			}
			n += len(page.Items)
			if cursor = page.NextCursor; cursor == "" {
				return n, nil
			}
		}
	}
	failed, err := count("failed")
	if err != nil {
		return err
	}
	unreachable, err := count("unreachable")
	if err != nil {
		return err
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	slices.Sort(lats)
	p99 := time.Duration(0)
	if len(lats) > 0 {
		p99 = lats[min(len(lats)-1, len(lats)*99/100)]
	}
	fmt.Fprintln(tw, "agents	outage s	after s	heartbeats after	p99 ms	server CPU µs/hb	% of a core	nodes failed	nodes unreachable	")
	fmt.Fprintf(tw, "%d	%.0f	%.0f	%d	%.1f	%.1f	%.1f	%d	%d	\n", o.Agents, o.Outage.Seconds(), o.After.Seconds(), sent.Load(),
		float64(p99.Microseconds())/1000, cpuPer, cpuShare, failed, unreachable)
	tw.Flush()
	reportRelays()
	srv.stop()
	return nil
}

// hbConn is one connection of the generator: requests written by hand,
// answers read by http.ReadResponse. It costs a fraction of what a
// Transport does per request, which matters since the generator shares
// the server's cores.
type hbConn struct {
	addr string
	c    net.Conn
	br   *bufio.Reader
	buf  []byte
}

// post sends each body to path with its bearer auth, pipelined (written
// at once, answered in order), and reads the answers: an error unless
// each is 2xx.
func (h *hbConn) post(path string, auths []string, bodies [][]byte) error {
	if h.c == nil {
		c, err := net.Dial("tcp", h.addr)
		if err != nil {
			return err
		}
		h.c, h.br = c, bufio.NewReader(c)
	}
	b := h.buf[:0]
	for i, body := range bodies {
		b = append(b, "POST "...)
		b = append(b, path...)
		b = append(b, " HTTP/1.1\r\nHost: "...)
		b = append(b, h.addr...)
		b = append(b, "\r\nAuthorization: Bearer "...)
		b = append(b, auths[i]...)
		b = append(b, "\r\nContent-Type: application/json\r\nContent-Length: "...)
		b = strconv.AppendInt(b, int64(len(body)), 10)
		b = append(b, "\r\n\r\n"...)
		b = append(b, body...)
	}
	h.buf = b
	if _, err := h.c.Write(b); err != nil {
		h.close()
		return err
	}
	for range bodies {
		resp, err := http.ReadResponse(h.br, nil)
		if err != nil {
			h.close()
			return err
		}
		ans, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.Close {
			h.close()
		}
		if err != nil {
			return err
		}
		if resp.StatusCode/100 != 2 {
			h.close() // the answers after it are not read
			return fmt.Errorf("%s: %d %s", path, resp.StatusCode, ans)
		}
		if h.c == nil {
			return errors.New(path + ": the connection closed")
		}
	}
	return nil
}

func (h *hbConn) close() {
	if h.c != nil {
		h.c.Close()
		h.c = nil
	}
}

// selfCPU returns this process's user+system CPU time so far (the
// generator's: the server is a child process).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// forEach runs fn(0…n-1) from k goroutines, stopping at the first error.
func forEach(ctx context.Context, k, n int, fn func(i int) error) error {
	var next atomic.Int64
	var first error
	var once sync.Once
	var wg sync.WaitGroup
	for c := 0; c < k; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					once.Do(func() { first = err })
					next.Store(int64(n))
					return
				}
			}
		}()
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}

// progressEvery calls fn every d until the returned stop is called.
func progressEvery(d time.Duration, fn func()) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				fn()
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}
