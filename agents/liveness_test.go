package agents_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/agents"
	"github.com/neocloud/neocloud/fleet"
	"github.com/neocloud/neocloud/internal/testdb"
	"github.com/neocloud/neocloud/sqlstore"
	"github.com/neocloud/neocloud/tenant"
	"github.com/neocloud/neocloud/wire"
)

// lab is a site of 2 halls × 2 sus × 2 racks × 5 nodes, every node with an
// agent credential, and an agents service on a fake clock.
type lab struct {
	t      *testing.T
	db     *sqlstore.DB
	fl     *fleet.Service
	ag     *agents.Service
	now    time.Time
	seq    map[string]int64
	nodes  []fleet.Node
	mu     sync.Mutex
	failed []string // OnFailed calls
	bare   map[string]bool
	bmc    *agents.SimBMC
}

func newLab(t *testing.T, db *sqlstore.DB) *lab {
	ctx := context.Background()
	fl := fleet.NewService(db, db)
	if err := fl.Load(ctx); err != nil {
		t.Fatal(err)
	}
	sku, _ := fleet.CatalogSKU("h100-sxm5-80gb")
	var spec bytes.Buffer
	if _, err := fleet.Generate(&spec, fleet.GenerateOptions{Site: "lab", Region: "lab", Timezone: "UTC", SKU: sku, GPUs: 40 * 8,
		Levels: []string{"hall", "su", "rack"}, Fanout: []int{2, 2, 5}}); err != nil {
		t.Fatal(err)
	}
	parsed, err := fleet.ParseSpec(spec.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fl.Apply(ctx, parsed); err != nil {
		t.Fatal(err)
	}
	l := &lab{t: t, db: db, fl: fl, now: time.Date(2027, 3, 1, 12, 0, 0, 0, time.UTC), seq: map[string]int64{}, bare: map[string]bool{}}
	for _, n := range parsed.Nodes {
		fn, _ := fl.Snapshot.Node(n.Hostname)
		l.nodes = append(l.nodes, fn)
		sec := tenant.NewSecret()
		tok := tenant.Token{ID: neocloud.NewID(neocloud.PrefixToken), Name: "agent", Role: neocloud.RoleAgent, NodeID: fn.ID, Hint: tenant.Hint(sec), CreatedBy: "test"}
		if err := db.CreateToken(ctx, tok, tenant.HashSecret(sec)); err != nil {
			t.Fatal(err)
		}
	}
	sort.Slice(l.nodes, func(i, j int) bool {
		return l.nodes[i].Domain+l.nodes[i].Hostname < l.nodes[j].Domain+l.nodes[j].Hostname
	})
	l.start()
	return l
}

// start starts a server on the lab's store: a new agents service, as after
// a restart.
func (l *lab) start() {
	ag := agents.NewService(l.db, l.db, l.fl, tenant.NewService(l.db))
	ag.Now = func() time.Time { return l.now }
	ag.Started = l.now
	ag.Liveness = agents.Liveness{Grace: 2 * time.Minute, Breaker: map[string]float64{"su": 0.20}}
	ag.OnFailed = func(_ context.Context, id, why string, evidence bool) error {
		l.mu.Lock()
		defer l.mu.Unlock()
		if evidence != (strings.Contains(why, "powered off") || strings.HasPrefix(why, "failed by an operator: ")) {
			l.t.Errorf("%s failed with evidence %v: %s", id, evidence, why)
		}
		l.failed = append(l.failed, id)
		return nil
	}
	l.bmc = &agents.SimBMC{}
	ag.OutOfBand = l.bmc
	ag.BareMetal = func(_ context.Context, id string) (bool, error) { return l.bare[id], nil }
	l.ag = ag
}

// beat has every node report except those silent.
func (l *lab) beat(silent ...fleet.Node) {
	skip := map[string]bool{}
	for _, n := range silent {
		skip[n.ID] = true
	}
	for _, n := range l.nodes {
		if skip[n.ID] {
			continue
		}
		l.seq[n.ID]++
		p := neocloud.Principal{TokenID: "tok_" + n.ID, Role: neocloud.RoleAgent, NodeID: n.ID}
		if _, err := l.ag.Heartbeat(context.Background(), p, wire.Heartbeat{Version: wire.Version, Seq: l.seq[n.ID], At: l.now, GPUs: []wire.GPUSample{{Index: 0, PowerW: 500}}}); err != nil {
			l.t.Fatal(err)
		}
	}
}

func (l *lab) sweep() agents.SweepResult {
	res, err := l.ag.Sweep(context.Background())
	if err != nil {
		l.t.Fatal(err)
	}
	return res
}

func (l *lab) incidents(ag *agents.Service, openOnly bool) []agents.Incident {
	incs, err := ag.Incidents(context.Background(), openOnly)
	if err != nil {
		l.t.Fatal(err)
	}
	return incs
}

func (l *lab) health(n fleet.Node) fleet.Health {
	fn, _ := l.fl.Snapshot.Node(n.ID)
	return fn.Health
}

// TestLiveness: a silent node becomes unreachable after three intervals
// and failed after the grace, with its work replaced; nothing is judged
// for a while after a start.
func TestLiveness(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sqlstore.DB) {
		l := newLab(t, db)
		a := l.nodes[0]
		l.beat()
		// Within the startup grace (6 intervals), silence is not judged.
		l.now = l.now.Add(50 * time.Second)
		l.beat(a)
		if res := l.sweep(); res.Judged || l.health(a) != fleet.HealthOK {
			t.Fatalf("judged during the startup grace: %+v, %s", res, l.health(a))
		}
		l.now = l.now.Add(20 * time.Second) // a silent 70 s, the others 20 s
		l.beat(a)
		res := l.sweep()
		if !res.Judged || len(res.Unreachable) != 1 || res.Unreachable[0] != a.ID || l.health(a) != fleet.HealthUnreachable || len(l.failed) != 0 {
			t.Fatalf("after 70 s of silence: %+v, %s, failed %v", res, l.health(a), l.failed)
		}
		// Grace over (3 intervals + 2 minutes): failed, work replaced.
		for i := 0; i < 9; i++ {
			l.now = l.now.Add(10 * time.Second)
			l.beat(a)
			l.sweep()
		}
		if l.health(a) != fleet.HealthFailed || len(l.failed) != 1 || l.failed[0] != a.ID {
			t.Fatalf("after 160 s of silence: %s, OnFailed %v", l.health(a), l.failed)
		}
		for _, n := range l.nodes[1:] {
			if l.health(n) != fleet.HealthOK {
				t.Fatalf("%s reported and is %s", n.Hostname, l.health(n))
			}
		}
		// Its agent back: it reports ok again (the node stays where
		// remediation put it).
		l.beat()
		if l.health(a) != fleet.HealthOK {
			t.Fatalf("after reporting again: %s", l.health(a))
		}
	})
}

