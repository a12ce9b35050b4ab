//go:build cgo

// Package nvmlgpu reads a node's GPUs through NVIDIA's management library
// (go-nvml), for the agent. go-nvml needs cgo to build and loads
// libnvidia-ml.so.1 at run time; without the library Open says so plainly.
// Power caps go through here too; tests drive them against go-nvml's
// mocks only, never a real card.
package nvmlgpu

import (
	"fmt"
	"sync"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/neocloud/neocloud/wire"
)

// OpenDefault opens the node's own library.
func OpenDefault() (*GPUs, error) { return Open(nvml.New()) }

// GPUs is a node's GPUs through NVML. It is safe for concurrent use.
type GPUs struct {
	mu    sync.Mutex
	lib   nvml.Interface
	devs  []nvml.Device
	infos []wire.GPUInfo
	drv   string
	// XID events arrive through an event set that a goroutine waits on;
	// they wait in xids until the next Sample.
	events nvml.EventSet
	xids   [][]wire.XID
	stop   chan struct{}
	done   chan struct{}
}

// eventWait is how long one wait on the event set lasts, and so how long
// Close may take.
const eventWait = 200 // ms

// Open initializes the library and finds the GPUs.
func Open(lib nvml.Interface) (*GPUs, error) {
	if lib == nil {
		return nil, ErrNoLibrary
	}
	switch ret := lib.Init(); ret {
	case nvml.SUCCESS:
	case nvml.ERROR_LIBRARY_NOT_FOUND:
		return nil, ErrNoLibrary
	default:
		return nil, fmt.Errorf("nvml init: %s", lib.ErrorString(ret))
	}
	n, ret := lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		return nil, fmt.Errorf("nvml device count: %s", lib.ErrorString(ret))
	}
	g := &GPUs{lib: lib}
	if v, ret := lib.SystemGetDriverVersion(); ret == nvml.SUCCESS {
		g.drv = v
	}
	for i := 0; i < n; i++ {
		d, ret := lib.DeviceGetHandleByIndex(i)
		if ret != nvml.SUCCESS {
			return nil, fmt.Errorf("nvml device %d: %s", i, lib.ErrorString(ret))
		}
		uuid, _ := d.GetUUID()
		name, _ := d.GetName()
		mem, _ := d.GetMemoryInfo()
		g.devs = append(g.devs, d)
		g.infos = append(g.infos, wire.GPUInfo{Index: i, UUID: uuid, Model: name, MemoryMiB: int(mem.Total >> 20)})
	}
	g.xids = make([][]wire.XID, n)
	g.watchXIDs()
	return g, nil
}

// watchXIDs registers every GPU for critical XID events and collects them
// in the background. A GPU or driver that does not support events (some
// virtual machines) is read without them; Sample still reports it.
func (g *GPUs) watchXIDs() {
	set, ret := g.lib.EventSetCreate()
	if ret != nvml.SUCCESS {
		return
	}
	registered := 0
	for _, d := range g.devs {
		if d.RegisterEvents(nvml.EventTypeXidCriticalError, set) == nvml.SUCCESS {
			registered++
		}
	}
	if registered == 0 {
		set.Free()
		return
	}
	g.events, g.stop, g.done = set, make(chan struct{}), make(chan struct{})
	go func() {
		defer close(g.done)
		for {
			select {
			case <-g.stop:
				return
			default:
			}
			data, ret := set.Wait(eventWait)
			if ret != nvml.SUCCESS || data.EventType&nvml.EventTypeXidCriticalError == 0 {
				continue // a timeout, or an event we did not ask for
			}
			g.addXID(data.Device, int(data.EventData), time.Now().UTC())
		}
	}()
}

// addXID files an XID event under its GPU.
func (g *GPUs) addXID(dev nvml.Device, code int, at time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for i, d := range g.devs {
		if d == dev {
			g.xids[i] = append(g.xids[i], wire.XID{Code: code, At: at})
			return
		}
	}
	if dev == nil {
		return
	}
	if uuid, ret := dev.GetUUID(); ret == nvml.SUCCESS {
		for i, info := range g.infos {
			if info.UUID == uuid {
				g.xids[i] = append(g.xids[i], wire.XID{Code: code, At: at})
				return
			}
		}
	}
}

// Close stops the event watch and shuts the library down.
func (g *GPUs) Close() error {
	if g.stop != nil {
		close(g.stop)
		<-g.done
		g.events.Free()
	}
	if ret := g.lib.Shutdown(); ret != nvml.SUCCESS {
		return fmt.Errorf("nvml shutdown: %s", g.lib.ErrorString(ret))
	}
	return nil
}

