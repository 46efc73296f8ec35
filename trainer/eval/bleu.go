package eval

import (
	"math"
	"strings"
)

// MaxN is the longest n-gram BLEU and CIDEr-D count.
const MaxN = 4

// ngramCounts counts the 1- to MaxN-grams of words, keyed by the words joined with a
// space (tokens never contain one).
func ngramCounts(words []string) map[string]int {
	out := map[string]int{}
	for n := 1; n <= MaxN; n++ {
		for i := 0; i+n <= len(words); i++ {
			out[strings.Join(words[i:i+n], " ")]++
		}
	}
	return out
}

func ngramOrder(ng string) int { return strings.Count(ng, " ") + 1 }

// BleuStats are the corpus sums BLEU is computed from (coco-caption's BleuScorer).
type BleuStats struct {
	CandidateLen int       // words of every candidate
	RefLen       int       // per candidate, the closest reference length; summed
	Guess        [MaxN]int // candidate n-grams, per order
	Correct      [MaxN]int // candidate n-grams clipped by their largest count in one reference
	Pairs        int       // candidates counted
}

// Add counts one tokenised candidate against its tokenised references. The
// reference length is the one closest to the candidate's, the shorter on a tie
// (coco-caption's option "closest").
func (s *BleuStats) Add(cand []string, refs [][]string) {
	maxRef := map[string]int{}
	refLen := -1
	for _, r := range refs {
		for ng, c := range ngramCounts(r) {
			maxRef[ng] = max(maxRef[ng], c)
		}
		d, best := absInt(len(r)-len(cand)), absInt(refLen-len(cand))
		if refLen < 0 || d < best || (d == best && len(r) < refLen) {
			refLen = len(r)
		}
	}
	s.CandidateLen += len(cand)
	s.RefLen += max(refLen, 0)
	for k := range MaxN {
		s.Guess[k] += max(0, len(cand)-k)
	}
	for ng, c := range ngramCounts(cand) {
		s.Correct[ngramOrder(ng)-1] += min(c, maxRef[ng])
	}
	s.Pairs++
}

// Bleu is BLEU-1…4 of the sums: the geometric mean of the smoothed precisions
// (match + 1e-15)/(guess + 1e-9) up to each order, times the brevity penalty
// exp(1 − r/c) when the candidates are shorter than the references, with
// c/r = (c + 1e-15)/(r + 1e-9) as coco-caption computes it.
func (s BleuStats) Bleu() [MaxN]float64 {
	const tiny, small = 1e-15, 1e-9
	var out [MaxN]float64
	prod := 1.0
	for k := range MaxN {
		prod *= (float64(s.Correct[k]) + tiny) / (float64(s.Guess[k]) + small)
		out[k] = math.Pow(prod, 1/float64(k+1))
	}
	ratio := (float64(s.CandidateLen) + tiny) / (float64(s.RefLen) + small)
	if ratio < 1 {
		for k := range out {
			out[k] *= math.Exp(1 - 1/ratio)
		}
	}
	return out
}

func absInt(v int) int {
	if v < 0 {
		return -v
	}
	return v
}
