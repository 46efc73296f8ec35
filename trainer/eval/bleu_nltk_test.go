package eval

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"
)

// testdata/bleu_nltk.json holds NLTK's corpus_bleu on random tokenised sets (made by
// testdata/bleu_nltk.py, which says where the two definitions differ).
func TestBleuAgreesWithNLTKWhereTheDefinitionsCoincide(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "bleu_nltk.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g struct {
		Sets []struct {
			Candidates [][]string
			References [][][]string
			Bleu       [MaxN]float64
		}
	}
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatal(err)
	}
	compared := 0
	for i, set := range g.Sets {
		var s BleuStats
		for j, c := range set.Candidates {
			s.Add(c, set.References[j])
		}
		got := s.Bleu()
		for n := range MaxN {
			want := set.Bleu[n]
			if want < 1e-50 {
				// An order without any match: NLTK gives 0 (or, since 3.6, a product
				// with the smallest float), coco-caption's smoothing a small number.
				if s.Correct[n] != 0 || got[n] > 1e-3 {
					t.Errorf("set %d BLEU-%d = %g where NLTK has no match", i, n+1, got[n])
				}
				continue
			}
			compared++
			if math.Abs(got[n]-want) > 1e-9*want {
				t.Errorf("set %d BLEU-%d = %.15g, NLTK %.15g", i, n+1, got[n], want)
			}
		}
	}
	if compared < 20 {
		t.Fatalf("only %d scores compared", compared)
	}
}
