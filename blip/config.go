package blip

import (
	"encoding/json"
	"fmt"
	"os"
)

// VisionConfig describes the ViT image encoder.
type VisionConfig struct {
	HiddenSize       int     `json:"hidden_size"`
	IntermediateSize int     `json:"intermediate_size"`
	NumLayers        int     `json:"num_hidden_layers"`
	NumHeads         int     `json:"num_attention_heads"`
	ImageSize        int     `json:"image_size"`
	PatchSize        int     `json:"patch_size"`
	LayerNormEps     float64 `json:"layer_norm_eps"`
	// DropPath is the stochastic-depth rate of the last block (linear from 0), training only.
	DropPath float64 `json:"drop_path_rate,omitempty"`
}

// TextConfig describes the MED text transformer (BERT-base shaped) and its special ids.
type TextConfig struct {
	VocabSize         int     `json:"vocab_size"`
	HiddenSize        int     `json:"hidden_size"`
	IntermediateSize  int     `json:"intermediate_size"`
	NumLayers         int     `json:"num_hidden_layers"`
	NumHeads          int     `json:"num_attention_heads"`
	MaxPositions      int     `json:"max_position_embeddings"`
	EncoderHiddenSize int     `json:"encoder_hidden_size"`
	LayerNormEps      float64 `json:"layer_norm_eps"`
	// Dropout applies to hidden states and attention weights in training only.
	Dropout float64 `json:"hidden_dropout_prob"`
	PadID   int64   `json:"pad_token_id"`
	// BosID is [DEC], the decoder's first token.
	BosID int64 `json:"bos_token_id"`
	SepID int64 `json:"sep_token_id"`
	// ClsID selects the unimodal encoder, EncID the image-grounded encoder.
	ClsID int64 `json:"cls_token_id"`
	EncID int64 `json:"enc_token_id"`
}

// Config is a whole BLIP model.
type Config struct {
	Vision VisionConfig `json:"vision_config"`
	Text   TextConfig   `json:"text_config"`
	// EmbedDim is the width of the ITC features (image_text_hidden_size).
	EmbedDim int `json:"image_text_hidden_size"`
}

func baseText() TextConfig {
	return TextConfig{VocabSize: 30524, HiddenSize: 768, IntermediateSize: 3072, NumLayers: 12, NumHeads: 12,
		MaxPositions: 512, EncoderHiddenSize: 768, LayerNormEps: 1e-12, PadID: 0, BosID: 30522, SepID: 102, ClsID: 101, EncID: 30523}
}

// Base is BLIP with ViT-B/16 at 384 pixels (the finetuned checkpoints' size).
func Base() Config {
	return Config{
		Vision:   VisionConfig{HiddenSize: 768, IntermediateSize: 3072, NumLayers: 12, NumHeads: 12, ImageSize: 384, PatchSize: 16, LayerNormEps: 1e-5},
		Text:     baseText(),
		EmbedDim: 256,
	}
}

// Large is BLIP with ViT-L/16; its stochastic depth is always 0.1 in the original code.
func Large() Config {
	c := Base()
	c.Vision = VisionConfig{HiddenSize: 1024, IntermediateSize: 4096, NumLayers: 24, NumHeads: 16, ImageSize: 384, PatchSize: 16, LayerNormEps: 1e-5, DropPath: 0.1}
	c.Text.EncoderHiddenSize = 1024
	return c
}

// Tiny is a test-sized model with a vision width unlike the text width, so cross
// attention's key/value shapes are exercised. Its ids match the tiny test vocabulary.
func Tiny() Config {
	return Config{
		Vision: VisionConfig{HiddenSize: 48, IntermediateSize: 96, NumLayers: 2, NumHeads: 4, ImageSize: 64, PatchSize: 16, LayerNormEps: 1e-5},
		Text: TextConfig{VocabSize: 120, HiddenSize: 32, IntermediateSize: 64, NumLayers: 2, NumHeads: 4, MaxPositions: 64,
			EncoderHiddenSize: 48, LayerNormEps: 1e-12, PadID: 0, BosID: 118, SepID: 3, ClsID: 2, EncID: 119},
		EmbedDim: 16,
	}
}

// Preset returns a named preset: base, large or tiny.
func Preset(name string) (Config, error) {
	switch name {
	case "base":
		return Base(), nil
	case "large":
		return Large(), nil
	case "tiny":
		return Tiny(), nil
	}
	return Config{}, fmt.Errorf("unknown model preset %q (want base, large or tiny)", name)
}

