package modelstage

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"

	"github.com/capfilt/capfilt/blip"
	"github.com/capfilt/capfilt/captioner"
	"github.com/capfilt/capfilt/filter"
	"github.com/capfilt/capfilt/pipeline"
	"github.com/capfilt/capfilt/torch"
	"github.com/capfilt/capfilt/workers"
)

// BLIPSource loads the BLIP models runs ask for onto one device, once: the workers of a
// process share them (inference only reads the weights), and a run with the same models
// but other generation settings reuses them.
type BLIPSource struct {
	Device torch.Device
	DType  torch.DType
	// Log, when set, is told each load's warnings (a vocabulary without [PAD], ...).
	Log *slog.Logger

	mu       sync.Mutex
	models   map[pipeline.ModelSpec]*blip.Inference
	labelers map[string]*BLIPLabeler
}

// NewBLIPSource loads models onto dev in dtype dt.
func NewBLIPSource(dev torch.Device, dt torch.DType) *BLIPSource {
	return &BLIPSource{Device: dev, DType: dt, models: map[pipeline.ModelSpec]*blip.Inference{}, labelers: map[string]*BLIPLabeler{}}
}

// Labeler returns the model stage of a run's settings, loading what it needs.
func (s *BLIPSource) Labeler(ctx context.Context, rs pipeline.RunSettings) (workers.Labeler, error) {
	key, _ := json.Marshal([]any{canonical(rs.Captioner), canonical(rs.Filter), rs.Generation, rs.ITMFirstToken.OrDefault()})
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
	c, err := captioner.New(cm.Model, cm.Tokenizer, rs.Generation)
	if err != nil {
		return nil, fmt.Errorf("captioner %s: %w", rs.Captioner.Path, err)
	}
	opts := filter.DefaultOptions()
	opts.ITMFirstToken = rs.ITMFirstToken.OrDefault()
	sc, err := filter.NewScorer(fm.Model, fm.Tokenizer, opts)
	if err != nil {
		return nil, fmt.Errorf("filter %s: %w", rs.Filter.Path, err)
	}
	l, err := NewBLIPLabeler(c, cm.Model, sc)
	if err != nil {
		return nil, err
	}
	s.labelers[string(key)] = l
	return l, nil
}

// Loaded is how many model stages are ready: 0 until a run's first job loaded its
// models (a worker loads them on demand), or when every load so far failed.
func (s *BLIPSource) Loaded() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.labelers)
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

func (s *BLIPSource) load(spec pipeline.ModelSpec) (*blip.Inference, error) {
	if m, ok := s.models[spec]; ok {
		return m, nil
	}
	m, err := blip.LoadForInference(spec.Path, blip.InferenceOptions{Tokenizer: spec.Tokenizer, Device: s.Device, DType: s.DType})
	if err != nil {
		return nil, err
	}
	if s.Log != nil {
		for _, w := range m.Report.Warnings {
			s.Log.Warn("model loaded with a warning", "model", spec.Path, "warning", w)
		}
	}
	s.models[spec] = m
	return m, nil
}

// Close frees every loaded model.
func (s *BLIPSource) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, m := range s.models {
		m.Close()
		delete(s.models, k)
	}
	clear(s.labelers)
}
