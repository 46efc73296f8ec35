package blip

import (
	"fmt"

	"github.com/capfilt/capfilt/torch"
)

// To moves every weight to dev and converts it to dt (float32; or bfloat16/float16 on a
// CUDA device for speed). Inputs are converted to match by the forward functions.
func (m *Model) To(dev torch.Device, dt torch.DType) error {
	if !dt.IsFloat() {
		return fmt.Errorf("blip: weights must be a float dtype, not %v", dt)
	}
	if dt != torch.Float32 && !dev.CUDA {
		return fmt.Errorf("blip: %v weights are for CUDA devices; use float32 on the CPU", dt)
	}
	for _, p := range m.ps.list {
		t := p.Tensor()
		if t == nil {
			continue
		}
		if t.Device() == dev && t.DType() == dt {
			continue
		}
		moved := t.To(dev, dt)
		if err := moved.Err(); err != nil {
			return fmt.Errorf("blip: moving %s to %v %v: %w", p.Name, dev, dt, err)
		}
		t.Free()
		p.set(moved)
	}
	if m.VisionModel != nil {
		m.VisionModel.dropPositionCache()
	}
	m.device, m.dtype = dev, dt
	return nil
}

// Device is where the weights live.
func (m *Model) Device() torch.Device { return m.device }

// DType is the weights' dtype.
func (m *Model) DType() torch.DType { return m.dtype }
