package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/neocloud/neocloud/cli"
	"github.com/neocloud/neocloud/fleet"
	"github.com/neocloud/neocloud/nvmlgpu"
)

// TestCLISelling walks the selling verbs end to end: the operator sets
// prices and a quota; a tenant quotes with a hold, reserves from the quote,
// reads its nodes as Slurm topology, extends, sees its events, cancels.
func TestCLISelling(t *testing.T) {
	srv := startServer(t)
	op := srv.Token
	sku, _ := fleet.CatalogSKU("h100-sxm5-80gb")
	var spec bytes.Buffer
	o := fleet.ColossusOptions(sku, 512)
	o.Fanout = []int{2, 2, 2, 8}
	if _, err := fleet.Generate(&spec, o); err != nil {
		t.Fatal(err)
	}
	specPath := filepath.Join(t.TempDir(), "site.yaml")
	os.WriteFile(specPath, spec.Bytes(), 0o644)
	must := func(token string, args ...string) string {
		t.Helper()
		out, errOut, code := run(t, srv.URL, token, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errOut)
		}
		return out
	}
	must(op, "fleet", "apply", "-f", specPath)
	must(op, "price", "set", "--sku", sku.Name, "--class", "reserved", "--rate", "2.50", "--term-discount", "7d=10", "--volume-tier", "128=5")
	must(op, "price", "set", "--sku", sku.Name, "--class", "spot", "--spot-floor", "0.80", "--spot-ceiling", "2.40")
	if out := must(op, "price", "list", "--current", "-o", "csv"); !strings.Contains(out, "reserved") || !strings.Contains(out, "2.50") {
		t.Fatalf("price list: %s", out)
	}
	must(op, "tenant", "create", "acme")
	must(op, "quota", "set", "--tenant", "acme", "--sku", sku.Name, "--class", "reserved", "--gpus", "256")
	var tok struct{ Secret string }
	json.Unmarshal([]byte(must(op, "token", "create", "admin", "--role", "tenant-admin", "--tenant", "acme", "-o", "json")), &tok)
	ta := tok.Secret

	start := time.Now().UTC().Add(72 * time.Hour).Truncate(time.Hour).Format(time.RFC3339)
	var q struct {
		ID    string
		Offer struct {
			Available       bool
			PricePerGPUHour string `json:"price_per_gpu_hour"`
			Topology        string
		}
	}
	json.Unmarshal([]byte(must(ta, "quote", "create", "--sku", sku.Name, "--gpus", "128", "--start", start, "--duration", "7d", "--within", "su", "--hold", "-o", "json")), &q)
	// 10% for a 7-day term beats 5% for 128 GPUs: 2.25.
	if !q.Offer.Available || q.Offer.PricePerGPUHour != "2.25" || !strings.Contains(q.Offer.Topology, "1 su") {
		t.Fatalf("quote: %+v", q)
	}
	// Past the quota: a clear error naming it.
	if _, errOut, code := run(t, srv.URL, ta, "reservation", "create", "--sku", sku.Name, "--gpus", "256", "--start", start, "--duration", "1d"); code != 1 || !strings.Contains(errOut, "quota") {
		t.Fatalf("over quota: %d %s", code, errOut)
	}
	var r struct {
		ID    string
		State string
		Nodes []struct{ Hostname string }
	}
	json.Unmarshal([]byte(must(ta, "reservation", "create", "--quote", q.ID, "-o", "json")), &r)
	if r.State != "scheduled" || len(r.Nodes) != 16 {
		t.Fatalf("reservation: %+v", r)
	}
	topo := must(ta, "reservation", "show", r.ID, "--topology", "slurm")
	if !strings.Contains(topo, "SwitchName=") || !strings.Contains(topo, r.Nodes[0].Hostname) {
		t.Fatalf("topology:\n%s", topo)
	}
	if out := must(ta, "reservation", "extend", r.ID, "--by", "2d", "-o", "csv"); !strings.Contains(out, r.ID) {
		t.Fatalf("extend: %s", out)
	}
	if out := must(ta, "events"); !strings.Contains(out, "reservation.scheduled") || !strings.Contains(out, "reservation.extended") {
		t.Fatalf("events: %s", out)
	}
	if out := must(ta, "contract", "list", "-o", "csv"); !strings.Contains(out, "monthly_in_advance") {
		t.Fatalf("contracts: %s", out)
	}
	if out := must(ta, "reservation", "cancel", r.ID, "-o", "csv"); !strings.Contains(out, "cancelled") {
		t.Fatalf("cancel: %s", out)
	}
	// A phased lease of one hall, signed by the operator, with its progress.
	leaseStart := time.Now().UTC().AddDate(0, 1, 0).Truncate(time.Hour).Format(time.RFC3339)
	var lease struct {
		ID       string
		Delivery struct {
			ContractedGPUs int `json:"contracted_gpus"`
			Phases         []struct{ GPUs int }
		}
	}
	json.Unmarshal([]byte(must(op, "contract", "create", "--kind", "lease", "--tenant", "acme", "--site", "colossus-1", "--hall", "h1/p2", "--start", leaseStart, "--duration", "3y", "--rate", "1.85", "--phase-gpus", "128", "--phase-every", "7d", "-o", "json")), &lease)
	if lease.Delivery.ContractedGPUs != 256 || len(lease.Delivery.Phases) != 2 {
		t.Fatalf("lease: %+v", lease)
	}
	if out := must(ta, "contract", "show", lease.ID, "-o", "csv"); !strings.Contains(out, "lease") || !strings.Contains(out, "256") {
		t.Fatalf("contract show: %s", out)
	}
	if _, errOut, code := run(t, srv.URL, op, "contract", "create", "--kind", "reserved", "--tenant", "acme", "--site", "colossus-1", "--start", leaseStart, "--duration", "1d", "--rate", "1"); code != 1 || !strings.Contains(errOut, "--kind") {
		t.Fatalf("contract create --kind reserved: %d %s", code, errOut)
	}
	// Elastic internal work for the operator's own tenant, and its report.
	must(op, "tenant", "create", "train", "--internal")
	var el struct {
		Shape   struct{ Class string }
		Elastic struct {
			MinGPUs int `json:"min_gpus"`
		}
	}
	json.Unmarshal([]byte(must(op, "reservation", "create", "--tenant", "train", "--sku", sku.Name, "--class", "internal", "--min-gpus", "64", "--max-gpus", "128", "--step-gpus", "64", "--step-within", "su", "--checkpoint", "30m", "-o", "json")), &el)
	if el.Shape.Class != "internal" || el.Elastic.MinGPUs != 64 {
		t.Fatalf("elastic: %+v", el)
	}
	if out := must(op, "internal", "report", "--period", time.Now().UTC().Format("2006-01"), "-o", "csv"); !strings.Contains(out, "gpu_hours_used") {
		t.Fatalf("internal report: %s", out)
	}
	if _, errOut, code := run(t, srv.URL, op, "reservation", "create", "--tenant", "acme", "--sku", sku.Name, "--class", "internal", "--min-gpus", "64", "--max-gpus", "64", "--step-gpus", "64"); code != 1 || !strings.Contains(errOut, "internal tenant") {
		t.Fatalf("internal work for a customer: %d %s", code, errOut)
	}
	// Planned maintenance of a rack of the leased pod, once it runs.
	soon := time.Now().UTC().Add(48 * time.Hour).Format(time.RFC3339)
	late := time.Now().UTC().AddDate(0, 2, 0).Truncate(time.Hour).Format(time.RFC3339)
	var mnt struct {
		ID      string
		Batches []struct{ Nodes []string }
	}
	json.Unmarshal([]byte(must(op, "maintenance", "create", "--site", "colossus-1", "--domain", "h1/p2/su1/r1", "--window", late+"/2h", "--reason", "firmware", "-o", "json")), &mnt)
	if len(mnt.Batches) != 8 {
		t.Fatalf("maintenance of a leased rack rolls node by node: %+v", mnt)
	}
	if out := must(op, "maintenance", "list", "-o", "csv"); !strings.Contains(out, mnt.ID) {
		t.Fatalf("maintenance list: %s", out)
	}
	if out := must(op, "maintenance", "cancel", mnt.ID, "-o", "csv"); !strings.Contains(out, "cancelled") {
		t.Fatalf("maintenance cancel: %s", out)
	}
	if _, errOut, code := run(t, srv.URL, op, "maintenance", "create", "--site", "colossus-1", "--domain", "h1", "--window", soon, "--reason", "x"); code != 1 || !strings.Contains(errOut, "--window") {
		t.Fatalf("a window without duration: %d %s", code, errOut)
	}
	// Bad input: a past start names the field.
	if _, errOut, code := run(t, srv.URL, ta, "quote", "create", "--sku", sku.Name, "--gpus", "8", "--start", "2020-01-01T00:00:00Z", "--duration", "1d"); code != 1 || !strings.Contains(errOut, "body.start") {
		t.Fatalf("past start: %d %s", code, errOut)
	}
}

