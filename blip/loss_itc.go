package blip

import (
	"fmt"

	"github.com/capfilt/capfilt/torch"
)

// itcStep is the contrastive half of a training step, kept for the ITM and LM halves.
type itcStep struct {
	image                 *torch.Tensor // online ViT output [B, N, Dv]: the cross-attention memory
	imageFeat, textFeat   *torch.Tensor // online ITC features [B, E]
	imageFeatM, textFeatM *torch.Tensor // momentum ITC features [B, E]
	temp                  *torch.Tensor // the clamped temperature (in autograd)
	simI2T, simT2I        *torch.Tensor // [B, B+Q]: online vs [momentum batch | queue] / temp
	loss                  *torch.Tensor
}

// contrastive computes ITC with momentum distillation (spec §6):
//
//	sim_i2t = f_img · [f_txt_m | queue_txt] / temp, sim_t2i symmetric;
//	targets = α·softmax(sim_m) + (1−α)·positives;  ITC = ½(CE(sim_i2t) + CE(sim_t2i))
//
// with the momentum update applied before the momentum forward. positives [B, B+Q] are
// the hard targets (the diagonal in pretraining, same-image entries in retrieval). The
// queues are only read: the caller writes them after this loss.
func contrastive(s *torch.Scope, m *Model, mo *Momentum, q *FeatureQueues, pixels, ids, mask, positives *torch.Tensor,
	o StepOptions) (*itcStep, error) {
	if err := m.ClampTemp(); err != nil {
		return nil, err
	}
	st := &itcStep{temp: s.Ref(m.Temp)}
	st.image = m.EncodeImage(pixels, o.Train)
	st.imageFeat = m.ImageFeatures(st.image)
	st.textFeat = m.TextFeatures(m.TextUnimodal(ids, mask, o.Train))
	var targetsI2T, targetsT2I, imageAll, textAll *torch.Tensor
	var err error
	torch.NoGrad(func() {
		if err = mo.Update(); err != nil {
			return
		}
		st.imageFeatM, st.textFeatM = mo.features(pixels, ids, mask, o.Train)
		imageAll = torch.Cat([]*torch.Tensor{st.imageFeatM.Transpose(0, 1), s.Ref(q.Image)}, 1)
		textAll = torch.Cat([]*torch.Tensor{st.textFeatM.Transpose(0, 1), s.Ref(q.Text)}, 1)
		hard := positives.MulScalar(1 - o.Alpha)
		targetsI2T = st.imageFeatM.MatMul(textAll).Div(st.temp).Softmax(1).MulScalar(o.Alpha).Add(hard)
		targetsT2I = st.textFeatM.MatMul(imageAll).Div(st.temp).Softmax(1).MulScalar(o.Alpha).Add(hard)
	})
	if err != nil {
		return nil, err
	}
	st.simI2T = st.imageFeat.MatMul(textAll).Div(st.temp)
	st.simT2I = st.textFeat.MatMul(imageAll).Div(st.temp)
	st.loss = torch.SoftCrossEntropy(st.simI2T, targetsI2T).Add(torch.SoftCrossEntropy(st.simT2I, targetsT2I)).MulScalar(0.5)
	if err := st.loss.Err(); err != nil {
		return nil, fmt.Errorf("blip: ITC: %w", err)
	}
	return st, nil
}

// diagonalTargets is pretraining's hard target: text b is image b's only positive among
// the first B columns (the batch); the queue columns are all negatives.
func diagonalTargets(s *torch.Scope, b, cols int64, dev torch.Device) *torch.Tensor {
	rows := s.Track(torch.Arange(0, float64(b), 1, torch.Int64, dev)).Unsqueeze(1)
	all := s.Track(torch.Arange(0, float64(cols), 1, torch.Int64, dev)).Unsqueeze(0)
	return rows.Eq(all).ToDType(torch.Float32)
}

// sameImageTargets is retrieval's hard target: every batch or queue entry showing the
// row's image, the row normalised to sum 1. ids [B], queued [1, Q].
func sameImageTargets(s *torch.Scope, ids, queued *torch.Tensor) *torch.Tensor {
	b := ids.Size(0)
	all := torch.Cat([]*torch.Tensor{ids.View(1, b), s.Ref(queued)}, 1)
	pos := ids.View(b, 1).Eq(all).ToDType(torch.Float32)
	return pos.Div(pos.Sum(true, 1))
}
