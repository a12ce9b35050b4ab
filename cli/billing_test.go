package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/neocloud/neocloud/cli"
	"github.com/neocloud/neocloud/client"
	"github.com/neocloud/neocloud/wire"
)

// jumpClock runs at real speed from base, plus whatever it was moved on.
type jumpClock struct {
	mu    sync.Mutex
	base  time.Time
	start time.Time
}

func (c *jumpClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.base.Add(time.Since(c.start))
}

func (c *jumpClock) Jump(d time.Duration) { c.mu.Lock(); c.base = c.base.Add(d); c.mu.Unlock() }

// TestCLIBilling: on-demand GPUs run over a month's end; the operator
// closes the month, a tenant reads its usage and invoice, exports it as PDF
// and CSV; a credit note follows; closing again is refused.
func TestCLIBilling(t *testing.T) {
	clk := &jumpClock{base: time.Date(2027, 1, 31, 20, 0, 0, 0, time.UTC), start: time.Now()}
	srv, err := cli.StartServer(context.Background(), cli.ServerOptions{Listen: "127.0.0.1:0", DataDir: filepath.Join(t.TempDir(), "data"),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: clk.Now, LifecycleEvery: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	op := srv.Token
	must := func(token string, args ...string) string { t.Helper(); return mustRun(t, srv.URL, token, args...) }
	sku := applySite(t, srv.URL, op, 1, 1, 2, 8)
	must(op, "price", "set", "--sku", sku.Name, "--class", "on_demand", "--rate", "3.20")
	must(op, "tenant", "create", "acme")
	must(op, "billing", "seller", "--name", "Colossus Compute LLC", "--address", "Memphis, TN", "--close-after-s", "-1")
	if out := must(op, "billing", "profile", "acme", "--tax-rate", "10", "--legal-name", "Acme AI, Inc."); !strings.Contains(out, "Acme AI, Inc.") {
		t.Fatalf("profile: %s", out)
	}
	var tok struct{ Secret string }
	json.Unmarshal([]byte(must(op, "token", "create", "admin", "--role", "tenant-admin", "--tenant", "acme", "-o", "json")), &tok)
	ta := tok.Secret
	var r struct{ ID string }
	json.Unmarshal([]byte(must(ta, "reservation", "create", "--sku", sku.Name, "--gpus", "16", "--class", "on_demand", "-o", "json")), &r)
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(must(ta, "reservation", "show", r.ID), "active") {
		if time.Now().After(deadline) {
			t.Fatal("the on-demand reservation never became active")
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Four hours later the month has ended.
	clk.Jump(4*time.Hour + 30*time.Minute)
	if _, errOut, code := run(t, srv.URL, ta, "invoice", "close", "--period", "2027-01"); code == 0 || !strings.Contains(errOut, "403") && !strings.Contains(errOut, "forbidden") && !strings.Contains(errOut, "not allowed") {
		t.Fatalf("a tenant closes a month: %d %s", code, errOut)
	}
	out := must(op, "invoice", "close", "--period", "2027-01")
	if !strings.Contains(out, "INV-000001") || !strings.Contains(out, "acme") {
		t.Fatalf("close: %s", out)
	}
	if _, errOut, code := run(t, srv.URL, op, "invoice", "close", "--period", "2027-01"); code == 0 || !strings.Contains(errOut, "closed") {
		t.Fatalf("closing again: %d %s", code, errOut)
	}
	var inv struct {
		Number, Total string
		TotalMicros   int64 `json:"total_micros"`
		Lines         []struct {
			GPUSeconds int64 `json:"gpu_seconds"`
			Amount     string
		}
	}
	json.Unmarshal([]byte(must(ta, "invoice", "show", "INV-000001", "-o", "json")), &inv)
	// 16 GPUs for the 4 hours up to midnight, less the seconds before ready.
	if len(inv.Lines) != 1 || inv.Lines[0].GPUSeconds <= 16*(4*3600-60) || inv.Lines[0].GPUSeconds > 16*4*3600 {
		t.Fatalf("invoice: %+v", inv)
	}
	if out := must(ta, "invoice", "show", "INV-000001"); !strings.Contains(out, "on-demand GPU-hours") || !strings.Contains(out, inv.Total) {
		t.Fatalf("invoice table: %s", out)
	}
	if out := must(ta, "usage", "show", "--period", "2027-01", "--by", "hour", "-o", "csv"); strings.Count(out, "2027-01-31T2") != 4 {
		t.Fatalf("usage by hour: %s", out)
	}
	dir := t.TempDir()
	must(ta, "invoice", "export", "INV-000001", "--format", "pdf", "--out", filepath.Join(dir, "inv.pdf"))
	if b, _ := os.ReadFile(filepath.Join(dir, "inv.pdf")); !bytes.HasPrefix(b, []byte("%PDF-")) {
		t.Fatalf("PDF: %.20q", b)
	}
	if out := must(ta, "invoice", "export", "INV-000001", "--format", "csv"); !strings.Contains(out, "total") || !strings.Contains(out, inv.Total) {
		t.Fatalf("CSV: %s", out)
	}
	if out := must(op, "invoice", "credit", "INV-000001", "--amount", "1.50", "--reason", "slow start"); !strings.Contains(out, "CN-000001") || !strings.Contains(out, "-1.65") {
		t.Fatalf("credit note: %s", out)
	}
	if out := must(ta, "invoice", "list", "-o", "csv"); !strings.Contains(out, "CN-000001") || !strings.Contains(out, "INV-000001") {
		t.Fatalf("list: %s", out)
	}
	if out := must(op, "invoice", "periods"); !strings.Contains(out, "2027-01") {
		t.Fatalf("periods: %s", out)
	}
	// February has no complete hour metered yet: nothing to bill.
	if _, errOut, code := run(t, srv.URL, ta, "invoice", "draft"); code != 0 || !strings.Contains(errOut, "nothing to bill") {
		t.Fatalf("February's draft: %d %s", code, errOut)
	}
}

// The billing bench runs end to end at a small size: the month's close
// issues every tenant's invoice, with SLA credits for the failures.
func TestBillingBenchRuns(t *testing.T) {
	var out bytes.Buffer
	saved := filepath.Join(t.TempDir(), "month.db")
	if err := cli.RunBillingBench(context.Background(), &out, cli.BillingBench{GPUs: 512, Allocations: 600, Failures: 10, Tenants: 30, Seed: 1, Save: saved}); err != nil {
		t.Fatal(err)
	}
	// A lease, a reserved cluster and 9 on-demand and spot tenants.
	for _, want := range []string{"close", "11 invoices", "credit lines", "peak RSS", "600 allocations (10 failures replaced)"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("bench output lacks %q:\n%s", want, out.String())
		}
	}
	// The saved month closes again to the same invoices.
	var again bytes.Buffer
	if err := cli.RunBillingBench(context.Background(), &again, cli.BillingBench{From: saved}); err != nil {
		t.Fatal(err)
	}
	for _, pre := range []string{"invoiced", "month"} {
		line := func(s string) string {
			for _, l := range strings.Split(s, "\n") {
				if strings.HasPrefix(l, pre) {
					return l
				}
			}
			return ""
		}
		if a, b := line(out.String()), line(again.String()); a == "" || a != b {
			t.Fatalf("the saved month closes to %q, the built one to %q", b, a)
		}
	}
}

// TestNodeShowOnTheServersClock: node show reads "now" from the server, so
// that on a control plane whose clock is not this machine's (a demo's runs
// ahead) the last report's age and the last hour's minutes are the
// server's.
func TestNodeShowOnTheServersClock(t *testing.T) {
	clk := &jumpClock{base: time.Date(2027, 1, 31, 20, 0, 0, 0, time.UTC), start: time.Now()}
	srv, err := cli.StartServer(context.Background(), cli.ServerOptions{Listen: "127.0.0.1:0", DataDir: filepath.Join(t.TempDir(), "data"),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	op := srv.Token
	applySite(t, srv.URL, op, 1, 1, 1, 1)
	var nodes []struct{ Hostname, Serial string }
	json.Unmarshal([]byte(mustRun(t, srv.URL, op, "node", "list", "-o", "json")), &nodes)
	node := nodes[0]
	var jt struct{ Secret string }
	json.Unmarshal([]byte(mustRun(t, srv.URL, op, "node", "join-token", "create", "--site", "colossus-1", "--uses", "1", "--ttl", "1h", "-o", "json")), &jt)
	ctx := context.Background()
	var jr wire.JoinResponse
	uuid := "GPU-2a1f9c3e-5b7d-4e6f-8a9b-0c1d2e3f4a5b"
	if err := client.New(srv.URL, jt.Secret).Do(ctx, http.MethodPost, "/v1/agent/join", nil, wire.JoinRequest{Version: wire.Version, Hostname: node.Hostname, Serial: node.Serial,
		GPUs: []wire.GPUInfo{{Index: 0, UUID: uuid, Model: "NVIDIA H100 80GB HBM3", MemoryMiB: 81559}}}, &jr); err != nil {
		t.Fatal(err)
	}
	at := clk.Now().Add(-2 * time.Minute).UTC()
	hb := wire.Heartbeat{Version: wire.Version, Seq: 1, At: at, GPUs: []wire.GPUSample{{Index: 0, PowerW: 700, EnergyJ: 1000}}}
	if err := client.New(srv.URL, jr.Credential).Do(ctx, http.MethodPost, "/v1/agent/heartbeat", nil, hb, nil); err != nil {
		t.Fatal(err)
	}
	clk.Jump(2 * time.Minute) // the server heard it two minutes ago
	out := mustRun(t, srv.URL, op, "node", "show", node.Hostname)
	if !strings.Contains(out, "LAST HOUR (1 minute with reports)") || !strings.Contains(out, at.Truncate(time.Minute).Format(time.RFC3339)) {
		t.Fatalf("node show on the server's clock:\n%s", out)
	}
	if m := regexp.MustCompile(`\((\S+) ago\)`).FindStringSubmatch(out); m == nil || strings.HasPrefix(m[1], "-") || !strings.HasPrefix(m[1], "2m") {
		t.Fatalf("the last report's age: %v in\n%s", m, out)
	}
	// The GPUs as the agent found them, a row each; no JSON, no empty
	// driver.
	if !regexp.MustCompile(`(?m)^0\s+NVIDIA H100 80GB HBM3\s+81559\s+`+uuid+`$`).MatchString(out) || strings.Contains(out, `{"`) || strings.Contains(out, "driver ,") {
		t.Fatalf("node show's GPUs:\n%s", out)
	}
}