// TestLivenessBreaker: 30% of an su silent at once is the control plane's
// blindness, not failures: an incident, no node marked or replaced; the
// incident closes when they report again.
func TestLivenessBreaker(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sqlstore.DB) {
		l := newLab(t, db)
		su := l.nodes[:10] // one su: 2 racks of 5
		if su[0].Domain[:len("h1/su1")] != su[9].Domain[:len("h1/su1")] {
			t.Fatalf("not one su: %s … %s", su[0].Domain, su[9].Domain)
		}
		silent := su[2:5]
		l.beat()
		for i := 0; i < 30; i++ { // five minutes
			l.now = l.now.Add(10 * time.Second)
			l.beat(silent...)
			l.sweep()
		}
		incs := l.incidents(l.ag, true)
		if len(incs) != 1 || incs[0].Level != "su" || incs[0].Silent != 3 || incs[0].Nodes != 10 {
			t.Fatalf("incidents: %+v", incs)
		}
		for _, n := range silent {
			if l.health(n) != fleet.HealthOK {
				t.Fatalf("%s in a silent su was marked %s", n.Hostname, l.health(n))
			}
		}
		if len(l.failed) != 0 {
			t.Fatalf("replaced behind an open breaker: %v", l.failed)
		}
		// An operator who finds one of them truly down fails it: its work
		// goes (on the operator's evidence) and its repair opens; the
		// others stay held. Without a reason, nothing changes.
		ctx := context.Background()
		if _, err := l.ag.FailNode(ctx, silent[0].Hostname, "  "); neocloud.ErrorKind(err) != neocloud.KindInvalid || !strings.Contains(err.Error(), "reason") ||
			l.health(silent[0]) != fleet.HealthOK || len(l.failed) != 0 {
			t.Fatalf("failed without a reason: %v, %s, %v", err, l.health(silent[0]), l.failed)
		}
		tk, err := l.ag.FailNode(ctx, silent[0].Hostname, "PSU burnt out")
		if err != nil || tk.State != agents.TicketOpen || tk.NodeID != silent[0].ID || !slices.Contains(tk.Reasons, "failed by an operator: PSU burnt out") {
			t.Fatalf("an operator's failure: %v %+v", err, tk)
		}
		if n, _ := l.fl.Snapshot.Node(silent[0].ID); n.Health != fleet.HealthFailed || n.Lifecycle != fleet.LifecycleRepair || !slices.Equal(l.failed, []string{silent[0].ID}) {
			t.Fatalf("after an operator's failure: %s %s, OnFailed %v", n.Health, n.Lifecycle, l.failed)
		}
		for i := 0; i < 6; i++ {
			l.now = l.now.Add(10 * time.Second)
			l.beat(silent...)
			l.sweep()
		}
		if len(l.failed) != 1 || l.health(silent[1]) != fleet.HealthOK || len(l.incidents(l.ag, true)) != 1 {
			t.Fatalf("the breaker let go: OnFailed %v, %s", l.failed, l.health(silent[1]))
		}
		// The incident is stored: a restarted server (or another one)
		// shows it and carries it on.
		l.start()
		if again := l.incidents(l.ag, true); len(again) != 1 || again[0].ID != incs[0].ID {
			t.Fatalf("after a restart: %+v", again)
		}
		for i := 0; i < 7; i++ { // past the new start's grace, all reporting
			l.now = l.now.Add(10 * time.Second)
			l.beat()
			l.sweep()
		}
		if open := l.incidents(l.ag, true); len(open) != 0 {
			t.Fatalf("still open after they reported: %+v", open)
		}
		if all := l.incidents(l.ag, false); len(all) != 1 || all[0].ClosedAt == nil {
			t.Fatalf("closed incidents: %+v", all)
		}
	})
}

