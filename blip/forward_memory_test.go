package blip

import (
	"fmt"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"

	"github.com/capfilt/capfilt/internal/testutil"
	"github.com/capfilt/capfilt/torch"
)

// forwardMemoryConfig is ViT-B/16 at 384 px cut to 4 layers: full-size activations (577
// tokens, 12 heads) on a model small enough to build in a test.
func forwardMemoryConfig() Config {
	c := Base()
	c.Vision.NumLayers = 4
	return c
}

const forwardMemoryBatch = 2

// TestViTForwardPeakHelper is the child process of TestViTForwardPeaksWithinOneLayersActivations:
// it builds the model and the pixels, lets the setup's garbage go, resets the kernel's
// high-water mark, runs one forward without autograd and prints how far the peak rose.
func TestViTForwardPeakHelper(t *testing.T) {
	if os.Getenv("CAPFILT_FORWARD_MEMORY_CHILD") == "" {
		t.Skip("helper process only")
	}
	m, err := New(forwardMemoryConfig(), Parts{Vision: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.InitDeterministic(3); err != nil {
		t.Fatal(err)
	}
	side := int64(m.Config.Vision.ImageSize)
	g := torch.NewGenerator(1)
	px := torch.Randn(g, torch.Float32, torch.CPU, forwardMemoryBatch, 3, side, side)
	g.Close()
	runtime.GC()
	debug.FreeOSMemory()
	torch.ReleaseHostMemory()
	if err := torch.ResetHostPeak(); err != nil {
		t.Skip("cannot reset the peak RSS:", err)
	}
	before, err := torch.ReadHostMemory()
	if err != nil {
		t.Fatal(err)
	}
	var out *torch.Tensor
	torch.NoGrad(func() { out = m.EncodeImage(px, false) })
	if err := out.Err(); err != nil {
		t.Fatal(err)
	}
	after, err := torch.ReadHostMemory()
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("FORWARD_PEAK_OVER_SETUP %d\n", after.Peak-before.RSS)
}

// One ViT forward at full activation size peaks within one layer's working set above the
// weights and inputs — not the sum over layers, which is what keeping every intermediate
// until the end of the pass costs (4 layers here: about 3× the bound).
//
// One layer's working set, without autograd: the attention scores [B, H, N, N] (softmax
// runs in place) and at most 16 vectors of [B, N, D] (LN, q/k/v, their copies, the MLP's
// two [B, N, 4D] tensors, residuals). The bound allows 1.5× that, plus 48 MB for the
// allocator's rounding and libtorch's own buffers.
func TestViTForwardPeaksWithinOneLayersActivations(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a 4-layer ViT-B")
	}
	out := testutil.RunHelper(t, "TestViTForwardPeakHelper", "CAPFILT_FORWARD_MEMORY_CHILD=1")
	var peak int64 = -1
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "FORWARD_PEAK_OVER_SETUP ") {
			peak, _ = strconv.ParseInt(strings.Fields(line)[1], 10, 64)
		}
	}
	if peak < 0 {
		if strings.Contains(out, "cannot reset the peak RSS") {
			t.Skip("the kernel cannot reset the peak RSS here")
		}
		t.Fatalf("helper printed no peak:\n%s", out)
	}
	c := forwardMemoryConfig().Vision
	b, n, d, h := float64(forwardMemoryBatch), float64(c.NumPatches()+1), float64(c.HiddenSize), float64(c.NumHeads)
	layer := 4 * (b*h*n*n + 16*b*n*d)
	bound := 1.5*layer + 48e6
	all := float64(c.NumLayers) * layer
	t.Logf("peak over setup %.0f MB; one layer's working set %.0f MB, bound %.0f MB; all %d layers' %.0f MB",
		float64(peak)/1e6, layer/1e6, bound/1e6, c.NumLayers, all/1e6)
	if float64(peak) > bound {
		t.Fatalf("one forward peaked %.0f MB above its inputs and weights, more than %.0f MB (one layer's working set %.0f MB)",
			float64(peak)/1e6, bound/1e6, layer/1e6)
	}
}

