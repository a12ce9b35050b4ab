package agents_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/agents"
	"github.com/neocloud/neocloud/internal/testdb"
	"github.com/neocloud/neocloud/sqlstore"
	"github.com/neocloud/neocloud/wire"
)

// countTx counts the transactions run through it.
type countTx struct {
	agents.Tx
	n atomic.Int64
}

func (c *countTx) InTx(ctx context.Context, fn func(ctx context.Context) error) error {
	c.n.Add(1)
	return c.Tx.InTx(ctx, fn)
}

// TestGroupCommit: heartbeats that arrive together are written by a few
// transactions, not one each, and every one is answered as applied.
func TestGroupCommit(t *testing.T) {
	l := newLab(t, testdb.SQLite(t))
	tx := &countTx{Tx: l.ag.Tx}
	l.ag.Tx = tx
	// Long enough that the reports of concurrent agents are not split by
	// a pause between them, on any machine.
	l.ag.CommitWait, l.ag.CommitIdle = 3*time.Second, 500*time.Millisecond
	var wg sync.WaitGroup
	for _, n := range l.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := neocloud.Principal{TokenID: "tok_" + n.ID, Role: neocloud.RoleAgent, NodeID: n.ID}
			ans, err := l.ag.Heartbeat(context.Background(), p, wire.Heartbeat{Version: wire.Version, Seq: 1, At: l.now, GPUs: []wire.GPUSample{{Index: 0, PowerW: 500}}})
			if err != nil || ans.Acked != 1 || ans.Duplicate {
				t.Errorf("%s: %+v, %v", n.Hostname, ans, err)
			}
		}()
	}
	wg.Wait()
	if n := tx.n.Load(); n == 0 || n > int64(len(l.nodes))/4 {
		t.Errorf("%d heartbeats took %d transactions, want a few", len(l.nodes), n)
	}
	for _, n := range l.nodes {
		st, err := l.ag.Latest(context.Background(), n.ID)
		if err != nil || st.Seq != 1 {
			t.Errorf("%s: stored seq %d, %v", n.Hostname, st.Seq, err)
		}
	}
}

// TestGroupCommitWaitsForPacedReports: reports that come one at a time at
// random, twice CommitIdle apart on average (as agents' timers fall at a
// site's cadence), are gathered into a few commits: the commit learns
// their pace and waits for several of their gaps, not for CommitIdle alone
// (which would commit most of them alone).
func TestGroupCommitWaitsForPacedReports(t *testing.T) {
	l := newLab(t, testdb.SQLite(t))
	tx := &countTx{Tx: l.ag.Tx}
	l.ag.Tx = tx
	const pace = 3 * time.Millisecond
	l.ag.CommitWait, l.ag.CommitIdle = 2*time.Second, pace/2
	rng := rand.New(rand.NewPCG(1, 2))
	start, at := time.Now(), time.Duration(0)
	var wg sync.WaitGroup
	for _, n := range l.nodes {
		at += time.Duration(rng.ExpFloat64() * float64(pace))
		due := start.Add(at)
		wg.Go(func() {
			time.Sleep(time.Until(due))
			p := neocloud.Principal{TokenID: "tok_" + n.ID, Role: neocloud.RoleAgent, NodeID: n.ID}
			ans, err := l.ag.Heartbeat(context.Background(), p, wire.Heartbeat{Version: wire.Version, Seq: 1, At: l.now, GPUs: []wire.GPUSample{{Index: 0, PowerW: 500}}})
			if err != nil || ans.Acked != 1 || ans.Duplicate {
				t.Errorf("%s: %+v, %v", n.Hostname, ans, err)
			}
		})
	}
	wg.Wait()
	t.Logf("%d reports in %d transactions", len(l.nodes), tx.n.Load())
	if n := tx.n.Load(); n == 0 || n > int64(len(l.nodes))/4 {
		t.Errorf("%d reports %v apart on average took %d transactions, want a few", len(l.nodes), pace, n)
	}
}

// failTx rolls back every transaction run through it while fail is set:
// what they wrote is undone, as when the disk refuses a commit.
type failTx struct {
	agents.Tx
	fail atomic.Bool
}

var errRefused = errors.New("commit refused")

