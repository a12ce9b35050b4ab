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
}

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
	return g, nil
}

// Close shuts the library down.
func (g *GPUs) Close() error {
	if ret := g.lib.Shutdown(); ret != nvml.SUCCESS {
		return fmt.Errorf("nvml shutdown: %s", g.lib.ErrorString(ret))
	}
	return nil
}

// Info lists the GPUs found at Open.
func (g *GPUs) Info() []wire.GPUInfo { return g.infos }

// Sample reads each GPU: power (mW → W), the total energy counter (mJ → J),
// temperature, utilization, memory used and volatile ECC counts. A GPU that
// answers ERROR_GPU_IS_LOST has fallen off the bus.
func (g *GPUs) Sample(time.Time) []wire.GPUSample {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]wire.GPUSample, len(g.devs))
	for i, d := range g.devs {
		s := wire.GPUSample{Index: i}
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
		out[i] = s
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
