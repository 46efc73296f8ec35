package trainer

import (
	"maps"

	"github.com/capfilt/capfilt/blip/tokenizer"
	"github.com/capfilt/capfilt/pipeline/spec"
)

// Batch is one step's samples, ready for the model: pixels normalised, texts cleaned.
type Batch struct {
	ImageSize int       // S: every image is 3×S×S
	Pixels    []float32 // B×3×S×S, CHW per image, CLIP-normalised
	Texts     []string  // pre_caption'd captions, one per image
	ImageIDs  []int64   // equal for samples of the same image (retrieval's same-image positives)
	Keys      []string  // the sample's key in its file (COCO: the image_id, else the image path)
	Sources   []string  // CaptionWeb, CaptionSynthetic or CaptionHuman, per caption
	SampleIDs []int64   // stable ids of the samples (unit base + ordinal)

	// Position is where this rank's data stream stands after this batch: saved with a
	// checkpoint taken after this step, it resumes the stream at the next batch.
	Position DataPosition
}

// Len is the number of samples.
func (b *Batch) Len() int { return len(b.Texts) }

// TextMode is one of BLIP's text encodings (blip-spec §4, §6).
type TextMode int

const (
	// TextPretrain: 30 tokens, padded to 30 (ITC, ITM and LM in pretraining).
	TextPretrain TextMode = iota
	// TextCaption: CaptionPrompt + the caption, 40 tokens, padded to the batch's
	// longest (caption finetune's LM).
	TextCaption
	// TextRetrieval: 35 tokens, padded to 35 (retrieval finetune and evaluation).
	TextRetrieval
)

// CaptionPrompt is what caption finetuning puts before every caption; its 4 tokens
// ([DEC] a picture of) are left out of the loss.
const CaptionPrompt = spec.DefaultPrompt

// TextLength is the mode's maximum token length and padding.
func (m TextMode) TextLength() (maxLen int, pad tokenizer.PadMode) {
	switch m {
	case TextCaption:
		return 40, tokenizer.PadToLongest
	case TextRetrieval:
		return 35, tokenizer.PadToMax
	}
	return 30, tokenizer.PadToMax
}

// Tokenize encodes the batch's texts for mode: [CLS] tokens [SEP], truncated and
// padded as the mode says (the model overwrites position 0 with [ENC] or [DEC]).
func (b *Batch) Tokenize(tok *tokenizer.Tokenizer, mode TextMode) (ids, mask [][]int64) {
	texts := b.Texts
	if mode == TextCaption {
		texts = make([]string, len(b.Texts))
		for i, t := range b.Texts {
			texts[i] = CaptionPrompt + t
		}
	}
	maxLen, pad := mode.TextLength()
	return tok.EncodeBatch(texts, maxLen, pad)
}

// DataPosition is the state of one rank's data stream that a checkpoint stores: the
// epoch, the batches delivered in it, and how many entries of the epoch's sample
// order were taken (used in batches or skipped as bad), with the skip counts so far.
// Resuming from it replays the order up to Consumed without decoding an image, so the
// batches that follow are exactly those of a run never stopped. The settings it was
// made under are recorded and must match on resume.
type DataPosition struct {
	Epoch    int              `json:"epoch"`
	Step     int              `json:"step"`
	Consumed int64            `json:"consumed"`
	Skipped  map[string]int64 `json:"skipped,omitempty"`

	Dataset   string `json:"dataset"` // Dataset.Fingerprint
	Seed      uint64 `json:"seed"`
	Rank      int    `json:"rank"`
	World     int    `json:"world"`
	BatchSize int    `json:"batch_size"`
	Shuffle   int    `json:"shuffle_buffer"`
	Transform string `json:"transform"`
}

func (p DataPosition) clone() DataPosition {
	p.Skipped = maps.Clone(p.Skipped)
	return p
}
