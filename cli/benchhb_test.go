package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/neocloud/neocloud/wire"
)

// TestBenchBody: the heartbeat the bench writes by hand decodes to the
// report an agent would send.
func TestBenchBody(t *testing.T) {
	a := &benchAgent{seq: 41, energyJ: 8 * 1000}
	at := time.Date(2027, 3, 1, 12, 0, 0, 123456789, time.UTC)
	var got wire.Heartbeat
	if err := json.Unmarshal(a.body(nil, at), &got); err != nil {
		t.Fatal(err)
	}
	want := wire.Heartbeat{Version: wire.Version, Seq: 42, At: at, UptimeS: 420, AgentVersion: "bench"}
	for i := 0; i < 8; i++ {
		want.GPUs = append(want.GPUs, wire.GPUSample{Index: i, PowerW: 500 + float64(i), EnergyJ: 6000, TempC: 60, UtilPct: 90, MemUsedMiB: 60000})
		want.NICs = append(want.NICs, wire.NICSample{Name: fmt.Sprintf("ib%d", i), Up: true})
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("the bench's heartbeat (-want +got):\n%s", d)
	}
}

// procCPU reads a process's CPU time from /proc: this test's own, after
// it has spent some in the kernel and some of its own, agrees with
// getrusage and splits off the kernel's share.
func TestProcCPU(t *testing.T) {
	// Kernel work: reading a /proc file has the kernel write it.
	for start := time.Now(); time.Since(start) < 300*time.Millisecond; {
		if _, err := os.ReadFile("/proc/self/stat"); err != nil {
			t.Fatal(err)
		}
	}
	all, sys, err := procCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	selfAll, selfSys := time.Duration(ru.Utime.Nano()+ru.Stime.Nano()), time.Duration(ru.Stime.Nano())
	if sys <= 0 || all <= sys {
		t.Errorf("all %v, of it kernel %v: want both spent, the kernel's a part", all, sys)
	}
	// /proc counts in ticks of 10 ms, getrusage finer and a moment later.
	near := func(proc, self time.Duration) bool {
		return proc <= self+20*time.Millisecond && proc >= self-50*time.Millisecond
	}
	if !near(all, selfAll) || !near(sys, selfSys) {
		t.Errorf("/proc says %v (kernel %v), getrusage %v (kernel %v)", all, sys, selfAll, selfSys)
	}
}
