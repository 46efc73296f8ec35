package torch

import (
	"fmt"
	"math"
	"runtime"
	"sync"
	"testing"
	"time"
)

var blasOnce sync.Once

// logBLAS prints which BLAS kernel the numbers below were measured with: speeds only
// compare as ratios within one run.
func logBLAS(b *testing.B) {
	blasOnce.Do(func() {
		info, err := BLASInfo()
		if err != nil {
			b.Logf("BLAS: %v", err)
			return
		}
		fmt.Printf("libtorch %s, %v, %d intra-op threads, %d BLAS threads\n", Version(), info, NumThreads(), BLASThreads())
	})
}

// BenchmarkMatmul compares a large matmul called through the binding with the same loop
// timed inside C++; ratio is binding GFLOP/s over C++ GFLOP/s (target ≥ 0.95).
func BenchmarkMatmul(b *testing.B) {
	logBLAS(b)
	const n = 1024
	g := NewGenerator(1)
	defer g.Close()
	x, y := Randn(g, Float32, CPU, n, n), Randn(g, Float32, CPU, n, n)
	x.MatMul(y).Free() // warm-up
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		z := x.MatMul(y)
		if err := z.Err(); err != nil {
			b.Fatal(err)
		}
		z.Free()
	}
	goSec := time.Since(start).Seconds()
	b.StopTimer()
	cppSec, err := BenchMatmul(n, b.N)
	if err != nil {
		b.Fatal(err)
	}
	flop := 2 * math.Pow(n, 3) * float64(b.N)
	b.ReportMetric(flop/goSec/1e9, "GFLOP/s")
	b.ReportMetric(flop/cppSec/1e9, "C++GFLOP/s")
	b.ReportMetric(cppSec/goSec, "ratio")
}

// BenchmarkTinyOpOverhead is the cost of one op on one-element tensors: cgo, dispatch,
// the handle and its scope bookkeeping (target ≤ 3 µs).
func BenchmarkTinyOpOverhead(b *testing.B) {
	s := NewScope()
	defer s.Close()
	x := s.Track(FromFloat32([]float32{1}, 1))
	y := s.Track(FromFloat32([]float32{2}, 1))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		z := x.Add(y)
		z.Free()
	}
}

// BenchmarkAttention compares the single attention call (fused kernel on libtorch ≥ 2.0,
// the C++ explicit form on 1.13) with the same math composed from Go-side ops.
func BenchmarkAttention(b *testing.B) {
	logBLAS(b)
	const B, H, L, D = 8, 12, 197, 64
	g := NewGenerator(1)
	defer g.Close()
	q, k, v := Randn(g, Float32, CPU, B, H, L, D), Randn(g, Float32, CPU, B, H, L, D), Randn(g, Float32, CPU, B, H, L, D)
	mask := Zeros(Float32, CPU, B, 1, 1, L)
	run := func(b *testing.B, f func(s *Scope) *Tensor) {
		for i := 0; i < b.N; i++ {
			s := NewScope()
			if err := f(s).Err(); err != nil {
				b.Fatal(err)
			}
			s.Close()
		}
	}
	b.Run("call", func(b *testing.B) {
		run(b, func(s *Scope) *Tensor { return Attention(s.Ref(q), k, v, mask, false, 0, AttentionBest) })
	})
	b.Run("explicit", func(b *testing.B) {
		run(b, func(s *Scope) *Tensor { return Attention(s.Ref(q), k, v, mask, false, 0, AttentionExplicit) })
	})
	b.Run("composed", func(b *testing.B) {
		run(b, func(s *Scope) *Tensor {
			scores := s.Ref(q).MatMul(s.Ref(k).Transpose(-2, -1)).MulScalar(1 / math.Sqrt(D)).Add(mask)
			return scores.Softmax(-1).MatMul(v)
		})
	})
}

// BenchmarkThreads runs a ViT-B-sized block (batch 2, 197 tokens) with libtorch's
// intra-op pool at 1 thread and at every CPU (OpenBLAS keeps every CPU in both): the
// ratio justifies the default in info.go.
func BenchmarkThreads(b *testing.B) {
	logBLAS(b)
	const B, L, D, H = 2, 197, 768, 12
	g := NewGenerator(1)
	defer g.Close()
	w := map[string]*Tensor{}
	for name, shape := range map[string][]int64{"qkv": {3 * D, D}, "proj": {D, D}, "fc1": {4 * D, D}, "fc2": {D, 4 * D}} {
		w[name] = Randn(g, Float32, CPU, shape...).MulScalar(0.02)
	}
	ones, zeros := Ones(Float32, CPU, D), Zeros(Float32, CPU, D)
	x0 := Randn(g, Float32, CPU, B, L, D)
	block := func() {
		s := NewScope()
		defer s.Close()
		x := s.Ref(x0)
		h := x.LayerNorm(ones, zeros, 1e-6).Linear(w["qkv"], nil).Reshape(B, L, 3, H, D/H).Permute(2, 0, 3, 1, 4)
		a := Attention(h.Select(0, 0), h.Select(0, 1), h.Select(0, 2), nil, false, 0, AttentionBest).Transpose(1, 2).Reshape(B, L, D)
		x = x.Add(a.Linear(w["proj"], nil))
		x = x.Add(x.LayerNorm(ones, zeros, 1e-6).Linear(w["fc1"], nil).Gelu().Linear(w["fc2"], nil))
		if err := x.Err(); err != nil {
			b.Fatal(err)
		}
	}
	prev := NumThreads()
	defer SetIntraOpThreads(prev)
	for _, n := range []int{1, runtime.NumCPU()} {
		b.Run(fmt.Sprintf("intra-op=%d", n), func(b *testing.B) {
			SetIntraOpThreads(n)
			block()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				block()
			}
		})
	}
}
