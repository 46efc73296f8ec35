package blip

import (
	"fmt"

	"github.com/capfilt/capfilt/torch"
)

// RetrievalTrainer finetunes the filter (blip_retrieval: ITC + ITM, no LM). Unlike
// pretraining, every batch and queue entry showing the same image is a positive, and
// hard negatives never pair a text with an image of its own image id.
type RetrievalTrainer struct {
	Model    *Model // vision, text encoder, projections, ITM head, temp
	Momentum *Momentum
	Queues   *FeatureQueues // with image ids
	Gather   Gatherer
	// NegativeAllRank draws hard negatives from the batches of every process (COCO:
	// true, Flickr: false); it needs a GradGatherer when there is more than one.
	NegativeAllRank bool
	Negatives       *torch.Generator // hard-negative draws (CPU); nil = the default
}

// NewRetrievalTrainer makes the momentum copy of m and queues (with an id queue) of
// queueSize columns drawn from g.
func NewRetrievalTrainer(m *Model, queueSize int, g *torch.Generator) (*RetrievalTrainer, error) {
	if m.ITMHead == nil || m.Temp == nil {
		return nil, fmt.Errorf("blip: retrieval finetuning needs the ITM head and temp")
	}
	mo, err := NewMomentum(m, MomentumRate)
	if err != nil {
		return nil, err
	}
	q, err := NewFeatureQueues(m.Config.EmbedDim, queueSize, true, g, m.device)
	if err != nil {
		mo.Close()
		return nil, err
	}
	return &RetrievalTrainer{Model: m, Momentum: mo, Queues: q}, nil
}

// Close frees the momentum model and the queues.
func (r *RetrievalTrainer) Close() {
	r.Momentum.Close()
	r.Queues.Close()
}

// Losses runs one retrieval-finetune step (ITC, ITM; Total = ITC + ITM). b.ImageIDs is
// required.
func (r *RetrievalTrainer) Losses(s *torch.Scope, b Batch, o StepOptions) (Losses, error) {
	l, _, err := r.losses(s, b, o)
	return l, err
}

func (r *RetrievalTrainer) losses(s *torch.Scope, b Batch, o StepOptions) (Losses, *stepTrace, error) {
	m := r.Model
	n, err := m.checkBatch(b, true)
	if err != nil {
		return Losses{}, nil, err
	}
	if r.Queues.IDs == nil {
		return Losses{}, nil, fmt.Errorf("blip: retrieval finetuning needs queues with image ids")
	}
	pixels, ids, mask := s.Ref(b.Pixels), onDevice(s, b.IDs, m.device), onDevice(s, b.Mask, m.device)
	imageIDs := onDevice(s, b.ImageIDs, m.device)
	positives := sameImageTargets(s, imageIDs, r.Queues.IDs)
	itc, err := contrastive(s, m, r.Momentum, r.Queues, pixels, ids, mask, positives, o)
	if err != nil {
		return Losses{}, nil, err
	}
	if err := r.Queues.Enqueue(itc.imageFeatM, itc.textFeatM, imageIDs, r.Gather); err != nil {
		return Losses{}, nil, err
	}
	cand, candIDs, candImageFeat, candTextFeat, err := r.candidates(s, itc, ids, mask, imageIDs)
	if err != nil {
		return Losses{}, nil, err
	}
	tr := &stepTrace{simI2T: itc.simI2T, simT2I: itc.simT2I}
	torch.NoGrad(func() {
		// Online against online features, same-image pairs excluded, no floor.
		same := imageIDs.View(n, 1).Eq(candIDs.View(1, -1))
		tr.weightsI2T = hardNegativeWeights(itc.imageFeat.MatMul(candTextFeat.Transpose(0, 1)).Div(itc.temp), same, 0)
		tr.weightsT2I = hardNegativeWeights(itc.textFeat.MatMul(candImageFeat.Transpose(0, 1)).Div(itc.temp), same, 0)
	})
	negImages, negTexts, err := negatives(s, o, tr.weightsT2I, tr.weightsI2T, r.Negatives, m.device)
	if err != nil {
		return Losses{}, nil, err
	}
	tr.negatives = HardNegatives{Images: negImages, Texts: negTexts}
	itm, logits, err := m.itmLoss(s, ids, mask, itc.image, cand, negImages, negTexts, o.Train)
	if err != nil {
		return Losses{}, nil, err
	}
	tr.itmLogits = logits
	total := itc.loss.Add(itm)
	return Losses{ITC: itc.loss, ITM: itm, Total: total}, tr, total.Err()
}

