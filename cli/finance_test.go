package cli_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestCLIFinance: the finance commands answer an operator as tables, CSV
// and JSON, and refuse a tenant.
func TestCLIFinance(t *testing.T) {
	srv := startServer(t)
	op := srv.Token
	must := func(token string, args ...string) string { t.Helper(); return mustRun(t, srv.URL, token, args...) }
	applySite(t, srv.URL, op, 1, 1, 1, 8)
	must(op, "tenant", "create", "acme")
	time.Sleep(1100 * time.Millisecond) // the fleet has been counted for a second
	period := time.Now().UTC().Format("2006-01")

	if out := must(op, "finance", "summary", "--period", period); !strings.Contains(out, "sold") || !strings.Contains(out, "idle") {
		t.Fatalf("summary:\n%s", out)
	}
	csv := must(op, "finance", "utilization", "--period", period, "-o", "csv")
	lines := strings.Split(strings.TrimSpace(csv), "\n")
	if lines[0] != "category,gpu_hours,percent" || len(lines) != 10 || !strings.HasPrefix(lines[9], "idle,") {
		t.Fatalf("utilization as CSV:\n%s", csv)
	}
	var u struct {
		FleetGPUSeconds int64 `json:"fleet_gpu_seconds"`
		Categories      []struct {
			GPUSeconds int64 `json:"gpu_seconds"`
		}
	}
	if err := json.Unmarshal([]byte(must(op, "finance", "utilization", "--period", period, "-o", "json")), &u); err != nil {
		t.Fatal(err)
	}
	var sum int64
	for _, c := range u.Categories {
		sum += c.GPUSeconds
	}
	if sum != u.FleetGPUSeconds || sum == 0 {
		t.Fatalf("categories sum to %d of %d GPU-seconds", sum, u.FleetGPUSeconds)
	}
	if out := must(op, "finance", "revenue", "--period", period); !strings.Contains(out, "the identity holds") {
		t.Fatalf("revenue:\n%s", out)
	}
	must(op, "finance", "backlog", "--period", period)
	must(op, "finance", "economics", "--period", period)
	if out := must(op, "finance", "whatif", "--lease-tenant", "acme", "--rate", "1.85", "--duration", "3y", "--baseline", period); !strings.Contains(out, "lease to acme") {
		t.Fatalf("what-if:\n%s", out)
	}
	if _, errOut, code := run(t, srv.URL, op, "finance", "whatif", "--lease-tenant", "acme", "--rate", "-2", "--duration", "3y"); code == 0 || !strings.Contains(errOut, "rate_per_gpu_hour") {
		t.Fatalf("a negative rate: exit %d: %s", code, errOut)
	}
	var tok struct{ Secret string }
	json.Unmarshal([]byte(must(op, "token", "create", "admin", "--role", "tenant-admin", "--tenant", "acme", "-o", "json")), &tok)
	if _, errOut, code := run(t, srv.URL, tok.Secret, "finance", "summary", "--period", period); code == 0 || !strings.Contains(errOut, "403") && !strings.Contains(strings.ToLower(errOut), "forbidden") {
		t.Fatalf("a tenant reads finance: exit %d: %s", code, errOut)
	}
}
