package eval

import (
	"math"
	"reflect"
	"strings"
	"testing"
)

func TestPTBTokenizeSplitsAndDropsPunctuationAsCocoCaption(t *testing.T) {
	cases := []struct{ in, want string }{
		{"A man riding a horse.", "a man riding a horse"},
		{"Two dogs, playing (outside)!", "two dogs playing outside"},
		{"The dog's ball", "the dog 's ball"},
		{"I don't know, they can't.", "i do n't know they ca n't"},
		{"it's what they're doing; we'll see", "it 's what they 're doing we 'll see"},
		{"1,000 people at 3:30", "1,000 people at 3:30"},
		{"a black-and-white photo", "a black-and-white photo"},
		{"A photo [of] a cat", "a photo -LSB- of -RSB- a cat"},
		{`He said "hi" to 'her'`, "he said hi to her"},
		{"U.S. flag near Mr. Smith", "u.s. flag near mr. smith"},
		{"wait... what?", "wait what"},
		{"a -- b - c", "a b c"},
		{"50% off $5 #1", "50 % off $ 5 # 1"},
		{"the dogs' bowls", "the dogs bowls"},
		{"it cannot fly", "it can not fly"},
		{"  spaces\tand\nnewlines  ", "spaces and newlines"},
		{"", ""},
		{"...", ""},
	}
	for _, c := range cases {
		got := strings.Join(PTBTokenize(c.in), " ")
		if got != c.want {
			t.Errorf("PTBTokenize(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func toks(s string) []string { return strings.Fields(s) }

func near(t *testing.T, what string, got, want, tol float64) {
	t.Helper()
	if math.Abs(got-want) > tol {
		t.Errorf("%s = %.12g, want %.12g", what, got, want)
	}
}

// Candidate "the cat sat on the mat" against "the cat is on the mat" and "there is a
// cat on the mat": unigrams 5/6 match (the twice, clipped at 2), bigrams 3/5 (the cat,
// on the, the mat), trigrams 1/4 (on the mat), 4-grams 0/3. Reference length 6 (the
// closest), so no real brevity penalty; only coco-caption's epsilons remain.
func TestBleuOnAHandWorkedPair(t *testing.T) {
	var s BleuStats
	s.Add(toks("the cat sat on the mat"), [][]string{toks("the cat is on the mat"), toks("there is a cat on the mat")})
	if s.Correct != [MaxN]int{5, 3, 1, 0} || s.Guess != [MaxN]int{6, 5, 4, 3} || s.RefLen != 6 || s.CandidateLen != 6 {
		t.Fatalf("stats %+v", s)
	}
	b := s.Bleu()
	near(t, "BLEU-1", b[0], 5.0/6, 1e-9)
	near(t, "BLEU-2", b[1], math.Sqrt(0.5), 1e-9)
	near(t, "BLEU-3", b[2], 0.5, 1e-9)
	// No 4-gram matches: the 1e-15 smoothing gives (0.125 · 1e-15/3)^(1/4).
	near(t, "BLEU-4", b[3], math.Pow(0.125*1e-15/3, 0.25), 1e-12)
}

// "the cat" against a 6-word reference: every n-gram it has matches, and the brevity
// penalty is exp(1 − 6/2) = e^−2.
func TestBleuBrevityPenalty(t *testing.T) {
	var s BleuStats
	s.Add(toks("the cat"), [][]string{toks("the cat sat on the mat")})
	b := s.Bleu()
	near(t, "BLEU-1", b[0], math.Exp(-2), 1e-9)
	near(t, "BLEU-2", b[1], math.Exp(-2), 1e-9)
}

func TestBleuClosestReferenceLengthPrefersTheShorterOnATie(t *testing.T) {
	var s BleuStats
	s.Add(toks("a b c d e"), [][]string{toks("a b c d e f"), toks("a b c d")})
	if s.RefLen != 4 {
		t.Errorf("reference length %d, want 4 (5 is as far from 4 as from 6)", s.RefLen)
	}
	s = BleuStats{}
	s.Add(toks("a b c d e"), [][]string{toks("a b c d e f g"), toks("x y z w v u")})
	if s.RefLen != 6 {
		t.Errorf("reference length %d, want 6", s.RefLen)
	}
}

// Corpus BLEU sums counts before dividing: two pairs with 2/2 and 0/2 unigram matches
// give 2/4, whatever each pair's own precision.
func TestBleuIsACorpusStatistic(t *testing.T) {
	var s BleuStats
	s.Add(toks("a b"), [][]string{toks("a b")})
	s.Add(toks("c d"), [][]string{toks("e f")})
	near(t, "BLEU-1", s.Bleu()[0], 0.5, 1e-9)
}

func TestBleuEdgeCases(t *testing.T) {
	var zero BleuStats
	zero.Add(toks("dog"), [][]string{toks("cat")})
	if b := zero.Bleu(); b[0] > 1e-14 || b[3] > 1e-3 {
		t.Errorf("no matches: %v", b)
	}
	var empty BleuStats
	empty.Add(nil, [][]string{toks("a cat")})
	if b := empty.Bleu(); b != [MaxN]float64{} {
		t.Errorf("empty candidate: %v, want all 0 (brevity penalty exp(1 − 1/ratio) underflows)", b)
	}
}

// Two images with one reference each and exact two-word candidates: every 1- and
// 2-gram has df 1 of N = 2, so both orders have cosine 1, orders 3 and 4 are empty
// (0): (1 + 1 + 0 + 0)/4 · 10 = 5.
func TestCIDErDPerfectTwoWordCaptionsScoreFive(t *testing.T) {
	got := CIDErD([][]string{toks("a b"), toks("c d")}, [][][]string{{toks("a b")}, {toks("c d")}})
	near(t, "A", got[0], 5, 1e-12)
	near(t, "B", got[1], 5, 1e-12)
}

// Worked by hand, L = log 2 (N = 2). "a" is in both images' references: idf 0.
// Image A: candidate "a dog", reference "a dog runs". Unigrams: cand {a:0, dog:L},
// ref {a:0, dog:L, runs:L}: L²/(L·L√2) = 1/√2; bigrams: cand {a dog: L}, ref {a dog,
// dog runs}: 1/√2; trigrams: the candidate has none. Bigram counts 1 vs 2: penalty
// exp(−1/72). CIDEr-D = (2/√2)/4 · exp(−1/72) · 10.
// Image B: candidate = reference "a cat sits": orders 1–3 give 1, order 4 none: 7.5.
func TestCIDErDOnAHandWorkedSet(t *testing.T) {
	got := CIDErD([][]string{toks("a dog"), toks("a cat sits")},
		[][][]string{{toks("a dog runs")}, {toks("a cat sits")}})
	near(t, "A", got[0], math.Sqrt2/4*math.Exp(-1.0/72)*10, 1e-12)
	near(t, "B", got[1], 7.5, 1e-12)
}

// The "D" clipping: candidate "dog dog" against "a dog" weighs dog 2L against L; the
// numerator takes min(2L, L)·L, so the unigram similarity is L²/(2L·L) = 1/2 where a
// plain cosine would give 1. The bigram "dog dog" is in no reference (idf log 2 − log
// max(1, 0) = L) but its reference weight is 0. (0.5 + 0)/4 · 10 = 1.25.
func TestCIDErDClipsRepeatedWords(t *testing.T) {
	got := CIDErD([][]string{toks("dog dog"), toks("a cat")}, [][][]string{{toks("a dog")}, {toks("a cat")}})
	near(t, "clipped", got[0], 1.25, 1e-12)
}

// paperCIDEr is CIDEr as Vedantam et al. (2015) define it, written out independently:
// g_k(s) = h_k(s)/Σ_l h_l(s) · log(|I| / Σ_p min(1, Σ_q h_k(s_pq))), CIDEr_n = mean over
// references of the cosine of g^n(c) and g^n(s_j), CIDEr = Σ_n CIDEr_n / 4.
func paperCIDEr(cands [][]string, refs [][][]string) []float64 {
	grams := func(s []string, n int) map[string]float64 {
		m := map[string]float64{}
		for i := 0; i+n <= len(s); i++ {
			m[strings.Join(s[i:i+n], " ")]++
		}
		return m
	}
	out := make([]float64, len(cands))
	for n := 1; n <= 4; n++ {
		df := map[string]float64{}
		for _, rs := range refs {
			in := map[string]bool{}
			for _, r := range rs {
				for g := range grams(r, n) {
					in[g] = true
				}
			}
			for g := range in {
				df[g]++
			}
		}
		tfidf := func(s []string) map[string]float64 {
			h := grams(s, n)
			total := 0.0
			for _, c := range h {
				total += c
			}
			g := map[string]float64{}
			for k, c := range h {
				g[k] = c / total * math.Log(float64(len(refs))/math.Max(1, df[k]))
			}
			return g
		}
		norm := func(g map[string]float64) float64 {
			s := 0.0
			for _, v := range g {
				s += v * v
			}
			return math.Sqrt(s)
		}
		for i, c := range cands {
			gc := tfidf(c)
			for _, r := range refs[i] {
				gr := tfidf(r)
				dot := 0.0
				for k, v := range gc {
					dot += v * gr[k]
				}
				if nc, nr := norm(gc), norm(gr); nc > 0 && nr > 0 {
					out[i] += dot / (nc * nr) / float64(len(refs[i])) / 4
				}
			}
		}
	}
	return out
}

// Where CIDEr-D's additions cannot act (no candidate n-gram more frequent than in a
// reference, every reference as long as its candidate), it is 10 × the paper's CIDEr.
func TestCIDErDIsTenTimesThePaperDefinitionWithoutClippingOrLengthPenalty(t *testing.T) {
	cands := [][]string{toks("a man rides a horse"), toks("two dogs play in snow"), toks("a red bus on road")}
	refs := [][][]string{
		{toks("a man rides a horse"), toks("a man on a horse"), toks("a person rides a pony")},
		{toks("two dogs run in snow"), toks("dogs play in the snow")},
		{toks("a red bus on street"), toks("the bus is on road"), toks("a big red bus waits")},
	}
	got := CIDErD(cands, refs)
	want := paperCIDEr(cands, refs)
	for i := range got {
		near(t, "image "+string(rune('A'+i)), got[i], 10*want[i], 1e-9)
	}
	if want[0] <= want[2] || want[2] <= 0 {
		t.Fatalf("the worked set does not discriminate: %v", want)
	}
}

func TestScoreCaptionsTokenisesAndCountsAsCOCOEvalCap(t *testing.T) {
	refs := &References{Source: "refs.json", byID: map[ImageID]int{}}
	refs.add("1", "", "A man riding a horse.", "A person on a horse!")
	refs.add("2", "", "Two dogs play in the snow.")
	refs.add("3", "", "A bus.")
	preds := []Prediction{{ImageID: "1", Caption: "a man riding a horse"}, {ImageID: "2", Caption: "Two dogs, in snow"}}
	s, err := ScoreCaptions(preds, refs)
	if err != nil {
		t.Fatal(err)
	}
	if s.Images != 2 || s.References != 3 || s.Unpredicted != 1 || len(s.PerImage) != 2 {
		t.Fatalf("counts %+v", s)
	}
	var b BleuStats
	b.Add(toks("a man riding a horse"), [][]string{toks("a man riding a horse"), toks("a person on a horse")})
	b.Add(toks("two dogs in snow"), [][]string{toks("two dogs play in the snow")})
	want := b.Bleu()
	if got := [MaxN]float64{s.Bleu1, s.Bleu2, s.Bleu3, s.Bleu4}; got != want {
		t.Errorf("BLEU %v, want %v", got, want)
	}
	cider := CIDErD([][]string{toks("a man riding a horse"), toks("two dogs in snow")},
		[][][]string{{toks("a man riding a horse"), toks("a person on a horse")}, {toks("two dogs play in the snow")}})
	near(t, "CIDEr-D", s.CIDEr, (cider[0]+cider[1])/2, 1e-12)

	if _, err := ScoreCaptions([]Prediction{{ImageID: "1"}, {ImageID: "1"}}, refs); err == nil || !strings.Contains(err.Error(), "more than one") {
		t.Errorf("duplicate prediction: %v", err)
	}
	if _, err := ScoreCaptions([]Prediction{{ImageID: "9"}}, refs); err == nil || !strings.Contains(err.Error(), "refs.json") {
		t.Errorf("unknown image: %v", err)
	}
	var out strings.Builder
	if err := s.WriteTable(&out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"BLEU-4", "CIDEr-D", "1 reference images have no prediction"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	if !reflect.DeepEqual(PTBTokenize("Two dogs, in snow"), toks("two dogs in snow")) {
		t.Fatal("tokenisation assumed above does not hold")
	}
}
