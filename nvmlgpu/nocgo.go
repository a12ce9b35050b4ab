//go:build !cgo

package nvmlgpu

import (
	"errors"
	"time"

	"github.com/neocloud/neocloud/wire"
)

// GPUs is unavailable in a build without cgo: go-nvml needs it.
type GPUs struct{}

// OpenDefault reports that this build cannot read GPUs.
func OpenDefault() (*GPUs, error) {
	return nil, errors.Join(ErrNoLibrary, errors.New("this binary was built without cgo"))
}

func (g *GPUs) Driver() string                     { return "" }
func (g *GPUs) Info() []wire.GPUInfo               { return nil }
func (g *GPUs) Sample(time.Time) []wire.GPUSample  { return nil }
func (g *GPUs) SetPowerCap(i int, watts int) error { return ErrNoLibrary }
func (g *GPUs) Close() error                       { return nil }