// Driver is the NVIDIA driver's version.
func (g *GPUs) Driver() string { return g.drv }

// Info lists the GPUs found at Open.
func (g *GPUs) Info() []wire.GPUInfo { return g.infos }

// Sample reads each GPU: power (mW → W), the total energy counter (mJ → J),
// temperature, utilization, memory used, volatile ECC counts, row-remap
// state, throttle reasons and the XID events since the last sample. A GPU
// that answers ERROR_GPU_IS_LOST has fallen off the bus.
func (g *GPUs) Sample(time.Time) []wire.GPUSample {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]wire.GPUSample, len(g.devs))
	for i, d := range g.devs {
		s := wire.GPUSample{Index: i, XIDs: g.xids[i]}
		g.xids[i] = nil
		mw, ret := d.GetPowerUsage()
		if ret == nvml.ERROR_GPU_IS_LOST {
			s.Lost = true
			out[i] = s
			continue
		}
		if ret == nvml.SUCCESS {
			s.PowerW = float64(mw) / 1000
		}
		if mj, ret := d.GetTotalEnergyConsumption(); ret == nvml.SUCCESS {
			s.EnergyJ = mj / 1000
		}
		if t, ret := d.GetTemperature(nvml.TEMPERATURE_GPU); ret == nvml.SUCCESS {
			s.TempC = float64(t)
		}
		if u, ret := d.GetUtilizationRates(); ret == nvml.SUCCESS {
			s.UtilPct = float64(u.Gpu)
		}
		if m, ret := d.GetMemoryInfo(); ret == nvml.SUCCESS {
			s.MemUsedMiB = int(m.Used >> 20)
		}
		if c, ret := d.GetTotalEccErrors(nvml.MEMORY_ERROR_TYPE_CORRECTED, nvml.VOLATILE_ECC); ret == nvml.SUCCESS {
			s.ECCCorrected = c
		}
		if c, ret := d.GetTotalEccErrors(nvml.MEMORY_ERROR_TYPE_UNCORRECTED, nvml.VOLATILE_ECC); ret == nvml.SUCCESS {
			s.ECCUncorrected = c
		}
		if _, _, pending, failed, ret := d.GetRemappedRows(); ret == nvml.SUCCESS {
			s.RowRemapPending, s.RowRemapFailed = pending, failed
		}
		if r, ret := d.GetCurrentClocksEventReasons(); ret == nvml.SUCCESS {
			s.Throttle = throttleReasons(r)
		}
		out[i] = s
	}
	return out
}

// throttleNames names the clock event reasons that slow a GPU down; idle
// and application clock settings are not throttling.
var throttleNames = []struct {
	bit  uint64
	name string
}{
	{nvml.ClocksEventReasonSwPowerCap, wire.ThrottlePowerCap},
	{nvml.ClocksThrottleReasonHwSlowdown, wire.ThrottleHWSlowdown},
	{nvml.ClocksEventReasonSwThermalSlowdown, wire.ThrottleSWThermal},
	{nvml.ClocksThrottleReasonHwThermalSlowdown, wire.ThrottleHWThermal},
	{nvml.ClocksThrottleReasonHwPowerBrakeSlowdown, wire.ThrottlePowerBrake},
}

func throttleReasons(r uint64) []string {
	var out []string
	for _, t := range throttleNames {
		if r&t.bit != 0 {
			out = append(out, t.name)
		}
	}
	return out
}

// SetPowerCap caps GPU i at watts, within the range the card allows.
func (g *GPUs) SetPowerCap(i int, watts int) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if i < 0 || i >= len(g.devs) {
		return fmt.Errorf("no GPU %d", i)
	}
	lo, hi, ret := g.devs[i].GetPowerManagementLimitConstraints()
	if ret != nvml.SUCCESS {
		return fmt.Errorf("gpu %d power limits: %s", i, g.lib.ErrorString(ret))
	}
	mw := uint32(watts) * 1000
	if mw < lo || mw > hi {
		return fmt.Errorf("gpu %d: %d W is outside %d–%d W", i, watts, lo/1000, hi/1000)
	}
	if ret := g.devs[i].SetPowerManagementLimit(mw); ret != nvml.SUCCESS {
		return fmt.Errorf("gpu %d power cap: %s", i, g.lib.ErrorString(ret))
	}
	return nil
}
