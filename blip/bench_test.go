package blip

import (
	"math"
	"sync"
	"testing"
	"time"

	"github.com/capfilt/capfilt/torch"
)

var (
	baseOnce  sync.Once
	baseModel *Model
	baseErr   error
)

// benchBase is a base-size model with every part, deterministic weights (seed 2).
func benchBase(b *testing.B) *Model {
	baseOnce.Do(func() {
		parts := Parts{Vision: true, TextEncoder: true, TextDecoder: true, ITC: true, ITM: true}
		if baseModel, baseErr = New(Base(), parts); baseErr == nil {
			baseErr = baseModel.InitDeterministic(2)
		}
	})
	if baseErr != nil {
		b.Fatal(baseErr)
	}
	return baseModel
}

// matmulGFLOPS measures the machine's large-matmul rate inside C++: the yardstick the
// model's achieved rate is compared with, in the same run.
func matmulGFLOPS(b *testing.B) float64 {
	const n = 2048
	sec, err := torch.BenchMatmul(n, 3)
	if err != nil {
		b.Fatal(err)
	}
	return 3 * 2 * math.Pow(n, 3) / sec / 1e9
}

func logMachine(b *testing.B) {
	info, _ := torch.BLASInfo()
	b.Logf("libtorch %s, %v, %d intra-op threads, %d BLAS threads", torch.Version(), info, torch.NumThreads(), torch.BLASThreads())
}

// vitFLOPs counts the multiply-adds (×2) of one image through the ViT.
func vitFLOPs(c VisionConfig, size int) float64 {
	n := float64((size/c.PatchSize)*(size/c.PatchSize) + 1)
	d, m := float64(c.HiddenSize), float64(c.IntermediateSize)
	patch := 2 * (n - 1) * d * 3 * float64(c.PatchSize*c.PatchSize)
	layer := 2*n*d*3*d + 2*2*n*n*d + 2*n*d*d + 2*2*n*d*m
	return patch + float64(c.NumLayers)*layer
}

// decoderFLOPs counts one full decoder pass over t tokens with ni image tokens.
func decoderFLOPs(c Config, t, ni int) float64 {
	tt, d, f, v := float64(t), float64(c.Text.HiddenSize), float64(c.Text.IntermediateSize), float64(c.Text.VocabSize)
	dv, n := float64(c.Vision.HiddenSize), float64(ni)
	self := 2*tt*d*3*d + 2*2*tt*tt*d + 2*tt*d*d
	cross := 2*tt*d*d + 2*n*dv*2*d + 2*2*tt*n*d + 2*tt*d*d
	ffn := 2 * 2 * tt * d * f
	head := 2*tt*d*d + 2*tt*d*v
	return float64(c.Text.NumLayers)*(self+cross+ffn) + head
}

// benchForward times forward (one batch, in a fresh scope, without autograd) b.N times
// after a warm-up, reports its GFLOP/s and their fraction of the large-matmul rate
// measured in the same run, and returns the seconds per call.
func benchForward(b *testing.B, flopsPerCall float64, forward func(st *torch.Scope) *torch.Tensor) float64 {
	peak := matmulGFLOPS(b)
	run := func() {
		st := torch.NewScope()
		defer st.Close()
		torch.NoGrad(func() {
			if err := forward(st).Err(); err != nil {
				b.Fatal(err)
			}
		})
	}
	run()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		run()
	}
	sec := time.Since(start).Seconds() / float64(b.N)
	b.ReportMetric(flopsPerCall/sec/1e9, "GFLOP/s")
	b.ReportMetric(peak, "matmul-GFLOP/s")
	b.ReportMetric(flopsPerCall/sec/1e9/peak, "fraction")
	return sec
}

// benchPixels is a batch of random pixels [batch, 3, size, size], tracked by s.
func benchPixels(s *torch.Scope, batch, size int64) *torch.Tensor {
	g := torch.NewGenerator(1)
	defer g.Close()
	return s.Track(torch.Randn(g, torch.Float32, torch.CPU, batch, 3, size, size))
}

// BenchmarkViTBase384 runs ViT-B/16 at 384 px on batches of 8 and reports images/s and
// the achieved GFLOP/s as a fraction of the large-matmul rate of the same run.
func BenchmarkViTBase384(b *testing.B) {
	logMachine(b)
	m := benchBase(b)
	s := torch.NewScope()
	defer s.Close()
	px := benchPixels(s, 8, 384)
	sec := benchForward(b, vitFLOPs(m.Config.Vision, 384)*8, func(st *torch.Scope) *torch.Tensor {
		return m.EncodeImage(st.Ref(px), false)
	})
	b.ReportMetric(8/sec, "images/s")
}

// BenchmarkTextDecoder30 runs the base decoder over 30 tokens for 8 images (full pass,
// cross attention to 577 image tokens, LM head) and reports the same fraction.
func BenchmarkTextDecoder30(b *testing.B) {
	logMachine(b)
	m := benchBase(b)
	s := torch.NewScope()
	defer s.Close()
	g := torch.NewGenerator(2)
	img := s.Track(torch.Randn(g, torch.Float32, torch.CPU, 8, 577, 768))
	g.Close()
	ids := make([]int64, 8*30)
	for i := range ids {
		ids[i] = int64(1000 + i*37%20000)
	}
	idT := s.Track(torch.FromInt64(ids, 8, 30))
	sec := benchForward(b, decoderFLOPs(m.Config, 30, 577)*8, func(st *torch.Scope) *torch.Tensor {
		return m.DecoderLogits(st.Ref(idT), nil, st.Ref(img), 1, false)
	})
	b.ReportMetric(8*30/sec, "tokens/s")
}
