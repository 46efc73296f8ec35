package torch

import (
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
)

func TestBackwardGivesAnalyticGradients(t *testing.T) {
	// f(w) = Σ (x·w)² / 2 with x [2,3], w [3]: ∂f/∂w = xᵀ(x·w).
	x := []float32{1, 2, 3, -1, 0.5, 2}
	w0 := []float32{0.5, -1, 2}
	w := FromFloat32(w0, 3)
	if err := w.SetRequiresGrad(true); err != nil {
		t.Fatal(err)
	}
	X := FromFloat32(x, 2, 3)
	y := X.MatMul(w)
	loss := y.Mul(y).Sum(false).MulScalar(0.5)
	if err := loss.Backward(); err != nil {
		t.Fatal(err)
	}
	xw := []float64{1*0.5 + 2*-1 + 3*2, -1*0.5 + 0.5*-1 + 2*2}
	want := make([]float32, 3)
	for j := 0; j < 3; j++ {
		want[j] = float32(float64(x[j])*xw[0] + float64(x[3+j])*xw[1])
	}
	g, err := w.Grad()
	if err != nil || g == nil {
		t.Fatalf("grad: %v %v", g, err)
	}
	assertClose(t, "grad", mustF32(t, g), want, 1e-5)
	if err := w.ZeroGrad(); err != nil {
		t.Fatal(err)
	}
	if g, _ := w.Grad(); g != nil {
		t.Fatal("ZeroGrad must drop the gradient")
	}
	NoGrad(func() {
		if GradEnabled() {
			t.Error("grad mode on inside NoGrad")
		}
		if X.MatMul(w).RequiresGrad() {
			t.Error("an op inside NoGrad must not be recorded")
		}
	})
	if !GradEnabled() || !X.MatMul(w).RequiresGrad() {
		t.Fatal("NoGrad must restore grad mode")
	}
	if err := FromFloat32([]float32{1, 2}, 2).Backward(); err == nil {
		t.Fatal("backward of a tensor that needs no grad must be an error")
	}
}

// adamwRef is torch's AdamW update, written out.
type adamwRef struct {
	p, m, v []float64
	step    int
}

func (a *adamwRef) update(g []float64, lr, wd float64) {
	const b1, b2, eps = 0.9, 0.999, 1e-8
	a.step++
	bc1 := 1 - math.Pow(b1, float64(a.step))
	bc2 := 1 - math.Pow(b2, float64(a.step))
	for i := range a.p {
		a.p[i] *= 1 - lr*wd
		a.m[i] = b1*a.m[i] + (1-b1)*g[i]
		a.v[i] = b2*a.v[i] + (1-b2)*g[i]*g[i]
		a.p[i] -= lr / bc1 * a.m[i] / (math.Sqrt(a.v[i])/math.Sqrt(bc2) + eps)
	}
}

