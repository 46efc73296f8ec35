package blip

import (
	"fmt"

	"github.com/capfilt/capfilt/torch"
)

// Pretrainer holds what BLIP pretraining keeps between steps besides the model and the
// optimizer: the momentum model and the feature queues. Its Losses are one step's
// ITC + ITM + LM (blip-spec.md §6).
type Pretrainer struct {
	Model    *Model // every part, the decoder sharing the encoder's weights but self-attention
	Momentum *Momentum
	Queues   *FeatureQueues
	// Gather joins the momentum features of every process for the queue write; nil is
	// one process. In-batch ITC columns and hard negatives stay per process.
	Gather Gatherer
	// Negatives draws the ITM hard negatives (a CPU generator, whatever the device);
	// nil uses libtorch's default CPU generator.
	Negatives *torch.Generator
}

// NewPretrainer makes the momentum copy of m and queues of queueSize columns drawn from
// g (nil: the default generator). m must have every part with shared text weights.
func NewPretrainer(m *Model, queueSize int, g *torch.Generator) (*Pretrainer, error) {
	if err := checkPretrainModel(m); err != nil {
		return nil, err
	}
	q, err := NewFeatureQueues(m.Config.EmbedDim, queueSize, false, g, m.device)
	if err != nil {
		return nil, err
	}
	return newPretrainer(m, q)
}

// newPretrainer pairs m with its momentum copy and the queues q (which it then owns).
func newPretrainer(m *Model, q *FeatureQueues) (*Pretrainer, error) {
	mo, err := NewMomentum(m, MomentumRate)
	if err != nil {
		q.Close()
		return nil, err
	}
	return &Pretrainer{Model: m, Momentum: mo, Queues: q}, nil
}

func checkPretrainModel(m *Model) error {
	if m.TextDecoder == nil || m.ITMHead == nil || m.Temp == nil || !m.SharedText {
		return fmt.Errorf("blip: pretraining needs every part with the decoder sharing the encoder's weights (blip.AllParts)")
	}
	return nil
}

// Close frees the momentum model and the queues (not the model).
func (p *Pretrainer) Close() {
	p.Momentum.Close()
	p.Queues.Close()
}

// stepTrace keeps a step's intermediate tensors for checks against the reference.
type stepTrace struct {
	simI2T, simT2I         *torch.Tensor
	weightsT2I, weightsI2T *torch.Tensor // ITM sampling weights
	itmLogits              *torch.Tensor
	negatives              HardNegatives // the ones used, drawn or fixed
}

// Losses runs one pretraining step's forward passes and returns its losses; the caller
// zeroes the gradients, calls Total.Backward and steps the optimizer. On the way it
// clamps temp, updates the momentum model (before its forward) and writes the momentum
// features to the queues (after ITC). Every tensor it makes belongs to s.
func (p *Pretrainer) Losses(s *torch.Scope, b Batch, o StepOptions) (Losses, error) {
	l, _, err := p.losses(s, b, o)
	return l, err
}

func (p *Pretrainer) losses(s *torch.Scope, b Batch, o StepOptions) (Losses, *stepTrace, error) {
	m := p.Model
	n, err := m.checkBatch(b, false)
	if err != nil {
		return Losses{}, nil, err
	}
	if n < 2 {
		return Losses{}, nil, fmt.Errorf("blip: ITM hard negatives need a batch of at least 2, got %d", n)
	}
	pixels, ids, mask := s.Ref(b.Pixels), onDevice(s, b.IDs, m.device), onDevice(s, b.Mask, m.device)
	positives := diagonalTargets(s, n, n+p.Queues.Size(), m.device)
	itc, err := contrastive(s, m, p.Momentum, p.Queues, pixels, ids, mask, positives, o)
	if err != nil {
		return Losses{}, nil, err
	}
	if err := p.Queues.Enqueue(itc.imageFeatM, itc.textFeatM, nil, p.Gather); err != nil {
		return Losses{}, nil, err
	}
	tr := &stepTrace{simI2T: itc.simI2T, simT2I: itc.simT2I}
	torch.NoGrad(func() {
		// The online similarities against the batch's momentum features.
		diag := diagonalTargets(s, n, n, m.device).NeScalar(0)
		tr.weightsT2I = hardNegativeWeights(itc.simT2I.Narrow(1, 0, n), diag, hardNegativeFloor)
		tr.weightsI2T = hardNegativeWeights(itc.simI2T.Narrow(1, 0, n), diag, hardNegativeFloor)
	})
	negImages, negTexts, err := negatives(s, o, tr.weightsT2I, tr.weightsI2T, p.Negatives, m.device)
	if err != nil {
		return Losses{}, nil, err
	}
	tr.negatives = HardNegatives{Images: negImages, Texts: negTexts}
	cand := itmCandidates{image: itc.image, ids: ids, mask: mask}
	itm, logits, err := m.itmLoss(s, ids, mask, itc.image, cand, negImages, negTexts, o.Train)
	if err != nil {
		return Losses{}, nil, err
	}
	tr.itmLogits = logits
	lm, err := m.lmLoss(s, ids, mask, itc.image, 0, o.Train)
	if err != nil {
		return Losses{}, nil, err
	}
	total := itc.loss.Add(itm).Add(lm)
	return Losses{ITC: itc.loss, ITM: itm, LM: lm, Total: total}, tr, total.Err()
}

// onDevice brings an input into s on dev.
func onDevice(s *torch.Scope, t *torch.Tensor, dev torch.Device) *torch.Tensor {
	r := s.Ref(t)
	if r.Device() != dev {
		return r.ToDevice(dev)
	}
	return r
}
