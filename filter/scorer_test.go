package filter

import (
	"context"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/capfilt/capfilt/blip"
	"github.com/capfilt/capfilt/internal/testutil/reference"
	"github.com/capfilt/capfilt/pipeline/spec"
	"github.com/capfilt/capfilt/torch"
)

func tinyScorer(t *testing.T, seed uint64) *Scorer {
	t.Helper()
	m, err := blip.New(blip.Tiny(), blip.Parts{Vision: true, TextEncoder: true, ITC: true, ITM: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	if err := m.InitDeterministic(seed); err != nil {
		t.Fatal(err)
	}
	s, err := NewScorer(m, reference.TinyTokenizer(t, m.Config), DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// randomPixels are [b,3,64,64] pixels the tiny model can take.
func randomPixels(s *torch.Scope, seed uint64, b int64) *torch.Tensor {
	g := torch.NewGenerator(seed)
	defer g.Close()
	return s.Track(torch.Randn(g, torch.Float32, torch.CPU, b, 3, 64, 64))
}

// refScorer scores with a reference case's model.
func refScorer(t *testing.T, name string) (*Scorer, string) {
	t.Helper()
	m := reference.Model(t, name, blip.Parts{Vision: true, TextEncoder: true, ITC: true, ITM: true})
	s, err := NewScorer(m, reference.TinyTokenizer(t, m.Config), DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	return s, reference.Case(t, name)
}

func TestBaseScoresEqualTheReference(t *testing.T) {
	scorer, dir := refScorer(t, "base")
	compareScores(t, scorer, dir, 1e-3)
}

// compareScores scores the reference inputs pair by pair against the case's goldens
// (ITM with [ENC] first) and returns the ITM probs.
func compareScores(t *testing.T, scorer *Scorer, dir string, tol float64) (*torch.Scope, []float32) {
	t.Helper()
	return compareScoresWith(t, scorer, dir, filepath.Join(dir, "golden.safetensors"), "itm.prob", tol)
}

// compareScoresWith compares with the ITM probs named itmKey of the golden file gold.
func compareScoresWith(t *testing.T, scorer *Scorer, dir, goldPath, itmKey string, tol float64) (*torch.Scope, []float32) {
	t.Helper()
	m := scorer.model
	in := reference.Tensors(t, filepath.Join(dir, "inputs.safetensors"))
	gold := reference.Tensors(t, filepath.Join(dir, "golden.safetensors"))
	for k, v := range reference.Tensors(t, goldPath) {
		gold[k] = v
	}
	sc := torch.NewScope()
	t.Cleanup(sc.Close)
	var img *torch.Tensor
	torch.NoGrad(func() { img = m.EncodeImage(sc.Ref(in["pixel_values"]), false) })
	ids, mask := sc.Ref(in["input_ids"]).ToDevice(img.Device()), sc.Ref(in["attention_mask"]).ToDevice(img.Device())
	owner := make([]int64, img.Size(0))
	for i := range owner {
		owner[i] = int64(i)
	}
	itm, itc, err := scorer.scoreTokens(sc, img, ids, mask, owner, 1)
	if err != nil {
		t.Fatal(err)
	}
	wantITM, err := gold[itmKey].Float32s()
	if err != nil {
		t.Fatalf("%s %s: %v", goldPath, itmKey, err)
	}
	wantITC, _ := gold["itc.cosine"].Float32s()
	for i := range itm {
		if math.Abs(float64(itm[i]-wantITM[i])) > tol || math.Abs(float64(itc[i]-wantITC[i])) > tol {
			t.Fatalf("pair %d: itm %v itc %v, reference %v %v", i, itm[i], itc[i], wantITM[i], wantITC[i])
		}
	}
	return sc, itm
}

// BLIP puts [ENC] first for ITM (the reference's itm.*); HF's BlipForImageTextRetrieval
// leaves [CLS] there (the reference's itm_cls.*). Each setting matches its own reference,
// in both reference models, and the two give other scores.
func TestITMFirstTokenMatchesTheReferenceBothWays(t *testing.T) {
	for _, name := range []string{"tiny", "tiny-gen"} {
		t.Run(name, func(t *testing.T) {
			scorer, dir := refScorer(t, name)
			_, enc := compareScores(t, scorer, dir, 1e-4)
			cls := withFirstToken(t, scorer, spec.ITMFirstCLS)
			_, got := compareScoresWith(t, cls, dir, filepath.Join(reference.Dir(), "itm-cls", name+".safetensors"), "itm_cls.prob", 1e-4)
			differs := false
			for i := range got {
				if math.Abs(float64(got[i]-enc[i])) > 1e-3 {
					differs = true
				}
			}
			if !differs {
				t.Fatalf("[CLS]-first ITM %v equals the [ENC]-first one %v: the reference cannot tell them apart", got, enc)
			}
		})
	}
}

func withFirstToken(t *testing.T, s *Scorer, first spec.ITMFirstToken) *Scorer {
	t.Helper()
	o := DefaultOptions()
	o.ITMFirstToken = first
	out, err := NewScorer(s.model, s.tok, o)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestUnknownITMFirstTokenIsRefused(t *testing.T) {
	s := tinyScorer(t, 1)
	o := DefaultOptions()
	o.ITMFirstToken = "sep"
	if _, err := NewScorer(s.model, s.tok, o); err == nil || !strings.Contains(err.Error(), `"sep"`) {
		t.Fatalf("err %v", err)
	}
}

// Captions of one image share its embeddings; the result must be what scoring each
// caption against a copy of its image gives, and must not depend on padding.
func TestGroupedScoringEqualsPairByPairScoring(t *testing.T) {
	scorer := tinyScorer(t, 4)
	sc := torch.NewScope()
	defer sc.Close()
	pixels := randomPixels(sc, 9, 2)
	captions := [][]string{
		{"a red circle on the left", "a dog", "two people sitting on the grass near the water"},
		{"a blue square", "a picture of a cat on a table", "green"},
	}
	grouped, err := scorer.ScorePixels(context.Background(), pixels, captions)
	if err != nil {
		t.Fatal(err)
	}
	for i, cs := range captions {
		for j, c := range cs {
			one, err := scorer.ScorePixels(context.Background(), pixels.Narrow(0, int64(i), 1), [][]string{{c}})
			if err != nil {
				t.Fatal(err)
			}
			g, o := grouped[i][j], one[0][0]
			if math.Abs(float64(g.ITM-o.ITM)) > 1e-5 || math.Abs(float64(g.ITC-o.ITC)) > 1e-5 {
				t.Fatalf("image %d caption %q: grouped %+v, alone %+v", i, c, g, o)
			}
		}
	}
	// Unequal caption counts take the copying path; same answers.
	ragged, err := scorer.ScorePixels(context.Background(), pixels, [][]string{captions[0], captions[1][:1]})
	if err != nil {
		t.Fatal(err)
	}
	if len(ragged[1]) != 1 || math.Abs(float64(ragged[1][0].ITM-grouped[1][0].ITM)) > 1e-5 {
		t.Fatalf("ragged %+v vs grouped %+v", ragged[1], grouped[1][0])
	}
	for _, cs := range grouped {
		for _, s := range cs {
			if s.ITM < 0 || s.ITM > 1 || s.ITC < -1.0001 || s.ITC > 1.0001 {
				t.Fatalf("score out of range: %+v", s)
			}
		}
	}
}

func TestScorerRejectsModelsWithoutFilterHeads(t *testing.T) {
	m, err := blip.New(blip.Tiny(), blip.Parts{Vision: true, TextDecoder: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if _, err := NewScorer(m, reference.TinyTokenizer(t, m.Config), DefaultOptions()); err == nil {
		t.Fatal("a captioning-only checkpoint cannot filter")
	}
}
