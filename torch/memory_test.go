package torch

import (
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"testing"
)

// Without autograd, attention normalises its scores in place and forms large ones a few
// heads at a time; the numbers are those of the plain form, bit for bit.
func TestAttentionWithoutAutogradEqualsTheAutogradForm(t *testing.T) {
	const B, H, L, D = 3, 12, 577, 64 // scores of 4 MB per head: chunks of 8 and 4 heads
	s := NewScope()
	defer s.Close()
	g := NewGenerator(3)
	defer g.Close()
	q := s.Track(Randn(g, Float32, CPU, B, H, L, D))
	k := s.Track(Randn(g, Float32, CPU, B, L, H, D)).Transpose(1, 2) // split-head views, as models pass them
	v := s.Track(Randn(g, Float32, CPU, B, L, H, D)).Transpose(1, 2)
	pad := s.Track(Randn(g, Float32, CPU, B, 1, 1, L)).GtScalar(1.5).ToDType(Float32).MulScalar(-10000)
	perHead := s.Track(Randn(g, Float32, CPU, B, H, L, L))
	leaf := s.Track(Randn(g, Float32, CPU, 1)).MulScalar(0) // q + leaf·0 makes the graph
	for _, c := range []struct {
		name   string
		mask   *Tensor
		causal bool
	}{{"plain", nil, false}, {"per-head mask", perHead, false}, {"causal + padding mask", pad, true}} {
		t.Run(c.name, func(t *testing.T) {
			var plain, fast []float32
			w := s.Track(Zeros(Float32, CPU, 1))
			if err := w.SetRequiresGrad(true); err != nil {
				t.Fatal(err)
			}
			withGrad := Attention(q.Add(w.Mul(leaf)), k, v, c.mask, c.causal, 0, AttentionExplicit)
			if !withGrad.RequiresGrad() {
				t.Fatal("the reference attention is not recorded by autograd")
			}
			plain = mustF32(t, withGrad.Detach())
			NoGrad(func() { fast = mustF32(t, Attention(q, k, v, c.mask, c.causal, 0, AttentionExplicit)) })
			if !slices.Equal(plain, fast) {
				for i := range plain {
					if plain[i] != fast[i] {
						t.Fatalf("element %d: %v without autograd, %v with", i, fast[i], plain[i])
					}
				}
			}
		})
	}
}

// The shim limits glibc to one malloc arena unless the user chose otherwise.
func TestShimSetsOneMallocArena(t *testing.T) {
	got := HostAllocatorInfo().MallocArenas
	if _, set := os.LookupEnv("MALLOC_ARENA_MAX"); set {
		if got != 0 {
			t.Fatalf("MALLOC_ARENA_MAX is set, yet the shim set %d arenas", got)
		}
		return
	}
	if got != 1 {
		t.Fatalf("the shim set %d malloc arenas, want 1", got)
	}
}

// A freed large buffer is handed out again for the next tensor of its size, and what the
// cache keeps is released on request.
func TestBufferCacheReusesFreedBuffers(t *testing.T) {
	if !HostAllocatorInfo().BufferCache {
		t.Skip("no buffer cache in this build (libtorch ≥ 2) or it is off")
	}
	const n = 24 << 20 // 96 MB of float32
	a := Zeros(Float32, CPU, n)
	if err := a.Err(); err != nil {
		t.Fatal(err)
	}
	a.Free()
	before := HostAllocatorInfo().BufferCacheStats
	if before.Kept < 4*n {
		t.Fatalf("a freed 96 MB buffer was not kept: %+v", before)
	}
	b := Zeros(Float32, CPU, n-1000) // a little smaller fits the same buffer
	if err := b.Err(); err != nil {
		t.Fatal(err)
	}
	after := HostAllocatorInfo().BufferCacheStats
	if after.Hits != before.Hits+1 || after.Misses != before.Misses {
		t.Fatalf("the second buffer was not served from the cache: before %+v, after %+v", before, after)
	}
	if after.Live+after.Kept > after.PeakLive+2*4*n {
		t.Fatalf("the cache holds more than its limit: %+v", after)
	}
	b.Free()
	ReleaseHostMemory()
	if kept := HostAllocatorInfo().BufferCacheStats.Kept; kept != 0 {
		t.Fatalf("%d bytes kept after ReleaseHostMemory", kept)
	}
}

// ResetHostPeak makes the high-water mark start again from what is resident now.
func TestHostPeakResetsToTheCurrentSize(t *testing.T) {
	big := make([]byte, 200<<20)
	for i := range big {
		big[i] = byte(i)
	}
	m0, err := ReadHostMemory()
	if err != nil {
		t.Fatal(err)
	}
	big = nil
	runtime.GC()
	debug.FreeOSMemory()
	if err := ResetHostPeak(); err != nil {
		t.Skip("cannot reset the peak:", err)
	}
	m1, err := ReadHostMemory()
	if err != nil {
		t.Fatal(err)
	}
	if m0.Peak < 200<<20 || m1.Peak > m0.Peak-100<<20 || m1.Peak < m1.RSS {
		t.Fatalf("peak before the reset %d, after %d (resident %d)", m0.Peak, m1.Peak, m1.RSS)
	}
}
