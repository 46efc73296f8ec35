package trainer

import (
	"math"

	"github.com/capfilt/capfilt/blip"
)

// LearningRate is the rate of step (0-based, within the epoch) of epoch, as BLIP's
// scripts set it (blip-spec §7).
//
// Pretraining (pretrain.py): each epoch starts at max(MinLR, LR·DecayRate^epoch)
// (step_lr_schedule); in epoch 0 the first WarmupSteps steps instead take
// min(LR, WarmupLR + (LR−WarmupLR)·step/WarmupSteps) (warmup_lr_schedule), and since
// the original sets no rate after the warm-up, epoch 0's later steps keep the last
// warm-up value. With an epoch 0 shorter than the warm-up, the warm-up never ends.
//
// Finetuning (train_caption.py, train_retrieval.py): one rate per epoch,
// (LR−MinLR)·½(1+cos(π·epoch/Epochs)) + MinLR (cosine_lr_schedule), no warm-up.
func (c Config) LearningRate(epoch, step int) float64 {
	if c.Task != TaskPretrain {
		return (c.LR-c.MinLR)*0.5*(1+math.Cos(math.Pi*float64(epoch)/float64(c.Epochs))) + c.MinLR
	}
	if epoch == 0 && c.WarmupSteps > 0 {
		i := min(step, c.WarmupSteps-1)
		return min(c.LR, c.WarmupLR+(c.LR-c.WarmupLR)*float64(i)/float64(c.WarmupSteps))
	}
	return max(c.MinLR, c.LR*math.Pow(c.DecayRate, float64(epoch)))
}

// alpha is the distillation weight at step of epoch: pretraining ramps it over two
// epochs, retrieval over the first; captioning has none.
func (c Config) alpha(epoch, step, stepsPerEpoch int) float64 {
	switch c.Task {
	case TaskPretrain:
		return blip.PretrainAlpha(c.Alpha, epoch, step, stepsPerEpoch)
	case TaskRetrieval:
		return blip.RetrievalAlpha(c.Alpha, epoch, step, stepsPerEpoch)
	}
	return 0
}
