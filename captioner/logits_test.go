package captioner

import (
	"math"
	"testing"

	"github.com/capfilt/capfilt/pipeline/spec"
	"github.com/capfilt/capfilt/torch"
)

func logs(p ...float64) []candidate {
	out := make([]candidate, len(p))
	for i, v := range p {
		out[i] = candidate{Token: int64(i), Score: math.Log(v)}
	}
	return out
}

func tokens(cs []candidate) []int64 {
	out := make([]int64, len(cs))
	for i, c := range cs {
		out[i] = c.Token
	}
	return out
}

func TestNucleusKeepsTokensWhileTheMassBeforeThemIsWithinP(t *testing.T) {
	cases := []struct {
		name  string
		cands []candidate
		topP  float64
		want  []int64
		probs []float64
	}{
		{"p reached exactly keeps the next token", logs(0.5, 0.4, 0.1), 0.9, []int64{0, 1, 2}, []float64{0.5, 0.4, 0.1}},
		{"p passed drops the rest", logs(0.5, 0.25, 0.15, 0.1), 0.7, []int64{0, 1}, []float64{0.5 / 0.75, 0.25 / 0.75}},
		{"a single dominant token", []candidate{{0, 10, 0}, {1, 0, 0}, {2, 0, 0}, {3, 0, 0}}, 0.9, []int64{0}, []float64{1}},
		{"ties are ordered by token id", []candidate{{7, 1, 0}, {3, 1, 0}, {5, 1, 0}, {9, 1, 0}}, 0.5, []int64{3, 5, 7}, []float64{1.0 / 3, 1.0 / 3, 1.0 / 3}},
		{"unsorted input is sorted by probability", logs(0.1, 0.6, 0.3), 0.8, []int64{1, 2}, []float64{2.0 / 3, 1.0 / 3}},
		{"top-p 1 keeps every possible token", []candidate{{0, 0, 0}, {1, math.Inf(-1), 0}, {2, 0, 0}}, 1, []int64{0, 2}, []float64{0.5, 0.5}},
	}
	for _, c := range cases {
		got := nucleus(c.cands, c.topP)
		if gt := tokens(got); len(gt) != len(c.want) {
			t.Errorf("%s: kept %v, want %v", c.name, gt, c.want)
			continue
		}
		for i := range got {
			if got[i].Token != c.want[i] || math.Abs(got[i].Prob-c.probs[i]) > 1e-12 {
				t.Errorf("%s: kept %v, want tokens %v probs %v", c.name, got, c.want, c.probs)
				break
			}
		}
	}
}

func TestTopKKeepsTiesAtTheBoundary(t *testing.T) {
	scores := torch.FromFloat32([]float32{
		5, 4, 4, 4, 1, 0,
		0, 1, 2, 3, 4, 5,
	}, 2, 6)
	got, err := topKCandidates(scores, 2)
	if err != nil {
		t.Fatal(err)
	}
	if tk := tokens(got[0]); len(tk) != 4 || tk[0] != 0 || tk[3] != 3 {
		t.Fatalf("row with a tie at the k-th score kept %v, want 0 1 2 3", tk)
	}
	if tk := tokens(got[1]); len(tk) != 2 || tk[0] != 4 || tk[1] != 5 {
		t.Fatalf("plain row kept %v, want 4 5", tk)
	}
	all, err := topKCandidates(scores, 0)
	if err != nil || len(all[0]) != 6 {
		t.Fatalf("k = 0 keeps everything: %v %v", all, err)
	}
	// top-k smaller than the nucleus: two candidates whose mass never reaches p.
	kept := nucleus(got[1], 0.999)
	if len(kept) != 2 || math.Abs(kept[0].Prob-math.E/(1+math.E)) > 1e-9 {
		t.Fatalf("nucleus after top-k 2: %v", kept)
	}
}

func TestPenaltyAndMinLengthRules(t *testing.T) {
	scores := torch.FromFloat32([]float32{2, -2, 1, 0.5, 3}, 1, 5)
	st := spec.Generation{RepetitionPenalty: 2, MinLength: 4}
	// ids 0 and 1 appear (1 twice, penalised once), length 3 < min length 4: [SEP]=4 is out.
	got, err := applyPenaltyAndMinLength(scores, [][]int64{{0, 1, 1}}, st, 4).Float32s()
	if err != nil {
		t.Fatal(err)
	}
	want := []float32{1, -4, 1, 0.5, float32(math.Inf(-1))}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("processed %v, want %v", got, want)
		}
	}
	st.MinLength = 3 // length 3 is enough: [SEP] allowed again
	got, _ = applyPenaltyAndMinLength(scores, [][]int64{{0, 1, 1}}, st, 4).Float32s()
	if got[4] != 3 {
		t.Fatalf("[SEP] at min length: %v", got)
	}
}

// Draws over many seeded rows must follow the filtered distribution (chi-square).
func TestSamplingFrequenciesMatchTheNucleus(t *testing.T) {
	kept := nucleus(logs(0.4, 0.3, 0.15, 0.1, 0.05), 0.8)
	if len(kept) != 3 {
		t.Fatalf("kept %v", kept)
	}
	const n = 20000
	counts := map[int64]int{}
	for i := 0; i < n; i++ {
		r := rowRNG(7, "img-"+string(rune('a'+i%26)), i)
		counts[draw(kept, r.Float64()).Token]++
	}
	var chi2 float64
	for _, c := range kept {
		exp := c.Prob * n
		d := float64(counts[c.Token]) - exp
		chi2 += d * d / exp
	}
	// 2 degrees of freedom: P(χ² > 13.8) = 0.001.
	if chi2 > 13.8 || len(counts) != 3 {
		t.Fatalf("χ² = %.2f for counts %v against %v", chi2, counts, kept)
	}
	// Independent streams: the same (seed, key, sample) gives the same draw.
	a, b := rowRNG(1, "k", 0).Float64(), rowRNG(1, "k", 0).Float64()
	c := rowRNG(1, "k", 1).Float64()
	if a != b || a == c {
		t.Fatalf("row streams: %v %v %v", a, b, c)
	}
}
