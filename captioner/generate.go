package captioner

import (
	"context"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"

	"github.com/capfilt/capfilt/pipeline/spec"
	"github.com/capfilt/capfilt/torch"
)

// stepper is what generation needs of a decoder: logits for the next token.
type stepper interface {
	// Step feeds each of rows sequences width new tokens (row-major in tokens) after the
	// positions fed before, and returns next-token scores at the last position, [rows, V].
	Step(s *torch.Scope, tokens []int64, rows, width int) *torch.Tensor
	// Reorder makes row i continue from the state of row from[i] (beam search).
	Reorder(from []int64) error
	// Retain keeps len(units) images of groups consecutive rows each: image j continues
	// from the state of image units[j]. Only the places of images left out are written
	// over (every units[j] is kept), so the state moves image by image, not all at once.
	Retain(units []int64, groups int) error
}

// Sequence is one generated token sequence.
type Sequence struct {
	// IDs is the whole sequence: the start tokens, the generated tokens and the final
	// [SEP] if one was emitted (or appended by beam search below max length).
	IDs []int64
	// Score is the beam score (sum of log-probabilities / length) in beam search, and the
	// sum of the model's log-probabilities of the generated tokens otherwise.
	Score float64
}

// request is one generation call over images that each start from the same tokens.
type request struct {
	start [][]int64 // per image; all the same length
	keys  []string  // per image; seeds the sampler
	st    spec.Generation
	sepID int64
	padID int64
	vocab int
}

// rowRNG seeds the sampler of one sequence from (seed, image key, sample number): an
// image's captions do not depend on the batch around it.
func rowRNG(seed uint64, key string, sample int) *rand.Rand {
	h := fnv.New64a()
	fmt.Fprintf(h, "%s\x00%d", key, sample)
	return rand.New(rand.NewPCG(seed, h.Sum64()))
}

// generate runs greedy decoding, nucleus sampling or beam search and returns, per
// image, its sequences (Samples for nucleus, one otherwise).
func generate(ctx context.Context, dec stepper, req request) ([][]Sequence, error) {
	if len(req.start) == 0 {
		return nil, nil
	}
	p := len(req.start[0])
	for i, s := range req.start {
		if len(s) != p {
			return nil, fmt.Errorf("generate: image %d starts with %d tokens, image 0 with %d", i, len(s), p)
		}
	}
	if p >= req.st.MaxLength {
		return nil, fmt.Errorf("generate: the %d start tokens leave no room below max length %d", p, req.st.MaxLength)
	}
	if req.st.Mode == spec.Beam {
		return beamSearch(ctx, dec, req)
	}
	return sampleOrGreedy(ctx, dec, req)
}

func sampleOrGreedy(ctx context.Context, dec stepper, req request) ([][]Sequence, error) {
	st := req.st
	k := rowsPerImage(st)
	rows := len(req.start) * k
	seqs := make([][]int64, rows)
	rngs := make([]*rand.Rand, rows)
	scores := make([]float64, rows)
	finished := make([]bool, rows)
	for r := range seqs {
		img := r / k
		seqs[r] = append([]int64(nil), req.start[img]...)
		if st.Mode == spec.Nucleus {
			rngs[r] = rowRNG(st.Seed, req.keys[img], r%k)
		}
	}
	// batch[i] is the sequence the decoder's row i continues. An image whose rows have
	// all emitted [SEP] leaves the batch: an image still decoding takes its place.
	batch := make([]int, rows)
	for i := range batch {
		batch[i] = i
	}
	tokens := make([]int64, 0, rows*len(req.start[0]))
	for _, r := range batch {
		tokens = append(tokens, seqs[r]...)
	}
	outer := torch.NewScope()
	defer outer.Close()
	width := len(req.start[0])
	for length := width; length < st.MaxLength && len(batch) > 0; length++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		bseqs, brngs := make([][]int64, len(batch)), make([]*rand.Rand, len(batch))
		for i, r := range batch {
			bseqs[i], brngs[i] = seqs[r], rngs[r]
		}
		s := outer.Child()
		next, logp, err := nextTokens(s, dec, req, tokens, len(batch), width, bseqs, brngs)
		s.Close()
		if err != nil {
			return nil, err
		}
		for i, r := range batch {
			if finished[r] {
				next[i] = req.padID // rows stay as long as one another (their image's others decode on)
			} else {
				scores[r] += logp[i]
				finished[r] = next[i] == req.sepID
			}
			seqs[r] = append(seqs[r], next[i])
		}
		tokens, width = next, 1
		if length+1 < st.MaxLength {
			if batch, tokens, err = retainDecoding(dec, batch, tokens, finished, k); err != nil {
				return nil, err
			}
		}
	}
	out := make([][]Sequence, len(req.start))
	for r, s := range seqs {
		out[r/k] = append(out[r/k], Sequence{IDs: trimPadding(s, req.sepID), Score: scores[r]})
	}
	return out, nil
}

