package trainer

import (
	"context"
	"math"
	"path/filepath"
	"testing"

	"github.com/capfilt/capfilt/blip"
	"github.com/capfilt/capfilt/blip/tokenizer"
	"github.com/capfilt/capfilt/torch"
	"github.com/capfilt/capfilt/trainer/eval"
)

// randomWorldModel is the world's tiny model with random weights (every part) and its
// tokenizer, saved in the HF layout and loaded as a command would.
func randomWorldModel(t *testing.T) *blip.Inference {
	t.Helper()
	w := testWorld(t)
	cfg, err := blip.FromHFConfig(w.ModelConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	m, err := blip.New(cfg, blip.AllParts())
	if err != nil {
		t.Fatal(err)
	}
	g := torch.NewGenerator(3)
	defer g.Close()
	if err := m.InitRandom(g); err != nil {
		t.Fatal(err)
	}
	tok, err := blip.LoadModelTokenizer(w.VocabFile, "", cfg)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "model")
	if err := m.SaveHF(dir, tok); err != nil {
		t.Fatal(err)
	}
	m.Close()
	l, err := blip.LoadForInference(dir, blip.InferenceOptions{Device: torch.CPU, DType: torch.Float32})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return l
}

// EvalRetrieval's batched candidate scoring gives the scores of scoring every (image,
// text) pair on its own: with K covering every text, each pair's ranking score is its
// ITM logit₁ + ITC cosine, computed here one pair at a time, and the recalls match.
func TestRetrievalEvalMatchesPairByPairScoring(t *testing.T) {
	w := testWorld(t)
	m := randomWorldModel(t)
	set, err := OpenEvalSet(w.Test.Annotations, "")
	if err != nil {
		t.Fatal(err)
	}
	got, err := EvalRetrieval(context.Background(), m, set, RetrievalOptions{K: 1000, BatchSize: 5})
	if err != nil {
		t.Fatal(err)
	}
	// The reference: one pair per forward pass.
	var texts []string
	var textImage []int
	for i, img := range set.Refs.Images {
		for _, c := range img.Captions {
			texts, textImage = append(texts, tokenizer.PreCaption(c, 30)), append(textImage, i)
		}
	}
	n, nt := len(set.Refs.Images), len(texts)
	score := eval.NewScoreMatrix(n, nt, 0)
	torch.NoGrad(func() {
		s := torch.NewScope()
		defer s.Close()
		for i := range n {
			px, err := pixels(s, m.Model, []string{set.imagePath(i)})
			if err != nil {
				t.Fatal(err)
			}
			emb := m.Model.EncodeImage(px, false)
			imgFeat := m.Model.ImageFeatures(emb)
			for j, text := range texts {
				ids, mask := m.Tokenizer.EncodeBatch([]string{text}, 35, tokenizer.PadToMax)
				idT := s.Track(torch.FromInt64(ids[0], 1, 35))
				maskT := s.Track(torch.FromInt64(mask[0], 1, 35))
				cos, err := imgFeat.Mul(m.Model.TextFeatures(m.Model.TextUnimodal(idT, maskT, false))).Sum(false, -1).Item()
				if err != nil {
					t.Fatal(err)
				}
				itm, err := m.Model.ITMLogits(idT, maskT, emb, 1, false).Select(1, 1).Item()
				if err != nil {
					t.Fatal(err)
				}
				score.Data[i*nt+j] = float32(itm + cos)
			}
		}
	})
	gt, _ := eval.NewGroundTruth(textImage, n)
	want, err := eval.Recall(score, score.Transpose(), gt)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(got.TRMean-want.TRMean) > 1e-9 || math.Abs(got.IRMean-want.IRMean) > 1e-9 || got.Texts != nt || got.Images != n {
		t.Errorf("batched %+v\npair by pair %+v", got, want)
	}
	t.Logf("random model: %+v", got)
}
