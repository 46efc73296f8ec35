package trainer

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/capfilt/capfilt/blip"
	"github.com/capfilt/capfilt/blip/tokenizer"
	"github.com/capfilt/capfilt/captioner"
	"github.com/capfilt/capfilt/imageproc"
	"github.com/capfilt/capfilt/pipeline/spec"
	"github.com/capfilt/capfilt/torch"
	"github.com/capfilt/capfilt/trainer/eval"
)

// EvalSet is an evaluation set: a COCO annotations file or BLIP's image list
// ([{"image", "caption": [...], "image_id"}], as the synthetic world's test set) with
// the folder its image paths are relative to.
type EvalSet struct {
	Annotations string
	ImageRoot   string
	Refs        *eval.References
}

// OpenEvalSet reads the annotations; imageRoot "" is the file's folder. Every image
// must name its file.
func OpenEvalSet(annotations, imageRoot string) (*EvalSet, error) {
	refs, err := eval.ReadReferences(annotations)
	if err != nil {
		return nil, err
	}
	if imageRoot == "" {
		imageRoot = filepath.Dir(annotations)
	}
	for _, img := range refs.Images {
		if img.File == "" {
			return nil, fmt.Errorf("eval set %s: image %s names no file", annotations, img.ID)
		}
	}
	if len(refs.Images) == 0 {
		return nil, fmt.Errorf("eval set %s: no images", annotations)
	}
	return &EvalSet{Annotations: annotations, ImageRoot: imageRoot, Refs: refs}, nil
}

// imagePath is where image i's file is.
func (s *EvalSet) imagePath(i int) string {
	f := s.Refs.Images[i].File
	if filepath.IsAbs(f) {
		return f
	}
	return filepath.Join(s.ImageRoot, filepath.FromSlash(f))
}

func (s *EvalSet) paths() []string {
	out := make([]string, len(s.Refs.Images))
	for i := range out {
		out[i] = s.imagePath(i)
	}
	return out
}

// pixels reads and preprocesses image files for the model (BLIP's inference transform
// at its image size) into one [B,3,S,S] tensor on the model's device, owned by s.
func pixels(s *torch.Scope, m *blip.Model, files []string) (*torch.Tensor, error) {
	size := m.Config.Vision.ImageSize
	per := 3 * size * size
	buf := make([]float32, 0, len(files)*per)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		px, _, _, err := imageproc.Preprocess(data, size, imageproc.ImageLimits{})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		buf = append(buf, px...)
	}
	t := s.Track(torch.FromFloat32(buf, int64(len(files)), 3, int64(size), int64(size)))
	if m.Device() != torch.CPU {
		t = t.ToDevice(m.Device())
	}
	return t, t.Err()
}

// RetrievalOptions shape EvalRetrieval.
type RetrievalOptions struct {
	K         int // ITC candidates re-ranked by ITM (default 256, BLIP's COCO; Flickr 128)
	BatchSize int // images, texts or candidate lists per forward pass (default 32)
}

// DefaultRetrievalK is BLIP's k_test on COCO.
const DefaultRetrievalK = 256

// EvalRetrieval is BLIP's retrieval evaluation (train_retrieval.py evaluation,
// blip-spec §5) of m on set: every caption of every image is a text; the ITC cosine of
// every image with every text picks each image's top-K texts and each text's top-K
// images, the ITM head re-scores those pairs, and the ranking score is ITM logit₁ +
// cosine (−100 outside the candidates). Texts are pre_caption'd to 30 words and padded
// to 35 tokens.
func EvalRetrieval(ctx context.Context, m *blip.Inference, set *EvalSet, o RetrievalOptions) (eval.RetrievalScores, error) {
	if o.K <= 0 {
		o.K = DefaultRetrievalK
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 32
	}
	model := m.Model
	if model.VisionModel == nil || model.TextEncoder == nil || model.VisionProj == nil || model.ITMHead == nil {
		return eval.RetrievalScores{}, fmt.Errorf("eval retrieval: the model needs the vision model, the text encoder, the ITC projections and the ITM head (a retrieval or pretrained checkpoint)")
	}
	var texts []string
	var textImage []int
	for i, img := range set.Refs.Images {
		for _, c := range img.Captions {
			texts = append(texts, tokenizer.PreCaption(c, DefaultMaxWords))
			textImage = append(textImage, i)
		}
	}
	gt, err := eval.NewGroundTruth(textImage, len(set.Refs.Images))
	if err != nil {
		return eval.RetrievalScores{}, err
	}
	var scores eval.RetrievalScores
	torch.NoGrad(func() { scores, err = evalRetrieval(ctx, m, set.paths(), texts, gt, o) })
	return scores, err
}

