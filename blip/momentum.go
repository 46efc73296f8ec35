package blip

import (
	"fmt"
	"strings"

	"github.com/capfilt/capfilt/torch"
)

// Momentum is the slowly moving copy of the ITC towers (ViT, vision_proj, text encoder,
// text_proj) whose features are the ITC keys, the queue entries and the distillation
// targets. It is updated inside every step, before its forward pass, and never trained.
type Momentum struct {
	Model *Model // parts Vision, TextEncoder (cross attention included, as the original), ITC
	Rate  float64

	online *Model
}

// NewMomentum copies online's towers (copies start equal) on online's device.
func NewMomentum(online *Model, rate float64) (*Momentum, error) {
	if online.VisionModel == nil || online.TextEncoder == nil || online.VisionProj == nil {
		return nil, fmt.Errorf("blip: a momentum model needs the vision model, the text encoder and the ITC projections")
	}
	m, err := New(online.Config, Parts{Vision: true, TextEncoder: true, ITC: true})
	if err != nil {
		return nil, err
	}
	for _, p := range m.ps.list {
		src, ok := online.Param(p.Name)
		if !ok || src == nil {
			m.Close()
			return nil, fmt.Errorf("blip: momentum copy: the online model has no %s", p.Name)
		}
		c := src.DetachedClone()
		if err := c.Err(); err != nil {
			m.Close()
			return nil, fmt.Errorf("blip: momentum copy of %s: %w", p.Name, err)
		}
		p.set(c)
	}
	m.device, m.dtype = online.device, online.dtype
	return &Momentum{Model: m, Rate: rate, online: online}, nil
}

// Update applies θm ← m·θm + (1−m)·θ to every momentum parameter in one call. The online
// tensors are looked up by name each time, so moving the online model is safe.
func (mo *Momentum) Update() error {
	dst := make([]*torch.Tensor, 0, len(mo.Model.ps.list))
	src := make([]*torch.Tensor, 0, len(mo.Model.ps.list))
	for _, p := range mo.Model.ps.list {
		t, ok := mo.online.Param(p.Name)
		if !ok {
			return fmt.Errorf("blip: momentum update: the online model has no %s", p.Name)
		}
		dst, src = append(dst, p.Tensor()), append(src, t)
	}
	if err := torch.EMA(dst, src, mo.Rate); err != nil {
		return fmt.Errorf("blip: momentum update: %w", err)
	}
	return nil
}

// features runs the momentum towers without autograd: normalised ITC features of the
// image and text [B, E].
func (mo *Momentum) features(pixels, ids, mask *torch.Tensor, train bool) (img, txt *torch.Tensor) {
	m := mo.Model
	img = m.ImageFeatures(m.EncodeImage(pixels, train))
	txt = m.TextFeatures(m.TextUnimodal(ids, mask, train))
	return img, txt
}

// MomentumName is the checkpoint name of a momentum parameter: the first component gets
// "_m" as the original's (visual_encoder_m.*, text_encoder_m.*, vision_proj_m.*).
func MomentumName(name string) string {
	first, rest, _ := strings.Cut(name, ".")
	return first + "_m." + rest
}

// State maps every momentum parameter under its MomentumName (views of the live
// tensors: write them out, do not free them).
func (mo *Momentum) State() map[string]*torch.Tensor {
	out := map[string]*torch.Tensor{}
	for _, p := range mo.Model.ps.list {
		out[MomentumName(p.Name)] = p.Tensor()
	}
	return out
}

// SetState copies values saved by State back (resume); every name must be present with
// its shape.
func (mo *Momentum) SetState(state map[string]*torch.Tensor) error {
	for _, p := range mo.Model.ps.list {
		name := MomentumName(p.Name)
		t, ok := state[name]
		if !ok {
			return fmt.Errorf("blip: momentum state has no %s", name)
		}
		if err := t.MustShape("blip: momentum state "+name, p.Shape...); err != nil {
			return err
		}
		if err := p.Tensor().CopyFrom(t); err != nil {
			return fmt.Errorf("blip: momentum state %s: %w", name, err)
		}
	}
	return nil
}

// Close frees the momentum weights (not the online model).
func (mo *Momentum) Close() { mo.Model.Close() }
