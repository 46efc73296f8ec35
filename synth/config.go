package synth

import (
	"encoding/json"
	"fmt"
)

// WorldConfig is what a synthetic world is made of. Start from DefaultWorldConfig: a
// zero field is taken as written, never replaced by a default.
type WorldConfig struct {
	// Out is the folder the world is written to.
	Out string `json:"-"`
	// WebImages, AnnotatedImages and TestImages are the sizes of the three sets.
	WebImages       int `json:"web_images"`
	AnnotatedImages int `json:"annotated_images"`
	TestImages      int `json:"test_images"`
	// CaptionsPerImage is how many captions each annotated and test image has.
	CaptionsPerImage int `json:"captions_per_image"`
	// PartialCaptions of an annotated image's captions are true but incomplete, as
	// people's captions are; the rest are full. Test references are all full.
	PartialCaptions int `json:"partial_captions"`
	// ImageSize is the side of every image, in pixels.
	ImageSize int `json:"image_size"`
	// PerShard is how many web samples each tar holds.
	PerShard int `json:"per_shard"`
	// Noise is the share of web captions that are injected noise, split over the noise
	// kinds by NoiseMix; Incomplete the share that are true but incomplete. The rest are
	// full. Each share is exact to one caption.
	Noise      float64  `json:"noise"`
	Incomplete float64  `json:"incomplete"`
	NoiseMix   NoiseMix `json:"noise_mix"`
	// JPEGShare of the images are JPEG, the rest PNG.
	JPEGShare float64 `json:"jpeg_share"`
	// Seed fixes every draw: the same config writes the same bytes.
	Seed uint64 `json:"seed"`
	// Overwrite replaces a world already in Out (only the files a world is made of).
	Overwrite bool `json:"-"`
	// Progress, when set, is called from the generating goroutine as images are done.
	Progress func(Progress) `json:"-"`
}

// Progress says how far Generate is.
type Progress struct {
	Set         string // "web", "annotated" or "test"
	Done, Total int    // images done and to do, over all sets
}

// DefaultWorldConfig is the world the demo is sized for: 2000 web images of 48×48
// pixels in 8 shards, 40% noise and 45% incomplete (so 15% full), 150 annotated and 200
// test images with 5 captions each. Web text that is mostly incomplete or wrong, and an
// annotated set small beside it, is where CapFilt pays: in a probe (testdata/
// probe_learnability.py: a tiny two-tower ITC model, 500 steps of 64, 3 seeds) test
// TR@1/IR@1 went from 0.55/0.57 on the noisy web to 0.69/0.73 with the noise removed and
// clean captions added (+14/+16 points); with 30% incomplete and 300 annotated images
// the gain was +10/+7 (2 seeds).
func DefaultWorldConfig(out string) WorldConfig {
	return WorldConfig{
		Out: out, WebImages: 2000, AnnotatedImages: 150, TestImages: 200, CaptionsPerImage: 5, PartialCaptions: 1,
		ImageSize: 48, PerShard: 250, Noise: 0.4, Incomplete: 0.45, NoiseMix: DefaultNoiseMix(), JPEGShare: 0.6,
	}
}

// CaptionTokenBound is the most tokens a caption of the world can take, [CLS] and [SEP]
// included: three objects, each relation worded "to the ... of", a "little" or "big" for
// each size, "there is" and the background first ("on a checkered background, there is
// a little orange diamond to the left of a little orange triangle to the right of a
// little orange square"). Junk is shorter.
const CaptionTokenBound = 29

// MaxImageSize bounds the render size; the world's detail needs no more.
const MaxImageSize = 512

// ConfigError is a WorldConfig field with a bad value. Field is the field's JSON name
// ("noise", "web_images", ...), so a command can say which of its settings it was.
type ConfigError struct {
	Field string
	Err   error
}