// retainDecoding drops from the batch the images whose k rows have all finished: the last
// images still decoding move into their places (so each moves once, and only its own
// state is copied), and the batch shrinks. It returns the new batch and its next tokens.
func retainDecoding(dec stepper, batch []int, tokens []int64, finished []bool, k int) ([]int, []int64, error) {
	images := len(batch) / k
	done := func(img int) bool {
		for _, r := range batch[img*k : (img+1)*k] {
			if !finished[r] {
				return false
			}
		}
		return true
	}
	var holes, movers []int
	kept := 0
	for img := range images {
		if !done(img) {
			kept++
		}
	}
	if kept == images {
		return batch, tokens, nil
	}
	for img := range images {
		switch {
		case img < kept && done(img):
			holes = append(holes, img)
		case img >= kept && !done(img):
			movers = append(movers, img)
		}
	}
	units := make([]int64, kept)
	for j := range units {
		units[j] = int64(j)
	}
	for i, h := range holes {
		units[h] = int64(movers[i])
	}
	if kept > 0 {
		if err := dec.Retain(units, k); err != nil {
			return nil, nil, err
		}
	}
	nb, nt := make([]int, 0, kept*k), make([]int64, 0, kept*k)
	for _, u := range units {
		nb = append(nb, batch[int(u)*k:(int(u)+1)*k]...)
		nt = append(nt, tokens[int(u)*k:(int(u)+1)*k]...)
	}
	return nb, nt, nil
}

// nextTokens runs one decoding step and picks every row's next token, returning also
// the model's log-probability of it (before any processing).
func nextTokens(s *torch.Scope, dec stepper, req request, tokens []int64, rows, width int, seqs [][]int64, rngs []*rand.Rand) ([]int64, []float64, error) {
	st := req.st
	raw := dec.Step(s, tokens, rows, width)
	if err := raw.Err(); err != nil {
		return nil, nil, err
	}
	logits := raw.ToDType(torch.Float32)
	scores := applyPenaltyAndMinLength(logits, seqs, st, req.sepID)
	next := make([]int64, rows)
	if st.Mode == spec.Greedy {
		ids, err := scores.Argmax(1, false).Int64s()
		if err != nil {
			return nil, nil, err
		}
		copy(next, ids)
	} else {
		if st.Temperature != 1 {
			scores = scores.DivScalar(st.Temperature)
		}
		cands, err := topKCandidates(scores, st.TopK)
		if err != nil {
			return nil, nil, err
		}
		for r := range next {
			kept := nucleus(cands[r], st.TopP)
			if len(kept) == 0 {
				return nil, nil, fmt.Errorf("generate: row %d has no token left to sample", r)
			}
			next[r] = draw(kept, rngs[r].Float64()).Token
		}
	}
	idx := s.Track(torch.FromInt64(next, int64(rows), 1)).ToDevice(logits.Device())
	lp, err := logits.LogSoftmax(1).Gather(1, idx).ToDType(torch.Float64).Float64s()
	if err != nil {
		return nil, nil, err
	}
	return next, lp, nil
}

// trimPadding drops what follows the first [SEP] after the start.
func trimPadding(seq []int64, sep int64) []int64 {
	for i, t := range seq {
		if t == sep && i > 0 {
			return seq[:i+1]
		}
	}
	return seq
}

// beamHyps are one image's finished hypotheses (transformers' BeamHypotheses with
// length penalty 1 and early_stopping false).
type beamHyps struct {
	beams []Sequence
	worst float64
	n     int
}

func (h *beamHyps) add(ids []int64, sumLogProbs float64) {
	score := sumLogProbs / float64(len(ids))
	if len(h.beams) < h.n || score > h.worst {
		h.beams = append(h.beams, Sequence{IDs: append([]int64(nil), ids...), Score: score})
		if len(h.beams) > h.n {
			worstAt := 0
			for i, b := range h.beams {
				if b.Score < h.beams[worstAt].Score {
					worstAt = i
				}
			}
			h.beams = append(h.beams[:worstAt], h.beams[worstAt+1:]...)
			h.worst = math.Inf(1)
			for _, b := range h.beams {
				h.worst = math.Min(h.worst, b.Score)
			}
		} else {
			h.worst = math.Min(score, h.worst)
		}
	}
}

// done: enough hypotheses, and none of the open beams can still beat the worst.
func (h *beamHyps) done(bestSumLogProbs float64, curLen int) bool {
	if len(h.beams) < h.n {
		return false
	}
	return h.worst >= bestSumLogProbs/float64(curLen)
}

// best is the highest-scoring hypothesis; among equals, the one added last.
func (h *beamHyps) best() Sequence {
	b := h.beams[0]
	for _, x := range h.beams[1:] {
		if x.Score >= b.Score {
			b = x
		}
	}
	return b
}

