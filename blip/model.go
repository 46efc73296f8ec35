package blip

import (
	"errors"
	"fmt"

	"github.com/capfilt/capfilt/torch"
)

// Model is a BLIP checkpoint's worth of modules. Finetuned checkpoints hold only some
// parts (a captioner: VisionModel + TextDecoder; a retrieval/filter model: VisionModel +
// TextEncoder + projections + ITMHead); a pretrained one holds all. Absent parts are nil.
type Model struct {
	Config      Config
	VisionModel *VisionModel  // vision_model.*
	TextEncoder *TextModel    // text_encoder.*: unimodal ([CLS]) and image-grounded ([ENC]) encoder
	TextDecoder *TextDecoder  // text_decoder.*: the image-grounded decoder ([DEC]) and LM head
	VisionProj  *Linear       // vision_proj: ITC image features
	TextProj    *Linear       // text_proj: ITC text features
	ITMHead     *Linear       // itm_head: match / no match on the [ENC] position
	Temp        *torch.Tensor // temp: ITC temperature (training)

	// SharedText is true when the decoder shares every encoder weight but self-attention.
	SharedText bool

	ps     *paramSet
	device torch.Device
	dtype  torch.DType
}

// TextDecoder is BLIP's BertLMHeadModel: the text transformer and the LM head.
type TextDecoder struct {
	Bert *TextModel
	Cls  LMHead
}

// LMHead is dense → GELU → LayerNorm → logits against the word-embedding matrix (tied)
// plus a bias.
type LMHead struct {
	Predictions struct {
		Transform struct {
			Dense     Linear
			LayerNorm LayerNorm
		}
		Bias *torch.Tensor // [V]
	}
	words **torch.Tensor // the decoder's word embeddings: the output matrix
}

// Parts says which modules a Model has.
type Parts struct {
	Vision, TextEncoder, TextDecoder, ITC, ITM, Temp bool
	// ShareText ties the decoder to the encoder except self-attention (pretraining).
	ShareText bool
}

// AllParts is a pretraining model: every module, encoder and decoder sharing weights.
func AllParts() Parts {
	return Parts{Vision: true, TextEncoder: true, TextDecoder: true, ITC: true, ITM: true, Temp: true, ShareText: true}
}

// New builds the modules of cfg named by parts, without weights: load a checkpoint
// into it or initialise it.
func New(cfg Config, parts Parts) (*Model, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if parts.ShareText && !(parts.TextEncoder && parts.TextDecoder) {
		return nil, errors.New("blip: sharing text weights needs both the encoder and the decoder")
	}
	m := &Model{Config: cfg, SharedText: parts.ShareText, device: torch.CPU, dtype: torch.Float32}
	if parts.Vision {
		m.VisionModel = newVisionModel(cfg.Vision)
	}
	if parts.TextEncoder {
		m.TextEncoder = newTextModel(cfg.Text, true)
	}
	if parts.TextDecoder {
		m.TextDecoder = &TextDecoder{Bert: newTextModel(cfg.Text, true)}
		m.TextDecoder.Cls.Predictions.Transform.LayerNorm.Eps = cfg.Text.LayerNormEps
		if parts.ShareText {
			m.TextDecoder.Bert.shareAllButSelfAttention(m.TextEncoder)
		}
		m.TextDecoder.Cls.words = &m.TextDecoder.Bert.Embeddings.WordEmbeddings
	}
	if parts.ITC {
		m.VisionProj, m.TextProj = &Linear{}, &Linear{}
	}
	if parts.ITM {
		m.ITMHead = &Linear{}
	}
	m.ps = m.register(parts.Temp)
	return m, m.ps.err
}

