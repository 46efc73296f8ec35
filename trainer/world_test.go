package trainer

import (
	"context"
	"os"
	"sync"
	"testing"

	"github.com/capfilt/capfilt/synth"
)

// A small synthetic world shared by the training tests (written once per test binary):
// 96 web images in 3 tars, 24 annotated and 16 test images with 3 captions each, at
// 48 pixels, and the tiny model config sized for it.
var (
	worldOnce sync.Once
	worldDir  string
	world     *synth.World
	worldErr  error
)

func testWorld(t testing.TB) *synth.World {
	t.Helper()
	worldOnce.Do(func() {
		var err error
		if worldDir, err = mkdirTemp("capfilt-trainer-world"); err != nil {
			worldErr = err
			return
		}
		cfg := synth.DefaultWorldConfig(worldDir)
		cfg.WebImages, cfg.AnnotatedImages, cfg.TestImages, cfg.CaptionsPerImage, cfg.PerShard = 96, 24, 16, 3, 32
		cfg.Seed = 7
		world, worldErr = synth.Generate(context.Background(), cfg)
	})
	if worldErr != nil {
		t.Fatal(worldErr)
	}
	return world
}

// tinyConfig is a pretraining run of the world's model on its web shards: small
// enough for a test (queue 64, batch 8), eval math off (dropout 0.1), no augmentation
// (the world's captions name left and right).
func tinyConfig(t testing.TB, task Task, out string) Config {
	w := testWorld(t)
	c := DefaultConfig(task)
	switch task {
	case TaskPretrain:
		c.Data = []DataSource{{Kind: SourceWeb, Location: w.WebPattern}}
	default:
		c.Data = []DataSource{{Kind: SourceCOCO, Location: w.Annotated.Annotations}}
	}
	c.Out = out
	c.Init = Init{ModelConfig: w.ModelConfigFile, Vocab: w.VocabFile}
	c.BatchSize, c.QueueSize, c.Epochs = 8, 64, 2
	c.LR, c.WarmupSteps, c.WarmupLR = 1e-3, 4, 1e-5
	c.Augment, c.Workers, c.Seed, c.LogEvery = false, 2, 1, 1
	return c
}

func mkdirTemp(prefix string) (string, error) { return os.MkdirTemp("", prefix) }
