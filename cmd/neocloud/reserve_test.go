package main_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/client"
	"github.com/neocloud/neocloud/fleet"
	"github.com/neocloud/neocloud/internal/testdb"
	"github.com/neocloud/neocloud/sales"
)

// TestConcurrentReservationsNeverDoubleBook has 200 HTTP clients of four
// tenants reserve overlapping capacity at once (on-demand now, reserved in
// overlapping future windows) on a 512-GPU site, more than it holds.
// No GPU may be in two live allocations, no two reservations may hold a GPU
// over overlapping windows, and after kill -9 and a restart every
// acknowledged reservation is there, unchanged. On PostgreSQL two server
// processes serve the clients.
func TestConcurrentReservationsNeverDoubleBook(t *testing.T) {
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			var storeArgs []string
			if engine == "sqlite" {
				storeArgs = []string{"--data-dir", t.TempDir()}
			} else {
				storeArgs = []string{"--database-url", testdb.PostgresURL(t)}
			}
			storeArgs = append(storeArgs, "--rate-limit", "0", "--sim-provision", "1s", "--sim-sanitize", "1s", "--sim-network", "0s")
			cmd, url := startServer(t, storeArgs...)
			ctx := context.Background()
			op := client.New(url, bootstrap)

			// A 64-node site, prices, four tenants with admin tokens.
			sku, _ := fleet.CatalogSKU("h100-sxm5-80gb")
			var spec bytes.Buffer
			o := fleet.ColossusOptions(sku, 512)
			o.Fanout = []int{2, 2, 2, 8}
			if _, err := fleet.Generate(&spec, o); err != nil {
				t.Fatal(err)
			}
			if _, err := op.Raw(ctx, http.MethodPost, "/v1/fleet/apply", nil, spec.Bytes(), ""); err != nil {
				t.Fatal(err)
			}
			for _, p := range []map[string]any{
				{"sku": sku.Name, "class": "reserved", "price_per_gpu_hour": "2.50"},
				{"sku": sku.Name, "class": "on_demand", "price_per_gpu_hour": "3.20"},
			} {
				if _, err := op.Raw(ctx, http.MethodPost, "/v1/prices", nil, p, ""); err != nil {
					t.Fatal(err)
				}
			}
			// On PostgreSQL a second server shares the store: clients alternate
			// between the two, so admissions race across processes too.
			urls := []string{url}
			if engine == "postgres" {
				_, url2 := startServer(t, storeArgs...)
				urls = append(urls, url2)
			}
			var tokens []string
			for i := 0; i < 4; i++ {
				name := fmt.Sprintf("t%d", i)
				if _, err := op.Raw(ctx, http.MethodPost, "/v1/tenants", nil, map[string]any{"name": name}, ""); err != nil {
					t.Fatal(err)
				}
				var tok struct{ Secret string }
				if err := op.Do(ctx, http.MethodPost, "/v1/tokens", nil, map[string]any{"name": "admin", "role": "tenant-admin", "tenant": name}, &tok); err != nil {
					t.Fatal(err)
				}
				tokens = append(tokens, tok.Secret)
			}

			// 200 clients at once.
			base := time.Now().UTC().Add(48 * time.Hour).Truncate(time.Hour)
			var (
				mu      sync.Mutex
				acked   = map[string]sales.Reservation{}
				refused int
				failed  []string
			)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := 0; i < 200; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					rng := rand.New(rand.NewPCG(uint64(i), 7))
					c := client.New(urls[i%len(urls)], tokens[i%4])
					c.Retries = 0
					// 50 on-demand nodes now (the site has 64); the rest reserved
					// for a day in overlapping windows over the next three weeks.
					body := map[string]any{"sku": sku.Name, "gpus": 8, "class": "on_demand"}
					if i%4 != 0 {
						st := base.Add(time.Duration(rng.IntN(20*24)) * time.Hour)
						body = map[string]any{"sku": sku.Name, "gpus": 8 * (1 + rng.IntN(16)), "class": "reserved", "start": st, "duration_s": 86400, "within": []string{"", "su", "rack"}[rng.IntN(3)]}
					}
					<-start
					var r sales.Reservation
					err := c.Do(ctx, http.MethodPost, "/v1/reservations", nil, body, &r)
					mu.Lock()
					defer mu.Unlock()
					switch neocloud.ErrorKind(err) {
					case "":
						acked[r.ID] = r
					case neocloud.KindNoCapacity:
						refused++
					default:
						failed = append(failed, err.Error())
					}
				}()
			}
			close(start)
			wg.Wait()
			if len(failed) > 0 {
				t.Fatalf("%d requests failed other than for capacity, e.g. %s", len(failed), failed[0])
			}
			if len(acked) < 20 || refused < 20 {
				t.Fatalf("%d acknowledged, %d refused: the test did not contend", len(acked), refused)
			}
			checkNoDoubleBooking(t, op, acked)

			// kill -9, restart, and find every acknowledged reservation unchanged.
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			cmd.Wait()
			_, url = startServer(t, storeArgs...)
			op = client.New(url, bootstrap)
			for id, want := range acked {
				var got sales.Reservation
				if err := op.Do(ctx, http.MethodGet, "/v1/reservations/"+id, nil, nil, &got); err != nil {
					t.Fatalf("acknowledged reservation %s after restart: %v", id, err)
				}
				if diff := cmp.Diff(want.Shape, got.Shape); diff != "" {
					t.Errorf("%s shape changed (-want +got):\n%s", id, diff)
				}
				if diff := cmp.Diff(want.Nodes, got.Nodes); diff != "" {
					t.Errorf("%s nodes changed (-want +got):\n%s", id, diff)
				}
				if got.ContractID != want.ContractID || got.TenantID != want.TenantID {
					t.Errorf("%s contract or tenant changed", id)
				}
			}
			checkNoDoubleBooking(t, op, acked)
			t.Logf("%s: %d reservations acknowledged, %d refused for capacity, all present after kill -9", engine, len(acked), refused)
		})
	}
}

