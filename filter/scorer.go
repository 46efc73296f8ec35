package filter

import (
	"context"
	"errors"
	"fmt"

	"github.com/capfilt/capfilt/blip"
	"github.com/capfilt/capfilt/blip/tokenizer"
	"github.com/capfilt/capfilt/pipeline/spec"
	"github.com/capfilt/capfilt/torch"
)

// Score is what the filter measures of one (image, caption) pair; spec.AcceptRule decides
// on it.
type Score struct {
	// ITM is the match probability: softmax of the ITM head's logits on the first token
	// ([ENC], or [CLS] with Options.ITMFirstToken cls), class 1.
	ITM float32 `json:"itm"`
	// ITC is the cosine of the normalised projected [CLS] features (no temperature).
	ITC float32 `json:"itc"`
}

// Options shape the text the filter reads.
type Options struct {
	// MaxWords truncates captions with BLIP's pre_caption (30 for pretraining data).
	MaxWords int
	// MaxTokens truncates the tokenised caption ([CLS] … [SEP]); BLIP's retrieval uses 35.
	MaxTokens int
	// ITMFirstToken is the first token of the ITM text: enc (BLIP's training and its
	// own code, the default) or cls (what HF's BlipForImageTextRetrieval feeds).
	ITMFirstToken spec.ITMFirstToken
}

// DefaultOptions are BLIP's retrieval settings.
func DefaultOptions() Options {
	return Options{MaxWords: 30, MaxTokens: 35, ITMFirstToken: spec.ITMFirstEnc}
}

// Scorer scores captions against images with a BLIP retrieval (ITM + ITC) model.
type Scorer struct {
	model *blip.Model
	tok   *tokenizer.Tokenizer
	opts  Options
}

// NewScorer checks the model has what scoring needs.
func NewScorer(model *blip.Model, tok *tokenizer.Tokenizer, opts Options) (*Scorer, error) {
	switch {
	case model.VisionModel == nil || model.TextEncoder == nil:
		return nil, errors.New("filter: the model has no vision model or no text encoder (is it a retrieval/ITM checkpoint?)")
	case model.ITMHead == nil:
		return nil, errors.New("filter: the model has no ITM head")
	case model.VisionProj == nil || model.TextProj == nil:
		return nil, errors.New("filter: the model has no ITC projections")
	case opts.MaxTokens < 2 || opts.MaxWords < 1:
		return nil, fmt.Errorf("filter: max tokens %d / max words %d too small", opts.MaxTokens, opts.MaxWords)
	}
	first, err := spec.ParseITMFirstToken(string(opts.ITMFirstToken))
	if err != nil {
		return nil, fmt.Errorf("filter: ITM first token %w", err)
	}
	opts.ITMFirstToken = first
	if first == spec.ITMFirstCLS && tok.ClsID() != model.Config.Text.ClsID {
		return nil, fmt.Errorf("filter: tokenizer's [CLS] is %d, the model's %d", tok.ClsID(), model.Config.Text.ClsID)
	}
	if tok.EncID() != model.Config.Text.EncID {
		return nil, fmt.Errorf("filter: tokenizer's [ENC] is %d, the model's %d", tok.EncID(), model.Config.Text.EncID)
	}
	return &Scorer{model: model, tok: tok, opts: opts}, nil
}

// Model is the scorer's model (a captioner loaded from the same file can share its ViT pass).
func (s *Scorer) Model() *blip.Model { return s.model }

// ScorePixels runs the vision model on pixels [B, 3, S, S] and scores each image's captions.
func (s *Scorer) ScorePixels(ctx context.Context, pixels *torch.Tensor, captions [][]string) ([][]Score, error) {
	sc := torch.NewScope()
	defer sc.Close()
	var out [][]Score
	var err error
	torch.NoGrad(func() {
		img := s.model.EncodeImage(sc.Ref(pixels), false)
		if err = img.Err(); err != nil {
			return
		}
		out, err = s.ScoreImages(ctx, img, captions)
	})
	return out, err
}