// candidates are the pairs hard negatives come from, with their image ids and online
// features: this batch, or with NegativeAllRank every process's (the image embeddings
// gathered with gradients, as the original's all_gather_with_grad).
func (r *RetrievalTrainer) candidates(s *torch.Scope, itc *itcStep, ids, mask, imageIDs *torch.Tensor) (
	itmCandidates, *torch.Tensor, *torch.Tensor, *torch.Tensor, error) {
	local := itmCandidates{image: itc.image, ids: ids, mask: mask}
	if !r.NegativeAllRank || worldSize(r.Gather) == 1 {
		return local, imageIDs, itc.imageFeat, itc.textFeat, nil
	}
	gg, ok := r.Gather.(GradGatherer)
	if !ok {
		return itmCandidates{}, nil, nil, nil, fmt.Errorf("blip: NegativeAllRank over %d processes needs a gatherer with gradients", r.Gather.WorldSize())
	}
	gather := func(t *torch.Tensor) (*torch.Tensor, error) {
		var out *torch.Tensor
		var err error
		torch.NoGrad(func() { out, err = r.Gather.AllGather(t) })
		if err != nil {
			return nil, fmt.Errorf("blip: negative candidates: all-gather: %w", err)
		}
		return s.Track(out), nil
	}
	var outs [5]*torch.Tensor
	for i, t := range []*torch.Tensor{imageIDs, itc.imageFeat, itc.textFeat, ids, mask} {
		g, err := gather(t)
		if err != nil {
			return itmCandidates{}, nil, nil, nil, err
		}
		outs[i] = g
	}
	image, err := gg.AllGatherWithGrad(itc.image)
	if err != nil {
		return itmCandidates{}, nil, nil, nil, fmt.Errorf("blip: negative candidates: all-gather with grad: %w", err)
	}
	return itmCandidates{image: s.Track(image), ids: outs[3], mask: outs[4]}, outs[0], outs[1], outs[2], nil
}

// CaptionTrainer finetunes the captioner (BLIP_Decoder: LM only). Captions are the
// prompt "a picture of " followed by the caption (pre_caption, 30 words), tokenised to
// at most 40 tokens and padded to the longest; the prompt's PromptLen tokens ([DEC] and
// "a picture of": 4 with BERT's vocabulary) are left out of the loss.
type CaptionTrainer struct {
	Model     *Model // vision and text decoder
	PromptLen int
}

// Losses runs one caption-finetune step: LM and Total (the same tensor).
func (c *CaptionTrainer) Losses(s *torch.Scope, b Batch, o StepOptions) (Losses, error) {
	m := c.Model
	if m.VisionModel == nil || m.TextDecoder == nil {
		return Losses{}, fmt.Errorf("blip: caption finetuning needs the vision model and the text decoder")
	}
	if _, err := m.checkBatch(b, false); err != nil {
		return Losses{}, err
	}
	ids, mask := onDevice(s, b.IDs, m.device), onDevice(s, b.Mask, m.device)
	image := m.EncodeImage(s.Ref(b.Pixels), o.Train)
	lm, err := m.lmLoss(s, ids, mask, image, c.PromptLen, o.Train)
	if err != nil {
		return Losses{}, err
	}
	return Losses{LM: lm, Total: lm}, nil
}
