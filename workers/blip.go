package workers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/capfilt/capfilt/blip/tokenizer"

	"github.com/capfilt/capfilt/blip"
	"github.com/capfilt/capfilt/captioner"
	"github.com/capfilt/capfilt/filter"
	"github.com/capfilt/capfilt/pipeline"
	"github.com/capfilt/capfilt/shards"
	"github.com/capfilt/capfilt/torch"
)

// BLIPLabeler is the real model stage: the BLIP captioner writes synthetic captions and
// the BLIP filter scores them with the web caption. When both are one loaded model (one
// checkpoint with both towers) the vision transformer runs once per batch for both.
type BLIPLabeler struct {
	cap     *captioner.Captioner
	scorer  *filter.Scorer
	capViT  *blip.Model // the captioner's model, whose ViT runs when shared
	shared  bool
	size    int
	device  torch.Device
	samples int
}

// NewBLIPLabeler joins a captioner and a scorer. capModel is the captioner's model; when
// it is the scorer's too, the image embeddings are shared.
func NewBLIPLabeler(c *captioner.Captioner, capModel *blip.Model, s *filter.Scorer) (*BLIPLabeler, error) {
	if capModel.Config.Vision.ImageSize != s.Model().Config.Vision.ImageSize {
		return nil, fmt.Errorf("captioner reads %d px images, filter %d px: preprocess cannot serve both",
			capModel.Config.Vision.ImageSize, s.Model().Config.Vision.ImageSize)
	}
	return &BLIPLabeler{cap: c, scorer: s, capViT: capModel, shared: capModel == s.Model(),
		size: capModel.Config.Vision.ImageSize, device: capModel.Device(), samples: c.Settings().Samples}, nil
}

// ImageSize is the vision model's input side.
func (l *BLIPLabeler) ImageSize() int { return l.size }

// SharesViT reports whether one ViT pass serves both captioning and filtering.
func (l *BLIPLabeler) SharesViT() bool { return l.shared }

// Label captions and scores a batch.
func (l *BLIPLabeler) Label(ctx context.Context, b Batch) ([]Labels, error) {
	n := b.Len()
	if n == 0 {
		return nil, nil
	}
	if len(b.Pixels) != n*3*l.size*l.size || b.Size != l.size {
		return nil, fmt.Errorf("model stage: %d pixel values of %d px images for %d images of %d px", len(b.Pixels), b.Size, n, l.size)
	}
	s := torch.NewScope()
	defer s.Close()
	pixels := s.Track(torch.FromFloat32(b.Pixels, int64(n), 3, int64(l.size), int64(l.size)))
	var caps [][]captioner.Caption
	var scores [][]filter.Score
	var err error
	if l.shared {
		torch.NoGrad(func() {
			img := l.capViT.EncodeImage(pixels, false)
			if err = img.Err(); err != nil {
				return
			}
			if caps, err = l.cap.CaptionImages(ctx, img, b.Keys); err != nil {
				return
			}
			scores, err = l.scorer.ScoreImages(ctx, img, captionTexts(b.WebCaptions, caps))
		})
	} else {
		caps, err = l.cap.CaptionPixels(ctx, pixels, b.Keys)
		if err == nil {
			scores, err = l.scorer.ScorePixels(ctx, pixels, captionTexts(b.WebCaptions, caps))
		}
	}
	if err != nil {
		if errors.Is(err, torch.ErrOutOfMemory) && l.device.CUDA {
			torch.CUDAEmptyCache() // give the halves the cached blocks back
		}
		return nil, err
	}
	out := make([]Labels, n)
	for i := range n {
		if len(scores[i]) != 1+len(caps[i]) {
			return nil, fmt.Errorf("model stage: image %q has %d scores for %d captions", b.Keys[i], len(scores[i]), 1+len(caps[i]))
		}
		cs := []shards.Caption{{Text: b.WebCaptions[i], Source: shards.SourceWeb, ITM: scores[i][0].ITM, ITC: scores[i][0].ITC}}
		for k, c := range caps[i] {
			sc := scores[i][1+k]
			cs = append(cs, shards.Caption{Text: c.Text, Source: shards.SourceSynthetic, ITM: sc.ITM, ITC: sc.ITC})
		}
		out[i] = Labels{Captions: cs}
	}
	return out, nil
}

func captionTexts(web []string, caps [][]captioner.Caption) [][]string {
	out := make([][]string, len(web))
	for i, w := range web {
		out[i] = append(out[i], w)
		for _, c := range caps[i] {
			out[i] = append(out[i], c.Text)
		}
	}
	return out
}

