package blip

import (
	"fmt"

	"github.com/capfilt/capfilt/torch"
)

// DefaultQueueSize is the original's feature-queue length.
const DefaultQueueSize = 57600

// LossInputs are the inputs of `capfilt model loss`, named as in its input file.
type LossInputs struct {
	PixelValues   *torch.Tensor // inputs.pixel_values [B,3,S,S]
	InputIDs      *torch.Tensor // inputs.input_ids [B,T] int64, [CLS] first
	AttentionMask *torch.Tensor // inputs.attention_mask [B,T]
	// NegImageIdx and NegTextIdx (inputs.neg_image_idx, inputs.neg_text_idx, [B] int64,
	// both or neither) fix the ITM hard negatives; absent, they are drawn from Seed.
	NegImageIdx, NegTextIdx *torch.Tensor
	// ImageQueue and TextQueue (inputs.image_queue, inputs.text_queue, [E,Q], both or
	// neither) are the queues before the step; absent, DefaultQueueSize columns are
	// drawn from Seed as at the start of training.
	ImageQueue, TextQueue *torch.Tensor
	Alpha                 float64 // inputs.alpha
	Seed                  uint64
}

// ReferenceLosses runs one pretraining step in eval math (no dropout) with the momentum
// model a copy of m, as at the start of training, and returns under the names other
// implementations are compared on:
//
//	loss.itc, loss.itm, loss.lm, loss.total, itm.neg_image_idx, itm.neg_text_idx,
//	queue.image, queue.text (after the step's write)
//
// and with grads, grad.NAME for every parameter NAME of m.Params() (a tensor the decoder
// shares with the encoder once, under its text_encoder name). m's weights are not
// changed, but temp is clamped into [0.001, 0.5] as every step does. The tensors belong
// to s.
func (m *Model) ReferenceLosses(s *torch.Scope, in LossInputs, grads bool) (map[string]*torch.Tensor, error) {
	if (in.NegImageIdx == nil) != (in.NegTextIdx == nil) {
		return nil, fmt.Errorf("blip: give both fixed negative lists (neg_image_idx, neg_text_idx) or neither")
	}
	if (in.ImageQueue == nil) != (in.TextQueue == nil) {
		return nil, fmt.Errorf("blip: give both queues (image_queue, text_queue) or neither")
	}
	g := torch.NewGenerator(in.Seed)
	defer g.Close()
	if grads {
		if err := m.SetTrainable(true); err != nil {
			return nil, err
		}
		defer m.SetTrainable(false)
	}
	if err := checkPretrainModel(m); err != nil {
		return nil, err
	}
	var q *FeatureQueues
	if in.ImageQueue != nil {
		e := int64(m.Config.EmbedDim)
		if err := in.ImageQueue.MustShape("blip: image_queue", e, -1); err != nil {
			return nil, err
		}
		if err := in.TextQueue.MustShape("blip: text_queue", in.ImageQueue.Shape()...); err != nil {
			return nil, err
		}
		q = &FeatureQueues{Image: ownedCopy(in.ImageQueue, m.device), Text: ownedCopy(in.TextQueue, m.device)}
	} else {
		var err error
		if q, err = NewFeatureQueues(m.Config.EmbedDim, DefaultQueueSize, false, g, m.device); err != nil {
			return nil, err
		}
	}
	p, err := newPretrainer(m, q)
	if err != nil {
		return nil, err
	}
	defer p.Close()
	p.Negatives = g
	o := StepOptions{Alpha: in.Alpha}
	if in.NegImageIdx != nil {
		o.Negatives = &HardNegatives{Images: in.NegImageIdx, Texts: in.NegTextIdx}
	}
	l, tr, err := p.losses(s, Batch{Pixels: in.PixelValues, IDs: in.InputIDs, Mask: in.AttentionMask}, o)
	if err != nil {
		return nil, err
	}
	out := map[string]*torch.Tensor{"loss.itc": l.ITC, "loss.itm": l.ITM, "loss.lm": l.LM, "loss.total": l.Total,
		"queue.image": s.Ref(p.Queues.Image).DetachedClone(), "queue.text": s.Ref(p.Queues.Text).DetachedClone()}
	neg := tr.negatives
	out["itm.neg_image_idx"], out["itm.neg_text_idx"] = neg.Images, neg.Texts
	if grads {
		if err := l.Total.Backward(); err != nil {
			return nil, fmt.Errorf("blip: backward: %w", err)
		}
		for _, prm := range m.ps.list {
			gr, err := prm.Tensor().Grad()
			if err != nil || gr == nil {
				return nil, fmt.Errorf("blip: %s got no gradient (%v)", prm.Name, err)
			}
			out["grad."+prm.Name] = s.Track(gr).DetachedClone()
			if err := prm.Tensor().ZeroGrad(); err != nil {
				return nil, err
			}
		}
	}
	for name, t := range out {
		if err := t.Err(); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if t.DType() == torch.Int64 {
			out[name] = t.ToDevice(torch.CPU)
		} else {
			out[name] = t.Detach().To(torch.CPU, torch.Float32)
		}
	}
	return out, nil
}

// ownedCopy is a copy of t on dev, outside autograd and any scope (the caller frees it).
func ownedCopy(t *torch.Tensor, dev torch.Device) *torch.Tensor {
	c := t.DetachedClone()
	if c.Device() == dev {
		return c
	}
	moved := c.ToDevice(dev)
	c.Free()
	return moved
}