func (e *ConfigError) Error() string { return "world: " + e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

func fieldErr(field, format string, args ...any) error {
	return &ConfigError{Field: field, Err: fmt.Errorf(format, args...)}
}

// Validate checks every field and names the one that is wrong (a *ConfigError).
func (c WorldConfig) Validate() error {
	switch {
	case c.Out == "":
		return fieldErr("out", "no output folder")
	case c.WebImages < 2:
		return fieldErr("web_images", "web images %d: want at least 2 (other-image noise needs another image)", c.WebImages)
	case c.AnnotatedImages < 1:
		return fieldErr("annotated_images", "annotated images %d: want at least 1", c.AnnotatedImages)
	case c.TestImages < 1:
		return fieldErr("test_images", "test images %d: want at least 1", c.TestImages)
	case c.CaptionsPerImage < 1 || c.CaptionsPerImage > 20:
		return fieldErr("captions_per_image", "captions per image %d: want 1 to 20", c.CaptionsPerImage)
	case c.PartialCaptions < 0 || c.PartialCaptions >= c.CaptionsPerImage:
		return fieldErr("partial_captions", "partial captions %d: want 0 to %d (fewer than the %d captions per image)", c.PartialCaptions, c.CaptionsPerImage-1, c.CaptionsPerImage)
	case c.ImageSize < MinImageSize || c.ImageSize > MaxImageSize || c.ImageSize%16 != 0:
		return fieldErr("image_size", "image size %d: want a multiple of 16 (the ViT patch) from %d to %d", c.ImageSize, MinImageSize, MaxImageSize)
	case c.PerShard < 1 || c.PerShard > 9999:
		return fieldErr("per_shard", "per shard %d: want 1 to 9999 (keys are 5 digits of shard, 4 of sample)", c.PerShard)
	case (c.WebImages+c.PerShard-1)/c.PerShard > 99999:
		return fieldErr("web_images", "%d web images at %d per shard make more than 99999 shards", c.WebImages, c.PerShard)
	case !(c.Noise >= 0 && c.Noise <= 1):
		return fieldErr("noise", "noise %g: want a share from 0 to 1", c.Noise)
	case !(c.Incomplete >= 0 && c.Incomplete <= 1):
		return fieldErr("incomplete", "incomplete %g: want a share from 0 to 1", c.Incomplete)
	case c.Noise+c.Incomplete > 1+1e-9:
		return fieldErr("incomplete", "noise %g + incomplete %g is over 1", c.Noise, c.Incomplete)
	case !(c.JPEGShare >= 0 && c.JPEGShare <= 1):
		return fieldErr("jpeg_share", "jpeg share %g: want a share from 0 to 1", c.JPEGShare)
	}
	if err := c.NoiseMix.validate(); err != nil {
		return &ConfigError{Field: "noise_mix", Err: err}
	}
	return nil
}

// ModelConfigJSON is the tiny BLIP the world is sized for, as an HF config.json that
// blip.FromHFConfig reads (the keys of blip.Config.HFConfigJSON). Both towers are 64
// wide: a ViT of 3 layers over 16-pixel patches (at 48 px, a 3×3 grid of patches, one
// per layout cell, so each object is one token) and a text transformer of 2 layers
// over the world vocabulary, whose [DEC] and [ENC] ids follow its last token.
func ModelConfigJSON(imageSize int) ([]byte, error) {
	if imageSize%16 != 0 || imageSize < MinImageSize {
		return nil, fmt.Errorf("model config: image size %d is not a multiple of 16 from %d", imageSize, MinImageSize)
	}
	n := len(worldVocab())
	text := map[string]any{
		"vocab_size": n + 2, "hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
		"max_position_embeddings": 64, "encoder_hidden_size": 64, "layer_norm_eps": 1e-12, "hidden_act": "gelu",
		"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0, "pad_token_id": 0, "bos_token_id": n,
		"sep_token_id": 3, "eos_token_id": 2, "cls_token_id": 2, "enc_token_id": n + 1, "model_type": "blip_text_model",
	}
	vision := map[string]any{
		"hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 3, "num_attention_heads": 4,
		"image_size": imageSize, "patch_size": 16, "layer_norm_eps": 1e-5, "hidden_act": "gelu", "model_type": "blip_vision_model",
	}
	return json.MarshalIndent(map[string]any{
		"model_type": "blip", "architectures": []string{"BlipModel"}, "image_text_hidden_size": 32,
		"projection_dim": 32, "text_config": text, "vision_config": vision,
	}, "", "  ")
}