// TestLivenessBareMetal: a bare-metal node whose tenant rebooted it (or
// cut its agent off) is the tenant's: never failed for silence.
func TestLivenessBareMetal(t *testing.T) {
	l := newLab(t, testdb.SQLite(t))
	b := l.nodes[12]
	l.bare[b.ID] = true
	l.beat()
	for i := 0; i < 30; i++ {
		l.now = l.now.Add(10 * time.Second)
		l.beat(b)
		l.sweep()
	}
	if l.health(b) != fleet.HealthOK || len(l.failed) != 0 {
		t.Fatalf("bare-metal node silent 5 minutes: %s, OnFailed %v", l.health(b), l.failed)
	}
}

// TestLivenessAfterRestart: the server is down 10 minutes; after it starts
// again every agent reports within its startup grace: no node is failed,
// none replaced.
func TestLivenessAfterRestart(t *testing.T) {
	l := newLab(t, testdb.SQLite(t))
	for i := 0; i < 8; i++ {
		l.now = l.now.Add(10 * time.Second)
		l.beat()
		l.sweep()
	}
	l.now = l.now.Add(10 * time.Minute) // the server is down
	l.start()
	for i := 0; i < 3; i++ { // agents reconnect over a few intervals
		l.sweep()
		l.now = l.now.Add(10 * time.Second)
	}
	l.beat()
	for i := 0; i < 30; i++ {
		l.now = l.now.Add(10 * time.Second)
		l.beat()
		if res := l.sweep(); len(res.Unreachable)+len(res.Failed) != 0 {
			t.Fatalf("after the restart: %+v", res)
		}
	}
	for _, n := range l.nodes {
		if l.health(n) != fleet.HealthOK {
			t.Fatalf("%s: %s", n.Hostname, l.health(n))
		}
	}
	if len(l.failed) != 0 {
		t.Fatalf("replaced after a restart: %v", l.failed)
	}
}

