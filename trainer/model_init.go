package trainer

import (
	"fmt"
	"strings"

	"github.com/capfilt/capfilt/blip"
	"github.com/capfilt/capfilt/blip/tokenizer"
	"github.com/capfilt/capfilt/torch"
)

// trainModel is the model a run trains, with its tokenizer.
type trainModel struct {
	m   *blip.Model
	tok *tokenizer.Tokenizer
}

// imageSize is the training resolution of a model of config mc (Init.ImageSize).
func (c Config) imageSize(mc blip.Config) int {
	if c.Init.ImageSize > 0 {
		return c.Init.ImageSize
	}
	v := mc.Vision
	vitB := v.HiddenSize == 768 && v.NumLayers == 12
	vitL := v.HiddenSize == 1024 && v.NumLayers == 24
	if v.PatchSize == 16 && (vitB || vitL) {
		if c.Task == TaskPretrain {
			return 224
		}
		return 384
	}
	return v.ImageSize
}

// trainingConfig is mc as this run trains it: its image size, dropout and drop path.
func (c Config) trainingConfig(mc blip.Config) blip.Config {
	mc.Vision.ImageSize = c.imageSize(mc)
	mc.Text.Dropout = c.Dropout
	if c.DropPath >= 0 {
		mc.Vision.DropPath = c.DropPath
	}
	return mc
}

// newTrainModel builds the task's model: from a checkpoint (the task's parts copied
// out of it, at the training image size) or fresh (random, then the optional ViT and
// BERT initialisations), drawing random values from g.
func newTrainModel(c Config, g *torch.Generator) (*trainModel, error) {
	in := c.Init
	if in.From != "" {
		return modelFromCheckpoint(c, in.From, in.Vocab, g)
	}
	var mc blip.Config
	var err error
	if in.Preset != "" {
		if mc, err = blip.Preset(in.Preset); err != nil {
			return nil, fmt.Errorf("init: %w", err)
		}
	} else if mc, err = blip.FromHFConfig(in.ModelConfig); err != nil {
		return nil, fmt.Errorf("init: model config %s: %w", in.ModelConfig, err)
	}
	mc = c.trainingConfig(mc)
	m, err := blip.New(mc, c.Task.parts())
	if err != nil {
		return nil, fmt.Errorf("init: %w", err)
	}
	if err := m.InitRandom(g); err != nil {
		m.Close()
		return nil, err
	}
	if in.Vision != "" {
		if _, err := m.InitVision(in.Vision); err != nil {
			m.Close()
			return nil, fmt.Errorf("init vision %s: %w", in.Vision, err)
		}
	}
	if in.Text != "" {
		if _, err := m.InitText(in.Text); err != nil {
			m.Close()
			return nil, fmt.Errorf("init text %s: %w", in.Text, err)
		}
	}
	tok, err := blip.LoadModelTokenizer(in.Vocab, "", mc)
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("init vocab: %w", err)
	}
	return &trainModel{m: m, tok: tok}, nil
}

// modelFromCheckpoint loads path at the training image size and copies the task's
// parts into a model of its own (the weights are then owned, writable memory, and a
// decoder that shared the encoder's weights in pretraining becomes its own, as
// BLIP_Decoder loads a pretrained checkpoint).
func modelFromCheckpoint(c Config, path, vocab string, g *torch.Generator) (*trainModel, error) {
	src, _, err := blip.Load(path, blip.LoadOptions{})
	if err != nil {
		return nil, fmt.Errorf("init: %w", err)
	}
	want := c.trainingConfig(src.Config)
	if want.Vision.ImageSize != src.Config.Vision.ImageSize {
		src.Close()
		// Loading at another size interpolates the position embeddings, as BLIP's
		// finetunes do with a 224-pixel pretrained checkpoint at 384.
		if src, _, err = blip.Load(path, blip.LoadOptions{Config: &want}); err != nil {
			return nil, fmt.Errorf("init: %w", err)
		}
	}
	defer src.Close()
	parts := c.Task.parts()
	if c.Task == TaskPretrain && src.TextEncoder != nil && src.TextDecoder != nil && !src.SharedText {
		return nil, fmt.Errorf("init: %s has a text encoder and decoder that do not share weights; pretraining ties them (start from a pretrained checkpoint or a fresh model)", path)
	}
	m, err := blip.New(want, parts)
	if err != nil {
		return nil, fmt.Errorf("init: %w", err)
	}
	if err := m.InitRandom(g); err != nil {
		m.Close()
		return nil, err
	}
	var missing []string
	for _, p := range m.Params() {
		t, ok := src.Param(p.Name)
		if !ok || t == nil {
			missing = append(missing, p.Name)
			continue
		}
		if err := p.Tensor().CopyFrom(t); err != nil {
			m.Close()
			return nil, fmt.Errorf("init: %s: %s: %w", path, p.Name, err)
		}
	}
	if len(missing) > 0 {
		m.Close()
		shown := missing
		if len(shown) > 5 {
			shown = append(shown[:5:5], fmt.Sprintf("… %d more", len(missing)-5))
		}
		return nil, fmt.Errorf("init: %s lacks %d parameters %s training needs (%s)", path, len(missing), c.Task, strings.Join(shown, ", "))
	}
	tok, err := blip.LoadModelTokenizer(vocab, path, want)
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("init: %w", err)
	}
	return &trainModel{m: m, tok: tok}, nil
}
