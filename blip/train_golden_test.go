package blip

import (
	"fmt"
	"math"
	"path/filepath"
	"sort"
	"testing"

	"github.com/capfilt/capfilt/torch"
)

// The training goldens come from testdata/ref/train_ref.py (plain PyTorch written from
// the spec): a tiny model, eval math, fixed hard negatives. See testdata/ref/README.md.
const (
	lossTol   = 1e-5
	gradTol   = 1e-5
	weightTol = 1e-5
)

type trainGolden struct {
	inputs, golden map[string]*torch.Tensor
}

func loadTrainGolden(t *testing.T, dir string) trainGolden {
	t.Helper()
	return trainGolden{
		inputs: readRefTensors(t, filepath.Join(refDir, "tiny-train", "inputs.safetensors")),
		golden: readRefTensors(t, filepath.Join(refDir, dir, "golden.safetensors")),
	}
}

func (g trainGolden) in(t *testing.T, name string) *torch.Tensor {
	t.Helper()
	x, ok := g.inputs[name]
	if !ok {
		t.Fatalf("inputs have no %s", name)
	}
	return x
}

func (g trainGolden) ref(t *testing.T, name string) *torch.Tensor {
	t.Helper()
	x, ok := g.golden[name]
	if !ok {
		t.Fatalf("golden has no %s", name)
	}
	return x
}

