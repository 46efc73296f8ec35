package blip

import (
	"fmt"

	"github.com/capfilt/capfilt/torch"
)

// lmLoss is the decoder's language-modelling loss (spec §6): [DEC] first, targets the ids
// with pads (and the first promptLen positions) set to -100, the logits at t predicting
// token t+1, cross-entropy with label smoothing 0.1 averaged over the remaining targets.
func (m *Model) lmLoss(s *torch.Scope, ids, mask, image *torch.Tensor, promptLen int, train bool) (*torch.Tensor, error) {
	t := ids.Size(1)
	if t < 2 || int64(promptLen) >= t-1 {
		return nil, fmt.Errorf("blip: LM: %d tokens leave nothing to predict after a prompt of %d", t, promptLen)
	}
	dec := withFirstToken(ids, m.Config.Text.BosID)
	targets := dec.MaskedFill(dec.EqScalar(float64(m.Config.Text.PadID)), ignoreIndex)
	if promptLen > 0 {
		if err := targets.Narrow(1, 0, int64(promptLen)).Fill(ignoreIndex); err != nil {
			return nil, fmt.Errorf("blip: LM targets: %w", err)
		}
	}
	logits := m.DecoderLogits(ids, mask, image, 1, train)
	v := logits.Size(2)
	shifted := logits.Narrow(1, 0, t-1).Reshape(-1, v)
	labels := targets.Narrow(1, 1, t-1).Reshape(-1)
	loss := torch.CrossEntropy(shifted, labels, ignoreIndex, LabelSmoothing, torch.ReduceMean)
	if err := loss.Err(); err != nil {
		return nil, fmt.Errorf("blip: LM: %w", err)
	}
	return loss, nil
}