// Validate checks that the sizes fit together.
func (c Config) Validate() error {
	v, t := c.Vision, c.Text
	switch {
	case v.HiddenSize <= 0 || v.NumLayers <= 0 || v.NumHeads <= 0 || v.IntermediateSize <= 0:
		return fmt.Errorf("vision config: sizes must be positive (%+v)", v)
	case v.HiddenSize%v.NumHeads != 0:
		return fmt.Errorf("vision config: hidden size %d not divisible by %d heads", v.HiddenSize, v.NumHeads)
	case v.PatchSize <= 0 || v.ImageSize <= 0 || v.ImageSize%v.PatchSize != 0:
		return fmt.Errorf("vision config: image size %d is not a multiple of patch size %d", v.ImageSize, v.PatchSize)
	case t.HiddenSize <= 0 || t.NumLayers <= 0 || t.NumHeads <= 0 || t.IntermediateSize <= 0 || t.VocabSize <= 0 || t.MaxPositions <= 0:
		return fmt.Errorf("text config: sizes must be positive (%+v)", t)
	case t.HiddenSize%t.NumHeads != 0:
		return fmt.Errorf("text config: hidden size %d not divisible by %d heads", t.HiddenSize, t.NumHeads)
	case t.EncoderHiddenSize != v.HiddenSize:
		return fmt.Errorf("text config: encoder_hidden_size %d differs from the vision width %d", t.EncoderHiddenSize, v.HiddenSize)
	case c.EmbedDim <= 0:
		return fmt.Errorf("image_text_hidden_size must be positive, got %d", c.EmbedDim)
	}
	for name, id := range map[string]int64{"pad": t.PadID, "bos ([DEC])": t.BosID, "sep": t.SepID, "cls": t.ClsID, "enc ([ENC])": t.EncID} {
		if id < 0 || id >= int64(t.VocabSize) {
			return fmt.Errorf("text config: %s id %d outside the vocabulary (%d)", name, id, t.VocabSize)
		}
	}
	return nil
}

// NumPatches is the number of patch tokens at the configured image size.
func (v VisionConfig) NumPatches() int { g := v.ImageSize / v.PatchSize; return g * g }

// hfConfig mirrors the parts of HF's config.json capfilt reads. Pointers tell "absent"
// from zero so HF's own defaults can be filled in.
type hfConfig struct {
	ModelType    string         `json:"model_type,omitempty"`
	Architecture []string       `json:"architectures,omitempty"`
	TextConfig   map[string]any `json:"text_config"`
	VisionConfig map[string]any `json:"vision_config"`
	EmbedDim     *int           `json:"image_text_hidden_size,omitempty"`
}

// FromHFConfig reads an HF BLIP config.json. Hub configs only list what differs from
// HF's defaults, and those defaults are not BLIP-base's: text heads default to 8 (hub
// files set 12), vision LN eps to 1e-5. The extension keys cls_token_id and enc_token_id
// are read when present; otherwise [CLS] is 101 and [ENC] is bos+1.
func FromHFConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, err
	}
	c, err := ParseHFConfig(data)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// ParseHFConfig is FromHFConfig on the file's bytes.