// TestReservationBenchRuns runs the reservations bench small, so it keeps
// working.
func TestReservationBenchRuns(t *testing.T) {
	var out bytes.Buffer
	if err := cli.RunReservationBench(context.Background(), &out, cli.ReservationBench{GPUs: 1024, N: 40, Clients: 4, GPUsEach: 8}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"create (POST /v1/reservations → 201)", "create → ready", "40"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("bench output lacks %q:\n%s", want, out.String())
		}
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestCLIEventsFollow streams events as they happen.
func TestCLIEventsFollow(t *testing.T) {
	srv := startServer(t)
	op := srv.Token
	sku, _ := fleet.CatalogSKU("h100-sxm5-80gb")
	var spec bytes.Buffer
	o := fleet.ColossusOptions(sku, 512)
	o.Fanout = []int{2, 2, 2, 8}
	fleet.Generate(&spec, o)
	specPath := filepath.Join(t.TempDir(), "site.yaml")
	os.WriteFile(specPath, spec.Bytes(), 0o644)
	for _, args := range [][]string{{"fleet", "apply", "-f", specPath}, {"price", "set", "--sku", sku.Name, "--class", "on_demand", "--rate", "3"}, {"tenant", "create", "acme"}} {
		if _, errOut, code := run(t, srv.URL, op, args...); code != 0 {
			t.Fatalf("%v: %s", args, errOut)
		}
	}
	out, _, _ := run(t, srv.URL, op, "token", "create", "admin", "--role", "tenant-admin", "--tenant", "acme", "-o", "json")
	var tok struct{ Secret string }
	json.Unmarshal([]byte(out), &tok)

	var follow syncBuffer
	go cli.Main([]string{"--server", srv.URL, "--token", tok.Secret, "events", "--follow"}, &follow, io.Discard)
	time.Sleep(200 * time.Millisecond)
	if _, errOut, code := run(t, srv.URL, tok.Secret, "reservation", "create", "--sku", sku.Name, "--gpus", "8", "--class", "on_demand"); code != 0 {
		t.Fatal(errOut)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(follow.String(), "reservation.active") {
		if time.Now().After(deadline) {
			t.Fatalf("the follower saw: %q", follow.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(follow.String(), "reservation.scheduled") {
		t.Fatalf("the follower missed events: %q", follow.String())
	}
}

// TestAgentWithoutGPUs: without NVIDIA's library and without simulated
// GPUs the agent says so and exits non-zero.
func TestAgentWithoutGPUs(t *testing.T) {
	if g, err := nvmlgpu.OpenDefault(); err == nil {
		g.Close()
		t.Skip("this machine has NVIDIA's library")
	}
	_, errOut, code := run(t, "http://127.0.0.1:1", "", "agent", "--hostname", "n1", "--state-dir", t.TempDir())
	if code != 1 || !strings.Contains(errOut, "libnvidia-ml") || !strings.Contains(errOut, "--simulate-gpus") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
}

// TestCLIBreakFix: a tenant reports a node; the operator finds it in
// health list and break-fix list, cannot decline it without a reason,
// declines it with one (the tenant sees why), confirms the next, and the
// node's repair ticket says where it is.
func TestCLIBreakFix(t *testing.T) {
	srv := startServer(t)
	op := srv.Token
	must := func(token string, args ...string) string { t.Helper(); return mustRun(t, srv.URL, token, args...) }
	sku := applySite(t, srv.URL, op, 2, 2, 2, 4)
	must(op, "price", "set", "--sku", sku.Name, "--class", "on_demand", "--rate", "3.20")
	must(op, "tenant", "create", "acme")
	var tok struct{ Secret string }
	json.Unmarshal([]byte(must(op, "token", "create", "admin", "--role", "tenant-admin", "--tenant", "acme", "-o", "json")), &tok)
	ta := tok.Secret
	var r struct{ Nodes []struct{ Hostname string } }
	json.Unmarshal([]byte(must(ta, "reservation", "create", "--sku", sku.Name, "--gpus", "16", "--class", "on_demand", "-o", "json")), &r)
	if len(r.Nodes) != 2 {
		t.Fatalf("reservation: %+v", r)
	}
	// The tenant shows its own node: its agent's report (here: none yet),
	// without the fleet's record (the operator's), and no refused request.
	if out, errOut, code := run(t, srv.URL, ta, "node", "show", r.Nodes[0].Hostname); code != 1 || !strings.Contains(errOut, "no agent has reported for node "+r.Nodes[0].Hostname) {
		t.Errorf("the tenant's node show: %d %q %q", code, out, errOut)
	}
	if out := must(op, "audit", "list", "--result", "denied", "-o", "json"); strings.Contains(out, "get-node") {
		t.Errorf("the tenant's node show was refused: %s", out)
	}
	report := func(host string) string {
		t.Helper()
		var b struct{ ID, State string }
		json.Unmarshal([]byte(must(ta, "node", "report", host, "--reason", "NCCL all-reduce hangs", "-o", "json")), &b)
		if b.State != "open" {
			t.Fatalf("report: %+v", b)
		}
		return b.ID
	}
	first := report(r.Nodes[0].Hostname)
	if out := must(op, "health", "list"); !strings.Contains(out, "TENANTS' REPORTS AWAITING AN OPERATOR") || !strings.Contains(out, first) {
		t.Fatalf("health list:\n%s", out)
	}
	if out := must(op, "break-fix", "list", "--state", "open", "-o", "csv"); !strings.Contains(out, first) || !strings.Contains(out, r.Nodes[0].Hostname) {
		t.Fatalf("break-fix list --state open:\n%s", out)
	}
	if _, errOut, code := run(t, srv.URL, op, "break-fix", "decline", first); code != 1 || !strings.Contains(errOut, "body.reason") {
		t.Fatalf("decline without a reason: %d %s", code, errOut)
	}
	must(op, "break-fix", "decline", first, "--reason", "dcgmi diag -r 3 passed")
	var seen struct{ State, Resolution string }
	json.Unmarshal([]byte(must(ta, "break-fix", "show", first, "-o", "json")), &seen)
	if seen.State != "declined" || seen.Resolution != "dcgmi diag -r 3 passed" {
		t.Fatalf("the tenant's view of its declined report: %+v", seen)
	}
	if out := must(op, "break-fix", "list", "--state", "open", "-o", "csv"); strings.Contains(out, first) {
		t.Fatalf("a declined report still open:\n%s", out)
	}
	second := report(r.Nodes[1].Hostname)
	if out := must(op, "break-fix", "confirm", second, "-o", "csv"); !strings.Contains(out, "confirmed") {
		t.Fatalf("confirm: %s", out)
	}
	var tickets []struct{ Hostname, Serial, Domain string }
	json.Unmarshal([]byte(must(op, "repair", "list", "-o", "json")), &tickets)
	if len(tickets) != 1 || tickets[0].Hostname != r.Nodes[1].Hostname || tickets[0].Domain == "" || tickets[0].Serial == "" {
		t.Fatalf("repair list: %+v", tickets)
	}
	// The operator finds the first node broken after all and fails it:
	// a reason is required; with one, the tenant's work on it is replaced
	// and its repair opens.
	if _, errOut, code := run(t, srv.URL, op, "node", "fail", r.Nodes[0].Hostname); code != 1 || !strings.Contains(errOut, "body.reason") {
		t.Fatalf("node fail without a reason: %d %s", code, errOut)
	}
	if out := must(op, "node", "fail", r.Nodes[0].Hostname, "--reason", "burnt smell from GPU 5"); !strings.Contains(out, "failed by an operator: burnt smell from GPU 5") || !strings.Contains(out, "open") {
		t.Fatalf("node fail:\n%s", out)
	}
	json.Unmarshal([]byte(must(op, "repair", "list", "-o", "json")), &tickets)
	if len(tickets) != 2 || tickets[0].Hostname != r.Nodes[0].Hostname {
		t.Fatalf("repair list after node fail: %+v", tickets)
	}
	if evs := must(ta, "events", "-o", "csv"); strings.Count(evs, "node.replaced") != 2 {
		t.Fatalf("the tenant's events after node fail:\n%s", evs)
	}
}