func (f *failTx) InTx(ctx context.Context, fn func(ctx context.Context) error) error {
	return f.Tx.InTx(ctx, func(ctx context.Context) error {
		if err := fn(ctx); err != nil {
			return err
		}
		if f.fail.Load() {
			return errRefused
		}
		return nil
	})
}

// TestFailedCommitIsNotAcknowledged: heartbeats whose group commit rolls
// back are answered with its error, not acknowledged; sent again, each is
// applied once, as new (none was half kept, in the store or in memory).
func TestFailedCommitIsNotAcknowledged(t *testing.T) {
	testdb.Each(t, func(t *testing.T, db *sqlstore.DB) {
		l := newLab(t, db)
		tx := &failTx{Tx: l.ag.Tx}
		l.ag.Tx = tx
		nodes := l.nodes[:8]
		beatAll := func() ([]wire.HeartbeatAnswer, []error) {
			answers, errs := make([]wire.HeartbeatAnswer, len(nodes)), make([]error, len(nodes))
			var wg sync.WaitGroup
			for i, n := range nodes {
				wg.Go(func() {
					p := neocloud.Principal{TokenID: "tok_" + n.ID, Role: neocloud.RoleAgent, NodeID: n.ID}
					answers[i], errs[i] = l.ag.Heartbeat(context.Background(), p, wire.Heartbeat{Version: wire.Version, Seq: 1, At: l.now, GPUs: []wire.GPUSample{{Index: 0, PowerW: 500, EnergyJ: 7000}}})
				})
			}
			wg.Wait()
			return answers, errs
		}
		tx.fail.Store(true)
		for round := range 2 { // the second round reuses the first's writes
			_, errs := beatAll()
			for i, err := range errs {
				if !errors.Is(err, errRefused) {
					t.Fatalf("round %d, %s: %v, want the commit's error", round, nodes[i].Hostname, err)
				}
			}
		}
		tx.fail.Store(false)
		answers, errs := beatAll()
		for i, n := range nodes {
			if errs[i] != nil || answers[i].Acked != 1 || answers[i].Duplicate {
				t.Errorf("%s, sent again: %+v, %v; want applied as new", n.Hostname, answers[i], errs[i])
			}
			ss, err := db.Samples(context.Background(), n.ID, 1, 1)
			if err != nil || len(ss) != 1 || ss[0].EnergyJ != 7000 {
				t.Errorf("%s: stored samples %+v, %v; want the one", n.Hostname, ss, err)
			}
		}
	})
}

// TestMeasurementsRounded: a node's power is the sum of its GPUs'
// readings and its utilization their mean, kept to a thousandth: eight
// GPUs at 82.6 W are 660.8 W, not the 660.8000000000001 a float sum makes,
// and the minute's means are rounded the same way (661.333, not
// 661.3333333333334).
func TestMeasurementsRounded(t *testing.T) {
	l := newLab(t, testdb.SQLite(t))
	ctx := context.Background()
	n := l.nodes[0]
	p := neocloud.Principal{TokenID: "tok_" + n.ID, Role: neocloud.RoleAgent, NodeID: n.ID}
	for seq, w := range []float64{82.6, 82.7, 82.7} {
		gpus := make([]wire.GPUSample, 8)
		for i := range gpus {
			gpus[i] = wire.GPUSample{Index: i, PowerW: w, UtilPct: w - 49.3}
		}
		if _, err := l.ag.Heartbeat(ctx, p, wire.Heartbeat{Version: wire.Version, Seq: int64(seq + 1), At: l.now.Add(time.Duration(seq) * time.Second), GPUs: gpus}); err != nil {
			t.Fatal(err)
		}
	}
	ss, err := l.ag.Store.Samples(ctx, n.ID, 1, 3)
	if err != nil || len(ss) != 3 || ss[0].PowerW != 660.8 || ss[1].PowerW != 661.6 {
		t.Fatalf("samples: %v %+v", err, ss)
	}
	ms, err := l.ag.Store.Minutes(ctx, n.ID, l.now.Add(-time.Hour), l.now.Add(time.Hour))
	if err != nil || len(ms) != 1 || ms[0].PowerAvgW != 661.333 || ms[0].UtilAvgPct != 33.367 || ms[0].PowerMaxW != 661.6 {
		t.Fatalf("minutes: %v %+v", err, ms)
	}
}
