package trainer

import (
	"context"
	"errors"

	"github.com/capfilt/capfilt/blip"
	"github.com/capfilt/capfilt/pipeline/spec"
	"github.com/capfilt/capfilt/trainer/eval"
)

// EvalSet is an evaluation set: a COCO-style annotation file (or BLIP's image list)
// with its image folder.
type EvalSet struct {
	Annotations string
	ImageRoot   string
	Refs        *eval.References
}

// OpenEvalSet reads the annotations; imageRoot "" is the file's folder.
func OpenEvalSet(annotations, imageRoot string) (*EvalSet, error) {
	return nil, errors.New("trainer: OpenEvalSet is not implemented yet")
}

// RetrievalOptions shape EvalRetrieval.
type RetrievalOptions struct {
	K         int // ITC candidates re-ranked by ITM (default 256, COCO's)
	BatchSize int // images or texts per forward pass (default 32)
}

// EvalRetrieval is BLIP's retrieval evaluation of m on set.
func EvalRetrieval(ctx context.Context, m *blip.Inference, set *EvalSet, o RetrievalOptions) (eval.RetrievalScores, error) {
	return eval.RetrievalScores{}, errors.New("trainer: EvalRetrieval is not implemented yet")
}

// CaptionOptions shape EvalCaption.
type CaptionOptions struct {
	// Generation decodes the captions (zero: beam search with 3 beams, BLIP's COCO eval).
	Generation spec.Generation
	BatchSize  int // images per decoding batch (default 16)
}

// CaptionEval is a caption evaluation: the scores and every prediction.
type CaptionEval struct {
	Scores      eval.CaptionScores
	Predictions []eval.Prediction
}

// EvalCaption captions every image of set with m and scores the captions.
func EvalCaption(ctx context.Context, m *blip.Inference, set *EvalSet, o CaptionOptions) (*CaptionEval, error) {
	return nil, errors.New("trainer: EvalCaption is not implemented yet")
}

// Caption captions image files, one caption each.
func Caption(ctx context.Context, m *blip.Inference, images []string, gen spec.Generation, batchSize int) ([]string, error) {
	return nil, errors.New("trainer: Caption is not implemented yet")
}
