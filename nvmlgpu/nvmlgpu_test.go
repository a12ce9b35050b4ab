//go:build cgo

package nvmlgpu

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
)

// dgx returns go-nvml's mock DGX H100 with its telemetry set: GPU i draws
// 100+10i W, has used 1000×i J, runs at 40+i °C and 10×i % and has had i
// uncorrected ECC errors; GPU 7 has fallen off the bus, GPU 5 waits for a
// row remap and GPU 6's remap failed, GPU 4 is power capped and slowed by
// hardware. XID events come from the returned channel, as (GPU, code).
func dgx(t *testing.T) (*server.Server, chan [2]int) {
	s := dgxh100.New()
	events := make(chan [2]int, 16)
	s.EventSetCreateFunc = func() (nvml.EventSet, nvml.Return) {
		return &mock.EventSet{
			WaitFunc: func(ms uint32) (nvml.EventData, nvml.Return) {
				select {
				case e := <-events:
					return nvml.EventData{Device: s.Devices[e[0]], EventType: nvml.EventTypeXidCriticalError, EventData: uint64(e[1])}, nvml.SUCCESS
				case <-time.After(time.Duration(ms) * time.Millisecond):
					return nvml.EventData{}, nvml.ERROR_TIMEOUT
				}
			},
			FreeFunc: func() nvml.Return { return nvml.SUCCESS },
		}, nvml.SUCCESS
	}
	s.ShutdownFunc = func() nvml.Return { return nvml.SUCCESS }
	for i, d := range s.Devices {
		md := d.(*server.Device)
		i := i
		md.RegisterEventsFunc = func(kinds uint64, _ nvml.EventSet) nvml.Return {
			if kinds&nvml.EventTypeXidCriticalError == 0 {
				t.Errorf("gpu %d registered for %#x, not XIDs", i, kinds)
			}
			return nvml.SUCCESS
		}
		md.GetRemappedRowsFunc = func() (int, int, bool, bool, nvml.Return) { return 0, 0, i == 5 || i == 6, i == 6, nvml.SUCCESS }
		md.GetCurrentClocksEventReasonsFunc = func() (uint64, nvml.Return) {
			if i == 4 {
				return nvml.ClocksEventReasonSwPowerCap | nvml.ClocksThrottleReasonHwSlowdown | nvml.ClocksEventReasonGpuIdle, nvml.SUCCESS
			}
			return nvml.ClocksEventReasonGpuIdle, nvml.SUCCESS
		}
		md.GetPowerUsageFunc = func() (uint32, nvml.Return) {
			if i == 7 {
				return 0, nvml.ERROR_GPU_IS_LOST
			}
			return uint32(100_000 + 10_000*i), nvml.SUCCESS
		}
		md.GetTotalEnergyConsumptionFunc = func() (uint64, nvml.Return) { return uint64(1_000_000 * i), nvml.SUCCESS }
		md.GetTemperatureFunc = func(nvml.TemperatureSensors) (uint32, nvml.Return) { return uint32(40 + i), nvml.SUCCESS }
		md.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) { return nvml.Utilization{Gpu: uint32(10 * i)}, nvml.SUCCESS }
		md.GetTotalEccErrorsFunc = func(kind nvml.MemoryErrorType, _ nvml.EccCounterType) (uint64, nvml.Return) {
			if kind == nvml.MEMORY_ERROR_TYPE_UNCORRECTED {
				return uint64(i), nvml.SUCCESS
			}
			return 0, nvml.SUCCESS
		}
		var limit uint32 = 700_000
		md.GetPowerManagementLimitConstraintsFunc = func() (uint32, uint32, nvml.Return) { return 200_000, 700_000, nvml.SUCCESS }
		md.SetPowerManagementLimitFunc = func(v uint32) nvml.Return { limit = v; return nvml.SUCCESS }
		md.GetPowerManagementLimitFunc = func() (uint32, nvml.Return) { return limit, nvml.SUCCESS }
	}
	return s, events
}

