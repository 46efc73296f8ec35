package captioner

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/capfilt/capfilt/blip"
	"github.com/capfilt/capfilt/internal/testutil/reference"
	"github.com/capfilt/capfilt/pipeline/spec"
	"github.com/capfilt/capfilt/torch"
)

var (
	baseOnce sync.Once
	base     *blip.Model
	baseErr  error
)

func benchBase(b *testing.B) *blip.Model {
	baseOnce.Do(func() {
		if base, baseErr = blip.New(blip.Base(), blip.Parts{Vision: true, TextDecoder: true}); baseErr == nil {
			baseErr = base.InitDeterministic(2)
		}
	})
	if baseErr != nil {
		b.Fatal(baseErr)
	}
	return base
}

// recomputeStepper decodes without a cache: every step reruns the whole prefix.
type recomputeStepper struct {
	m      *blip.Model
	image  *torch.Tensor
	groups int
	seqs   [][]int64
}

func (r *recomputeStepper) Step(s *torch.Scope, tokens []int64, rows, width int) *torch.Tensor {
	if r.seqs == nil {
		r.seqs = make([][]int64, rows)
	}
	flat := make([]int64, 0)
	for i := range r.seqs {
		r.seqs[i] = append(r.seqs[i], tokens[i*width:(i+1)*width]...)
		flat = append(flat, r.seqs[i]...)
	}
	n := len(r.seqs[0])
	ids := s.Track(torch.FromInt64(flat, int64(rows), int64(n)))
	return r.m.DecoderLogits(ids, nil, s.Ref(r.image), r.groups, false).Select(1, int64(n-1))
}

// Retain keeps the images units (random image memories here: no [SEP] ever ends a row).
func (r *recomputeStepper) Retain(units []int64, groups int) error {
	var next [][]int64
	for _, u := range units {
		for g := range groups {
			next = append(next, r.seqs[int(u)*groups+g])
		}
	}
	r.seqs = next
	idx := torch.FromInt64(units, int64(len(units)))
	defer idx.Free()
	r.image = r.image.Scope().Track(r.image.IndexSelect(0, idx))
	return r.image.Err()
}

func (r *recomputeStepper) Reorder(from []int64) error {
	next := make([][]int64, len(from))
	for i, f := range from {
		next[i] = append([]int64(nil), r.seqs[f]...)
	}
	r.seqs = next
	return nil
}

// BenchmarkKVCache decodes 10 and 30 new tokens with the cache, and 30 by recomputing
// the prefix each step, for batches of 4 and 16 images on the base decoder; it reports
// the ratios the cache must meet: 30 tokens ≤ 3.3× the cost of 10, and ≥ 5× faster than
// recomputing. Small batches are bound by reading the weights once per step, which both
// ways pay, so the speed-up grows with the batch.
func BenchmarkKVCache(b *testing.B) {
	reference.LogMachine(b)
	m := benchBase(b)
	for _, batch := range []int{4, 16} {
		b.Run(fmt.Sprintf("images=%d", batch), func(b *testing.B) { benchKVCache(b, m, batch) })
	}
}

func benchKVCache(b *testing.B, m *blip.Model, batch int) {
	s := torch.NewScope()
	defer s.Close()
	g := torch.NewGenerator(3)
	img := s.Track(torch.Randn(g, torch.Float32, torch.CPU, int64(batch), 577, 768))
	g.Close()
	start := make([][]int64, batch)
	for i := range start {
		start[i] = []int64{30522, 1037, 3861, 1997}
	}
	timeIt := func(newTokens int, cached bool) time.Duration {
		st := spec.GreedyDefaults()
		st.MaxLength, st.MinLength = 4+newTokens, 4+newTokens
		req := request{start: start, keys: make([]string, batch), st: st, sepID: 102, padID: 0, vocab: m.Config.Text.VocabSize}
		t0 := time.Now()
		var err error
		torch.NoGrad(func() {
			if cached {
				cache := m.NewKVCache(st.MaxLength)
				defer cache.Close()
				_, err = generate(context.Background(), &modelStepper{m: m, image: img, groups: 1, cache: cache}, req)
			} else {
				_, err = generate(context.Background(), &recomputeStepper{m: m, image: img, groups: 1}, req)
			}
		})
		if err != nil {
			b.Fatal(err)
		}
		return time.Since(t0)
	}
	timeIt(10, true) // warm-up
	b.ResetTimer()
	var t10, t30, r30 time.Duration
	for i := 0; i < b.N; i++ {
		t10 += timeIt(10, true)
		t30 += timeIt(30, true)
		r30 += timeIt(30, false)
	}
	b.ReportMetric(float64(t10.Milliseconds())/float64(b.N), "ms/10tok")
	b.ReportMetric(float64(t30.Milliseconds())/float64(b.N), "ms/30tok")
	b.ReportMetric(t30.Seconds()/t10.Seconds(), "30/10-ratio")
	b.ReportMetric(r30.Seconds()/t30.Seconds(), "speedup-vs-recompute")
}

// BenchmarkNucleusBase16 captions 16 images (ViT included) with CapFilt's nucleus
// settings on the base model and reports images/s.
func BenchmarkNucleusBase16(b *testing.B) {
	reference.LogMachine(b)
	m := benchBase(b)
	s := torch.NewScope()
	defer s.Close()
	g := torch.NewGenerator(4)
	px := s.Track(torch.Randn(g, torch.Float32, torch.CPU, 16, 3, 384, 384))
	g.Close()
	keys := make([]string, 16)
	for i := range keys {
		keys[i] = string(rune('a' + i))
	}
	start := make([][]int64, 16)
	for i := range start {
		start[i] = []int64{30522, 1037, 3861, 1997}
	}
	st := spec.NucleusDefaults()
	b.ResetTimer()
	t0 := time.Now()
	for i := 0; i < b.N; i++ {
		var err error
		torch.NoGrad(func() {
			img := m.EncodeImage(s.Ref(px), false)
			_, err = Generate(context.Background(), m, img, start, keys, st)
			img.Free()
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(16*float64(b.N)/time.Since(t0).Seconds(), "images/s")
}
