package trainer

import (
	"math"
	"testing"
)

// The learning rates of BLIP's scripts at given steps: pretraining's linear warm-up over
// the first steps of epoch 0 (whose last value then holds, as pretrain.py sets nothing
// after it), the per-epoch step decay with its floor, and the finetunes' per-epoch cosine.
func TestLearningRateSchedules(t *testing.T) {
	pre := DefaultConfig(TaskPretrain) // 3e-4, warm-up 1e-6 over 3000 steps, rate 0.85, floor 1e-6
	capt := DefaultConfig(TaskCaption) // 1e-5 cosine to 0 over 5 epochs
	ret := DefaultConfig(TaskRetrieval)
	ret.MinLR = 1e-6
	floor := pre
	floor.DecayRate = 0.1
	cases := []struct {
		name        string
		c           Config
		epoch, step int
		want        float64
	}{
		{"warm-up start", pre, 0, 0, 1e-6},
		{"warm-up middle", pre, 0, 1500, 1e-6 + (3e-4-1e-6)*0.5},
		{"warm-up last step", pre, 0, 2999, 1e-6 + (3e-4-1e-6)*2999/3000},
		{"after warm-up epoch 0 keeps the last value", pre, 0, 5000, 1e-6 + (3e-4-1e-6)*2999/3000},
		{"epoch 1 decays", pre, 1, 0, 3e-4 * 0.85},
		{"epoch 1 later steps", pre, 1, 4000, 3e-4 * 0.85},
		{"epoch 19", pre, 19, 7, 3e-4 * math.Pow(0.85, 19)},
		{"decay floor", floor, 10, 0, 1e-6},
		{"cosine epoch 0", capt, 0, 100, 1e-5},
		{"cosine middle", capt, 2, 0, 1e-5 * 0.5 * (1 + math.Cos(math.Pi*2/5))},
		{"cosine last epoch", capt, 4, 9, 1e-5 * 0.5 * (1 + math.Cos(math.Pi*4/5))},
		{"cosine with floor", ret, 3, 0, (1e-5-1e-6)*0.5*(1+math.Cos(math.Pi*3/6)) + 1e-6},
	}
	for _, c := range cases {
		if got := c.c.LearningRate(c.epoch, c.step); math.Abs(got-c.want) > 1e-15 {
			t.Errorf("%s: lr(epoch %d, step %d) = %.10g, want %.10g", c.name, c.epoch, c.step, got, c.want)
		}
	}
	noWarm := pre
	noWarm.WarmupSteps = 0
	if got := noWarm.LearningRate(0, 0); got != 3e-4 {
		t.Errorf("no warm-up: epoch 0 lr %g, want 3e-4", got)
	}
}

// The distillation weight ramps as blip's PretrainAlpha and RetrievalAlpha say; the
// captioner has none.
func TestAlphaRampsPerTask(t *testing.T) {
	cases := []struct {
		task           Task
		epoch, step, n int
		want           float64
	}{
		{TaskPretrain, 0, 0, 100, 0},
		{TaskPretrain, 0, 50, 100, 0.1},
		{TaskPretrain, 1, 0, 100, 0.2},
		{TaskPretrain, 2, 0, 100, 0.4},
		{TaskRetrieval, 0, 50, 100, 0.2},
		{TaskRetrieval, 1, 0, 100, 0.4},
		{TaskCaption, 3, 0, 100, 0},
	}
	for _, c := range cases {
		if got := DefaultConfig(c.task).alpha(c.epoch, c.step, c.n); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("%s alpha(epoch %d, step %d of %d) = %g, want %g", c.task, c.epoch, c.step, c.n, got, c.want)
		}
	}
}