func TestReadsTheMockDGX(t *testing.T) {
	srv, _ := dgx(t)
	g, err := Open(srv)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if g.Driver() == "" {
		t.Fatal("no driver version")
	}
	info := g.Info()
	if len(info) != 8 || info[0].UUID == "" || info[0].Model == "" || info[0].MemoryMiB < 80000 {
		t.Fatalf("info: %+v", info)
	}
	s := g.Sample(time.Now())
	if s[3].PowerW != 130 || s[3].EnergyJ != 3000 || s[3].TempC != 43 || s[3].UtilPct != 30 || s[3].ECCUncorrected != 3 || s[3].Lost {
		t.Fatalf("gpu 3: %+v", s[3])
	}
	if !s[7].Lost {
		t.Fatalf("gpu 7 should be off the bus: %+v", s[7])
	}
	if !s[5].RowRemapPending || s[5].RowRemapFailed || !s[6].RowRemapFailed || s[3].RowRemapPending {
		t.Fatalf("row remap: gpu 3 %+v, 5 %+v, 6 %+v", s[3], s[5], s[6])
	}
	if fmt.Sprint(s[4].Throttle) != "[power_cap hw_slowdown]" || len(s[3].Throttle) != 0 {
		t.Fatalf("throttle: gpu 3 %v, gpu 4 %v", s[3].Throttle, s[4].Throttle)
	}
}

// TestXIDEventsFromTheEventSet: XIDs the driver signals reach the next
// sample of their own GPU, once.
func TestXIDEventsFromTheEventSet(t *testing.T) {
	srv, events := dgx(t)
	g, err := Open(srv)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	events <- [2]int{2, 79}
	events <- [2]int{5, 94}
	events <- [2]int{2, 13}
	var got [8][]int
	deadline := time.Now().Add(5 * time.Second)
	for len(got[2]) < 2 || len(got[5]) < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("XIDs seen by then: %v", got)
		}
		for i, s := range g.Sample(time.Now()) {
			for _, x := range s.XIDs {
				got[i] = append(got[i], x.Code)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	if fmt.Sprint(got) != "[[] [] [79 13] [] [] [94] [] []]" {
		t.Fatalf("XIDs by GPU: %v", got)
	}
	for _, s := range g.Sample(time.Now()) {
		if len(s.XIDs) != 0 {
			t.Fatalf("gpu %d reported XIDs twice: %v", s.Index, s.XIDs)
		}
	}
}

func TestPowerCapAgainstTheMock(t *testing.T) {
	srv, _ := dgx(t)
	g, err := Open(srv)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.SetPowerCap(2, 450); err != nil {
		t.Fatal(err)
	}
	if got, _ := srv.Devices[2].GetPowerManagementLimit(); got != 450_000 {
		t.Fatalf("limit %d mW, want 450000", got)
	}
	if err := g.SetPowerCap(2, 900); err == nil {
		t.Fatal("a cap above the card's range was applied")
	}
}

// TestNoLibrary: a library that is not there says so plainly, both as a
// mock and as this machine's own (which has no NVIDIA driver).
func TestNoLibrary(t *testing.T) {
	missing := &mock.Interface{InitFunc: func() nvml.Return { return nvml.ERROR_LIBRARY_NOT_FOUND }}
	if _, err := Open(missing); !errors.Is(err, ErrNoLibrary) {
		t.Fatalf("mock without library: %v", err)
	}
	if g, err := OpenDefault(); err == nil {
		// A machine with the driver: it must have found GPUs.
		defer g.Close()
		if len(g.Info()) == 0 {
			t.Fatal("the library opened but found no GPUs")
		}
		t.Logf("this machine has %d GPUs, driver %s; XID events watched: %v; first sample: %+v", len(g.Info()), g.Driver(), g.stop != nil, g.Sample(time.Now())[0])
	} else if !errors.Is(err, ErrNoLibrary) {
		t.Fatalf("this machine: %v", err)
	}
}