func evalRetrieval(ctx context.Context, m *blip.Inference, files, texts []string, gt eval.GroundTruth, o RetrievalOptions) (eval.RetrievalScores, error) {
	model := m.Model
	s := torch.NewScope()
	defer s.Close()
	maxLen, pad := TextRetrieval.TextLength()
	idRows, maskRows := m.Tokenizer.EncodeBatch(texts, maxLen, pad)
	dev := model.Device()
	nt, t := int64(len(texts)), int64(len(idRows[0]))
	ids := s.Track(torch.FromInt64(flatRows(idRows), nt, t)).ToDevice(dev)
	mask := s.Track(torch.FromInt64(flatRows(maskRows), nt, t)).ToDevice(dev)

	// Every text's and image's ITC features, and every image's ViT output for ITM.
	var textFeat, imageFeat, imageEmb []*torch.Tensor
	for from := 0; from < len(texts); from += o.BatchSize {
		n := int64(min(o.BatchSize, len(texts)-from))
		textFeat = append(textFeat, model.TextFeatures(model.TextUnimodal(ids.Narrow(0, int64(from), n), mask.Narrow(0, int64(from), n), false)))
	}
	for from := 0; from < len(files); from += o.BatchSize {
		if err := ctx.Err(); err != nil {
			return eval.RetrievalScores{}, err
		}
		px, err := pixels(s, model, files[from:min(from+o.BatchSize, len(files))])
		if err != nil {
			return eval.RetrievalScores{}, err
		}
		emb := model.EncodeImage(px, false)
		imageEmb, imageFeat = append(imageEmb, emb), append(imageFeat, model.ImageFeatures(emb))
	}
	emb := torch.Cat(imageEmb, 0)
	sims := torch.Cat(imageFeat, 0).MatMul(torch.Cat(textFeat, 0).Transpose(0, 1)).ToDType(torch.Float32)
	vals, err := sims.Float32s()
	if err != nil {
		return eval.RetrievalScores{}, err
	}
	itc := eval.ScoreMatrix{Rows: len(files), Cols: len(texts), Data: vals}
	cand, err := eval.TopCandidates(itc, o.K)
	if err != nil {
		return eval.RetrievalScores{}, err
	}
	// ITM logit₁ of each image with its candidate texts, then of each text with its
	// candidate images, about 8 batches' worth of pairs per forward pass.
	itmScores := func(lists [][]int, imageRows, textRows func(row int, cands []int) []int64) ([][]float32, error) {
		out := make([][]float32, len(lists))
		rowsPerPass := max(1, 8*o.BatchSize/max(1, len(lists[0])))
		for from := 0; from < len(lists); from += rowsPerPass {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			to := min(len(lists), from+rowsPerPass)
			var imgIdx, txtIdx []int64
			for row := from; row < to; row++ {
				imgIdx = append(imgIdx, imageRows(row, lists[row])...)
				txtIdx = append(txtIdx, textRows(row, lists[row])...)
			}
			bs := s.Child()
			ii := bs.Track(torch.FromInt64(imgIdx, int64(len(imgIdx)))).ToDevice(dev)
			ti := bs.Track(torch.FromInt64(txtIdx, int64(len(txtIdx)))).ToDevice(dev)
			logits := model.ITMLogits(bs.Ref(ids).IndexSelect(0, ti), bs.Ref(mask).IndexSelect(0, ti), bs.Ref(emb).IndexSelect(0, ii), 1, false)
			v, err := logits.Select(1, 1).ToDType(torch.Float32).Float32s()
			bs.Close()
			if err != nil {
				return nil, err
			}
			k := 0
			for row := from; row < to; row++ {
				out[row] = v[k : k+len(lists[row])]
				k += len(lists[row])
			}
		}
		return out, nil
	}
	repeat := func(v, n int) []int64 {
		out := make([]int64, n)
		for i := range out {
			out[i] = int64(v)
		}
		return out
	}
	asInt64 := func(v []int) []int64 {
		out := make([]int64, len(v))
		for i, x := range v {
			out[i] = int64(x)
		}
		return out
	}
	itmI2T, err := itmScores(cand.I2T, func(row int, c []int) []int64 { return repeat(row, len(c)) },
		func(_ int, c []int) []int64 { return asInt64(c) })
	if err != nil {
		return eval.RetrievalScores{}, err
	}
	itmT2I, err := itmScores(cand.T2I, func(_ int, c []int) []int64 { return asInt64(c) },
		func(row int, c []int) []int64 { return repeat(row, len(c)) })
	if err != nil {
		return eval.RetrievalScores{}, err
	}
	i2t, t2i, err := cand.RerankedScores(itc, itmI2T, itmT2I)
	if err != nil {
		return eval.RetrievalScores{}, err
	}
	return eval.Recall(i2t, t2i, gt)
}

