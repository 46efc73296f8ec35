package blip

import (
	"fmt"

	"github.com/capfilt/capfilt/torch"
)

// Training constants of the original (blip-spec.md §5–§7).
const (
	// MomentumRate m of θm ← m·θm + (1−m)·θ.
	MomentumRate = 0.995
	// LabelSmoothing ε of the LM loss.
	LabelSmoothing = 0.1
	// WeightDecay is AdamW's, on every parameter.
	WeightDecay = 0.05
	// TempMin and TempMax bound the ITC temperature at the start of every step.
	TempMin, TempMax = 0.001, 0.5
	// hardNegativeFloor is added to the pretraining ITM sampling weights (not retrieval's).
	hardNegativeFloor = 1e-4
	// ignoreIndex marks LM targets that count for nothing (pads, prompt).
	ignoreIndex = -100
)

// Gatherer joins a tensor from every process of a data-parallel run along dim 0, in rank
// order. A nil Gatherer is one process. The training code gathers only what the
// original gathers: the momentum features (and image ids) written to the queues, and for
// retrieval's NegativeAllRank the hard-negative candidates.
type Gatherer interface {
	// AllGather returns the concatenation over ranks; no gradient flows through it.
	AllGather(t *torch.Tensor) (*torch.Tensor, error)
	Rank() int
	WorldSize() int
}

// GradGatherer also gathers with gradients: each rank's slice of the gradient of the
// result flows back to that rank's input (summed over ranks), as BLIP's GatherLayer.
// Retrieval finetuning with NegativeAllRank needs it for the image embeddings.
type GradGatherer interface {
	Gatherer
	AllGatherWithGrad(t *torch.Tensor) (*torch.Tensor, error)
}

func worldSize(g Gatherer) int {
	if g == nil {
		return 1
	}
	return g.WorldSize()
}

// Batch is one step's inputs.
type Batch struct {
	Pixels *torch.Tensor // [B,3,S,S] normalised, S the config's image size
	IDs    *torch.Tensor // [B,T] int64 as the tokenizer gives them ([CLS] first)
	Mask   *torch.Tensor // [B,T] 1 = real token
	// ImageIDs [B] int64 names each row's image (retrieval finetune: rows and queue
	// entries with the same id are all positives). Unused in pretraining.
	ImageIDs *torch.Tensor
}

// HardNegatives fixes the ITM negatives instead of drawing them (checks against a
// reference). Images[b] is the batch index of text b's negative image, Texts[b] that
// of image b's negative text.
type HardNegatives struct {
	Images, Texts *torch.Tensor // [B] int64
}

// StepOptions are what changes from step to step.
type StepOptions struct {
	// Alpha weighs the momentum model's soft targets in ITC (PretrainAlpha,
	// RetrievalAlpha); 0 gives plain one-hot (or same-image) targets.
	Alpha float64
	// Train turns dropout (and ViT drop path) on. Off, the step is the "eval math" the
	// reference checks; the momentum passes follow the same switch, as in the original.
	Train bool
	// Negatives fixes the ITM hard negatives; nil draws them.
	Negatives *HardNegatives
}

// Losses are one step's scalar losses; a loss the objective does not have is nil. They
// belong to the scope given to the objective.
type Losses struct {
	ITC, ITM, LM, Total *torch.Tensor
}

// PretrainAlpha is the pretraining distillation weight: alpha ramped linearly over the
// first two epochs from 0 at the very first step (alpha·min(1, (epoch·n+i)/(2n))).
func PretrainAlpha(alpha float64, epoch, step, stepsPerEpoch int) float64 {
	if stepsPerEpoch <= 0 {
		return alpha
	}
	return alpha * min(1, float64(epoch*stepsPerEpoch+step)/float64(2*stepsPerEpoch))
}

// RetrievalAlpha is the retrieval finetune's: ramped over epoch 0 only.
func RetrievalAlpha(alpha float64, epoch, step, stepsPerEpoch int) float64 {
	if epoch > 0 || stepsPerEpoch <= 0 {
		return alpha
	}
	return alpha * min(1, float64(step)/float64(stepsPerEpoch))
}

// SetTrainable turns gradient tracking of every parameter on or off.
func (m *Model) SetTrainable(on bool) error {
	for _, p := range m.ps.list {
		t := p.Tensor()
		if t == nil {
			return fmt.Errorf("blip: parameter %s has no value", p.Name)
		}
		if err := t.SetRequiresGrad(on); err != nil {
			return fmt.Errorf("blip: %s: %w", p.Name, err)
		}
	}
	return nil
}

// TrainableParams lists every parameter once (a tensor shared by encoder and decoder
// once, under its first name), in the model's fixed order: the order optimizer state is
// saved in.
func (m *Model) TrainableParams() []*torch.Tensor {
	out := make([]*torch.Tensor, 0, len(m.ps.list))
	for _, p := range m.ps.list {
		out = append(out, p.Tensor())
	}
	return out
}

// AdamWGroups is BLIP's optimizer setup: one group holding every parameter (temp
// included), weight decay on all of them, torch's betas and eps.
func (m *Model) AdamWGroups(lr, weightDecay float64) []torch.ParamGroup {
	return []torch.ParamGroup{torch.DefaultParamGroup(m.TrainableParams(), lr, weightDecay)}
}

// ClampTemp keeps the ITC temperature in [TempMin, TempMax], in place, outside autograd;
// every objective does it at the start of its step, as the original.
func (m *Model) ClampTemp() error {
	if m.Temp == nil {
		return fmt.Errorf("blip: this model has no temp parameter (ITC training needs one)")
	}
	return m.Temp.ClampInPlace(TempMin, TempMax)
}

// checkBatch validates the shapes every objective relies on.
func (m *Model) checkBatch(b Batch, needImageIDs bool) (int64, error) {
	if b.Pixels == nil || b.IDs == nil || b.Mask == nil {
		return 0, fmt.Errorf("blip: a training batch needs pixels, ids and a mask")
	}
	s := b.IDs.Shape()
	if len(s) != 2 {
		return 0, fmt.Errorf("blip: input ids shape %v, want [B, T]", s)
	}
	n := s[0]
	if err := b.Mask.MustShape("blip: attention mask", n, s[1]); err != nil {
		return 0, err
	}
	size := int64(m.Config.Vision.ImageSize)
	// Training at another size would interpolate the position embedding on the host,
	// outside autograd: it would silently stop learning.
	if err := b.Pixels.MustShape("blip: pixels", n, 3, size, size); err != nil {
		return 0, fmt.Errorf("%w (training runs at the config's image size %d)", err, size)
	}
	if needImageIDs {
		if b.ImageIDs == nil {
			return 0, fmt.Errorf("blip: retrieval finetuning needs the batch's image ids")
		}
		if err := b.ImageIDs.MustShape("blip: image ids", n); err != nil {
			return 0, err
		}
	}
	return n, nil
}
