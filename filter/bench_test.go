package filter

import (
	"context"
	"testing"
	"time"

	"github.com/capfilt/capfilt/blip"
	"github.com/capfilt/capfilt/internal/testutil/reference"
	"github.com/capfilt/capfilt/torch"
)

// BenchmarkFilterBase32 scores 32 images at 384 px with 1 and with 4 captions each on
// the base model and reports pairs/s and the cost ratio: 4 captions per image cost far
// less than 4× one, because the ViT runs once per image.
func BenchmarkFilterBase32(b *testing.B) {
	reference.LogMachine(b)
	m, err := blip.New(blip.Base(), blip.Parts{Vision: true, TextEncoder: true, ITC: true, ITM: true})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	if err := m.InitDeterministic(2); err != nil {
		b.Fatal(err)
	}
	scorer, err := NewScorer(m, reference.TinyTokenizer(b, m.Config), DefaultOptions())
	if err != nil {
		b.Fatal(err)
	}
	s := torch.NewScope()
	defer s.Close()
	g := torch.NewGenerator(5)
	px := s.Track(torch.Randn(g, torch.Float32, torch.CPU, 32, 3, 384, 384))
	g.Close()
	texts := []string{"a dog sitting on the grass near the water", "two people standing in the street",
		"a red circle next to a blue square", "a picture of a cat on a table"}
	captions := func(k int) [][]string {
		out := make([][]string, 32)
		for i := range out {
			out[i] = texts[:k]
		}
		return out
	}
	timeIt := func(k int) time.Duration {
		t0 := time.Now()
		if _, err := scorer.ScorePixels(context.Background(), px, captions(k)); err != nil {
			b.Fatal(err)
		}
		return time.Since(t0)
	}
	b.ResetTimer()
	var one, four time.Duration
	for i := 0; i < b.N; i++ {
		one += timeIt(1)
		four += timeIt(4)
	}
	b.ReportMetric(32*float64(b.N)/one.Seconds(), "pairs/s(1/img)")
	b.ReportMetric(128*float64(b.N)/four.Seconds(), "pairs/s(4/img)")
	b.ReportMetric(four.Seconds()/one.Seconds(), "cost-ratio-4to1")
}