// TestQuarantine: the third failure of a node in 30 days quarantines it:
// repair-done is refused until forced. Each way back runs burn-in, then
// sanitize (with its record), through the node's agent.
func TestQuarantine(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sqlstore.DB) {
		l := newLab(t, db)
		ctx := context.Background()
		n := l.nodes[7]
		finish := func(tk agents.RepairTicket) {
			t.Helper()
			if tk.CommandID == "" {
				t.Fatalf("no command for step %s", tk.State)
			}
			if err := db.FinishCommand(ctx, n.ID, wire.Result{ID: tk.CommandID, State: "done", Message: "disks wiped; GPUs reset"}, l.now); err != nil {
				t.Fatal(err)
			}
			if _, err := l.ag.Remediate(ctx); err != nil {
				t.Fatal(err)
			}
		}
		for i := 1; i <= 3; i++ {
			l.now = l.now.Add(24 * time.Hour)
			tk, err := l.ag.OpenRepair(ctx, n.ID, fmt.Sprintf("gpu 1: failure %d", i))
			if err != nil {
				t.Fatal(err)
			}
			if fn, _ := l.fl.Snapshot.Node(n.ID); fn.Lifecycle != fleet.LifecycleRepair || tk.Quarantined != (i == 3) {
				t.Fatalf("failure %d: %s, quarantined %v", i, fn.Lifecycle, tk.Quarantined)
			}
			if i == 3 {
				if _, err := l.ag.RepairDone(ctx, n.ID, false); neocloud.ErrorKind(err) != neocloud.KindConflict {
					t.Fatalf("repair-done of a quarantined node: %v", err)
				}
			}
			tk, err = l.ag.RepairDone(ctx, n.ID, i == 3)
			if err != nil || tk.State != agents.TicketBurnIn {
				t.Fatalf("repair-done %d: %+v %v", i, tk, err)
			}
			finish(tk) // burn-in done → sanitizing
			ts, _ := db.Tickets(ctx, n.ID, true)
			if len(ts) != 1 || ts[0].State != agents.TicketSanitizing {
				t.Fatalf("after burn-in: %+v", ts)
			}
			if fn, _ := l.fl.Snapshot.Node(n.ID); fn.Lifecycle != fleet.LifecycleSanitizing {
				t.Fatalf("after burn-in the node is %s", fn.Lifecycle)
			}
			finish(ts[0]) // sanitize done → available, with a record
			if fn, _ := l.fl.Snapshot.Node(n.ID); fn.Lifecycle != fleet.LifecycleAvailable {
				t.Fatalf("after sanitize the node is %s", fn.Lifecycle)
			}
			if recs, _ := db.SanitizeRecords(ctx, n.ID); len(recs) != i || recs[0].TicketID != tk.ID || fmt.Sprint(recs[0].Steps) != "[disks wiped GPUs reset]" {
				t.Fatalf("sanitize records: %+v", recs)
			}
		}
		// A failed step sends the node back to repair.
		tk, _ := l.ag.OpenRepair(ctx, n.ID, "gpu 1: failure 4")
		tk, _ = l.ag.RepairDone(ctx, n.ID, true)
		if err := db.FinishCommand(ctx, n.ID, wire.Result{ID: tk.CommandID, State: "failed", Message: "NCCL bandwidth below the floor"}, l.now); err != nil {
			t.Fatal(err)
		}
		l.ag.Remediate(ctx)
		if fn, _ := l.fl.Snapshot.Node(n.ID); fn.Lifecycle != fleet.LifecycleRepair {
			t.Fatalf("after a failed burn-in the node is %s", fn.Lifecycle)
		}
	})
}

