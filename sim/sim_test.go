package sim

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/neocloud/neocloud/placement"
)

// TestHybridShortRun runs three simulated days on the demo-size site: every
// committed reservation is ready within the reclaim guarantee, the lease's
// first phase is delivered, internal training gets idle capacity, and the
// report comes out.
func TestHybridShortRun(t *testing.T) {
	var out bytes.Buffer
	res, err := RunHybrid(context.Background(), &out, Options{GPUs: 8192, Days: 4, Seed: 2, Step: 15 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if res.Committed == 0 || res.Late != 0 {
		t.Fatalf("%d committed reservations, %d late:\n%s", res.Committed, res.Late, out.String())
	}
	if res.LeaseGPUs != 1024 || res.Used[placement.ClassLease] == 0 {
		t.Fatalf("lease: %d GPUs ready, %.0f GPU-hours:\n%s", res.LeaseGPUs, res.Used[placement.ClassLease], out.String())
	}
	if res.Internal.UsedGPUh <= 0 || res.Used[placement.ClassInternal] <= 0 {
		t.Fatalf("internal training got nothing:\n%s", out.String())
	}
	for _, want := range []string{"committed work", "GPU-hours lost to reclaims", "utilization by class"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("output lacks %q:\n%s", want, out.String())
		}
	}
}
