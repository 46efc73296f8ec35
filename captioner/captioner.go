package captioner

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/capfilt/capfilt/blip"
	"github.com/capfilt/capfilt/blip/tokenizer"
	"github.com/capfilt/capfilt/pipeline/spec"
	"github.com/capfilt/capfilt/torch"
)

// Captioner writes captions for images with a BLIP captioning model.
type Captioner struct {
	model  *blip.Model
	tok    *tokenizer.Tokenizer
	st     spec.Generation
	prompt []int64 // [DEC] + the prompt's tokens, without the trailing [SEP]
}

// Caption is one generated caption.
type Caption struct {
	Text string `json:"text"`
	// IDs is the whole token sequence, [DEC] and prompt first.
	IDs   []int64 `json:"ids"`
	Score float64 `json:"score"`
}

// New prepares a captioner. The model must have a vision model and a text decoder; it
// runs on the model's device.
func New(model *blip.Model, tok *tokenizer.Tokenizer, st spec.Generation) (*Captioner, error) {
	if err := st.Validate(); err != nil {
		return nil, err
	}
	if model.TextDecoder == nil || model.VisionModel == nil {
		return nil, errors.New("captioner: the model has no text decoder or no vision model (is it a captioning checkpoint?)")
	}
	if tok.DecID() != model.Config.Text.BosID {
		return nil, fmt.Errorf("captioner: tokenizer's [DEC] is %d, the model's bos_token_id %d", tok.DecID(), model.Config.Text.BosID)
	}
	return &Captioner{model: model, tok: tok, st: st, prompt: PromptIDs(tok, st.Prompt)}, nil
}

// Generation returns the settings in use.
func (c *Captioner) Generation() spec.Generation { return c.st }

// PromptIDs are the decoder's start tokens for a prompt: its tokens with [DEC] in place
// of [CLS] and the trailing [SEP] dropped ("a picture of " → [DEC] a picture of).
func PromptIDs(tok *tokenizer.Tokenizer, prompt string) []int64 {
	ids := tok.Encode(prompt)
	ids = ids[:len(ids)-1]
	ids[0] = tok.DecID()
	return ids
}

// CaptionImages captions images given as embeddings from the vision model
// [B, N, D] (so a filter can reuse the same ViT pass), one key per image.
func (c *Captioner) CaptionImages(ctx context.Context, image *torch.Tensor, keys []string) ([][]Caption, error) {
	b := int(image.Size(0))
	if b != len(keys) {
		return nil, fmt.Errorf("captioner: %d images but %d keys", b, len(keys))
	}
	start := make([][]int64, b)
	for i := range start {
		start[i] = c.prompt
	}
	seqs, err := Generate(ctx, c.model, image, start, keys, c.st)
	if err != nil {
		return nil, err
	}
	out := make([][]Caption, b)
	for i, ss := range seqs {
		for _, s := range ss {
			out[i] = append(out[i], Caption{Text: c.text(s.IDs), IDs: s.IDs, Score: s.Score})
		}
	}
	return out, nil
}

// CaptionPixels runs the vision model on pixels [B, 3, S, S] and captions the images.
func (c *Captioner) CaptionPixels(ctx context.Context, pixels *torch.Tensor, keys []string) ([][]Caption, error) {
	s := torch.NewScope()
	defer s.Close()
	var out [][]Caption
	var err error
	torch.NoGrad(func() {
		img := c.model.EncodeImage(s.Ref(pixels), false)
		if err = img.Err(); err != nil {
			return
		}
		out, err = c.CaptionImages(ctx, img, keys)
	})
	return out, err
}

// text decodes a sequence and strips the prompt by its character count, as BLIP does.
func (c *Captioner) text(ids []int64) string {
	s := c.tok.Decode(ids, true)
	if n := len(c.st.Prompt); len(s) >= n {
		s = s[n:]
	} else {
		s = ""
	}
	return strings.TrimSpace(s)
}

// modelStepper decodes with a BLIP decoder and a KV cache; rows are grouped by image.
type modelStepper struct {
	m      *blip.Model
	image  *torch.Tensor
	groups int
	cache  *blip.KVCache
	scope  *torch.Scope // owns the image memory once Retain has narrowed it
}

func (d *modelStepper) Step(s *torch.Scope, tokens []int64, rows, width int) *torch.Tensor {
	ids := s.Track(torch.FromInt64(tokens, int64(rows), int64(width))).ToDevice(d.image.Device())
	return d.m.DecodeStep(ids, nil, s.Ref(d.image), d.groups, d.cache).Select(1, int64(width-1))
}

// Retain keeps the cache's and the image memory's entries of the images units, in order.
func (d *modelStepper) Retain(units []int64, groups int) error {
	if err := d.cache.Retain(units, groups); err != nil {
		return err
	}
	s := torch.NewScope()
	defer s.Close()
	idx := s.Track(torch.FromInt64(units, int64(len(units)))).ToDevice(d.image.Device())
	image := d.scope.Track(s.Ref(d.image).IndexSelect(0, idx))
	if err := image.Err(); err != nil {
		return err
	}
	if old := d.image; d.scope != nil && old.Scope() == d.scope {
		old.Free()
	}
	d.image = image
	return nil
}

func (d *modelStepper) Reorder(from []int64) error {
	s := torch.NewScope()
	defer s.Close()
	idx := s.Track(torch.FromInt64(from, int64(len(from)))).ToDevice(d.image.Device())
	return d.cache.Reorder(idx)
}

// Generate is the checkable core of captioning: from image embeddings [B, N, D] and
// each image's start tokens, it returns the generated token sequences per image. keys
// seed nucleus sampling (one per image; may be nil for greedy and beam search).
func Generate(ctx context.Context, m *blip.Model, image *torch.Tensor, start [][]int64, keys []string, st spec.Generation) ([][]Sequence, error) {
	if err := st.Validate(); err != nil {
		return nil, err
	}
	if m.TextDecoder == nil {
		return nil, errors.New("captioner: the model has no text decoder")
	}
	if err := image.Err(); err != nil {
		return nil, err
	}
	if keys == nil {
		keys = make([]string, len(start))
	}
	if len(keys) != len(start) || int(image.Size(0)) != len(start) {
		return nil, fmt.Errorf("captioner: %d images, %d start sequences, %d keys", image.Size(0), len(start), len(keys))
	}
	cache := m.NewKVCache(st.MaxLength)
	defer cache.Close()
	own := torch.NewScope()
	defer own.Close()
	dec := &modelStepper{m: m, image: image, groups: rowsPerImage(st), cache: cache, scope: own}
	req := request{start: start, keys: keys, st: st, sepID: m.Config.Text.SepID, padID: m.Config.Text.PadID,
		vocab: m.Config.Text.VocabSize}
	var out [][]Sequence
	var err error
	torch.NoGrad(func() { out, err = generate(ctx, dec, req) })
	if err != nil && errors.Is(err, torch.ErrOutOfMemory) {
		return nil, &OutOfMemoryError{Images: len(start), Err: err}
	}
	return out, err
}

// OutOfMemoryError reports a batch that did not fit the device; the caller can split it.
type OutOfMemoryError struct {
	Images int
	Err    error
}

func (e *OutOfMemoryError) Error() string {
	return fmt.Sprintf("captioner: out of memory on a batch of %d images: %v", e.Images, e.Err)
}

func (e *OutOfMemoryError) Unwrap() error { return e.Err }
