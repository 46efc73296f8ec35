package blip

import (
	"strings"

	"github.com/capfilt/capfilt/torch"
)

// InitDeterministic gives every parameter reproducible values from its name alone, the
// scheme shared with the independent reference in testdata/ref (its README states it):
// element i of parameter NAME is drawn from splitmix64 at (FNV-1a(NAME) ⊕ seed) + (i+1)·φ,
// r = 2u−1 with u the top 24 bits; norm weights are 1+0.1r, biases 0.1r, temp 0.07,
// everything else 0.05r. Tests and the synthetic world use it to build random models
// that another implementation can rebuild bit for bit.
func (m *Model) InitDeterministic(seed uint64) error {
	for _, p := range m.ps.list {
		vals := DeterministicValues(p.Name, numel(p.Shape), seed)
		t := torch.FromFloat32(vals, p.Shape...)
		if err := t.Err(); err != nil {
			return err
		}
		if old := p.Tensor(); old != nil {
			old.Free()
		}
		p.set(t)
	}
	if m.VisionModel != nil {
		m.VisionModel.dropPositionCache()
	}
	return nil
}

// DeterministicValues returns parameter NAME's n values under InitDeterministic's scheme.
func DeterministicValues(name string, n int64, seed uint64) []float32 {
	vals := make([]float32, n)
	kind := valueKind(name)
	if kind == kindTemp {
		for i := range vals {
			vals[i] = 0.07
		}
		return vals
	}
	h := uint64(0xcbf29ce484222325)
	for i := 0; i < len(name); i++ {
		h ^= uint64(name[i])
		h *= 0x100000001b3
	}
	base := h ^ seed
	for i := range vals {
		z := base + uint64(i+1)*0x9E3779B97F4A7C15
		z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
		z = (z ^ (z >> 27)) * 0x94D049BB133111EB
		z ^= z >> 31
		r := 2*(float64(z>>40)/(1<<24)) - 1
		switch kind {
		case kindNormWeight:
			vals[i] = float32(1 + 0.1*r)
		case kindBias:
			vals[i] = float32(0.1 * r)
		default:
			vals[i] = float32(0.05 * r)
		}
	}
	return vals
}

const (
	kindWeight = iota
	kindNormWeight
	kindBias
	kindTemp
)

func valueKind(name string) int {
	if name == "temp" {
		return kindTemp
	}
	parts := strings.Split(name, ".")
	last := parts[len(parts)-1]
	prev := ""
	if len(parts) > 1 {
		prev = strings.ToLower(parts[len(parts)-2])
	}
	switch {
	case last == "weight" && strings.Contains(prev, "norm"):
		return kindNormWeight
	case last == "bias":
		return kindBias
	}
	return kindWeight
}