func (m *Model) register(temp bool) *paramSet {
	ps := newParamSet()
	c := m.Config
	if m.VisionModel != nil {
		m.VisionModel.register(ps, "vision_model")
	}
	if m.TextEncoder != nil {
		m.TextEncoder.register(ps, "text_encoder")
	}
	if d := m.TextDecoder; d != nil {
		d.Bert.register(ps, "text_decoder.bert")
		p := &d.Cls.Predictions
		ps.add("text_decoder.cls.predictions.bias", &p.Bias, int64(c.Text.VocabSize))
		p.Transform.Dense.register(ps, "text_decoder.cls.predictions.transform.dense", c.Text.HiddenSize, c.Text.HiddenSize)
		p.Transform.LayerNorm.register(ps, "text_decoder.cls.predictions.transform.LayerNorm", c.Text.HiddenSize)
	}
	if m.VisionProj != nil {
		m.VisionProj.register(ps, "vision_proj", c.EmbedDim, c.Vision.HiddenSize)
		m.TextProj.register(ps, "text_proj", c.EmbedDim, c.Text.HiddenSize)
	}
	if m.ITMHead != nil {
		m.ITMHead.register(ps, "itm_head", 2, c.Text.HiddenSize)
	}
	if temp {
		ps.add("temp", &m.Temp)
	}
	return ps
}

// Params lists every parameter, in a fixed order, under its HF checkpoint name.
func (m *Model) Params() []param { return m.ps.list }

// Param returns the parameter stored under an HF name (or an alias of a shared one).
func (m *Model) Param(name string) (*torch.Tensor, bool) {
	p, ok := m.ps.get(name)
	if !ok {
		return nil, false
	}
	return p.Tensor(), true
}

// NumParams counts parameter elements by the first component of their names, shared
// tensors once.
func (m *Model) NumParams() map[string]int64 {
	out := map[string]int64{}
	for _, p := range m.ps.list {
		part := p.Name
		for i, r := range part {
			if r == '.' {
				part = part[:i]
				break
			}
		}
		out[part] += numel(p.Shape)
	}
	return out
}

// Close frees the weights (a mapped file is unmapped when its last tensor goes).
func (m *Model) Close() {
	if m.VisionModel != nil {
		m.VisionModel.dropPositionCache()
	}
	for _, p := range m.ps.list {
		if t := p.Tensor(); t != nil {
			t.Free()
		}
	}
}

// Forward of the LM head: logits [B, T, V] from decoder hidden states.
func (h *LMHead) Forward(x *torch.Tensor) *torch.Tensor {
	p := &h.Predictions
	y := p.Transform.LayerNorm.Forward(p.Transform.Dense.Forward(x).Gelu())
	return y.Linear(*h.words, p.Bias)
}

var (
	errNoVision  = errors.New("blip: this checkpoint has no vision model")
	errNoEncoder = errors.New("blip: this checkpoint has no text encoder (not a retrieval/filter model)")
	errNoDecoder = errors.New("blip: this checkpoint has no text decoder (not a captioning model)")
	errNoITC     = errors.New("blip: this checkpoint has no ITC projections")
	errNoITM     = errors.New("blip: this checkpoint has no ITM head")
)

// EncodeImage runs the ViT: pixels [B,3,S,S] → [B, 1+N, Dv].
func (m *Model) EncodeImage(pixels *torch.Tensor, train bool) *torch.Tensor {
	if m.VisionModel == nil {
		return torch.Failed(errNoVision)
	}
	if pixels.Device() != m.device || pixels.DType() != m.dtype {
		// The converted copy (the batch on the GPU) is the pass's own: freed when the ViT is
		// done with it, not kept while the batch is captioned and scored.
		s := pixels.Scope().Child()
		defer s.Close()
		return s.Keep(m.VisionModel.Forward(s.Ref(pixels).To(m.device, m.dtype), train))
	}
	return m.VisionModel.Forward(pixels, train)
}

// withFirstToken returns a copy of ids whose first column is id: BLIP selects the text
// mode by the first token, whatever the tokenizer put there.
func withFirstToken(ids *torch.Tensor, id int64) *torch.Tensor {
	out := ids.Clone()
	if err := out.Narrow(1, 0, 1).Fill(float64(id)); err != nil {
		return torch.Failed(err)
	}
	return out
}

