package blip

import (
	"fmt"
	"math"
	"strings"

	"github.com/capfilt/capfilt/torch"
)

// InitRandom gives every parameter the initial values BLIP's pretraining model starts
// from before any checkpoint is loaded into it (then InitVision and InitText overwrite
// what DeiT and BERT provide):
//
//   - the text transformer and LM head as BERT's _init_weights: Linear and embedding
//     weights N(0, 0.02), biases 0, LayerNorm weight 1 and bias 0 (so cross attention,
//     which BERT lacks, stays so initialised; the LM head bias starts at 0);
//   - the ViT as timm's VisionTransformer: class and position embeddings and Linear
//     weights truncated-normal(0.02) truncated at ±2 (absolute, i.e. 100σ: a plain normal
//     draw), biases 0, LayerNorms 1/0; the patch-embedding Conv2d keeps torch's default;
//   - vision_proj, text_proj and itm_head, plain nn.Linear layers, torch's default:
//     weight and bias uniform in ±1/√fan_in (kaiming_uniform with a = √5);
//   - temp 0.07.
//
// Values are drawn from g (nil: libtorch's default generator) in the model's parameter
// order, on the CPU, then moved to the model's device.
func (m *Model) InitRandom(g *torch.Generator) error {
	for _, p := range m.ps.list {
		t, err := m.initialValue(p, g)
		if err != nil {
			return fmt.Errorf("blip: init %s: %w", p.Name, err)
		}
		if m.device != torch.CPU || m.dtype != torch.Float32 {
			moved := t.To(m.device, m.dtype)
			t.Free()
			t = moved
		}
		if err := t.Err(); err != nil {
			return fmt.Errorf("blip: init %s: %w", p.Name, err)
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

func (m *Model) initialValue(p param, g *torch.Generator) (*torch.Tensor, error) {
	shape := p.Shape
	normal := func(std float64) *torch.Tensor {
		r := torch.Randn(g, torch.Float32, torch.CPU, shape...)
		out := r.MulScalar(std)
		r.Free()
		return out
	}
	uniform := func(bound float64) *torch.Tensor {
		r := torch.Rand(g, torch.Float32, torch.CPU, shape...)
		out := r.MulScalar(2 * bound).SubScalar(bound)
		r.Free()
		return out
	}
	full := func(v float64) *torch.Tensor { return torch.Full(v, torch.Float32, torch.CPU, shape...) }
	var t *torch.Tensor
	switch {
	case p.Name == "temp":
		t = full(0.07)
	case torchDefaultInit(p.Name):
		t = uniform(1 / math.Sqrt(float64(m.defaultFanIn(p))))
	case valueKind(p.Name) == kindNormWeight:
		t = full(1)
	case valueKind(p.Name) == kindBias:
		t = full(0)
	default:
		t = normal(0.02)
	}
	return t, t.Err()
}

// torchDefaultInit tells the layers the original leaves at torch's default init.
func torchDefaultInit(name string) bool {
	for _, prefix := range []string{"vision_proj.", "text_proj.", "itm_head.", "vision_model.embeddings.patch_embedding."} {
		if strings.HasPrefix(name, prefix) {
			return true
		}
	}
	return false
}

// defaultFanIn is a layer's fan-in, the product of its weight's dimensions after the
// first (in features of a Linear, in·kh·kw of a Conv2d); a bias takes its weight's.
func (m *Model) defaultFanIn(p param) int64 {
	w := p
	if strings.HasSuffix(p.Name, ".bias") {
		if q, ok := m.ps.get(strings.TrimSuffix(p.Name, ".bias") + ".weight"); ok {
			w = q
		}
	}
	fan := int64(1)
	for _, d := range w.Shape[1:] {
		fan *= d
	}
	return fan
}
