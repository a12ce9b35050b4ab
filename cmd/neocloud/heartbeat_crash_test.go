package main_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/neocloud/neocloud/client"
	"github.com/neocloud/neocloud/fleet"
	"github.com/neocloud/neocloud/internal/testdb"
	"github.com/neocloud/neocloud/wire"
)

// TestKill9LosesNoAcknowledgedHeartbeat (invariant 2): heartbeats are group-committed
// and answered after their commit. Agents report as fast as they are
// answered, the server is killed with SIGKILL mid-stream and started again
// on the same store: every report that was answered is there.
func TestKill9LosesNoAcknowledgedHeartbeat(t *testing.T) {
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			storeArgs := []string{"--data-dir", t.TempDir()}
			if engine == "postgres" {
				storeArgs = []string{"--database-url", testdb.PostgresURL(t)}
			}
			cmd, srvURL := startServer(t, storeArgs...)
			ctx := context.Background()
			op := client.New(srvURL, bootstrap)
			sku, _ := fleet.CatalogSKU("h100-sxm5-80gb")
			var spec bytes.Buffer
			if _, err := fleet.Generate(&spec, fleet.ColossusOptions(sku, 64*8)); err != nil {
				t.Fatal(err)
			}
			parsed, _ := fleet.ParseSpec(spec.Bytes())
			if _, err := op.Raw(ctx, http.MethodPost, "/v1/fleet/apply", nil, spec.Bytes(), ""); err != nil {
				t.Fatal(err)
			}
			var jt struct{ Secret string }
			if err := op.Do(ctx, http.MethodPost, "/v1/sites/colossus-1/join-tokens", nil, map[string]any{"max_uses": 64, "ttl_s": 600}, &jt); err != nil {
				t.Fatal(err)
			}
			type agentOf struct {
				host, cred string
				acked      int64 // the highest sequence number answered
			}
			agents := make([]*agentOf, 64)
			for i := range agents {
				n := parsed.Nodes[i]
				var jr wire.JoinResponse
				if err := client.New(srvURL, jt.Secret).Do(ctx, http.MethodPost, "/v1/agent/join", nil, wire.JoinRequest{Version: wire.Version, Hostname: n.Hostname, Serial: n.Serial}, &jr); err != nil {
					t.Fatal(err)
				}
				agents[i] = &agentOf{host: n.Hostname, cred: jr.Credential}
			}
			rctx, cancel := context.WithCancel(ctx)
			var wg sync.WaitGroup
			var mu sync.Mutex
			for _, a := range agents {
				wg.Add(1)
				go func(a *agentOf) {
					defer wg.Done()
					c := client.New(srvURL, a.cred)
					c.Retries = -1
					for seq := int64(1); rctx.Err() == nil; seq++ {
						hb := wire.Heartbeat{Version: wire.Version, Seq: seq, At: time.Now().UTC(), GPUs: []wire.GPUSample{{Index: 0, EnergyJ: uint64(seq), PowerW: 500}}}
						var ans wire.HeartbeatAnswer
						if err := c.Do(rctx, http.MethodPost, "/v1/agent/heartbeat", nil, hb, &ans); err != nil {
							return // the server is gone: this one was not answered
						}
						mu.Lock()
						a.acked = ans.Acked
						mu.Unlock()
					}
				}(a)
			}
			time.Sleep(700 * time.Millisecond)
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			cmd.Wait()
			cancel()
			wg.Wait()

			_, srvURL = startServer(t, storeArgs...)
			op = client.New(srvURL, bootstrap)
			total := int64(0)
			for _, a := range agents {
				var l struct{ Items []struct{ Seq int64 } }
				if err := op.Do(ctx, http.MethodGet, "/v1/nodes/"+a.host+"/samples", url.Values{"to_seq": {fmt.Sprint(a.acked + 10)}}, nil, &l); err != nil {
					t.Fatal(err)
				}
				if int64(len(l.Items)) < a.acked {
					t.Fatalf("%s: %d reports answered, %d kept", a.host, a.acked, len(l.Items))
				}
				for i, s := range l.Items[:a.acked] {
					if s.Seq != int64(i+1) {
						t.Fatalf("%s: report %d missing", a.host, i+1)
					}
				}
				total += a.acked
			}
			if total < 40 {
				t.Fatalf("only %d reports answered before the kill", total)
			}
			t.Logf("%d answered reports, all kept", total)
		})
	}
}
