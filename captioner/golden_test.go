package captioner

import (
	"context"
	"math"
	"path/filepath"
	"testing"

	"github.com/capfilt/capfilt/blip"
	"github.com/capfilt/capfilt/internal/testutil/reference"
	"github.com/capfilt/capfilt/pipeline/spec"
	"github.com/capfilt/capfilt/torch"
)

type refCase struct {
	model        *blip.Model
	image        *torch.Tensor
	start        [][]int64
	golden       map[string]*torch.Tensor
	scope        *torch.Scope
	vocab, batch int
}

func loadRefCase(t *testing.T, name string) *refCase {
	t.Helper()
	dir := reference.Case(t, name)
	m := reference.Model(t, name, blip.Parts{Vision: true, TextDecoder: true})
	inputs := reference.Tensors(t, filepath.Join(dir, "inputs.safetensors"))
	golden := reference.Tensors(t, filepath.Join(dir, "golden.safetensors"))
	get := func(m map[string]*torch.Tensor, n string) *torch.Tensor {
		if x, ok := m["inputs."+n]; ok {
			return x
		}
		return m[n]
	}
	s := torch.NewScope()
	t.Cleanup(s.Close)
	var img *torch.Tensor
	torch.NoGrad(func() { img = m.EncodeImage(s.Ref(get(inputs, "pixel_values")), false) })
	if err := img.Err(); err != nil {
		t.Fatal(err)
	}
	dec := get(inputs, "decoder_input_ids")
	ids, err := dec.Int64s()
	if err != nil {
		t.Fatal(err)
	}
	b, p := int(dec.Size(0)), int(dec.Size(1))
	start := make([][]int64, b)
	for i := range start {
		start[i] = ids[i*p : (i+1)*p]
	}
	return &refCase{model: m, image: img, start: start, golden: golden, scope: s, vocab: m.Config.Text.VocabSize, batch: b}
}

func TestGreedyAndBeamEqualTheReferenceTokenForToken(t *testing.T) {
	for _, name := range []string{"tiny", "tiny-gen", "base"} {
		t.Run(name, func(t *testing.T) {
			rc := loadRefCase(t, name)
			greedy := spec.GreedyDefaults()
			greedy.MaxLength, greedy.MinLength = 20, 5
			pen := greedy
			pen.RepetitionPenalty = 1.1
			beam := spec.BeamDefaults()
			for key, st := range map[string]spec.Generation{"generate.greedy.ids": greedy, "generate.greedy_pen.ids": pen, "generate.beam3.ids": beam} {
				seqs, err := Generate(context.Background(), rc.model, rc.image, rc.start, nil, st)
				if err != nil {
					t.Fatal(err)
				}
				want, err := rc.golden[key].Int64s()
				if err != nil {
					t.Fatal(err)
				}
				width := int(rc.golden[key].Size(1))
				for i, ss := range seqs {
					got := ss[0].IDs
					row := want[i*width : (i+1)*width]
					for j := 0; j < width; j++ {
						g := int64(0)
						if j < len(got) {
							g = got[j]
						}
						if g != row[j] {
							t.Fatalf("%s row %d: got %v, reference %v", key, i, got, row)
						}
					}
					if len(got) > width {
						t.Fatalf("%s row %d: got %d tokens, reference %d", key, i, len(got), width)
					}
				}
			}
		})
	}
}

// The distribution the first nucleus draw comes from equals the reference's.
func TestNucleusDistributionEqualsTheReference(t *testing.T) {
	for _, name := range []string{"tiny", "tiny-gen", "base"} {
		t.Run(name, func(t *testing.T) {
			rc := loadRefCase(t, name)
			st := spec.NucleusDefaults()
			cache := rc.model.NewKVCache(st.MaxLength)
			defer cache.Close()
			dec := &modelStepper{m: rc.model, image: rc.image, groups: 1, cache: cache}
			var flat []int64
			for _, s := range rc.start {
				flat = append(flat, s...)
			}
			s := rc.scope.Child()
			defer s.Close()
			logits := dec.Step(s, flat, rc.batch, len(rc.start[0]))
			scores := applyPenaltyAndMinLength(logits, rc.start, st, rc.model.Config.Text.SepID)
			cands, err := topKCandidates(scores, st.TopK)
			if err != nil {
				t.Fatal(err)
			}
			want, err := rc.golden["nucleus.probs"].Float32s()
			if err != nil {
				t.Fatal(err)
			}
			for r := 0; r < rc.batch; r++ {
				got := make([]float64, rc.vocab)
				for _, c := range nucleus(cands[r], st.TopP) {
					got[c.Token] = c.Prob
				}
				for v := 0; v < rc.vocab; v++ {
					w := float64(want[r*rc.vocab+v])
					if (w == 0) != (got[v] == 0) || math.Abs(got[v]-w) > 1e-5 {
						t.Fatalf("row %d token %d: p = %g, reference %g", r, v, got[v], w)
					}
				}
			}
		})
	}
}