// TestActiveChecksScheduled: every idle, healthy, available node gets an
// active check once a period, spread over it (a start does not check the
// whole fleet at once), at most PerSweep at a time; busy nodes are left to
// their work.
func TestActiveChecksScheduled(t *testing.T) {
	l := newLab(t, testdb.SQLite(t))
	ctx := context.Background()
	busy := l.nodes[3]
	l.ag.Assignment = func(_ context.Context, id string) (*wire.Assignment, error) {
		if id == busy.ID {
			return &wire.Assignment{Generation: 1, Reservation: "rsv_x"}, nil
		}
		return nil, nil
	}
	l.ag.Checks = agents.ActiveChecks{Every: time.Hour, PerSweep: 5}
	checks := func() map[string]int {
		out := map[string]int{}
		for _, n := range l.nodes {
			cs, err := l.db.Commands(ctx, n.ID, false)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range cs {
				if c.Kind == "health_check" {
					out[n.ID]++
				}
			}
		}
		return out
	}
	l.beat()
	maxPerSweep, firstHalf := 0, 0
	for i := 0; i < 120; i++ { // two hours, a sweep a minute
		l.now = l.now.Add(time.Minute)
		l.beat()
		res := l.sweep()
		maxPerSweep = max(maxPerSweep, res.Checks)
		if i == 29 {
			firstHalf = len(checks())
		}
		// The agents answer: checks done.
		for _, n := range l.nodes {
			cs, _ := l.db.Commands(ctx, n.ID, true)
			for _, c := range cs {
				l.db.FinishCommand(ctx, n.ID, wire.Result{ID: c.ID, State: "done"}, l.now)
			}
		}
	}
	got := checks()
	if got[busy.ID] != 0 {
		t.Fatalf("a busy node was checked %d times", got[busy.ID])
	}
	for _, n := range l.nodes {
		if n.ID != busy.ID && (got[n.ID] < 1 || got[n.ID] > 3) {
			t.Fatalf("%s checked %d times in two hours (once an hour)", n.Hostname, got[n.ID])
		}
	}
	if maxPerSweep > 5 {
		t.Fatalf("%d checks started in one sweep", maxPerSweep)
	}
	if firstHalf == 0 || firstHalf >= len(l.nodes)-1 {
		t.Fatalf("%d of %d nodes checked in the first half hour: not spread", firstHalf, len(l.nodes))
	}
}

// TestOutOfBandEvidence: a silent node its controller reports powered off
// is failed at once, behind an open breaker and under bare metal alike;
// one reported on (or with no controller answering) follows the rules for
// silence, and its reasons say what evidence there was.
func TestOutOfBandEvidence(t *testing.T) {
	l := newLab(t, testdb.SQLite(t))
	su := l.nodes[:10]
	silent := su[2:5]
	bare := l.nodes[15]
	l.bare[bare.ID] = true
	quiet := append(append([]fleet.Node{}, silent...), bare, l.nodes[25])
	l.bmc.Set(l.nodes[25].ID, agents.PowerUnknown)
	l.beat()
	for i := 0; i < 8; i++ { // past the startup grace and three intervals
		l.now = l.now.Add(10 * time.Second)
		l.beat(quiet...)
		l.sweep()
	}
	if len(l.incidents(l.ag, true)) != 1 || len(l.failed) != 0 || l.health(bare) != fleet.HealthOK || l.health(silent[0]) != fleet.HealthOK {
		t.Fatalf("before any evidence: incidents %+v, failed %v", l.incidents(l.ag, true), l.failed)
	}
	if fn, _ := l.fl.Snapshot.Node(l.nodes[25].ID); fn.Health != fleet.HealthUnreachable || !strings.Contains(strings.Join(fn.HealthReasons, ";"), "no out-of-band evidence") {
		t.Fatalf("silent without a controller: %s %v", fn.Health, fn.HealthReasons)
	}
	l.bmc.Set(silent[1].ID, agents.PowerOff)
	l.bmc.Set(bare.ID, agents.PowerOff)
	l.now = l.now.Add(10 * time.Second)
	l.beat(quiet...)
	l.sweep()
	got := map[string]bool{}
	for _, id := range l.failed {
		got[id] = true
	}
	if len(l.failed) != 2 || !got[silent[1].ID] || !got[bare.ID] || l.health(silent[0]) != fleet.HealthOK {
		t.Fatalf("after the controllers reported power off: failed %v", l.failed)
	}
}

