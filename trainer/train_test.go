package trainer

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	"github.com/capfilt/capfilt/blip"
)

// A tiny model's total loss falls on a small synthetic set within a bounded number of
// steps, and the run leaves a model in the HF layout with its log.
func TestPretrainingLossFallsOnTheSyntheticWorld(t *testing.T) {
	cfg := tinyConfig(t, TaskPretrain, t.TempDir())
	cfg.Epochs = 3
	res, err := Train(context.Background(), cfg, Hooks{})
	if err != nil {
		t.Fatal(err)
	}
	h := res.History
	if len(h) < 10 {
		t.Fatalf("%d logged steps", len(h))
	}
	first, last := h[0].Total, h[len(h)-1].Total
	for _, r := range h {
		t.Logf("step %d epoch %d lr %.2g itc %.3f itm %.3f lm %.3f total %.3f", r.Step, r.Epoch, r.LR, r.ITC, r.ITM, r.LM, r.Total)
	}
	if !(last < 0.8*first) {
		t.Errorf("total loss %.3f at step 1, %.3f at step %d", first, last, h[len(h)-1].Step)
	}
}

// The finetunes start from a pretrained checkpoint as BLIP's do: the captioner takes the
// vision model and the decoder (its weights its own from then on), the filter the vision
// model, encoder, projections and ITM head; a checkpoint at another image size has its
// position embeddings interpolated. The captioner's loss falls on the annotated set; the
// filter's id queue holds the image ids of the batches it saw (same-image positives).
// Each saved model has exactly its parts.
func TestFinetunesStartFromAPretrainedCheckpoint(t *testing.T) {
	dir := t.TempDir()
	pre := tinyConfig(t, TaskPretrain, filepath.Join(dir, "pre"))
	pre.MaxSteps = 4
	if _, err := Train(context.Background(), pre, Hooks{}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		task   Task
		epochs int
		parts  []string
	}{
		{TaskCaption, 3, []string{"vision", "text_decoder"}},
		{TaskRetrieval, 1, []string{"vision", "text_encoder", "itc", "itm", "temp"}},
	} {
		t.Run(string(c.task), func(t *testing.T) {
			cfg := tinyConfig(t, c.task, filepath.Join(dir, string(c.task)))
			cfg.Init = Init{From: pre.Out, ImageSize: 64}
			cfg.Epochs, cfg.LR, cfg.QueueSize = c.epochs, 1e-3, 32
			res, err := Train(context.Background(), cfg, Hooks{})
			if err != nil {
				t.Fatal(err)
			}
			m, rep, err := blip.Load(cfg.Out, blip.LoadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			if !sameSet(rep.Parts, c.parts) || m.Config.Vision.ImageSize != 64 || m.SharedText {
				t.Errorf("%s model: parts %v (want %v), %d px, shared text %v", c.task, rep.Parts, c.parts, m.Config.Vision.ImageSize, m.SharedText)
			}
			h := res.History
			switch c.task {
			case TaskCaption:
				first, last := meanTotal(h[:3]), meanTotal(h[len(h)-3:])
				if !(last < 0.85*first) {
					t.Errorf("caption loss %.3f over the first steps, %.3f over the last", first, last)
				}
			case TaskRetrieval:
				st, err := blip.ReadTensors(filepath.Join(cfg.Out, stateDirName, fmt.Sprintf("step-%09d", res.Steps), objectiveFile))
				if err != nil {
					t.Fatal(err)
				}
				ids, err := st["idx_queue"].Int64s()
				if err != nil {
					t.Fatal(err)
				}
				for _, x := range st {
					x.Free()
				}
				for _, id := range ids {
					if id < 0 || id >= 24 { // the annotated set's 24 images; -100 is an unwritten entry
						t.Fatalf("id queue after %d steps of 8: %v", res.Steps, ids)
					}
				}
			}
		})
	}
}

func meanTotal(h []StepRecord) float64 {
	s := 0.0
	for _, r := range h {
		s += r.Total
	}
	return s / float64(len(h))
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