func (g trainGolden) scalar(t *testing.T, name string) float64 {
	t.Helper()
	v, err := g.in(t, name).Item()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func loadTrainModel(t *testing.T, dir string) *Model {
	t.Helper()
	m, _, err := Load(filepath.Join(refDir, dir), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	if err := m.SetTrainable(true); err != nil {
		t.Fatal(err)
	}
	return m
}

// within checks got against the golden tensor and returns the difference.
func within(t *testing.T, what string, got, want *torch.Tensor, tol float64) float64 {
	t.Helper()
	if got == nil {
		t.Fatalf("%s: no value", what)
	}
	d := maxAbsDiff(t, what, got.Detach(), want)
	if d > tol {
		t.Errorf("%s differs from the reference by %.3g (> %.0e)", what, d, tol)
	}
	return d
}

func checkLosses(t *testing.T, g trainGolden, prefix string, l Losses) {
	t.Helper()
	for name, got := range map[string]*torch.Tensor{"itc": l.ITC, "itm": l.ITM, "lm": l.LM, "total": l.Total} {
		want, ok := g.golden[prefix+"loss."+name]
		if !ok {
			if got != nil {
				t.Errorf("%s loss %s has no reference", prefix, name)
			}
			continue
		}
		d := within(t, prefix+"loss."+name, got, want, lossTol)
		v, _ := got.Item()
		t.Logf("%sloss.%-5s %.6f  |diff| %.2g", prefix, name, v, d)
	}
}

// checkGrads compares the gradient of every parameter with the reference's.
func checkGrads(t *testing.T, g trainGolden, m *Model, prefix string) {
	t.Helper()
	worst, worstName, n := 0.0, "", 0
	for _, p := range m.Params() {
		want, ok := g.golden[prefix+"grad."+p.Name]
		if !ok {
			t.Errorf("the reference has no gradient for %s", p.Name)
			continue
		}
		grad, err := p.Tensor().Grad()
		if err != nil || grad == nil {
			t.Errorf("%s has no gradient (%v)", p.Name, err)
			continue
		}
		d := within(t, "grad "+p.Name, grad, want, gradTol)
		grad.Free()
		if d > worst {
			worst, worstName = d, p.Name
		}
		n++
	}
	refCount := 0
	for k := range g.golden {
		if len(k) > len(prefix)+5 && k[:len(prefix)+5] == prefix+"grad." {
			refCount++
		}
	}
	if n != refCount {
		t.Errorf("compared %d gradients; the reference holds %d", n, refCount)
	}
	t.Logf("%d gradients, max |diff| %.2g (%s)", n, worst, worstName)
}

func goldenQueues(t *testing.T, g trainGolden, withIDs bool) *FeatureQueues {
	q := &FeatureQueues{Image: g.in(t, "image_queue").DetachedClone(), Text: g.in(t, "text_queue").DetachedClone()}
	if withIDs {
		q.IDs = g.in(t, "idx_queue").DetachedClone()
	}
	t.Cleanup(q.Close)
	return q
}

func goldenBatch(t *testing.T, g trainGolden) Batch {
	return Batch{Pixels: g.in(t, "pixel_values"), IDs: g.in(t, "input_ids"), Mask: g.in(t, "attention_mask"),
		ImageIDs: g.in(t, "image_ids")}
}

func TestPretrainingMatchesTheReferenceOverThreeAdamWSteps(t *testing.T) {
	reference(t)
	g := loadTrainGolden(t, "tiny-train")
	m := loadTrainModel(t, "tiny-train")
	if !m.SharedText {
		t.Fatal("tiny-train is a pretraining checkpoint: the decoder must share the encoder's weights")
	}
	mo, err := NewMomentum(m, MomentumRate)
	if err != nil {
		t.Fatal(err)
	}
	defer mo.Close()
	p := &Pretrainer{Model: m, Momentum: mo, Queues: goldenQueues(t, g, false)}
	before := map[string][]float32{}
	for _, prm := range m.Params() {
		before[prm.Name], _ = prm.Tensor().Detach().Float32s()
	}
	opt, err := torch.NewAdamW(m.AdamWGroups(1e-4, WeightDecay)...)
	if err != nil {
		t.Fatal(err)
	}
	defer opt.Close()
	alphas, _ := g.in(t, "alphas").Float32s()
	for k := 0; k < 3; k++ {
		s := torch.NewScope()
		neg := &HardNegatives{Images: s.Ref(g.in(t, "neg_image_idx_steps")).Select(0, int64(k)),
			Texts: s.Ref(g.in(t, "neg_text_idx_steps")).Select(0, int64(k))}
		if err := opt.ZeroGrad(); err != nil {
			t.Fatal(err)
		}
		l, tr, err := p.losses(s, goldenBatch(t, g), StepOptions{Alpha: float64(alphas[k]), Negatives: neg})
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Total.Backward(); err != nil {
			t.Fatal(err)
		}
		prefix := fmt.Sprintf("step%d.", k+1)
		checkLosses(t, g, prefix, l)
		within(t, prefix+"temp", m.Temp, g.ref(t, prefix+"temp"), 1e-7)
		if k == 0 {
			checkGrads(t, g, m, prefix)
			within(t, "sim_i2t", tr.simI2T, g.ref(t, "step1.itc.sim_i2t"), 1e-4)
			within(t, "sim_t2i", tr.simT2I, g.ref(t, "step1.itc.sim_t2i"), 1e-4)
			within(t, "ITM weights t2i", tr.weightsT2I, g.ref(t, "step1.itm.weights_t2i"), 1e-6)
			within(t, "ITM weights i2t", tr.weightsI2T, g.ref(t, "step1.itm.weights_i2t"), 1e-6)
			within(t, "ITM logits", tr.itmLogits, g.ref(t, "step1.itm.logits"), 1e-5)
			within(t, "image queue after step 1", p.Queues.Image, g.ref(t, "step1.image_queue"), 1e-6)
			within(t, "text queue after step 1", p.Queues.Text, g.ref(t, "step1.text_queue"), 1e-6)
			if p.Queues.Ptr != 4 {
				t.Errorf("queue pointer after step 1: %d, want 4", p.Queues.Ptr)
			}
		}
		if err := opt.Step(); err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
	worst, moved := 0.0, 0.0
	for _, prm := range m.Params() {
		d := within(t, "weights after 3 steps: "+prm.Name, prm.Tensor(), g.ref(t, "after.param."+prm.Name), weightTol)
		worst = math.Max(worst, d)
		if prm.Name == "temp" {
			continue // moved by the clamp, not by AdamW
		}
		now, _ := prm.Tensor().Detach().Float32s()
		for i := range now {
			moved = math.Max(moved, math.Abs(float64(now[i]-before[prm.Name][i])))
		}
	}
	t.Logf("weights after 3 AdamW steps: max |diff| %.2g; largest AdamW change over the steps %.2g", worst, moved)
	if moved < 10*weightTol {
		t.Fatalf("the weights moved by at most %.2g: the comparison would not show a wrong step", moved)
	}
	names := make([]string, 0)
	for _, prm := range mo.Model.Params() {
		names = append(names, prm.Name)
	}
	sort.Strings(names)
	worstM := 0.0
	for _, n := range names {
		tt, _ := mo.Model.Param(n)
		worstM = math.Max(worstM, within(t, "momentum "+n, tt, g.ref(t, "after.momentum."+n), weightTol))
	}
	t.Logf("momentum weights after 3 steps (%d tensors): max |diff| %.2g", len(names), worstM)
	within(t, "image queue after 3 steps", p.Queues.Image, g.ref(t, "after.image_queue"), 1e-6)
	within(t, "text queue after 3 steps", p.Queues.Text, g.ref(t, "after.text_queue"), 1e-6)
	if want, _ := g.ref(t, "after.queue_ptr").Item(); float64(p.Queues.Ptr) != want {
		t.Errorf("queue pointer after 3 steps %d, want %v", p.Queues.Ptr, want)
	}
}

func TestRetrievalFinetuneMatchesTheReference(t *testing.T) {
	reference(t)
	g := loadTrainGolden(t, "tiny-train-retrieval")
	m := loadTrainModel(t, "tiny-train-retrieval")
	mo, err := NewMomentum(m, MomentumRate)
	if err != nil {
		t.Fatal(err)
	}
	defer mo.Close()
	r := &RetrievalTrainer{Model: m, Momentum: mo, Queues: goldenQueues(t, g, true)}
	s := torch.NewScope()
	defer s.Close()
	neg := &HardNegatives{Images: g.in(t, "retrieval_neg_image_idx"), Texts: g.in(t, "retrieval_neg_text_idx")}
	l, tr, err := r.losses(s, goldenBatch(t, g), StepOptions{Alpha: g.scalar(t, "alpha"), Negatives: neg})
	if err != nil {
		t.Fatal(err)
	}
	if l.LM != nil {
		t.Fatal("retrieval finetuning has no LM loss")
	}
	if err := l.Total.Backward(); err != nil {
		t.Fatal(err)
	}
	checkLosses(t, g, "", l)
	checkGrads(t, g, m, "")
	within(t, "ITM weights t2i", tr.weightsT2I, g.ref(t, "itm.weights_t2i"), 1e-6)
	within(t, "ITM weights i2t", tr.weightsI2T, g.ref(t, "itm.weights_i2t"), 1e-6)
	within(t, "ITM logits", tr.itmLogits, g.ref(t, "itm.logits"), 1e-5)
	within(t, "image queue", r.Queues.Image, g.ref(t, "queue.image"), 1e-6)
	within(t, "text queue", r.Queues.Text, g.ref(t, "queue.text"), 1e-6)
	within(t, "id queue", r.Queues.IDs.ToDType(torch.Float32), g.ref(t, "queue.idx").ToDType(torch.Float32), 0)
}

func TestCaptionFinetuneMatchesTheReference(t *testing.T) {
	reference(t)
	g := loadTrainGolden(t, "tiny-train-caption")
	m := loadTrainModel(t, "tiny-train-caption")
	c := &CaptionTrainer{Model: m, PromptLen: 4}
	s := torch.NewScope()
	defer s.Close()
	b := Batch{Pixels: g.in(t, "pixel_values"), IDs: g.in(t, "caption_input_ids"), Mask: g.in(t, "caption_attention_mask")}
	l, err := c.Losses(s, b, StepOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Total.Backward(); err != nil {
		t.Fatal(err)
	}
	checkLosses(t, g, "", l)
	checkGrads(t, g, m, "")
}

// reference skips when the training goldens are absent.
func reference(t *testing.T) {
	t.Helper()
	if m, _ := filepath.Glob(filepath.Join(refDir, "tiny-train*", "golden.safetensors")); len(m) < 3 {
		t.Skip("no training goldens in", refDir)
	}
}