func ParseHFConfig(data []byte) (Config, error) {
	var h hfConfig
	if err := json.Unmarshal(data, &h); err != nil {
		return Config{}, fmt.Errorf("config.json: %w", err)
	}
	if h.ModelType != "" && h.ModelType != "blip" {
		return Config{}, fmt.Errorf("config.json: model_type %q is not blip", h.ModelType)
	}
	c := Config{EmbedDim: 256}
	if h.EmbedDim != nil {
		c.EmbedDim = *h.EmbedDim
	}
	var errs []error
	get := func(m map[string]any, section, key string, def float64) float64 {
		v, ok := m[key]
		if !ok || v == nil {
			return def
		}
		f, ok := v.(float64)
		if !ok {
			errs = append(errs, fmt.Errorf("config.json: %s.%s is %v, not a number", section, key, v))
			return def
		}
		return f
	}
	tc, vc := h.TextConfig, h.VisionConfig
	c.Text = TextConfig{
		VocabSize:         int(get(tc, "text_config", "vocab_size", 30524)),
		HiddenSize:        int(get(tc, "text_config", "hidden_size", 768)),
		IntermediateSize:  int(get(tc, "text_config", "intermediate_size", 3072)),
		NumLayers:         int(get(tc, "text_config", "num_hidden_layers", 12)),
		NumHeads:          int(get(tc, "text_config", "num_attention_heads", 8)),
		MaxPositions:      int(get(tc, "text_config", "max_position_embeddings", 512)),
		EncoderHiddenSize: int(get(tc, "text_config", "encoder_hidden_size", 768)),
		LayerNormEps:      get(tc, "text_config", "layer_norm_eps", 1e-12),
		Dropout:           get(tc, "text_config", "hidden_dropout_prob", 0),
		PadID:             int64(get(tc, "text_config", "pad_token_id", 0)),
		BosID:             int64(get(tc, "text_config", "bos_token_id", 30522)),
		SepID:             int64(get(tc, "text_config", "sep_token_id", 102)),
	}
	c.Text.ClsID = int64(get(tc, "text_config", "cls_token_id", 101))
	c.Text.EncID = int64(get(tc, "text_config", "enc_token_id", float64(c.Text.BosID+1)))
	c.Vision = VisionConfig{
		HiddenSize:       int(get(vc, "vision_config", "hidden_size", 768)),
		IntermediateSize: int(get(vc, "vision_config", "intermediate_size", 3072)),
		NumLayers:        int(get(vc, "vision_config", "num_hidden_layers", 12)),
		NumHeads:         int(get(vc, "vision_config", "num_attention_heads", 12)),
		ImageSize:        int(get(vc, "vision_config", "image_size", 384)),
		PatchSize:        int(get(vc, "vision_config", "patch_size", 16)),
		LayerNormEps:     get(vc, "vision_config", "layer_norm_eps", 1e-5),
		DropPath:         get(vc, "vision_config", "drop_path_rate", 0),
	}
	for _, act := range []struct {
		m       map[string]any
		section string
	}{{tc, "text_config"}, {vc, "vision_config"}} {
		if a, ok := act.m["hidden_act"]; ok && a != "gelu" {
			errs = append(errs, fmt.Errorf("config.json: %s.hidden_act %v is not supported (BLIP uses exact gelu)", act.section, a))
		}
	}
	if len(errs) > 0 {
		return Config{}, errs[0]
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("config.json: %w", err)
	}
	return c, nil
}

// HFConfigJSON writes c as an HF config.json that ParseHFConfig (and HF) read back, with
// every field explicit so no reader's defaults matter.
func (c Config) HFConfigJSON() ([]byte, error) {
	text := map[string]any{
		"vocab_size": c.Text.VocabSize, "hidden_size": c.Text.HiddenSize, "intermediate_size": c.Text.IntermediateSize,
		"num_hidden_layers": c.Text.NumLayers, "num_attention_heads": c.Text.NumHeads,
		"max_position_embeddings": c.Text.MaxPositions, "encoder_hidden_size": c.Text.EncoderHiddenSize,
		"layer_norm_eps": c.Text.LayerNormEps, "hidden_act": "gelu", "hidden_dropout_prob": c.Text.Dropout,
		"attention_probs_dropout_prob": c.Text.Dropout, "pad_token_id": c.Text.PadID, "bos_token_id": c.Text.BosID,
		"sep_token_id": c.Text.SepID, "eos_token_id": 2, "cls_token_id": c.Text.ClsID, "enc_token_id": c.Text.EncID,
		"model_type": "blip_text_model",
	}
	vision := map[string]any{
		"hidden_size": c.Vision.HiddenSize, "intermediate_size": c.Vision.IntermediateSize,
		"num_hidden_layers": c.Vision.NumLayers, "num_attention_heads": c.Vision.NumHeads,
		"image_size": c.Vision.ImageSize, "patch_size": c.Vision.PatchSize, "layer_norm_eps": c.Vision.LayerNormEps,
		"hidden_act": "gelu", "model_type": "blip_vision_model",
	}
	if c.Vision.DropPath > 0 {
		vision["drop_path_rate"] = c.Vision.DropPath
	}
	return json.MarshalIndent(map[string]any{
		"model_type": "blip", "architectures": []string{"BlipModel"}, "image_text_hidden_size": c.EmbedDim,
		"projection_dim": 512, "text_config": text, "vision_config": vision,
	}, "", "  ")
}