// checkNoDoubleBooking checks that no GPU is in two live allocations and
// that no two reservations hold a GPU over overlapping windows.
func checkNoDoubleBooking(t *testing.T, op *client.Client, rs map[string]sales.Reservation) {
	t.Helper()
	ctx := context.Background()
	live := map[string]string{}
	type hold struct {
		rsv        string
		start, end time.Time
	}
	holds := map[string][]hold{}
	for id, r := range rs {
		var list struct{ Items []sales.Allocation }
		if err := op.Do(ctx, http.MethodGet, "/v1/reservations/"+id+"/allocations", nil, nil, &list); err != nil {
			t.Fatal(err)
		}
		for _, a := range list.Items {
			if a.State == sales.AllocationEnded {
				continue
			}
			for _, g := range a.GPUs {
				k := fmt.Sprintf("%s/%d", a.NodeID, g)
				if other, ok := live[k]; ok {
					t.Fatalf("GPU %s is in live allocations of %s and %s", k, other, id)
				}
				live[k] = id
			}
		}
		end := time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
		if r.Shape.End != nil {
			end = *r.Shape.End
		}
		for _, n := range r.Nodes {
			gpus := n.GPUs
			if len(gpus) == 0 {
				gpus = []int{0, 1, 2, 3, 4, 5, 6, 7}
			}
			for _, g := range gpus {
				k := fmt.Sprintf("%s/%d", n.NodeID, g)
				for _, h := range holds[k] {
					if h.start.Before(end) && r.Shape.Start.Before(h.end) {
						t.Fatalf("GPU %s is held by %s and %s over overlapping windows", k, h.rsv, id)
					}
				}
				holds[k] = append(holds[k], hold{id, r.Shape.Start, end})
			}
		}
	}
	if len(live) == 0 {
		t.Fatal("no live allocations: on-demand reservations were not bound")
	}
}
