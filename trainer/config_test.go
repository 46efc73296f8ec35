package trainer

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Validate names every bad field at once, with its value and the reason.
func TestValidateNamesEveryBadField(t *testing.T) {
	c := DefaultConfig(TaskPretrain)
	c.Data = []DataSource{{Kind: SourceWeb, Location: "x.tar"}}
	c.Out = "out"
	c.Init = Init{Preset: "tiny", Vocab: "vocab.txt"}
	if err := c.Validate(); err != nil {
		t.Fatalf("a good config: %v", err)
	}
	c.BatchSize, c.LR, c.DecayRate, c.Alpha, c.Dropout, c.LogEvery = 1, -1, 1.5, 2, 1, 0
	c.Init.Vocab = ""
	err := c.Validate()
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("want Problems, got %v", err)
	}
	got := map[string]bool{}
	for _, p := range ps {
		got[p.Field] = true
	}
	for _, f := range []string{"batch_size", "lr", "lr_decay_rate", "alpha", "dropout", "log_every", "init_vocab", "min_lr", "warmup_lr"} {
		if !got[f] {
			t.Errorf("%s not named: %v", f, err)
		}
	}
	if !strings.Contains(err.Error(), "lr_decay_rate 1.5: must be in (0, 1]") {
		t.Errorf("message: %v", err)
	}
}

// A resume is refused when the settings, the data or the world size differ from the
// checkpoint's, and the error names each difference; a second run into a folder that
// holds one is refused too.
func TestResumeRefusesOtherSettingsDataAndWorld(t *testing.T) {
	w := testWorld(t)
	cfg := tinyConfig(t, TaskPretrain, t.TempDir())
	cfg.MaxSteps = 2
	if _, err := Train(context.Background(), cfg, Hooks{}); err != nil {
		t.Fatal(err)
	}
	if _, err := Train(context.Background(), cfg, Hooks{}); err == nil || !strings.Contains(err.Error(), "already holds a training run") {
		t.Errorf("a second run into the folder: %v", err)
	}
	resume := cfg
	resume.Resume, resume.MaxSteps = true, 3
	other := resume
	other.BatchSize, other.LR = 4, 5e-4
	other.Data = append(other.Data, DataSource{Kind: SourceCOCO, Location: w.Annotated.Annotations})
	_, err := Train(context.Background(), other, Hooks{})
	for _, want := range []string{"batch_size: 8 in the checkpoint, 4 now", "lr: 0.001 in the checkpoint, 0.0005 now", "data:", "data_sources:"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("resume with other settings: want %q in %v", want, err)
		}
	}

	// The world size: a checkpoint of two processes, resumed by one.
	ck, err := latestCheckpoint(cfg.Out)
	if err != nil {
		t.Fatal(err)
	}
	ck.state.Settings.World = 2
	data, _ := json.Marshal(ck.state)
	if err := os.WriteFile(filepath.Join(ck.dir, stateFile), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Train(context.Background(), resume, Hooks{}); err == nil || !strings.Contains(err.Error(), "world_size: 2 in the checkpoint, 1 now") {
		t.Errorf("resume with another world size: %v", err)
	}
}
