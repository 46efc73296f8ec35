package trainer

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/capfilt/capfilt/synth"
)

// BenchCase is one training benchmark: a preset at an image size and batch.
type BenchCase struct {
	Name      string // "tiny", "base224": the PyTorch twin's preset names
	Preset    string
	ImageSize int
	Batch     int
}

// DefaultBenchCases are the twin's: the tiny preset with 8 images, ViT-B/BERT-base at
// 224 pixels with 2.
func DefaultBenchCases() []BenchCase {
	return []BenchCase{{Name: "tiny", Preset: "tiny", ImageSize: 64, Batch: 8}, {Name: "base224", Preset: "base", ImageSize: 224, Batch: 2}}
}

// BenchConfig sizes BenchTrain.
type BenchConfig struct {
	Cases         []BenchCase
	Steps, Warmup int // measured steps after warm-up steps (defaults 10, 2)
	// Dir holds the sample shards and runs (default: a temporary folder, removed).
	Dir     string
	Workers int // decode workers (0: one per CPU)
}

// BenchResult is one case's speed. Steps run the whole loop on sample shards of 256 px
// JPEG and PNG images (decoded, BLIP's train transform, tokenised) with a queue of
// 57600, dropout off (the PyTorch twin's eval math).
type BenchResult struct {
	Case BenchCase
	// StepSeconds is the mean time of a measured step without its wait for data;
	// FastestStep the fastest such step.
	StepSeconds, FastestStep float64
	// ImagesPerSec counts images over the measured steps' wall time, waits included.
	ImagesPerSec float64
	// WaitShare is the share of that wall time the steps waited for a batch.
	WaitShare float64
	Steps     int
}

// BenchTrain measures training speed for each case.
func BenchTrain(ctx context.Context, c BenchConfig) ([]BenchResult, error) {
	if len(c.Cases) == 0 {
		c.Cases = DefaultBenchCases()
	}
	if c.Steps <= 0 {
		c.Steps = 10
	}
	if c.Warmup <= 0 {
		c.Warmup = 2
	}
	if c.Dir == "" {
		dir, err := os.MkdirTemp("", "capfilt-bench-train")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		c.Dir = dir
	}
	var out []BenchResult
	for _, bc := range c.Cases {
		words := benchVocab()
		if bc.Preset == "tiny" {
			words = synth.TinyVocab() // the tiny preset's ids are its
		}
		vocab := filepath.Join(c.Dir, bc.Name+"-vocab.txt")
		if err := os.WriteFile(vocab, []byte(strings.Join(words, "\n")+"\n"), 0o644); err != nil {
			return nil, err
		}
		r, err := benchCase(ctx, c, bc, vocab)
		if err != nil {
			return out, fmt.Errorf("bench %s: %w", bc.Name, err)
		}
		out = append(out, r)
	}
	return out, nil
}

func benchCase(ctx context.Context, c BenchConfig, bc BenchCase, vocab string) (BenchResult, error) {
	steps := c.Steps + c.Warmup
	dir := filepath.Join(c.Dir, bc.Name)
	perShard := 64
	shards := (steps*bc.Batch + perShard - 1) / perShard
	if _, err := synth.WriteSampleShards(filepath.Join(dir, "data"), shards, synth.SampleOptions{PerShard: perShard, Width: 256, Height: 256, Seed: 1}); err != nil {
		return BenchResult{}, err
	}
	cfg := DefaultConfig(TaskPretrain)
	cfg.Data = []DataSource{{Kind: SourceWeb, Location: filepath.Join(dir, "data", "*.tar")}}
	cfg.Out = filepath.Join(dir, "run")
	cfg.Init = Init{Preset: bc.Preset, Vocab: vocab, ImageSize: bc.ImageSize}
	cfg.BatchSize, cfg.Epochs, cfg.MaxSteps, cfg.Dropout, cfg.Workers = bc.Batch, 1, steps, 0, c.Workers
	cfg.LogEvery, cfg.SaveEvery = steps, 0
	res := BenchResult{Case: bc, Steps: c.Steps, FastestStep: math.Inf(1)}
	var wall, wait, compute time.Duration
	_, err := Train(ctx, cfg, Hooks{Progress: func(p Progress) {
		if p.Step <= c.Warmup {
			return
		}
		wall += p.StepTime
		wait += p.StepWait
		compute += p.StepTime - p.StepWait
		res.FastestStep = min(res.FastestStep, (p.StepTime - p.StepWait).Seconds())
	}})
	if err != nil {
		return res, err
	}
	res.StepSeconds = compute.Seconds() / float64(c.Steps)
	res.ImagesPerSec = float64(c.Steps*bc.Batch) / wall.Seconds()
	res.WaitShare = wait.Seconds() / wall.Seconds()
	return res, nil
}

// benchVocab is a vocabulary laid out as BERT's (pad 0, [UNK] 100, [CLS] 101, [SEP]
// 102, 30522 tokens) holding the sample captions' words, so every preset tokenises.
func benchVocab() []string {
	v := make([]string, 0, 30522)
	v = append(v, "[PAD]")
	for i := 1; i < 100; i++ {
		v = append(v, fmt.Sprintf("[unused%d]", i))
	}
	v = append(v, "[UNK]", "[CLS]", "[SEP]", "[MASK]")
	seen := map[string]bool{}
	for _, t := range v {
		seen[t] = true
	}
	for _, t := range synth.TinyVocab() {
		if !seen[t] {
			seen[t] = true
			v = append(v, t)
		}
	}
	for i := 0; len(v) < 30522; i++ {
		v = append(v, fmt.Sprintf("filler%d", i))
	}
	return v
}