// Freeing a pass's intermediates frees only Go's handles: autograd keeps what backward
// needs. Gradients through every scoped forward (ViT, image-grounded encoder, decoder,
// unimodal encoder and ITC) agree with central finite differences of the same loss.
func TestBackwardThroughScopedForwardsMatchesFiniteDifferences(t *testing.T) {
	runtime.LockOSThread() // libtorch's grad mode is per OS thread
	defer runtime.UnlockOSThread()
	m := tinyModel(t, Parts{Vision: true, TextEncoder: true, TextDecoder: true, ITC: true, ITM: true}, 5)
	s := torch.NewScope()
	defer s.Close()
	g := torch.NewGenerator(2)
	defer g.Close()
	px := s.Track(torch.Randn(g, torch.Float32, torch.CPU, 2, 3, 64, 64))
	ids := s.Track(torch.FromInt64([]int64{2, 17, 40, 9, 3, 2, 51, 3, 0, 0}, 2, 5))
	mask := s.Track(torch.FromInt64([]int64{1, 1, 1, 1, 1, 1, 1, 1, 0, 0}, 2, 5))
	weights := map[string]*torch.Tensor{}
	weightOf := func(name string, shape []int64) *torch.Tensor {
		if w, ok := weights[name]; ok {
			return w
		}
		n := int64(1)
		for _, d := range shape {
			n *= d
		}
		w := s.Track(torch.Randn(g, torch.Float64, torch.CPU, shape...).DivScalar(math.Sqrt(float64(n))))
		weights[name] = w
		return w
	}
	loss := func() *torch.Tensor {
		ls := s.Child()
		image := m.EncodeImage(ls.Ref(px), false)
		outs := map[string]*torch.Tensor{
			"vision": image,
			"itm":    m.ITMLogits(ls.Ref(ids), ls.Ref(mask), image, 1, false),
			"lm":     m.DecoderLogits(ls.Ref(ids), ls.Ref(mask), image, 1, false),
			"itc":    m.ImageFeatures(image).Mul(m.TextFeatures(m.TextUnimodal(ls.Ref(ids), ls.Ref(mask), false))),
		}
		total := ls.Track(torch.Zeros(torch.Float64, torch.CPU))
		for name, o := range outs {
			total = total.Add(o.ToDType(torch.Float64).Mul(weightOf(name, o.Shape())).Sum(false))
		}
		return ls.Keep(total)
	}
	// Weights to probe, from every module the forwards pass through.
	probe := []string{"vision_model.encoder.layers.0.self_attn.qkv.weight", "vision_model.encoder.layers.1.mlp.fc1.weight",
		"vision_model.embeddings.position_embedding", "text_encoder.encoder.layer.0.crossattention.self.key.weight",
		"text_encoder.encoder.layer.1.attention.self.query.weight", "text_decoder.bert.encoder.layer.1.attention.self.value.weight",
		"text_decoder.cls.predictions.transform.dense.weight", "text_proj.weight", "itm_head.weight"}
	for _, p := range m.Params() {
		if err := p.Tensor().SetRequiresGrad(true); err != nil {
			t.Fatal(err)
		}
	}
	l := loss()
	if err := l.Backward(); err != nil {
		t.Fatal(err)
	}
	l.Free()
	// Float32 forwards leave the differences a noise floor that varies with the threads'
	// summation order: up to 7e-6 seen (h = 1e-2), so gradients under about 1e-4 are
	// compared only to within 1.5e-5.
	const h = 1e-2
	for k, name := range probe {
		w, ok := m.Param(name)
		if !ok {
			t.Fatalf("no parameter %s", name)
		}
		grad, err := w.Grad()
		if err != nil || grad == nil {
			t.Fatalf("%s: no gradient (%v)", name, err)
		}
		gs, err := grad.Reshape(-1).Float32s()
		grad.Free()
		if err != nil {
			t.Fatal(err)
		}
		flat := s.Ref(w).Reshape(-1)
		for _, i := range []int64{int64(k*7+3) % w.Numel(), int64(k*131+40) % w.Numel()} {
			elem := flat.Narrow(0, i, 1)
			v0, _ := elem.Item()
			at := func(v float64) float64 {
				if err := elem.Fill(v); err != nil {
					t.Fatal(err)
				}
				var x *torch.Tensor
				torch.NoGrad(func() { x = loss() })
				f, err := x.Item()
				if err != nil {
					t.Fatal(err)
				}
				x.Free()
				return f
			}
			fd := (at(v0+h) - at(v0-h)) / (2 * h)
			if err := elem.Fill(v0); err != nil {
				t.Fatal(err)
			}
			got := float64(gs[i])
			t.Logf("%s[%d]: backward %.6g, finite difference %.6g", name, i, got, fd)
			if math.Abs(got-fd) > 2e-2*math.Max(math.Abs(got), math.Abs(fd))+1.5e-5 {
				t.Errorf("%s[%d]: backward gives %.6g, finite differences %.6g", name, i, got, fd)
			}
		}
	}
}
