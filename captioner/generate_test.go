package captioner

import (
	"context"
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/capfilt/capfilt/pipeline/spec"
	"github.com/capfilt/capfilt/torch"
)

// markov is a toy decoder whose next-token distribution depends only on the last token:
// generation's rules can then be checked against hand-worked answers.
// Vocabulary: 0 [PAD], 1 [SEP], 2 "a", 3 "b".
type markov struct {
	next  map[int64][]float64 // last token → probabilities of 0..3
	last  []int64
	steps int
}

func (m *markov) Step(s *torch.Scope, tokens []int64, rows, width int) *torch.Tensor {
	m.steps++
	m.last = make([]int64, rows)
	logits := make([]float32, 0, rows*4)
	for r := 0; r < rows; r++ {
		m.last[r] = tokens[r*width+width-1]
		for _, p := range m.next[m.last[r]] {
			logits = append(logits, float32(math.Log(p)))
		}
	}
	return s.Track(torch.FromFloat32(logits, int64(rows), 4))
}

func (m *markov) Reorder(from []int64) error { return nil }

func (m *markov) Retain(units []int64, groups int) error { return nil }

func toy() *markov {
	return &markov{next: map[int64][]float64{
		2: {1e-12, 0.5, 0.3, 0.2},
		3: {1e-12, 0.1, 0.1, 0.8},
		1: {1e-12, 0.25, 0.25, 0.5},
		0: {0.25, 0.25, 0.25, 0.25},
	}}
}

func toyRequest(st spec.Generation) request {
	return request{start: [][]int64{{2}}, keys: []string{"x"}, st: st, sepID: 1, padID: 0, vocab: 4}
}

func TestGreedyStopsAtSepAndHonoursMinLength(t *testing.T) {
	st := spec.GreedyDefaults()
	st.MaxLength = 6
	out, err := generate(context.Background(), toy(), toyRequest(st))
	if err != nil {
		t.Fatal(err)
	}
	if got := out[0][0].IDs; len(got) != 2 || got[1] != 1 {
		t.Fatalf("greedy from 'a' should emit [SEP] at once, got %v", got)
	}
	// With min length 4, [SEP] is barred while the sequence is shorter than 4 tokens:
	// a a a a [SEP].
	st.MinLength = 4
	out, _ = generate(context.Background(), toy(), toyRequest(st))
	if got := out[0][0].IDs; !slices.Equal(got, []int64{2, 2, 2, 2, 1}) {
		t.Fatalf("min length 4: got %v, want [2 2 2 2 1]", got)
	}
	// Max length counts the start token: max 3 with [SEP] barred stops at 3 tokens.
	st.MinLength, st.MaxLength = 3, 3
	out, _ = generate(context.Background(), toy(), toyRequest(st))
	if got := out[0][0].IDs; len(got) != 3 {
		t.Fatalf("max length 3: got %v", got)
	}
}

func TestRepetitionPenaltyChangesTheGreedyChoice(t *testing.T) {
	// From "b": b 0.8 vs a/[SEP] 0.1. log 0.8 = -0.223; with penalty 20 on the seen "b":
	// -4.46 < log 0.1 = -2.30, so "a" (token 2, the first of the tie with [SEP]... [SEP] is
	// barred by min length) wins.
	st := spec.GreedyDefaults()
	st.MaxLength, st.MinLength, st.RepetitionPenalty = 3, 3, 20
	req := toyRequest(st)
	req.start = [][]int64{{3}}
	out, err := generate(context.Background(), toy(), req)
	if err != nil {
		t.Fatal(err)
	}
	if got := out[0][0].IDs; got[1] != 2 {
		t.Fatalf("with penalty 20 after 'b': got %v, want 'a' (2) next", got)
	}
	st.RepetitionPenalty = 1
	req.st = st
	out, _ = generate(context.Background(), toy(), req)
	if got := out[0][0].IDs; got[1] != 3 {
		t.Fatalf("without penalty after 'b': got %v, want 'b' (3) next", got)
	}
}

// The hand-worked beam search of the toy (2 beams, max length 4): a finished hypothesis
// "a [SEP]" (score log .5 / 1) is beaten at max length by the open beam "a b b b"
// (score (log .2 + 2 log .8) / 4), which ends without [SEP] since it reached max length.
func TestBeamSearchFollowsTransformersRules(t *testing.T) {
	st := spec.BeamDefaults()
	st.NumBeams, st.MaxLength, st.MinLength = 2, 4, 0
	out, err := generate(context.Background(), toy(), toyRequest(st))
	if err != nil {
		t.Fatal(err)
	}
	best := out[0][0]
	want := []int64{2, 3, 3, 3}
	for i := range want {
		if len(best.IDs) != len(want) || best.IDs[i] != want[i] {
			t.Fatalf("beam result %v, want %v", best.IDs, want)
		}
	}
	wantScore := (math.Log(0.2) + 2*math.Log(0.8)) / 4
	if math.Abs(best.Score-wantScore) > 1e-6 {
		t.Fatalf("beam score %v, want %v", best.Score, wantScore)
	}
	// With max length 3 the open beam "a b b" ((log .2 + log .8) / 3 = -0.611) still beats
	// "a [SEP]" (log .5 = -0.693); the finished "a a [SEP]" (-0.949) was pushed out.
	st.MaxLength = 3
	out, _ = generate(context.Background(), toy(), toyRequest(st))
	if got := out[0][0]; !slices.Equal(got.IDs, []int64{2, 3, 3}) || math.Abs(got.Score-(math.Log(0.2)+math.Log(0.8))/3) > 1e-6 {
		t.Fatalf("max length 3: %v, want [2 3 3]", got)
	}
	// Length normalisation counts the start token and not [SEP]: at max length 2 the open
	// "a a" (log .3 / 2 = -0.602) beats the finished "a [SEP]" (log .5 / 1 = -0.693).
	st.MaxLength = 2
	out, _ = generate(context.Background(), toy(), toyRequest(st))
	if got := out[0][0].IDs; !slices.Equal(got, []int64{2, 2}) {
		t.Fatalf("max length 2: %v, want [2 2]", got)
	}
}

func TestNucleusSamplesAreSeededByImageKey(t *testing.T) {
	st := spec.NucleusDefaults()
	st.MaxLength, st.MinLength, st.Samples, st.RepetitionPenalty = 8, 0, 3, 1
	run := func(keys ...string) [][]Sequence {
		req := toyRequest(st)
		req.start = make([][]int64, len(keys))
		for i := range keys {
			req.start[i] = []int64{2}
		}
		req.keys = keys
		out, err := generate(context.Background(), toy(), req)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	alone := run("img-7")
	batched := run("img-1", "img-7", "img-3")
	if len(alone[0]) != 3 {
		t.Fatalf("want 3 samples, got %d", len(alone[0]))
	}
	for s := range alone[0] {
		if a, b := alone[0][s].IDs, batched[1][s].IDs; !slices.Equal(a, b) {
			t.Fatalf("sample %d of img-7 alone %v, in a batch %v", s, a, b)
		}
	}
	distinct := map[string]bool{}
	for _, img := range batched {
		for _, s := range img {
			distinct[fmt.Sprint(s.IDs)] = true
		}
	}
	if len(distinct) < 3 {
		t.Fatalf("9 samples from different keys gave only %d distinct sequences", len(distinct))
	}
}
