package torch

import (
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"testing"
	"time"
)

func mustI64(t *testing.T, x *Tensor) []int64 {
	t.Helper()
	v, err := x.Int64s()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestGeneratorStateReplaysEveryLaterDraw(t *testing.T) {
	g := NewGenerator(5)
	defer g.Close()
	_ = Randn(g, Float32, CPU, 7) // move off the seed's start
	st, err := g.State()
	if err != nil {
		t.Fatal(err)
	}
	probs := FromFloat32([]float32{0.1, 0.2, 0.3, 0.4, 0.5, 0.1, 0.2, 0.2}, 2, 4)
	draw := func() ([]float32, []int64, []float32) {
		return mustF32(t, Randn(g, Float32, CPU, 5)), mustI64(t, probs.Multinomial(3, true, g)), mustF32(t, Rand(g, Float32, CPU, 4))
	}
	n1, m1, u1 := draw()
	if err := g.SetState(st); err != nil {
		t.Fatal(err)
	}
	n2, m2, u2 := draw()
	if !slices.Equal(n1, n2) || !slices.Equal(m1, m2) || !slices.Equal(u1, u2) {
		t.Fatalf("restored state drew %v %v %v, first time %v %v %v", n2, m2, u2, n1, m1, u1)
	}
	// A state moves to another generator: it is the whole stream, not the seed.
	other := NewGenerator(99)
	defer other.Close()
	if err := other.SetState(st); err != nil {
		t.Fatal(err)
	}
	if got := mustF32(t, Randn(other, Float32, CPU, 5)); !slices.Equal(got, n1) {
		t.Fatalf("state copied to another generator drew %v, want %v", got, n1)
	}
	if err := g.SetState([]byte{1, 2, 3}); err == nil {
		t.Fatal("a truncated state must be an error")
	}
	g.Close()
	if _, err := g.State(); err == nil {
		t.Fatal("state of a closed generator must be an error")
	}
}

// Dropout draws from the default generator; restoring its state replays the masks.
func TestDefaultGeneratorStateReplaysDropout(t *testing.T) {
	ManualSeed(3)
	x := Ones(Float32, CPU, 64)
	_ = x.Dropout(0.5, true)
	st, err := DefaultGeneratorState(CPU)
	if err != nil {
		t.Fatal(err)
	}
	a := mustF32(t, x.Dropout(0.5, true))
	r1 := mustF32(t, Randn(nil, Float32, CPU, 3))
	if err := SetDefaultGeneratorState(CPU, st); err != nil {
		t.Fatal(err)
	}
	b := mustF32(t, x.Dropout(0.5, true))
	r2 := mustF32(t, Randn(nil, Float32, CPU, 3))
	if !slices.Equal(a, b) || !slices.Equal(r1, r2) {
		t.Fatal("the default generator's restored state must give the same dropout mask and draws")
	}
	zeros := 0
	for _, v := range a {
		if v == 0 {
			zeros++
		}
	}
	if zeros == 0 || zeros == len(a) {
		t.Fatalf("dropout 0.5 zeroed %d of %d", zeros, len(a))
	}
}

func TestClampInPlaceKeepsALeafTrainable(t *testing.T) {
	temp := FromFloat32([]float32{0.7}, 1)
	if err := temp.SetRequiresGrad(true); err != nil {
		t.Fatal(err)
	}
	if err := temp.ClampInPlace(0.001, 0.5); err != nil {
		t.Fatal(err)
	}
	assertClose(t, "clamped", mustF32(t, temp.Detach()), []float32{0.5}, 0)
	if !temp.RequiresGrad() {
		t.Fatal("clamping in place must leave the leaf trainable")
	}
	// d(2/temp)/dtemp = -2/temp² = -8
	if err := temp.RDivScalar(2).Sum(false).Backward(); err != nil {
		t.Fatal(err)
	}
	g, _ := temp.Grad()
	assertClose(t, "grad after clamp", mustF32(t, g), []float32{-8}, 1e-5)
	low := FromFloat32([]float32{-1, 0.2}, 2)
	_ = low.ClampInPlace(0.001, 0.5)
	assertClose(t, "low", mustF32(t, low), []float32{0.001, 0.2}, 0)
}

func TestDetachedCloneIsAnUntrackedCopy(t *testing.T) {
	w := FromFloat32([]float32{1, 2, 3}, 3)
	_ = w.SetRequiresGrad(true)
	c := w.DetachedClone()
	if c.RequiresGrad() {
		t.Fatal("a detached clone must not require grad")
	}
	if err := c.Fill(9); err != nil {
		t.Fatal(err)
	}
	assertClose(t, "original", mustF32(t, w.Detach()), []float32{1, 2, 3}, 0)
	if !w.Mul(c).RequiresGrad() {
		t.Fatal("ops mixing the clone and the leaf are still tracked through the leaf")
	}
}

func TestGradientsAccumulateAndCanBeSet(t *testing.T) {
	w := FromFloat32([]float32{1, -2}, 2)
	_ = w.SetRequiresGrad(true)
	// loss1 = Σ w² → 2w; loss2 = Σ 3w → 3; two backward calls accumulate.
	if err := w.Mul(w).Sum(false).Backward(); err != nil {
		t.Fatal(err)
	}
	if err := w.MulScalar(3).Sum(false).Backward(); err != nil {
		t.Fatal(err)
	}
	g, _ := w.Grad()
	assertClose(t, "accumulated", mustF32(t, g), []float32{5, -1}, 1e-6)
	if err := w.SetGrad(FromFloat32([]float32{0.5, 0.25}, 2)); err != nil {
		t.Fatal(err)
	}
	g, _ = w.Grad()
	assertClose(t, "set", mustF32(t, g), []float32{0.5, 0.25}, 0)
	// The next backward adds to the gradient that was set.
	_ = w.Sum(false).Backward()
	g, _ = w.Grad()
	assertClose(t, "set then accumulated", mustF32(t, g), []float32{1.5, 1.25}, 0)
	if err := w.SetGrad(FromFloat32([]float32{1, 2, 3}, 3)); err == nil {
		t.Fatal("a gradient of the wrong shape must be an error")
	}
	if err := w.SetGrad(nil); err != nil {
		t.Fatal(err)
	}
	if g, _ := w.Grad(); g != nil {
		t.Fatal("SetGrad(nil) must drop the gradient")
	}
}

func TestEmbeddingPaddedGivesThePadRowNoGradient(t *testing.T) {
	w := FromFloat32([]float32{1, 2, 3, 4, 5, 6}, 3, 2)
	_ = w.SetRequiresGrad(true)
	ids := FromInt64([]int64{0, 2, 0, 1}, 4)
	plain, padded := Embedding(w, ids), EmbeddingPadded(w, ids, 0)
	assertClose(t, "values", mustF32(t, padded), mustF32(t, plain), 0)
	if err := padded.Sum(false).Backward(); err != nil {
		t.Fatal(err)
	}
	g, _ := w.Grad()
	assertClose(t, "grad", mustF32(t, g), []float32{0, 0, 1, 1, 1, 1}, 0)
	_ = w.ZeroGrad()
	_ = Embedding(w, ids).Sum(false).Backward()
	g, _ = w.Grad()
	assertClose(t, "grad without padding", mustF32(t, g), []float32{2, 2, 1, 1, 1, 1}, 0)
}

func TestEMAUpdatesEveryPairInPlace(t *testing.T) {
	a, b := FromFloat32([]float32{1, 2}, 2), FromFloat32([]float32{10}, 1)
	sa, sb := FromFloat32([]float32{3, -2}, 2), FromFloat32([]float32{0}, 1)
	_ = sa.SetRequiresGrad(true)
	if err := EMA([]*Tensor{a, b}, []*Tensor{sa, sb}, 0.75); err != nil {
		t.Fatal(err)
	}
	assertClose(t, "a", mustF32(t, a), []float32{0.75*1 + 0.25*3, 0.75*2 - 0.25*2}, 1e-6)
	assertClose(t, "b", mustF32(t, b), []float32{7.5}, 1e-6)
	if a.RequiresGrad() {
		t.Fatal("the momentum copy must stay outside autograd")
	}
	if err := EMA([]*Tensor{a}, []*Tensor{sb}, 0.5); err == nil {
		t.Fatal("a shape mismatch must be an error, not a broadcast")
	}
	if err := EMA([]*Tensor{a, b}, []*Tensor{sa}, 0.5); err == nil {
		t.Fatal("unpaired lists must be an error")
	}
}

// A feature queue is written through a narrow view: the base tensor changes.
func TestNarrowCopyWritesThroughToTheBase(t *testing.T) {
	q := Zeros(Float32, CPU, 2, 6)
	feats := FromFloat32([]float32{1, 2, 3, 4}, 2, 2) // [B=2, E=2]
	if err := q.Narrow(1, 2, 2).CopyFrom(feats.Transpose(0, 1)); err != nil {
		t.Fatal(err)
	}
	assertClose(t, "queue", mustF32(t, q), []float32{0, 0, 1, 3, 0, 0, 0, 0, 2, 4, 0, 0}, 0)
}

// Resuming from saved optimizer state continues exactly as the run that never stopped.
func TestResumedAdamWEqualsUninterrupted(t *testing.T) {
	init := [][]float32{{1, -2, 3}, {0.5, 0.25}}
	mk := func(vals [][]float32) ([]*Tensor, *AdamW) {
		var ps []*Tensor
		for _, v := range vals {
			p := FromFloat32(slices.Clone(v), int64(len(v)))
			_ = p.SetRequiresGrad(true)
			ps = append(ps, p)
		}
		o, err := NewAdamW(DefaultParamGroup(ps[:1], 0.05, 0.05), DefaultParamGroup(ps[1:], 0.02, 0))
		if err != nil {
			t.Fatal(err)
		}
		return ps, o
	}
	coef := FromFloat32([]float32{1, 2, 3}, 3)
	step := func(ps []*Tensor, o *AdamW, i int) {
		if i == 3 {
			_ = o.SetLR(0, 0.01)
		}
		_ = o.ZeroGrad()
		loss := ps[0].Mul(ps[0]).Mul(coef).Sum(false).Add(ps[1].PowScalar(3).Sum(false))
		if err := loss.Backward(); err != nil {
			t.Fatal(err)
		}
		if err := o.Step(); err != nil {
			t.Fatal(err)
		}
	}
	ref, oref := mk(init)
	defer oref.Close()
	for i := 0; i < 6; i++ {
		step(ref, oref, i)
	}

	a, oa := mk(init)
	for i := 0; i < 3; i++ {
		step(a, oa, i)
	}
	path := filepath.Join(t.TempDir(), "adamw.pt")
	if err := oa.Save(path); err != nil {
		t.Fatal(err)
	}
	saved := [][]float32{mustF32(t, a[0].Detach()), mustF32(t, a[1].Detach())}
	oa.Close()
	b, ob := mk(saved)
	defer ob.Close()
	if err := ob.Load(path); err != nil {
		t.Fatal(err)
	}
	for i := 3; i < 6; i++ {
		step(b, ob, i)
	}
	for i := range ref {
		assertClose(t, "resumed", mustF32(t, b[i].Detach()), mustF32(t, ref[i].Detach()), 0)
	}
}

// QuiesceGC collects, lets pending cleanups of unscoped tensors run, and stops further
// collections until the test ends, so LiveTensors changes only by what the test does.
func quiesceGC(t *testing.T) {
	runtime.GC()
	runtime.GC()
	time.Sleep(20 * time.Millisecond)
	old := debug.SetGCPercent(-1)
	t.Cleanup(func() { debug.SetGCPercent(old) })
}

func TestLiveTensorsCountsHandlesUntilFreed(t *testing.T) {
	quiesceGC(t)
	before := LiveTensors()
	s := NewScope()
	x := s.Track(Ones(Float32, CPU, 3))
	y := x.Add(x).MulScalar(2)
	_ = y
	z := Zeros(Float32, CPU, 2)
	if got := LiveTensors() - before; got != 4 {
		t.Fatalf("%d live handles made, want 4", got)
	}
	s.Close()
	z.Free()
	if got := LiveTensors() - before; got != 0 {
		t.Fatalf("%d handles still live after the scope closed and Free", got)
	}
}