// MemoryStats reports the CUDA device's memory; ok is false on the CPU.
func (l *BLIPLabeler) MemoryStats() (map[string]int64, bool) {
	if !l.device.CUDA {
		return nil, false
	}
	m, err := torch.CUDAMemoryStats(l.device.Index)
	if err != nil {
		return nil, false
	}
	return map[string]int64{"allocated": m.Allocated, "reserved": m.Reserved, "peak": m.PeakAllocated, "total": m.Total}, true
}

// BLIPSource loads the BLIP models runs ask for onto one device, once: the workers of a
// process share them (inference only reads the weights), and a run with the same models
// but other generation settings reuses them.
type BLIPSource struct {
	Device torch.Device
	DType  torch.DType

	mu       sync.Mutex
	models   map[pipeline.ModelSpec]*loadedModel
	labelers map[string]*BLIPLabeler
}

type loadedModel struct {
	model *blip.Model
	tok   *tokenizer.Tokenizer
}

// NewBLIPSource loads models onto dev in dtype dt.
func NewBLIPSource(dev torch.Device, dt torch.DType) *BLIPSource {
	return &BLIPSource{Device: dev, DType: dt, models: map[pipeline.ModelSpec]*loadedModel{}, labelers: map[string]*BLIPLabeler{}}
}

// Labeler returns the model stage of a run's settings, loading what it needs.
func (s *BLIPSource) Labeler(ctx context.Context, rs pipeline.RunSettings) (Labeler, error) {
	var gen captioner.Settings
	if err := json.Unmarshal(rs.Generation, &gen); err != nil {
		return nil, fmt.Errorf("generation settings of run %s: %w", rs.Run, err)
	}
	key, _ := json.Marshal([]any{canonical(rs.Captioner), canonical(rs.Filter), gen})
	s.mu.Lock()
	defer s.mu.Unlock()
	if l, ok := s.labelers[string(key)]; ok {
		return l, nil
	}
	cm, err := s.load(canonical(rs.Captioner))
	if err != nil {
		return nil, fmt.Errorf("captioner: %w", err)
	}
	fm, err := s.load(canonical(rs.Filter))
	if err != nil {
		return nil, fmt.Errorf("filter: %w", err)
	}
	c, err := captioner.New(cm.model, cm.tok, gen)
	if err != nil {
		return nil, fmt.Errorf("captioner %s: %w", rs.Captioner.Path, err)
	}
	sc, err := filter.NewScorer(fm.model, fm.tok, filter.DefaultOptions())
	if err != nil {
		return nil, fmt.Errorf("filter %s: %w", rs.Filter.Path, err)
	}
	l, err := NewBLIPLabeler(c, cm.model, sc)
	if err != nil {
		return nil, err
	}
	s.labelers[string(key)] = l
	return l, nil
}

// canonical makes the same checkpoint named two ways one key (so it loads once).
func canonical(m pipeline.ModelSpec) pipeline.ModelSpec {
	if abs, err := filepath.Abs(m.Path); err == nil {
		m.Path = abs
	}
	if m.Tokenizer != "" {
		if abs, err := filepath.Abs(m.Tokenizer); err == nil {
			m.Tokenizer = abs
		}
	}
	return m
}

func (s *BLIPSource) load(spec pipeline.ModelSpec) (*loadedModel, error) {
	if m, ok := s.models[spec]; ok {
		return m, nil
	}
	m, tok, err := LoadBLIP(spec, s.Device, s.DType)
	if err != nil {
		return nil, err
	}
	lm := &loadedModel{model: m, tok: tok}
	s.models[spec] = lm
	return lm, nil
}

// Close frees every loaded model.
func (s *BLIPSource) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, m := range s.models {
		m.model.Close()
		delete(s.models, k)
	}
	clear(s.labelers)
}

// LoadBLIP loads a checkpoint strictly onto a device, with its tokenizer: spec.Tokenizer,
// or the vocab.txt / tokenizer.json beside the checkpoint, given the model's [DEC] and
// [ENC] ids.
func LoadBLIP(spec pipeline.ModelSpec, dev torch.Device, dt torch.DType) (*blip.Model, *tokenizer.Tokenizer, error) {
	if _, err := os.Stat(spec.Path); err != nil {
		return nil, nil, fmt.Errorf("model %s: %w", spec.Path, err)
	}
	m, _, err := blip.Load(spec.Path, blip.LoadOptions{})
	if err != nil {
		return nil, nil, fmt.Errorf("model %s: %w", spec.Path, err)
	}
	if err := m.To(dev, dt); err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("model %s to %v: %w", spec.Path, dev, err)
	}
	tok, err := blip.LoadModelTokenizer(spec.Tokenizer, spec.Path, m.Config)
	if err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("tokenizer of model %s: %w", spec.Path, err)
	}
	return m, tok, nil
}
