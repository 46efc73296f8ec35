package blip

import (
	"strings"
	"testing"

	"github.com/capfilt/capfilt/torch"
)

// A tokenizer whose vocabulary is larger than the model's embedding gives ids the model
// has no row for: every text mode must return an error naming the id and the vocabulary
// size (it used to panic indexing the failed embedding's shape).
func TestTokenIDsOutsideTheVocabularyAreAnErrorNamingTheID(t *testing.T) {
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
	img := m.EncodeImage(s.Track(torch.Randn(g, torch.Float32, torch.CPU, 1, 3, 64, 64)), false)
	for _, c := range []struct {
		id   int64
		want string
	}{{150, "token id 150 is outside the vocabulary of 120 ids"}, {120, "token id 120 is outside"}, {-3, "token id -3 is negative"}} {
		ids := s.Track(torch.FromInt64([]int64{2, 10, c.id, 3}, 1, 4))
		results := map[string]*torch.Tensor{
			"unimodal": m.TextUnimodal(ids, nil, false),
			"itm":      m.ITMLogits(ids, nil, img, 1, false),
			"decoder":  m.DecoderLogits(ids, nil, img, 1, false),
			"step":     m.DecodeStep(ids, nil, img, 1, m.NewKVCache(8)),
		}
		for mode, out := range results {
			err := out.Err()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%s with id %d: error %v, want one containing %q", mode, c.id, err, c.want)
			}
		}
	}
}