// TextUnimodal encodes text alone (the ITC tower): ids as given, [CLS] first; → [B,T,D].
func (m *Model) TextUnimodal(ids, mask *torch.Tensor, train bool) *torch.Tensor {
	if m.TextEncoder == nil {
		return torch.Failed(errNoEncoder)
	}
	return m.TextEncoder.Forward(TextInput{IDs: ids, Mask: mask, Train: train})
}

// ImageGrounded encodes text with cross attention to image ([B/groups, N, Dv]); the first
// token becomes [ENC]. → [B, T, D].
func (m *Model) ImageGrounded(ids, mask, image *torch.Tensor, groups int, train bool) *torch.Tensor {
	if m.TextEncoder == nil {
		return torch.Failed(errNoEncoder)
	}
	return m.TextEncoder.Forward(TextInput{IDs: withFirstToken(ids, m.Config.Text.EncID), Mask: mask, Image: image, ImageGroups: groups, Train: train})
}

// ITMLogits scores (text, image) pairs: [B, 2], class 1 = match.
func (m *Model) ITMLogits(ids, mask, image *torch.Tensor, groups int, train bool) *torch.Tensor {
	if m.ITMHead == nil {
		return torch.Failed(errNoITM)
	}
	h := m.ImageGrounded(ids, mask, image, groups, train)
	return m.ITMHead.Forward(h.Select(1, 0))
}

// ImageFeatures are the normalised ITC image features [B, E] from ViT outputs.
func (m *Model) ImageFeatures(image *torch.Tensor) *torch.Tensor {
	if m.VisionProj == nil {
		return torch.Failed(errNoITC)
	}
	return m.VisionProj.Forward(image.Select(1, 0)).Normalize(-1, 1e-12)
}

// TextFeatures are the normalised ITC text features [B, E] from unimodal hidden states.
func (m *Model) TextFeatures(text *torch.Tensor) *torch.Tensor {
	if m.TextProj == nil {
		return torch.Failed(errNoITC)
	}
	return m.TextProj.Forward(text.Select(1, 0)).Normalize(-1, 1e-12)
}

// DecoderLogits runs the image-grounded decoder over whole sequences (first token
// becomes [DEC], causal × padding mask) and returns next-token logits [B, T, V].
func (m *Model) DecoderLogits(ids, mask, image *torch.Tensor, groups int, train bool) *torch.Tensor {
	if m.TextDecoder == nil {
		return torch.Failed(errNoDecoder)
	}
	h := m.TextDecoder.Bert.Forward(TextInput{IDs: withFirstToken(ids, m.Config.Text.BosID), Mask: mask, Image: image,
		ImageGroups: groups, Causal: true, Train: train})
	return m.TextDecoder.Cls.Forward(h)
}

// DecodeStep runs the decoder on new tokens ids [B, t] after the cache's positions and
// returns logits [B, t, V]; it extends the cache. The caller supplies [DEC] itself.
func (m *Model) DecodeStep(ids, mask, image *torch.Tensor, groups int, cache *KVCache) *torch.Tensor {
	if m.TextDecoder == nil {
		return torch.Failed(errNoDecoder)
	}
	if cache == nil {
		return torch.Failed(fmt.Errorf("blip: DecodeStep needs a cache"))
	}
	h := m.TextDecoder.Bert.Forward(TextInput{IDs: ids, Mask: mask, Image: image, ImageGroups: groups, Causal: true, Cache: cache})
	return m.TextDecoder.Cls.Forward(h)
}

// NewKVCache makes a decoding cache sized for this model's decoder.
func (m *Model) NewKVCache(maxLen int) *KVCache {
	return NewKVCache(m.Config.Text.NumLayers, maxLen)
}
