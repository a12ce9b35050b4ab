package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/neocloud/neocloud"
	"github.com/neocloud/neocloud/client"
	"github.com/neocloud/neocloud/fleet"
	"github.com/neocloud/neocloud/sales"
)

// ReservationBench sizes `neocloud bench reservations`.
type ReservationBench struct {
	DatabaseURL string        // PostgreSQL; empty: SQLite in a temporary directory
	GPUs        int           // site size
	N           int           // reservations to make
	Clients     int           // concurrent HTTP clients
	GPUsEach    int           // GPUs per reservation
	Provision   time.Duration // simulated provisioning time per node
	// OverSpot fills the site with spot work first: every reservation then
	// reclaims its nodes (notice 1 ms, sanitize 0), which measures the
	// control plane's own reclaim path in wall-clock time.
	OverSpot bool
	Progress io.Writer
}

// RunReservationBench starts a server on loopback, makes N on-demand
// reservations over HTTP from concurrent clients, and follows the event
// stream until each is active (its allocations provisioned and ready). It
// prints the throughput and the latencies of create (the POST) and of
// create → ready.
func RunReservationBench(ctx context.Context, w io.Writer, o ReservationBench) error {
	say := func(format string, args ...any) {
		if o.Progress != nil {
			fmt.Fprintf(o.Progress, format+"\n", args...)
		}
	}
	dir, err := os.MkdirTemp("", "neocloud-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	const boot = "reservation-bench-bootstrap-0123456789"
	sim := &sales.SimStage{Duration: o.Provision}
	so := ServerOptions{Listen: "127.0.0.1:0", DataDir: dir, DatabaseURL: o.DatabaseURL, Bootstrap: boot,
		Logger: slog.New(slog.DiscardHandler), Seams: &Seams{Provision: sim, Network: &sales.SimStage{}, Sanitize: &sales.SimStage{}}}
	if o.OverSpot {
		so.Policy = sales.Policy{SpotNotice: time.Millisecond, BindRetry: 5 * time.Millisecond}
		so.LifecycleEvery = 10 * time.Millisecond
	}
	r, err := StartServer(ctx, so)
	if err != nil {
		return err
	}
	defer r.Close()
	store := "sqlite"
	if o.DatabaseURL != "" {
		store = "postgres"
	}
	op := client.New(r.URL, boot)

	// 1. A site, prices, a tenant.
	sku, _ := fleet.CatalogSKU("h100-sxm5-80gb")
	var spec bytes.Buffer
	if _, err := fleet.Generate(&spec, fleet.ColossusOptions(sku, o.GPUs)); err != nil {
		return err
	}
	say("applying a %d-GPU site…", o.GPUs)
	if _, err := op.Raw(ctx, http.MethodPost, "/v1/fleet/apply", nil, spec.Bytes(), ""); err != nil {
		return err
	}
	if _, err := op.Raw(ctx, http.MethodPost, "/v1/prices", nil, map[string]any{"sku": sku.Name, "class": "on_demand", "price_per_gpu_hour": "3.20"}, ""); err != nil {
		return err
	}
	name := fmt.Sprintf("bench-%d", time.Now().UnixNano())
	if _, err := op.Raw(ctx, http.MethodPost, "/v1/tenants", nil, map[string]any{"name": name}, ""); err != nil {
		return err
	}
	var tok struct{ Secret string }
	if err := op.Do(ctx, http.MethodPost, "/v1/tokens", nil, map[string]any{"name": "bench", "role": "tenant-admin", "tenant": name}, &tok); err != nil {
		return err
	}

	if o.OverSpot {
		// Spot work fills the site first.
		if _, err := op.Raw(ctx, http.MethodPost, "/v1/prices", nil, map[string]any{"sku": sku.Name, "class": "spot", "spot_floor": "0.80", "spot_ceiling": "2.40"}, ""); err != nil {
			return err
		}
		if _, err := op.Raw(ctx, http.MethodPost, "/v1/tenants", nil, map[string]any{"name": name + "-spot"}, ""); err != nil {
			return err
		}
		var st struct{ Secret string }
		if err := op.Do(ctx, http.MethodPost, "/v1/tokens", nil, map[string]any{"name": "spot", "role": "tenant-admin", "tenant": name + "-spot"}, &st); err != nil {
			return err
		}
		sc := client.New(r.URL, st.Secret)
		say("filling the site with spot work…")
		for n := 0; ; n++ {
			err := sc.Do(ctx, http.MethodPost, "/v1/reservations", nil, map[string]any{"sku": sku.Name, "gpus": 256, "class": "spot", "within": "su"}, nil)
			if neocloud.ErrorKind(err) == neocloud.KindNoCapacity {
				say("%d spot reservations of 256 GPUs hold the site", n)
				break
			}
			if err != nil {
				return err
			}
		}
		time.Sleep(2 * time.Second) // they become active
	}

	// 2. Follow the tenant's events: the moment each reservation is active.
	var mu sync.Mutex
	active := map[string]time.Time{}
	tc := client.New(r.URL, tok.Secret)
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	go tc.Stream(sctx, "/v1/events", nil, "", func(_, event string, data []byte) error {
		if event == "reservation.active" {
			var e sales.Event
			json.Unmarshal(data, &e)
			mu.Lock()
			active[e.Subject] = time.Now()
			mu.Unlock()
		}
		return nil
	})
	time.Sleep(100 * time.Millisecond)

	// 3. N reservations from concurrent clients.
	say("making %d reservations of %d GPUs from %d clients (%s)…", o.N, o.GPUsEach, o.Clients, store)
	sent := make(map[string]time.Time, o.N)
	var create []time.Duration
	var next, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	t0 := time.Now()
	for c := 0; c < o.Clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := client.New(r.URL, tok.Secret)
			for next.Add(1) <= int64(o.N) {
				start := time.Now()
				var rsv sales.Reservation
				err := cl.Do(ctx, http.MethodPost, "/v1/reservations", nil, map[string]any{"sku": sku.Name, "gpus": o.GPUsEach, "class": "on_demand"}, &rsv)
				d := time.Since(start)
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				mu.Lock()
				sent[rsv.ID] = start
				create = append(create, d)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	acked := time.Since(t0)
	if n := failed.Load(); n > 0 {
		return fmt.Errorf("%d reservations failed, e.g. %v", n, firstErr.Load())
	}
	// 4. Wait until every one is active.
	deadline := time.Now().Add(2*time.Minute + 10*o.Provision)
	for {
		mu.Lock()
		n := 0
		for id := range sent {
			if _, ok := active[id]; ok {
				n++
			}
		}
		mu.Unlock()
		if n == len(sent) {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d reservations became active", n, len(sent))
		}
		time.Sleep(20 * time.Millisecond)
	}
	all := time.Since(t0)
	var ready []time.Duration
	mu.Lock()
	for id, st := range sent {
		ready = append(ready, active[id].Sub(st))
	}
	mu.Unlock()

	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	mode := ""
	if o.OverSpot {
		mode = "; every one reclaims nodes from spot work (notice 1 ms, sanitize 0)"
	}
	fmt.Fprintf(tw, "reservations over HTTP on a %d-GPU site (%s, %d clients, %d GPUs each, simulated provisioning %v%s)\n\n", o.GPUs, store, o.Clients, o.GPUsEach, o.Provision, mode)
	fmt.Fprintln(tw, "measure\tn\tp50\tp99\tmax\tper second\t")
	fmt.Fprintf(tw, "create (POST /v1/reservations → 201)\t%d\t%v\t%v\t%v\t%.0f\t\n", len(create), pct(create, 50), pct(create, 99), pct(create, 100), float64(len(create))/acked.Seconds())
	fmt.Fprintf(tw, "create → ready (reservation.active event)\t%d\t%v\t%v\t%v\t%.0f\t\n", len(ready), pct(ready, 50), pct(ready, 99), pct(ready, 100), float64(len(ready))/all.Seconds())
	return tw.Flush()
}

func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := min(len(s)-1, (len(s)*p+99)/100-1)
	return s[max(0, i)].Round(10 * time.Microsecond)
}
