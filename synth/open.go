package synth

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/capfilt/capfilt/shards"
)

// manifestFormat names world.json's layout; Open refuses any other.
const manifestFormat = "capfilt-synth-world/1"

// manifest is world.json: what the world holds, where (paths relative to its folder),
// and how a model is best trained on it.
type manifest struct {
	Format    string      `json:"format"`
	Seed      uint64      `json:"seed"`
	Config    WorldConfig `json:"config"`
	Web       webManifest `json:"web"`
	Annotated setManifest `json:"annotated"`
	Test      setManifest `json:"test"`
	Vocab     struct {
		File string `json:"file"`
		// Size counts vocab.txt's tokens; the model's vocab_size adds [DEC] and [ENC].
		Size             int `json:"size"`
		ModelVocabSize   int `json:"model_vocab_size"`
		MaxCaptionTokens int `json:"max_caption_tokens"`
	} `json:"vocab"`
	ModelConfig string      `json:"model_config"`
	Recommended recommended `json:"recommended"`
}

type webManifest struct {
	Shards  []string            `json:"shards"`
	Pattern string              `json:"pattern"`
	Images  int                 `json:"images"`
	Kinds   map[CaptionKind]int `json:"kinds"`
	Noise   float64             `json:"noise_share"`
}

type setManifest struct {
	Annotations string `json:"annotations"`
	Images      int    `json:"images"`
	Captions    int    `json:"captions"`
}

// recommended is how to train and caption so that the captions stay true: the world's
// captions name left, right and cells, which a horizontal flip or a crop would falsify.
type recommended struct {
	Prompt         string `json:"prompt"`
	MaxWords       int    `json:"max_words"`
	HorizontalFlip bool   `json:"horizontal_flip"`
	RandomCrop     bool   `json:"random_crop"`
	Why            string `json:"why"`
	// GenerationMaxLength counts every decoder token: [DEC], the prompt's three words and
	// the longest caption the world can write with its [SEP] (CaptionTokenBound less [CLS]).
	GenerationMaxLength int `json:"generation_max_length"`
	GenerationMinLength int `json:"generation_min_length"`
}

func writeWorldFiles(w *World) error {
	vocab := worldVocab()
	w.VocabFile = filepath.Join(w.Dir, "vocab.txt")
	if err := writeFileAtomic(w.VocabFile, []byte(strings.Join(vocab, "\n")+"\n")); err != nil {
		return fmt.Errorf("world: %w", err)
	}
	cfgJSON, err := ModelConfigJSON(w.Config.ImageSize)
	if err != nil {
		return fmt.Errorf("world: %w", err)
	}
	w.ModelConfigFile = filepath.Join(w.Dir, "model_config.json")
	if err := writeFileAtomic(w.ModelConfigFile, cfgJSON); err != nil {
		return fmt.Errorf("world: %w", err)
	}
	m := manifest{Format: manifestFormat, Seed: w.Config.Seed, Config: w.Config, ModelConfig: "model_config.json"}
	m.Web = webManifest{Pattern: relPath(w.Dir, w.WebPattern), Images: len(w.webKeys), Kinds: w.Counts}
	for _, p := range w.WebShards {
		m.Web.Shards = append(m.Web.Shards, relPath(w.Dir, p))
	}
	noisy := 0
	for _, k := range NoiseKinds {
		noisy += w.Counts[k]
	}
	m.Web.Noise = ratio(noisy, len(w.webKeys))
	for _, s := range []struct {
		dst *setManifest
		set ImageSet
	}{{&m.Annotated, w.Annotated}, {&m.Test, w.Test}} {
		*s.dst = setManifest{Annotations: relPath(w.Dir, s.set.Annotations), Images: len(s.set.Images)}
		for _, img := range s.set.Images {
			s.dst.Captions += len(img.Captions)
		}
	}
	m.Vocab.File, m.Vocab.Size, m.Vocab.ModelVocabSize, m.Vocab.MaxCaptionTokens = "vocab.txt", len(vocab), len(vocab)+2, w.MaxCaptionTokens
	m.Recommended = recommended{Prompt: "a picture of ", MaxWords: 30,
		Why:                 "captions name left, right, top, bottom and cells: a horizontal flip or a crop makes them false",
		GenerationMaxLength: CaptionTokenBound + 3, GenerationMinLength: 5}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("world: %w", err)
	}
	return writeFileAtomic(filepath.Join(w.Dir, "world.json"), data)
}

