package agents_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/agents"
	"github.com/neocloud/neocloud/internal/testdb"
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
	l.ag.CommitWait = 3 * time.Second
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
