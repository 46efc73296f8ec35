package trainer

import (
	"context"
	"testing"
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