func flatRows(rows [][]int64) []int64 {
	out := make([]int64, 0, len(rows)*len(rows[0]))
	for _, r := range rows {
		out = append(out, r...)
	}
	return out
}

// CaptionOptions shape EvalCaption.
type CaptionOptions struct {
	// Generation decodes the captions (zero: beam search with 3 beams, max length 20,
	// min length 5: BLIP's COCO evaluation).
	Generation spec.Generation
	BatchSize  int // images per decoding batch (default 16)
}

// CaptionEval is a caption evaluation: the scores and every image's prediction.
type CaptionEval struct {
	Scores      eval.CaptionScores
	Predictions []eval.Prediction
}

// EvalCaption captions every image of set with m and scores the captions against the
// set's references with coco-caption's BLEU-1..4 and CIDEr-D.
func EvalCaption(ctx context.Context, m *blip.Inference, set *EvalSet, o CaptionOptions) (*CaptionEval, error) {
	caps, err := Caption(ctx, m, set.paths(), o.Generation, o.BatchSize)
	if err != nil {
		return nil, err
	}
	preds := make([]eval.Prediction, len(caps))
	for i, c := range caps {
		preds[i] = eval.Prediction{ImageID: set.Refs.Images[i].ID, Caption: c}
	}
	scores, err := eval.ScoreCaptions(preds, set.Refs)
	if err != nil {
		return nil, err
	}
	return &CaptionEval{Scores: scores, Predictions: preds}, nil
}

// Caption captions image files with m, the first caption of each (gen zero: BLIP's
// beam-3 evaluation settings). Images get the inference transform at the model's size.
func Caption(ctx context.Context, m *blip.Inference, images []string, gen spec.Generation, batchSize int) ([]string, error) {
	if gen.Mode == "" {
		gen = spec.BeamDefaults()
	}
	if batchSize <= 0 {
		batchSize = 16
	}
	c, err := captioner.New(m.Model, m.Tokenizer, gen)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(images))
	for from := 0; from < len(images); from += batchSize {
		files := images[from:min(from+batchSize, len(images))]
		s := torch.NewScope()
		px, err := pixels(s, m.Model, files)
		if err != nil {
			s.Close()
			return nil, err
		}
		caps, err := c.CaptionPixels(ctx, px, files)
		s.Close()
		if err != nil {
			return nil, err
		}
		for i, cs := range caps {
			if len(cs) == 0 {
				return nil, fmt.Errorf("caption %s: no caption", files[i])
			}
			out = append(out, cs[0].Text)
		}
	}
	return out, nil
}