// TestLivenessSharedDatabase: two servers on one PostgreSQL database, each
// hearing half the agents. Only one, the leader, judges at a time, from when any server
// last heard each node: nobody is marked silent for reporting to the other.
// When the leader stops, the other takes over once its lease runs out, and
// waits its own grace before judging.
func TestLivenessSharedDatabase(t *testing.T) {
	db := testdb.Postgres(t)
	l := newLab(t, db)
	a := l.ag
	a.SharedTTL = 10 * time.Second
	b := agents.NewService(db, db, l.fl, tenant.NewService(db))
	b.Now, b.Started, b.Liveness, b.SharedTTL, b.OnFailed, b.OutOfBand = a.Now, l.now, a.Liveness, a.SharedTTL, a.OnFailed, l.bmc
	beat := func(ag *agents.Service, nodes []fleet.Node) {
		for _, n := range nodes {
			l.seq[n.ID]++
			p := neocloud.Principal{TokenID: "tok_" + n.ID, Role: neocloud.RoleAgent, NodeID: n.ID}
			if _, err := ag.Heartbeat(context.Background(), p, wire.Heartbeat{Version: wire.Version, Seq: l.seq[n.ID], At: l.now, GPUs: []wire.GPUSample{{Index: 0, PowerW: 500}}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	sweep := func(ag *agents.Service) agents.SweepResult {
		res, err := ag.Sweep(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Unreachable)+len(res.Failed)+res.Held > 0 || len(l.incidents(ag, true)) > 0 {
			t.Fatalf("marked at %s: %+v, incidents %+v", l.now.Format(time.TimeOnly), res, l.incidents(ag, true))
		}
		return res
	}
	half, rest := l.nodes[:20], l.nodes[20:]
	judgedBy := map[*agents.Service]int{}
	for i := 0; i < 30; i++ {
		l.now = l.now.Add(10 * time.Second)
		beat(a, half)
		beat(b, rest)
		for _, ag := range []*agents.Service{a, b} {
			res := sweep(ag)
			if res.Judged {
				judgedBy[ag]++
			}
			if res.Leads != (ag == a) {
				t.Fatalf("sweep %d: leads %v, want a alone to", i, res.Leads)
			}
		}
	}
	if judgedBy[a] == 0 || judgedBy[b] != 0 {
		t.Fatalf("sweeps judged: a %d, b %d (want a alone)", judgedBy[a], judgedBy[b])
	}
	// a stops; its agents go over to b.
	takenOver := time.Time{}
	for i := 0; i < 15; i++ {
		l.now = l.now.Add(10 * time.Second)
		beat(b, l.nodes)
		if sweep(b).Judged && takenOver.IsZero() {
			takenOver = l.now
		}
	}
	if takenOver.IsZero() {
		t.Fatal("b never took over")
	}
	if res, _ := b.Sweep(context.Background()); !res.Leads {
		t.Fatal("b does not say it leads after taking over")
	}
	// a, had it only been paused, writes nothing now: its lease's epoch is
	// gone. b's writes go through.
	if err := a.CheckFence(context.Background()); !errors.Is(err, agents.ErrNotLeader) {
		t.Fatalf("the old leader's fence: %v", err)
	}
	if err := b.CheckFence(context.Background()); err != nil {
		t.Fatalf("the new leader's fence: %v", err)
	}
	// A node that is really silent is marked by the new leader.
	l.now = l.now.Add(10 * time.Second)
	silent := l.nodes[7]
	for i := 0; i < 4; i++ {
		l.now = l.now.Add(10 * time.Second)
		beat(b, append(append([]fleet.Node{}, l.nodes[:7]...), l.nodes[8:]...))
		b.Sweep(context.Background())
	}
	if l.health(silent) != fleet.HealthUnreachable {
		t.Fatalf("a silent node under the new leader: %s", l.health(silent))
	}
}
