package captioner

import (
	"fmt"
	"math"
	"sort"

	"github.com/capfilt/capfilt/pipeline/spec"
	"github.com/capfilt/capfilt/torch"
)

// applyPenaltyAndMinLength runs transformers-4.15's logits processors, in its order, on
// scores [R, V] (raw logits when sampling or greedy, log-probabilities in beam search):
//   - repetition penalty: every id already in a row's sequence, prompt included, once:
//     score/p where score > 0, score·p otherwise;
//   - minimum length: [SEP] is impossible while the sequence is shorter than MinLength.
func applyPenaltyAndMinLength(scores *torch.Tensor, seqs [][]int64, st spec.Generation, sepID int64) *torch.Tensor {
	if err := scores.Err(); err != nil {
		return scores
	}
	curLen := len(seqs[0])
	if st.RepetitionPenalty != 1 {
		flat := make([]int64, 0, len(seqs)*curLen)
		for _, s := range seqs {
			flat = append(flat, s...)
		}
		idx := scores.Scope().Track(torch.FromInt64(flat, int64(len(seqs)), int64(curLen))).ToDevice(scores.Device())
		picked := scores.Gather(1, idx)
		penalised := torch.Where(picked.LtScalar(0), picked.MulScalar(st.RepetitionPenalty), picked.DivScalar(st.RepetitionPenalty))
		scores = scores.Scatter(1, idx, penalised)
	}
	if curLen < st.MinLength {
		scores = scores.Clone()
		if err := scores.Narrow(1, sepID, 1).Fill(math.Inf(-1)); err != nil {
			return torch.Failed(err)
		}
	}
	return scores
}

// candidate is one token a sampler may draw, with its (processed) score and, after the
// nucleus filter, its renormalised probability.
type candidate struct {
	Token int64
	Score float64
	Prob  float64
}

// topKCandidates returns, per row of scores [R, V], the tokens that survive
// transformers' top-k filter — every token whose score is not below the k-th largest,
// so ties at the boundary are all kept — in increasing token order. k ≤ 0 keeps all.
func topKCandidates(scores *torch.Tensor, k int) ([][]candidate, error) {
	s := scores.Shape()
	if len(s) != 2 {
		return nil, fmt.Errorf("top-k: scores shape %v, want [rows, vocab]", s)
	}
	rows, vocab := int(s[0]), int(s[1])
	out := make([][]candidate, rows)
	full := func(rowsWanted []int) error {
		for _, r := range rowsWanted {
			v, err := scores.Select(0, int64(r)).ToDType(torch.Float32).Float32s()
			if err != nil {
				return err
			}
			thr := math.Inf(-1)
			if k > 0 && k < vocab {
				sorted := append([]float32(nil), v...)
				sort.Slice(sorted, func(i, j int) bool { return sorted[i] > sorted[j] })
				thr = float64(sorted[k-1])
			}
			cands := make([]candidate, 0, min(max(k, 0), vocab))
			for tok, sc := range v {
				if k <= 0 || k >= vocab || float64(sc) >= thr {
					cands = append(cands, candidate{Token: int64(tok), Score: float64(sc)})
				}
			}
			out[r] = cands
		}
		return nil
	}
	if k <= 0 || k >= vocab {
		all := make([]int, rows)
		for i := range all {
			all[i] = i
		}
		return out, full(all)
	}
	values, indices := scores.TopK(int64(k), 1, true)
	kth := values.Narrow(1, int64(k-1), 1)
	counts, err := scores.Ge(kth).ToDType(torch.Int64).Sum(false, 1).Int64s()
	if err != nil {
		return nil, err
	}
	vals, err := values.ToDType(torch.Float32).Float32s()
	if err != nil {
		return nil, err
	}
	idx, err := indices.Int64s()
	if err != nil {
		return nil, err
	}
	var tied []int
	for r := 0; r < rows; r++ {
		if counts[r] > int64(k) {
			tied = append(tied, r) // more tokens share the k-th score than top-k returned
			continue
		}
		cands := make([]candidate, k)
		for j := 0; j < k; j++ {
			cands[j] = candidate{Token: idx[r*k+j], Score: float64(vals[r*k+j])}
		}
		sort.Slice(cands, func(a, b int) bool { return cands[a].Token < cands[b].Token })
		out[r] = cands
	}
	return out, full(tied)
}

// nucleus applies top-p to candidates (scores already penalised, tempered and top-k
// filtered) and returns the kept tokens with their renormalised probabilities, most
// likely first. As transformers does: softmax over the candidates, sort descending, keep a
// token while the cumulative probability of the tokens before it is ≤ topP (the first is
// always kept). Equal probabilities are ordered by token id.
func nucleus(cands []candidate, topP float64) []candidate {
	if len(cands) == 0 {
		return nil
	}
	mx := math.Inf(-1)
	for _, c := range cands {
		mx = math.Max(mx, c.Score)
	}
	sorted := make([]candidate, len(cands))
	copy(sorted, cands)
	var z float64
	for i := range sorted {
		sorted[i].Prob = math.Exp(sorted[i].Score - mx)
		z += sorted[i].Prob
	}
	for i := range sorted {
		sorted[i].Prob /= z
	}
	sort.SliceStable(sorted, func(a, b int) bool {
		if sorted[a].Prob != sorted[b].Prob {
			return sorted[a].Prob > sorted[b].Prob
		}
		return sorted[a].Token < sorted[b].Token
	})
	kept := sorted[:1]
	cum := sorted[0].Prob
	for _, c := range sorted[1:] {
		if cum > topP {
			break
		}
		kept = append(kept, c)
		cum += c.Prob
	}
	var total float64
	for _, c := range kept {
		total += c.Prob
	}
	out := make([]candidate, 0, len(kept))
	for _, c := range kept {
		if c.Prob == 0 {
			continue // a token made impossible (−inf) can never be drawn
		}
		c.Prob /= total
		out = append(out, c)
	}
	return out
}

// draw picks a candidate with probability Prob using u ∈ [0, 1).
func draw(kept []candidate, u float64) candidate {
	acc := 0.0
	for _, c := range kept {
		acc += c.Prob
		if u < acc {
			return c
		}
	}
	return kept[len(kept)-1]
}
