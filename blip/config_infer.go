package blip

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/capfilt/capfilt/blip/checkpoint"
)

// resolveConfig finds the model's config: the caller's, a config.json beside the weights,
// or, for an original checkpoint without one, the sizes read off the tensors' shapes.
func resolveConfig(path string, ck *checkpoint.Checkpoint, records map[string]checkpoint.TensorRecord, given *Config) (Config, string, error) {
	if given != nil {
		return *given, "given", given.Validate()
	}
	cfgPath := ck.ConfigPath
	if cfgPath == "" {
		if fi, err := os.Stat(path); err == nil && !fi.IsDir() {
			if c := filepath.Join(filepath.Dir(path), "config.json"); fileExists(c) {
				cfgPath = c
			}
		}
	}
	if cfgPath != "" {
		c, err := FromHFConfig(cfgPath)
		return c, cfgPath, err
	}
	c, err := inferConfig(records)
	if err != nil {
		return Config{}, "", fmt.Errorf("%s: no config.json beside it, and %w", path, err)
	}
	return c, "inferred from tensor shapes", nil
}

func fileExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir()
}

// OriginalVisionLayerNormEps is the ViT's LayerNorm eps in BLIP's own code.
const OriginalVisionLayerNormEps = 1e-6

var layerNumber = regexp.MustCompile(`\.(?:layers|layer)\.(\d+)\.`)

// inferConfig reads sizes off the tensors. Head counts are not in any shape: they are
// taken from the published presets by width (768 → 12, 1024 → 16). Only an original
// checkpoint comes without a config, and its ViT ran with BLIP's own LayerNorm eps 1e-6
// (timm's), not the 1e-5 HF configs carry (spec §0.1).
func inferConfig(records map[string]checkpoint.TensorRecord) (Config, error) {
	c := Base()
	c.Vision.LayerNormEps = OriginalVisionLayerNormEps
	shape := func(name string) []int64 {
		if r, ok := records[name]; ok {
			return r.Shape
		}
		return nil
	}
	countLayers := func(prefix string) int {
		n := -1
		for name := range records {
			if !strings.HasPrefix(name, prefix) {
				continue
			}
			if m := layerNumber.FindStringSubmatch(name[len(prefix)-1:]); m != nil {
				if i, _ := strconv.Atoi(m[1]); i > n {
					n = i
				}
			}
		}
		return n + 1
	}
	heads := func(width int64) (int, error) {
		switch width {
		case 768:
			return 12, nil
		case 1024:
			return 16, nil
		}
		return 0, fmt.Errorf("width %d is not a published preset (head count unknown)", width)
	}
	if s := shape("vision_model.embeddings.class_embedding"); s != nil {
		v := &c.Vision
		v.HiddenSize = int(s[2])
		v.NumLayers = countLayers("vision_model.encoder.")
		if fc1 := shape("vision_model.encoder.layers.0.mlp.fc1.weight"); fc1 != nil {
			v.IntermediateSize = int(fc1[0])
		}
		if pe := shape("vision_model.embeddings.patch_embedding.weight"); pe != nil {
			v.PatchSize = int(pe[2])
		}
		if pos := shape("vision_model.embeddings.position_embedding"); pos != nil {
			g := int(math.Round(math.Sqrt(float64(pos[1] - 1))))
			v.ImageSize = g * v.PatchSize
		}
		h, err := heads(s[2])
		if err != nil {
			return c, fmt.Errorf("vision %w", err)
		}
		v.NumHeads = h
		if v.HiddenSize == 1024 {
			v.DropPath = 0.1
		}
	}
	for _, prefix := range []string{"text_encoder.", "text_decoder.bert."} {
		s := shape(prefix + "embeddings.word_embeddings.weight")
		if s == nil {
			continue
		}
		t := &c.Text
		t.VocabSize, t.HiddenSize = int(s[0]), int(s[1])
		t.NumLayers = countLayers(prefix + "encoder.")
		if p := shape(prefix + "embeddings.position_embeddings.weight"); p != nil {
			t.MaxPositions = int(p[0])
		}
		if f := shape(prefix + "encoder.layer.0.intermediate.dense.weight"); f != nil {
			t.IntermediateSize = int(f[0])
		}
		t.EncoderHiddenSize = c.Vision.HiddenSize
		if k := shape(prefix + "encoder.layer.0.crossattention.self.key.weight"); k != nil {
			t.EncoderHiddenSize = int(k[1])
		}
		h, err := heads(s[1])
		if err != nil {
			return c, fmt.Errorf("text %w", err)
		}
		t.NumHeads = h
		if t.VocabSize != 30524 {
			return c, errors.New("the vocabulary is not BERT's 30522 + [DEC], [ENC]: special ids unknown")
		}
		break
	}
	if p := shape("vision_proj.weight"); p != nil {
		c.EmbedDim = int(p[0])
	}
	return c, c.Validate()
}
