package blip

import (
	"testing"

	"github.com/capfilt/capfilt/torch"
)

func TestTinyModelRunsEveryMode(t *testing.T) {
	m, err := New(Tiny(), AllParts())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.InitDeterministic(1); err != nil {
		t.Fatal(err)
	}
	s := torch.NewScope()
	defer s.Close()
	g := torch.NewGenerator(1)
	defer g.Close()
	px := s.Track(torch.Randn(g, torch.Float32, torch.CPU, 2, 3, 64, 64))
	img := m.EncodeImage(px, false)
	if err := img.MustShape("vision", 2, 17, 48); err != nil {
		t.Fatal(err)
	}
	hires := m.EncodeImage(s.Track(torch.Randn(g, torch.Float32, torch.CPU, 2, 3, 96, 96)), false)
	if err := hires.MustShape("hires", 2, 37, 48); err != nil {
		t.Fatal(err)
	}
	ids := s.Track(torch.FromInt64([]int64{2, 10, 11, 3, 0, 2, 12, 13, 14, 3}, 2, 5))
	mask := s.Track(torch.FromInt64([]int64{1, 1, 1, 1, 0, 1, 1, 1, 1, 1}, 2, 5))
	if err := m.ITMLogits(ids, mask, img, 1, false).MustShape("itm", 2, 2); err != nil {
		t.Fatal(err)
	}
	if err := m.TextFeatures(m.TextUnimodal(ids, mask, false)).MustShape("itc", 2, 16); err != nil {
		t.Fatal(err)
	}
	if err := m.DecoderLogits(ids, mask, img, 1, false).MustShape("lm", 2, 5, 120); err != nil {
		t.Fatal(err)
	}
	t.Log(m.NumParams())
}

// Decoding step by step with the cache must give the logits of one full pass, and rows
// sharing an image through ImageGroups the same as with the image repeated per row.
func TestCachedDecodingEqualsFullPass(t *testing.T) {
	m, err := New(Tiny(), Parts{Vision: true, TextDecoder: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.InitDeterministic(3); err != nil {
		t.Fatal(err)
	}
	s := torch.NewScope()
	defer s.Close()
	g := torch.NewGenerator(2)
	defer g.Close()
	img := m.EncodeImage(s.Track(torch.Randn(g, torch.Float32, torch.CPU, 2, 3, 64, 64)), false)
	// 4 rows: two per image.
	ids := []int64{118, 10, 11, 12, 13, 14, 118, 20, 21, 22, 23, 24, 118, 30, 31, 32, 33, 34, 118, 40, 41, 42, 43, 44}
	full := m.DecoderLogits(s.Track(torch.FromInt64(ids, 4, 6)), nil, img, 2, false)
	repeated := m.DecoderLogits(s.Track(torch.FromInt64(ids, 4, 6)), nil, img.IndexSelect(0, s.Track(torch.FromInt64([]int64{0, 0, 1, 1}, 4))), 1, false)
	want, _ := full.Float32s()
	rep, _ := repeated.Float32s()
	for i := range want {
		if d := want[i] - rep[i]; d > 1e-5 || d < -1e-5 {
			t.Fatalf("grouped vs repeated image: logit %d differs by %g", i, d)
		}
	}
	cache := m.NewKVCache(8)
	defer cache.Close()
	var got []float32
	for step, span := range [][2]int{{0, 4}, {4, 5}, {5, 6}} {
		cols := make([]int64, 0)
		for r := 0; r < 4; r++ {
			cols = append(cols, ids[r*6+span[0]:r*6+span[1]]...)
		}
		w := int64(span[1] - span[0])
		st := s.Child()
		out := m.DecodeStep(st.Track(torch.FromInt64(cols, 4, w)), nil, img, 2, cache)
		v, err := out.Float32s()
		if err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		got = append(got, v...)
		st.Close()
	}
	// got is step-major; compare each (row, position).
	V := 120
	idx := 0
	for _, span := range [][2]int{{0, 4}, {4, 5}, {5, 6}} {
		for r := 0; r < 4; r++ {
			for p := span[0]; p < span[1]; p++ {
				for v := 0; v < V; v++ {
					d := got[idx] - want[(r*6+p)*V+v]
					if d > 1e-5 || d < -1e-5 {
						t.Fatalf("row %d pos %d vocab %d: cached %v, full %v", r, p, v, got[idx], want[(r*6+p)*V+v])
					}
					idx++
				}
			}
		}
	}
}