// ScoreImages scores captions[i] (any number) against image i, given the vision model's
// output [B, N, D]. The image embeddings are shared by all captions of an image.
func (s *Scorer) ScoreImages(ctx context.Context, image *torch.Tensor, captions [][]string) ([][]Score, error) {
	if err := image.Err(); err != nil {
		return nil, err
	}
	b := int(image.Size(0))
	if b != len(captions) {
		return nil, fmt.Errorf("filter: %d images but caption lists for %d", b, len(captions))
	}
	var texts []string
	var owner []int64
	uniform := true
	for i, cs := range captions {
		if len(cs) != len(captions[0]) {
			uniform = false
		}
		for _, c := range cs {
			texts = append(texts, tokenizer.PreCaption(c, s.opts.MaxWords))
			owner = append(owner, int64(i))
		}
	}
	out := make([][]Score, b)
	if len(texts) == 0 {
		return out, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sc := torch.NewScope()
	defer sc.Close()
	ids, mask := s.tok.EncodeBatch(texts, s.opts.MaxTokens, tokenizer.PadToLongest)
	dev := image.Device()
	idT := sc.Track(torch.FromInt64(flatten(ids), int64(len(ids)), int64(len(ids[0])))).ToDevice(dev)
	maskT := sc.Track(torch.FromInt64(flatten(mask), int64(len(mask)), int64(len(mask[0])))).ToDevice(dev)
	groups := 0
	if uniform {
		groups = len(captions[0])
	}
	itm, itc, err := s.scoreTokens(sc, image, idT, maskT, owner, groups)
	if err != nil {
		if errors.Is(err, torch.ErrOutOfMemory) {
			return nil, fmt.Errorf("filter: out of memory scoring %d captions of %d images: %w", len(texts), b, err)
		}
		return nil, err
	}
	for k, i := range owner {
		out[i] = append(out[i], Score{ITM: itm[k], ITC: itc[k]})
	}
	return out, nil
}

// scoreTokens computes ITM P(match) and ITC cosine for tokenised captions ([B', T] ids
// and mask, [CLS] first: [ENC] replaces it for ITM unless the first token is cls); owner[k]
// is caption k's image. groups > 0 says every image has exactly that many consecutive captions, so the
// image memory is shared without copies; otherwise each caption gets its image's rows.
func (s *Scorer) scoreTokens(sc *torch.Scope, image, ids, mask *torch.Tensor, owner []int64, groups int) (itm, itc []float32, err error) {
	img := sc.Ref(image)
	dev := image.Device()
	ownerT := sc.Track(torch.FromInt64(owner, int64(len(owner)))).ToDevice(dev)
	memory := img
	if groups <= 0 {
		memory, groups = img.IndexSelect(0, ownerT), 1
	}
	torch.NoGrad(func() {
		probs := s.itmLogits(ids, mask, memory, groups).ToDType(torch.Float32).Softmax(-1).Select(1, 1)
		if itm, err = probs.Float32s(); err != nil {
			return
		}
		textFeat := s.model.TextFeatures(s.model.TextUnimodal(ids, mask, false))
		imgFeat := s.model.ImageFeatures(img).IndexSelect(0, ownerT)
		itc, err = imgFeat.Mul(textFeat).Sum(false, -1).ToDType(torch.Float32).Float32s()
	})
	return itm, itc, err
}

// itmLogits are the ITM head's logits [B', 2]: on [ENC] as BLIP computes them, or, for
// the HF numbers, with the ids' own [CLS] left in front of the image-grounded encoder.
func (s *Scorer) itmLogits(ids, mask, memory *torch.Tensor, groups int) *torch.Tensor {
	if s.opts.ITMFirstToken != spec.ITMFirstCLS {
		return s.model.ITMLogits(ids, mask, memory, groups, false)
	}
	h := s.model.TextEncoder.Forward(blip.TextInput{IDs: ids, Mask: mask, Image: memory, ImageGroups: groups})
	return s.model.ITMHead.Forward(h.Select(1, 0))
}

func flatten(rows [][]int64) []int64 {
	out := make([]int64, 0, len(rows)*len(rows[0]))
	for _, r := range rows {
		out = append(out, r...)
	}
	return out
}