func TestAdamWMatchesItsDefinition(t *testing.T) {
	w := FromFloat32([]float32{1, -2, 3}, 3)
	b := FromFloat32([]float32{0.5, -0.5}, 2)
	for _, p := range []*Tensor{w, b} {
		if err := p.SetRequiresGrad(true); err != nil {
			t.Fatal(err)
		}
	}
	opt, err := NewAdamW(DefaultParamGroup([]*Tensor{w}, 0.1, 0.05), DefaultParamGroup([]*Tensor{b}, 0.1, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer opt.Close()
	rw := &adamwRef{p: []float64{1, -2, 3}, m: make([]float64, 3), v: make([]float64, 3)}
	rb := &adamwRef{p: []float64{0.5, -0.5}, m: make([]float64, 2), v: make([]float64, 2)}
	c := []float64{1, 2, 3}
	for step, lr := range []float64{0.1, 0.1, 0.02, 0.02} {
		if step == 2 {
			for g := 0; g < 2; g++ {
				if err := opt.SetLR(g, lr); err != nil {
					t.Fatal(err)
				}
			}
		}
		// loss = Σ c·w² + Σ b³  →  grads 2c·w and 3b².
		loss := w.Mul(w).Mul(FromFloat32([]float32{1, 2, 3}, 3)).Sum(false).Add(b.PowScalar(3).Sum(false))
		if err := opt.ZeroGrad(); err != nil {
			t.Fatal(err)
		}
		if err := loss.Backward(); err != nil {
			t.Fatal(err)
		}
		gw := make([]float64, 3)
		for i := range gw {
			gw[i] = 2 * c[i] * rw.p[i]
		}
		gb := []float64{3 * rb.p[0] * rb.p[0], 3 * rb.p[1] * rb.p[1]}
		if err := opt.Step(); err != nil {
			t.Fatal(err)
		}
		rw.update(gw, lr, 0.05)
		rb.update(gb, lr, 0)
		for _, pr := range []struct {
			got  *Tensor
			want []float64
		}{{w, rw.p}, {b, rb.p}} {
			got := mustF32(t, pr.got.Detach())
			for i := range got {
				if math.Abs(float64(got[i])-pr.want[i]) > 1e-5 {
					t.Fatalf("step %d: param %v, want %v", step, got, pr.want)
				}
			}
		}
	}
	if err := opt.SetLR(5, 1); err == nil {
		t.Fatal("a missing parameter group must be an error")
	}
}

func TestAdamWStateSurvivesSaveAndLoad(t *testing.T) {
	mk := func() (*Tensor, *AdamW) {
		p := FromFloat32([]float32{1, 2, 3}, 3)
		if err := p.SetRequiresGrad(true); err != nil {
			t.Fatal(err)
		}
		o, err := NewAdamW(DefaultParamGroup([]*Tensor{p}, 0.05, 0.01))
		if err != nil {
			t.Fatal(err)
		}
		return p, o
	}
	step := func(p *Tensor, o *AdamW) {
		if err := o.ZeroGrad(); err != nil {
			t.Fatal(err)
		}
		if err := p.PowScalar(2).Sum(false).Backward(); err != nil {
			t.Fatal(err)
		}
		if err := o.Step(); err != nil {
			t.Fatal(err)
		}
	}
	a, oa := mk()
	defer oa.Close()
	step(a, oa)
	step(a, oa)
	path := filepath.Join(t.TempDir(), "adamw.pt")
	if err := oa.Save(path); err != nil {
		t.Fatal(err)
	}
	b, ob := mk()
	defer ob.Close()
	if err := b.CopyFrom(a); err != nil {
		t.Fatal(err)
	}
	if err := ob.Load(path); err != nil {
		t.Fatal(err)
	}
	step(a, oa)
	step(b, ob)
	assertClose(t, "resumed", mustF32(t, b.Detach()), mustF32(t, a.Detach()), 0)
	// Without the state the moments restart and the result differs.
	c, oc := mk()
	defer oc.Close()
	_ = c.CopyFrom(a)
	step(c, oc)
	if got, ref := mustF32(t, c.Detach()), mustF32(t, a.Detach()); got[0] == ref[0] {
		t.Fatal("control: a fresh optimiser should not land on the same values")
	}
	if err := ob.Load(filepath.Join(t.TempDir(), "missing.pt")); err == nil {
		t.Fatal("loading a missing state file must be an error")
	}
}

func TestClipGradNorm(t *testing.T) {
	p := FromFloat32([]float32{3, 4}, 2)
	_ = p.SetRequiresGrad(true)
	// loss = Σ p²/2 → grad = p = (3,4), norm 5.
	if err := p.Mul(p).Sum(false).MulScalar(0.5).Backward(); err != nil {
		t.Fatal(err)
	}
	total, err := ClipGradNorm([]*Tensor{p}, 1)
	if err != nil || math.Abs(total-5) > 1e-6 {
		t.Fatalf("norm %v %v", total, err)
	}
	g, _ := p.Grad()
	assertClose(t, "clipped", mustF32(t, g), []float32{0.6, 0.8}, 1e-5)
}

func rssBytes(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		t.Skip("no /proc/self/statm")
	}
	f := strings.Fields(string(b))
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}

// A long inference loop must hold flat memory: every step's tensors die with its scope.
func TestLongForwardLoopHoldsFlatMemory(t *testing.T) {
	const B, L, D, H = 2, 16, 64, 4
	params := map[string]*Tensor{}
	g := NewGenerator(1)
	defer g.Close()
	for name, shape := range map[string][]int64{"qkv": {3 * D, D}, "proj": {D, D}, "fc1": {4 * D, D}, "fc2": {D, 4 * D}} {
		params[name] = Randn(g, Float32, CPU, shape...).MulScalar(0.05)
	}
	ones, zeros := Ones(Float32, CPU, D), Zeros(Float32, CPU, D)
	input := Randn(g, Float32, CPU, B, L, D)
	block := func(s *Scope) error {
		x := s.Ref(input)
		h := x.LayerNorm(ones, zeros, 1e-6).Linear(params["qkv"], nil).Reshape(B, L, 3, H, D/H).Permute(2, 0, 3, 1, 4)
		q, k, v := h.Select(0, 0), h.Select(0, 1), h.Select(0, 2)
		a := Attention(q, k, v, nil, false, 0, AttentionBest).Transpose(1, 2).Reshape(B, L, D)
		x = x.Add(a.Linear(params["proj"], nil))
		x = x.Add(x.LayerNorm(ones, zeros, 1e-6).Linear(params["fc1"], nil).Gelu().Linear(params["fc2"], nil))
		_, err := x.Sum(false).Item()
		return err
	}
	step := func() {
		s := NewScope()
		defer s.Close()
		if err := block(s); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 1000; i++ {
		step()
	}
	// FreeOSMemory collects and hands freed Go heap back, so RSS shows live memory, not
	// the garbage the Go heap holds between collections.
	debug.FreeOSMemory()
	before := rssBytes(t)
	for i := 0; i < 5000; i++ {
		step()
	}
	debug.FreeOSMemory()
	after := rssBytes(t)
	t.Logf("RSS after warm-up %.1f MB, after 5000 more steps %.1f MB", float64(before)/1e6, float64(after)/1e6)
	if after-before > 4<<20 {
		t.Fatalf("RSS grew by %.1f MB over 5000 steps", float64(after-before)/1e6)
	}
}
