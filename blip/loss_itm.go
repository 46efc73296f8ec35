package blip

import (
	"fmt"

	"github.com/capfilt/capfilt/torch"
)

// itmCandidates are the pairs hard negatives are drawn from: the batch, or in
// retrieval's NegativeAllRank the batches of every process.
type itmCandidates struct {
	image     *torch.Tensor // [C, N, Dv]
	ids, mask *torch.Tensor // [C, T]
}

// hardNegativeWeights turns similarities [B, C] into sampling weights: softmax over each
// row, plus floor, and 0 wherever exclude is true (the positive pair, or every pair of
// the same image).
func hardNegativeWeights(sim, exclude *torch.Tensor, floor float64) *torch.Tensor {
	w := sim.Softmax(1)
	if floor != 0 {
		w = w.AddScalar(floor)
	}
	return w.MaskedFill(exclude, 0)
}

// drawNegatives draws one candidate per row of weights [B, C] with g (a CPU generator;
// nil = libtorch's default CPU one): the draws are the same on every device. It returns
// [B] int64 indices on dev.
func drawNegatives(weights *torch.Tensor, g *torch.Generator, what string, dev torch.Device) (*torch.Tensor, error) {
	w := weights.To(torch.CPU, torch.Float32)
	vals, err := w.Float32s()
	if err != nil {
		return nil, fmt.Errorf("blip: ITM %s weights: %w", what, err)
	}
	c := int(w.Size(1))
	for r := 0; r*c < len(vals); r++ {
		var sum float64
		for _, v := range vals[r*c : (r+1)*c] {
			sum += float64(v)
		}
		if !(sum > 0) {
			return nil, fmt.Errorf("blip: ITM %s: row %d has no candidate to draw (every candidate excluded: a batch of one image?)", what, r)
		}
	}
	idx := w.Multinomial(1, false, g).View(-1).ToDevice(dev)
	return idx, idx.Err()
}

// checkNegatives validates fixed negatives: [B] int64 indices of candidates.
func checkNegatives(s *torch.Scope, idx *torch.Tensor, b, candidates int64, what string, dev torch.Device) (*torch.Tensor, error) {
	if err := idx.MustShape("blip: fixed "+what+" negatives", b); err != nil {
		return nil, err
	}
	vals, err := idx.Int64s()
	if err != nil {
		return nil, fmt.Errorf("blip: fixed %s negatives: %w", what, err)
	}
	for i, v := range vals {
		if v < 0 || v >= candidates {
			return nil, fmt.Errorf("blip: fixed %s negative %d of row %d is outside the %d candidates", what, v, i, candidates)
		}
	}
	return s.Ref(idx).ToDevice(dev), nil
}

// negatives returns for each text its negative image and for each image its negative
// text: fixed ones when o has them, else drawn (images first, then texts).
func negatives(s *torch.Scope, o StepOptions, wT2I, wI2T *torch.Tensor, g *torch.Generator, dev torch.Device) (images, texts *torch.Tensor, err error) {
	b, c := wT2I.Size(0), wT2I.Size(1)
	if o.Negatives != nil {
		if images, err = checkNegatives(s, o.Negatives.Images, b, c, "image", dev); err != nil {
			return nil, nil, err
		}
		texts, err = checkNegatives(s, o.Negatives.Texts, b, c, "text", dev)
		return images, texts, err
	}
	if images, err = drawNegatives(wT2I, g, "negative images", dev); err != nil {
		return nil, nil, err
	}
	texts, err = drawNegatives(wI2T, g, "negative texts", dev)
	return images, texts, err
}

// itmLoss is the matching loss over 3B pairs (spec §6): B positives, B (text b, its
// negative image), B (image b's negative text, image b); labels 1 for the first B, 0
// for the rest; cross-entropy. It returns the loss and the logits [3B, 2].
func (m *Model) itmLoss(s *torch.Scope, ids, mask, image *torch.Tensor, cand itmCandidates, negImages, negTexts *torch.Tensor,
	train bool) (*torch.Tensor, *torch.Tensor, error) {
	b := ids.Size(0)
	pos := m.ITMLogits(ids, mask, image, 1, train)
	idsAll := torch.Cat([]*torch.Tensor{ids, cand.ids.IndexSelect(0, negTexts)}, 0)
	maskAll := torch.Cat([]*torch.Tensor{mask, cand.mask.IndexSelect(0, negTexts)}, 0)
	imageAll := torch.Cat([]*torch.Tensor{cand.image.IndexSelect(0, negImages), image}, 0)
	neg := m.ITMLogits(idsAll, maskAll, imageAll, 1, train)
	logits := torch.Cat([]*torch.Tensor{pos, neg}, 0)
	labels := make([]int64, 3*b)
	for i := int64(0); i < b; i++ {
		labels[i] = 1
	}
	target := s.Track(torch.FromInt64(labels, 3*b)).ToDevice(logits.Device())
	loss := torch.CrossEntropy(logits, target, ignoreIndex, 0, torch.ReduceMean)
	if err := loss.Err(); err != nil {
		return nil, nil, fmt.Errorf("blip: ITM: %w", err)
	}
	return loss, logits, nil
}
