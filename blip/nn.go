package blip

import (
	"fmt"

	"github.com/capfilt/capfilt/torch"
)

// Linear is y = x·Wᵀ + b, W being [out, in] as checkpoints store it.
type Linear struct {
	Weight *torch.Tensor
	Bias   *torch.Tensor // nil when the layer has none
}

func (l *Linear) Forward(x *torch.Tensor) *torch.Tensor { return x.Linear(l.Weight, l.Bias) }

func (l *Linear) register(ps *paramSet, name string, out, in int) {
	ps.add(name+".weight", &l.Weight, int64(out), int64(in))
	ps.add(name+".bias", &l.Bias, int64(out))
}

// LayerNorm normalises over the last dimension.
type LayerNorm struct {
	Weight, Bias *torch.Tensor
	Eps          float64
}

func (n *LayerNorm) Forward(x *torch.Tensor) *torch.Tensor {
	return x.LayerNorm(n.Weight, n.Bias, n.Eps)
}

func (n *LayerNorm) register(ps *paramSet, name string, width int) {
	ps.add(name+".weight", &n.Weight, int64(width))
	ps.add(name+".bias", &n.Bias, int64(width))
}

// param is one named weight: its HF checkpoint key, its shape and where it lives.
type param struct {
	Name  string
	Shape []int64
	ref   **torch.Tensor
}

// Tensor returns the parameter's current tensor (nil before it is loaded or made).
func (p param) Tensor() *torch.Tensor { return *p.ref }

func (p param) set(t *torch.Tensor) { *p.ref = t }

// paramSet lists a model's parameters in a fixed order. A tensor shared by two names
// (BLIP's encoder and decoder during pretraining) is listed once, under its first name,
// and the second name is kept as an alias.
type paramSet struct {
	list    []param
	byName  map[string]int
	aliases map[string]string // alias name → owner name
	err     error             // a name registered twice: a bug in this package
}

func newParamSet() *paramSet {
	return &paramSet{byName: map[string]int{}, aliases: map[string]string{}}
}

func (ps *paramSet) add(name string, ref **torch.Tensor, shape ...int64) {
	for i, p := range ps.list {
		if p.ref == ref {
			ps.aliases[name] = ps.list[i].Name
			return
		}
	}
	if _, dup := ps.byName[name]; dup {
		if ps.err == nil {
			ps.err = fmt.Errorf("blip: parameter %s registered twice", name)
		}
		return
	}
	ps.byName[name] = len(ps.list)
	ps.list = append(ps.list, param{Name: name, Shape: shape, ref: ref})
}

func (ps *paramSet) get(name string) (param, bool) {
	if owner, ok := ps.aliases[name]; ok {
		name = owner
	}
	i, ok := ps.byName[name]
	if !ok {
		return param{}, false
	}
	return ps.list[i], true
}

func numel(shape []int64) int64 {
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	return n
}

// splitHeads turns [B, T, H·d] into [B, H, T, d].
func splitHeads(x *torch.Tensor, heads int) *torch.Tensor {
	s := x.Shape()
	if len(s) != 3 {
		return torch.Failed(fmt.Errorf("split heads: want a [B,T,D] tensor, got shape %v", s))
	}
	return x.View(s[0], s[1], int64(heads), s[2]/int64(heads)).Transpose(1, 2)
}

// mergeHeads turns [B, H, T, d] into [B, T, H·d].
func mergeHeads(x *torch.Tensor) *torch.Tensor {
	s := x.Shape()
	if len(s) != 4 {
		return torch.Failed(fmt.Errorf("merge heads: want a [B,H,T,d] tensor, got shape %v", s))
	}
	return x.Transpose(1, 2).Reshape(s[0], s[2], s[1]*s[3])
}