// Open reads back a world Generate wrote: world.json, every web sample's truth (from
// the shards' KEY.json, through the pipeline's own tar reader) and both image sets, and
// checks them against each other.
func Open(dir string) (*World, error) {
	data, err := os.ReadFile(filepath.Join(dir, "world.json"))
	if err != nil {
		return nil, fmt.Errorf("open world: %w", err)
	}
	var m manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("open world %s: world.json: %w", dir, err)
	}
	if m.Format != manifestFormat {
		return nil, fmt.Errorf("open world %s: world.json format %q, want %q", dir, m.Format, manifestFormat)
	}
	w := &World{Dir: dir, Config: m.Config, Counts: map[CaptionKind]int{}, web: map[string]WebTruth{},
		WebPattern: filepath.Join(dir, filepath.FromSlash(m.Web.Pattern)), MaxCaptionTokens: m.Vocab.MaxCaptionTokens,
		VocabFile: filepath.Join(dir, filepath.FromSlash(m.Vocab.File)), ModelConfigFile: filepath.Join(dir, filepath.FromSlash(m.ModelConfig))}
	w.Config.Out = dir
	for _, s := range m.Web.Shards {
		p := filepath.Join(dir, filepath.FromSlash(s))
		if err := w.readShard(p); err != nil {
			return nil, fmt.Errorf("open world %s: %w", dir, err)
		}
		w.WebShards = append(w.WebShards, p)
	}
	if len(w.webKeys) != m.Web.Images {
		return nil, fmt.Errorf("open world %s: the shards hold %d web samples, world.json says %d", dir, len(w.webKeys), m.Web.Images)
	}
	for k, n := range m.Web.Kinds {
		if w.Counts[k] != n {
			return nil, fmt.Errorf("open world %s: the shards hold %d %s captions, world.json says %d", dir, w.Counts[k], k, n)
		}
	}
	for _, s := range []struct {
		dst *ImageSet
		m   setManifest
	}{{&w.Annotated, m.Annotated}, {&w.Test, m.Test}} {
		if *s.dst, err = readImageSet(filepath.Join(dir, filepath.FromSlash(s.m.Annotations)), s.m.Images); err != nil {
			return nil, fmt.Errorf("open world %s: %w", dir, err)
		}
	}
	return w, nil
}

func (w *World) readShard(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r := shards.OpenTar(f, path, shards.Limits{})
	for {
		s, err := r.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if s.SkipReason != "" {
			return fmt.Errorf("%s: sample %s unreadable: %s", path, s.Key, s.SkipReason)
		}
		raw, err := json.Marshal(s.Meta["synth"])
		if err != nil {
			return fmt.Errorf("%s: sample %s: synth truth: %w", path, s.Key, err)
		}
		var t WebTruth
		if err := json.Unmarshal(raw, &t); err != nil || t.Kind == "" {
			return fmt.Errorf("%s: sample %s: KEY.json has no synth truth (%v)", path, s.Key, err)
		}
		if err := t.Scene.Validate(); err != nil {
			return fmt.Errorf("%s: sample %s: %w", path, s.Key, err)
		}
		if _, dup := w.web[s.Key]; dup {
			return fmt.Errorf("%s: sample %s appears twice in the world", path, s.Key)
		}
		t.Key, t.Caption = s.Key, s.Caption
		w.web[s.Key] = t
		w.webKeys = append(w.webKeys, s.Key)
		w.Counts[t.Kind]++
	}
}

func readImageSet(path string, want int) (ImageSet, error) {
	s := ImageSet{Annotations: path}
	data, err := os.ReadFile(path)
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(data, &s.Images); err != nil {
		return s, fmt.Errorf("%s: %w", path, err)
	}
	if len(s.Images) != want {
		return s, fmt.Errorf("%s: %d images, world.json says %d", path, len(s.Images), want)
	}
	for i, img := range s.Images {
		if img.ImageID != i+1 {
			return s, fmt.Errorf("%s: entry %d has image_id %d, want %d", path, i, img.ImageID, i+1)
		}
		if err := img.Truth.Scene.Validate(); err != nil {
			return s, fmt.Errorf("%s: image %d: %w", path, img.ImageID, err)
		}
		if _, err := os.Stat(s.ImagePath(img)); err != nil {
			return s, fmt.Errorf("%s: image %d: %w", path, img.ImageID, err)
		}
	}
	return s, nil
}