func beamSearch(ctx context.Context, dec stepper, req request) ([][]Sequence, error) {
	st := req.st
	nb := st.NumBeams
	imgs := len(req.start)
	rows := imgs * nb
	seqs := make([][]int64, rows)
	beamScores := make([]float32, rows)
	tokens := make([]int64, 0, rows*len(req.start[0]))
	for r := range seqs {
		seqs[r] = append([]int64(nil), req.start[r/nb]...)
		tokens = append(tokens, req.start[r/nb]...)
		if r%nb != 0 {
			beamScores[r] = -1e9 // the first step expands beam 0 only
		}
	}
	hyps := make([]*beamHyps, imgs)
	for i := range hyps {
		hyps[i] = &beamHyps{n: nb, worst: 1e9}
	}
	done := make([]bool, imgs)
	outer := torch.NewScope()
	defer outer.Close()
	width := len(req.start[0])
	vocab := int64(req.vocab)
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		curLen := len(seqs[0])
		s := outer.Child()
		top, topIdx, err := beamStep(s, dec, req, tokens, rows, width, seqs, beamScores)
		s.Close()
		if err != nil {
			return nil, err
		}
		nextScores := make([]float32, rows)
		nextTokens := make([]int64, rows)
		from := make([]int64, rows)
		for b := 0; b < imgs; b++ {
			if done[b] {
				for j := 0; j < nb; j++ {
					nextTokens[b*nb+j], from[b*nb+j] = req.padID, int64(b*nb)
				}
				continue
			}
			j := 0
			for rank := 0; rank < 2*nb && j < nb; rank++ {
				flat := topIdx[b*2*nb+rank]
				score := top[b*2*nb+rank]
				beam, tok := flat/vocab, flat%vocab
				row := int64(b*nb) + beam
				if tok == req.sepID {
					if rank >= nb {
						continue
					}
					hyps[b].add(seqs[row], float64(score))
					continue
				}
				nextScores[b*nb+j], nextTokens[b*nb+j], from[b*nb+j] = score, tok, row
				j++
			}
			if j < nb {
				return nil, fmt.Errorf("beam search: image %d kept %d of %d beams", b, j, nb)
			}
			best := float64(top[b*2*nb])
			done[b] = done[b] || hyps[b].done(best, curLen)
		}
		newSeqs := make([][]int64, rows)
		for r := range newSeqs {
			newSeqs[r] = append(append(make([]int64, 0, curLen+1), seqs[from[r]]...), nextTokens[r])
		}
		seqs, beamScores = newSeqs, nextScores
		if err := dec.Reorder(from); err != nil {
			return nil, err
		}
		tokens, width = nextTokens, 1
		allDone := true
		for _, d := range done {
			allDone = allDone && d
		}
		if allDone || len(seqs[0]) >= st.MaxLength {
			break
		}
	}
	out := make([][]Sequence, imgs)
	for b := 0; b < imgs; b++ {
		if !done[b] {
			for j := 0; j < nb; j++ {
				hyps[b].add(seqs[b*nb+j], float64(beamScores[b*nb+j]))
			}
		}
		best := hyps[b].best()
		if len(best.IDs) < st.MaxLength {
			best.IDs = append(best.IDs, req.sepID)
		}
		out[b] = []Sequence{best}
	}
	return out, nil
}

// beamStep scores every (beam, token) continuation and returns each image's 2·beams best:
// scores (float32, as the sum is formed on the device) and flat indices beam·V + token.
func beamStep(s *torch.Scope, dec stepper, req request, tokens []int64, rows, width int, seqs [][]int64, beamScores []float32) ([]float32, []int64, error) {
	nb := req.st.NumBeams
	raw := dec.Step(s, tokens, rows, width)
	if err := raw.Err(); err != nil {
		return nil, nil, err
	}
	lp := applyPenaltyAndMinLength(raw.ToDType(torch.Float32).LogSoftmax(1), seqs, req.st, req.sepID)
	bs := s.Track(torch.FromFloat32(beamScores, int64(rows), 1)).ToDevice(lp.Device())
	total := lp.Add(bs).Reshape(int64(rows/nb), int64(nb*req.vocab))
	vals, idx := total.TopK(int64(2*nb), 1, true)
	top, err := vals.Float32s()
	if err != nil {
		return nil, nil, err
	}
	flat, err := idx.Int64s()
	if err != nil {
		return nil, nil, err
	}
	return top, flat, nil
}

// rowsPerImage is how many sequences are decoded together for one image.
func rowsPerImage(st spec.Generation) int {
	switch st.Mode {
	case spec.Beam:
		return st.NumBeams
	case spec.Nucleus:
		return st.Samples
	}
	return 1
}
