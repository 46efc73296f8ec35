package eval

import "math"

// ciderSigma is CIDEr-D's Gaussian length penalty width (coco-caption's sigma 6).
const ciderSigma = 6.0

// ciderVector is one caption's tf-idf weights, one map and norm per n-gram order, and
// its length as CIDEr-D measures it: its number of bigrams.
type ciderVector struct {
	w      [MaxN]map[string]float64
	norm   [MaxN]float64
	length int
}

// CIDErD scores each candidate against its references as coco-caption's Cider does
// (blip-spec §12b) and returns the per-pair scores; the corpus score is their mean.
// cands[i] and refs[i] are the tokenised candidate and references of image i; the
// document frequencies come from refs, over these images only.
func CIDErD(cands [][]string, refs [][][]string) []float64 {
	df := map[string]int{}
	refCounts := make([][]map[string]int, len(refs))
	for i, rs := range refs {
		seen := map[string]bool{}
		for _, r := range rs {
			c := ngramCounts(r)
			refCounts[i] = append(refCounts[i], c)
			for ng := range c {
				seen[ng] = true
			}
		}
		for ng := range seen {
			df[ng]++
		}
	}
	logN := math.Log(float64(len(refs)))
	vector := func(counts map[string]int) ciderVector {
		var v ciderVector
		for n := range MaxN {
			v.w[n] = map[string]float64{}
		}
		for ng, tf := range counts {
			n := ngramOrder(ng) - 1
			x := float64(tf) * (logN - math.Log(math.Max(1, float64(df[ng]))))
			v.w[n][ng] = x
			v.norm[n] += x * x
			if n == 1 {
				v.length += tf
			}
		}
		for n := range MaxN {
			v.norm[n] = math.Sqrt(v.norm[n])
		}
		return v
	}
	scores := make([]float64, len(cands))
	for i, cand := range cands {
		vc := vector(ngramCounts(cand))
		var sum [MaxN]float64
		for _, rc := range refCounts[i] {
			vr := vector(rc)
			delta := float64(vc.length - vr.length)
			penalty := math.Exp(-(delta * delta) / (2 * ciderSigma * ciderSigma))
			for n := range MaxN {
				var val float64
				for ng, x := range vc.w[n] {
					y := vr.w[n][ng]
					val += math.Min(x, y) * y
				}
				if vc.norm[n] != 0 && vr.norm[n] != 0 {
					val /= vc.norm[n] * vr.norm[n]
				}
				sum[n] += val * penalty
			}
		}
		var mean float64
		for _, s := range sum {
			mean += s
		}
		mean /= MaxN
		scores[i] = mean / float64(len(refCounts[i])) * 10
	}
	return scores
}
