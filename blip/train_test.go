package blip

import (
	"math"
	"strings"
	"testing"

	"github.com/capfilt/capfilt/torch"
)

func f32(t *testing.T, x *torch.Tensor) []float32 {
	t.Helper()
	v, err := x.Detach().ToDType(torch.Float32).Float32s()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func near(t *testing.T, what string, got, want []float32, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range got {
		if math.Abs(float64(got[i])-float64(want[i])) > tol || math.IsNaN(float64(got[i])) {
			t.Fatalf("%s[%d] = %v, want %v (tolerance %g)\ngot  %v\nwant %v", what, i, got[i], want[i], tol, got, want)
		}
	}
}

// tinyTrainModel is a random tiny pretraining model (every part, shared text weights).
func tinyTrainModel(t testing.TB, seed uint64, dropout float64) *Model {
	cfg := Tiny()
	cfg.Text.Dropout = dropout
	m, err := New(cfg, AllParts())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	if err := m.InitDeterministic(seed); err != nil {
		t.Fatal(err)
	}
	if err := m.SetTrainable(true); err != nil {
		t.Fatal(err)
	}
	return m
}

// tinyBatch is B rows of random pixels and ids, lengths 8, 5, 6, 3, ...
func tinyBatch(s *torch.Scope, b int, seed uint64) Batch {
	g := torch.NewGenerator(seed)
	defer g.Close()
	const T = 8
	ids, mask := make([]int64, b*T), make([]int64, b*T)
	lengths := []int{8, 5, 6, 3}
	for r := 0; r < b; r++ {
		n := lengths[r%len(lengths)]
		for j := 0; j < n; j++ {
			ids[r*T+j], mask[r*T+j] = int64(4+(r*31+j*17)%110), 1
		}
		ids[r*T], ids[r*T+n-1] = 2, 3
	}
	return Batch{
		Pixels: s.Track(torch.Randn(g, torch.Float32, torch.CPU, int64(b), 3, 64, 64)),
		IDs:    s.Track(torch.FromInt64(ids, int64(b), T)),
		Mask:   s.Track(torch.FromInt64(mask, int64(b), T)),
	}
}

func TestLabelSmoothingOnAThreeTokenVocabularyByHand(t *testing.T) {
	// logits (0, ln 2, ln 4): p = (1/7, 2/7, 4/7). Target 2, and a second row ignored.
	logits := torch.FromFloat32([]float32{0, float32(math.Log(2)), float32(math.Log(4)), 5, -5, 0}, 2, 3)
	target := torch.FromInt64([]int64{2, ignoreIndex}, 2)
	nll := -math.Log(4.0 / 7)
	uniform := -(math.Log(1.0/7) + math.Log(2.0/7) + math.Log(4.0/7)) / 3
	want := (1-LabelSmoothing)*nll + LabelSmoothing*uniform // 0.62893...
	got, err := torch.CrossEntropy(logits, target, ignoreIndex, LabelSmoothing, torch.ReduceMean).Item()
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(got-want) > 1e-6 || math.Abs(want-0.628930506) > 1e-8 {
		t.Fatalf("smoothed loss %.9f, by hand %.9f", got, want)
	}
}

// The LM loss predicts token t+1 from position t, and counts neither pads nor the prompt.
func TestLMTargetsSkipPadsAndPromptAndPredictTheNextToken(t *testing.T) {
	m := tinyTrainModel(t, 3, 0)
	s := torch.NewScope()
	defer s.Close()
	b := tinyBatch(s, 1, 4)
	ids := s.Track(torch.FromInt64([]int64{2, 40, 41, 42, 3, 0, 0}, 1, 7))
	mask := s.Track(torch.FromInt64([]int64{1, 1, 1, 1, 1, 0, 0}, 1, 7))
	image := m.EncodeImage(s.Ref(b.Pixels), false)
	loss, err := m.lmLoss(s, ids, mask, image, 2, false)
	if err != nil {
		t.Fatal(err)
	}
	logits := f32(t, m.DecoderLogits(ids, mask, image, 1, false)) // [1, 7, V]
	v := m.Config.Text.VocabSize
	// A prompt of 2 masks the targets at positions 0 and 1 ([DEC] and 40): what remains
	// is 41 (predicted at position 1), 42 (at 2) and [SEP] 3 (at 3); positions 4 and 5
	// would predict pads.
	var want float64
	for _, c := range []struct{ pos, target int }{{1, 41}, {2, 42}, {3, 3}} {
		row := logits[c.pos*v : (c.pos+1)*v]
		mx := math.Inf(-1)
		for _, x := range row {
			mx = math.Max(mx, float64(x))
		}
		var z float64
		for _, x := range row {
			z += math.Exp(float64(x) - mx)
		}
		logp := func(k int) float64 { return float64(row[k]) - mx - math.Log(z) }
		var u float64
		for k := range row {
			u -= logp(k) / float64(v)
		}
		want += ((1-LabelSmoothing)*-logp(c.target) + LabelSmoothing*u) / 3
	}
	got, _ := loss.Item()
	if math.Abs(got-want) > 1e-5 {
		t.Fatalf("LM loss %.6f, by hand %.6f", got, want)
	}
	if _, err := m.lmLoss(s, ids, mask, image, 6, false); err == nil {
		t.Fatal("a prompt covering every target must be an error")
	}
}

func TestITMHardNegativesNeverPickThePositive(t *testing.T) {
	const B, draws = 4, 600
	s := torch.NewScope()
	defer s.Close()
	// The positive is by far the most similar: without the zeroed diagonal it would win.
	sim := make([]float32, B*B)
	for r := 0; r < B; r++ {
		for c := 0; c < B; c++ {
			sim[r*B+c] = float32((r*7+c*3)%5) * 0.5
			if r == c {
				sim[r*B+c] = 20
			}
		}
	}
	simT := s.Track(torch.FromFloat32(sim, B, B))
	diag := diagonalTargets(s, B, B, torch.CPU).NeScalar(0)
	w := hardNegativeWeights(simT, diag, hardNegativeFloor)
	wv := f32(t, w)
	for r := 0; r < B; r++ {
		if wv[r*B+r] != 0 {
			t.Fatalf("weight of the positive (row %d) is %v", r, wv[r*B+r])
		}
	}
	g := torch.NewGenerator(11)
	defer g.Close()
	counts := make([]int, B*B)
	for i := 0; i < draws; i++ {
		idx, err := drawNegatives(w, g, "negative images", torch.CPU)
		if err != nil {
			t.Fatal(err)
		}
		v, _ := idx.Int64s()
		for r, c := range v {
			if int(c) == r {
				t.Fatalf("draw %d picked row %d's own positive", i, r)
			}
			counts[r*B+int(c)]++
		}
	}
	// The draws follow the weights (their rows renormalised): every frequency within 5σ.
	for r := 0; r < B; r++ {
		var rowSum float64
		for c := 0; c < B; c++ {
			rowSum += float64(wv[r*B+c])
		}
		for c := 0; c < B; c++ {
			p := float64(wv[r*B+c]) / rowSum
			sd := math.Sqrt(p * (1 - p) * draws)
			if d := math.Abs(float64(counts[r*B+c]) - p*draws); d > 5*sd+1 {
				t.Errorf("row %d column %d drawn %d times, expected %.1f", r, c, counts[r*B+c], p*draws)
			}
		}
	}
	// A row with every candidate excluded (a batch of one image) is an error, not a crash.
	all := s.Track(torch.FromBool([]bool{true, true, true, true}, 2, 2))
	if _, err := drawNegatives(hardNegativeWeights(s.Track(torch.Zeros(torch.Float32, torch.CPU, 2, 2)), all, 0), g, "x", torch.CPU); err == nil ||
		!strings.Contains(err.Error(), "no candidate") {
		t.Fatalf("all-excluded row: %v", err)
	}
}

// Drawn negatives are replayed exactly from a saved generator state (resume).
func TestDrawnNegativesReplayFromTheGeneratorState(t *testing.T) {
	s := torch.NewScope()
	defer s.Close()
	w := hardNegativeWeights(s.Track(torch.Zeros(torch.Float32, torch.CPU, 6, 6)), diagonalTargets(s, 6, 6, torch.CPU).NeScalar(0), hardNegativeFloor)
	g := torch.NewGenerator(2)
	defer g.Close()
	st, _ := g.State()
	a, _ := drawNegatives(w, g, "x", torch.CPU)
	_ = g.SetState(st)
	b, _ := drawNegatives(w, g, "x", torch.CPU)
	av, _ := a.Int64s()
	bv, _ := b.Int64s()
	for i := range av {
		if av[i] != bv[i] {
			t.Fatalf("replayed draws %v, first %v", bv, av)
		}
	}
}

func TestRetrievalPositivesAreEveryEntryOfTheSameImage(t *testing.T) {
	s := torch.NewScope()
	defer s.Close()
	ids := s.Track(torch.FromInt64([]int64{7, 3, 7}, 3))
	queued := s.Track(torch.FromInt64([]int64{3, ignoreIndex, 7, 7}, 1, 4))
	got := f32(t, sameImageTargets(s, ids, queued))
	q := float32(0.25)
	near(t, "positives", got, []float32{
		q, 0, q, 0, 0, q, q,
		0, 0.5, 0, 0.5, 0, 0, 0,
		q, 0, q, 0, 0, q, q,
	}, 1e-7)
	same := ids.View(3, 1).Eq(ids.View(1, 3))
	w := f32(t, hardNegativeWeights(s.Track(torch.Zeros(torch.Float32, torch.CPU, 3, 3)), same, 0))
	// rows 0 and 2 show the same image: their only negative is row 1.
	near(t, "retrieval negative weights", w, []float32{0, 1.0 / 3, 0, 1.0 / 3, 0, 1.0 / 3, 0, 1.0 / 3, 0}, 1e-7)
}

// fakeGatherer plays a data-parallel run of n identical-shaped ranks in one process:
// the other ranks' tensors are this rank's, flipped along dim 0 (image ids offset so
// they name other images).
type fakeGatherer struct{ n int }

func (f fakeGatherer) Rank() int      { return 0 }
func (f fakeGatherer) WorldSize() int { return f.n }
func (f fakeGatherer) peers(t *torch.Tensor) *torch.Tensor {
	parts := []*torch.Tensor{t}
	for r := 1; r < f.n; r++ {
		p := t.Flip(0)
		if t.DType() == torch.Int64 && t.Dim() == 1 {
			p = p.AddScalar(float64(1000 * r))
		}
		parts = append(parts, p)
	}
	return torch.Cat(parts, 0)
}
func (f fakeGatherer) AllGather(t *torch.Tensor) (*torch.Tensor, error) {
	out := f.peers(t.Detach())
	return out, out.Err()
}
func (f fakeGatherer) AllGatherWithGrad(t *torch.Tensor) (*torch.Tensor, error) {
	out := f.peers(t)
	return out, out.Err()
}

// plainGatherer gathers without gradients only.
type plainGatherer struct{ f fakeGatherer }

func (p plainGatherer) Rank() int                                        { return 0 }
func (p plainGatherer) WorldSize() int                                   { return p.f.n }
func (p plainGatherer) AllGather(t *torch.Tensor) (*torch.Tensor, error) { return p.f.AllGather(t) }

func TestQueuePointerAdvancesByTheGlobalBatchAndWraps(t *testing.T) {
	q := &FeatureQueues{Image: torch.Zeros(torch.Float32, torch.CPU, 2, 6), Text: torch.Zeros(torch.Float32, torch.CPU, 2, 6),
		IDs: torch.Full(ignoreIndex, torch.Int64, torch.CPU, 1, 6)}
	defer q.Close()
	feat := func(a, b float32) *torch.Tensor { return torch.FromFloat32([]float32{a, a + 1, b, b + 1}, 2, 2) }
	for i, want := range []int64{2, 4, 0} {
		v := float32(10 * (i + 1))
		if err := q.Enqueue(feat(v, v+2), feat(-v, -v-2), torch.FromInt64([]int64{int64(i), int64(i + 100)}, 2), nil); err != nil {
			t.Fatal(err)
		}
		if q.Ptr != want {
			t.Fatalf("pointer after write %d: %d, want %d", i+1, q.Ptr, want)
		}
	}
	near(t, "image queue", f32(t, q.Image), []float32{10, 12, 20, 22, 30, 32, 11, 13, 21, 23, 31, 33}, 0)
	ids, _ := q.IDs.Int64s()
	if want := []int64{0, 100, 1, 101, 2, 102}; !equalInts(ids, want) {
		t.Fatalf("id queue %v, want %v", ids, want)
	}
	// Two processes: the pointer advances by the global batch of 4 and the peers'
	// features land after this rank's.
	q2 := &FeatureQueues{Image: torch.Zeros(torch.Float32, torch.CPU, 2, 8), Text: torch.Zeros(torch.Float32, torch.CPU, 2, 8)}
	defer q2.Close()
	if err := q2.Enqueue(feat(1, 3), feat(5, 7), nil, fakeGatherer{2}); err != nil {
		t.Fatal(err)
	}
	if q2.Ptr != 4 {
		t.Fatalf("pointer after a 2-process write of 2 rows each: %d, want 4", q2.Ptr)
	}
	near(t, "gathered image queue", f32(t, q2.Image), []float32{1, 3, 3, 1, 0, 0, 0, 0, 2, 4, 4, 2, 0, 0, 0, 0}, 0)
	if err := q.Enqueue(torch.Zeros(torch.Float32, torch.CPU, 4, 2), torch.Zeros(torch.Float32, torch.CPU, 4, 2), torch.FromInt64([]int64{1, 2, 3, 4}, 4), nil); err == nil ||
		!strings.Contains(err.Error(), "not divisible") {
		t.Fatalf("queue of 6 with a batch of 4: %v", err)
	}
}

func equalInts(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// The ITC similarities use the queue as it was before the step; the step's momentum
// features are written afterwards, by the momentum model updated before its forward.
func TestMomentumUpdateBeforeItsForwardAndQueueWriteAfterTheLoss(t *testing.T) {
	m := tinyTrainModel(t, 1, 0)
	s := torch.NewScope()
	defer s.Close()
	p, err := NewPretrainer(m, 8, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	// Make the momentum model differ from the online one (as after some training).
	other := tinyTrainModel(t, 9, 0)
	old := map[string][]float32{}
	for _, prm := range p.Momentum.Model.Params() {
		src, _ := other.Param(prm.Name)
		if err := prm.Tensor().CopyFrom(src); err != nil {
			t.Fatal(err)
		}
		old[prm.Name] = f32(t, prm.Tensor())
	}
	stale, err := NewMomentum(p.Momentum.Model, 1) // a copy of the not-yet-updated momentum model
	if err != nil {
		t.Fatal(err)
	}
	defer stale.Close()
	queueBefore := f32(t, p.Queues.Text)
	b := tinyBatch(s, 4, 5)
	l, tr, err := p.losses(s, b, StepOptions{Alpha: 0.4})
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := l.Total.Item(); math.IsNaN(v) {
		t.Fatal("NaN loss")
	}
	// θm = m·θm_old + (1−m)·θ
	for _, prm := range p.Momentum.Model.Params() {
		online, _ := m.Param(prm.Name)
		on := f32(t, online)
		want := make([]float32, len(on))
		for i := range on {
			want[i] = float32(MomentumRate*float64(old[prm.Name][i]) + (1-MomentumRate)*float64(on[i]))
		}
		near(t, "momentum "+prm.Name, f32(t, prm.Tensor()), want, 1e-6)
	}
	// The queue columns of sim_i2t are the online image features against the old queue.
	var imgFeat *torch.Tensor
	torch.NoGrad(func() { imgFeat = m.ImageFeatures(m.EncodeImage(s.Ref(b.Pixels), false)) })
	oldQ := s.Track(torch.FromFloat32(queueBefore, 16, 8))
	temp, _ := m.Temp.Item()
	near(t, "sim_i2t queue part", f32(t, tr.simI2T.Narrow(1, 4, 8)), f32(t, imgFeat.MatMul(oldQ).DivScalar(temp)), 1e-5)
	// The first 4 columns now hold the updated momentum model's text features.
	var updated, before *torch.Tensor
	torch.NoGrad(func() {
		_, updated = p.Momentum.features(s.Ref(b.Pixels), s.Ref(b.IDs), s.Ref(b.Mask), false)
		_, before = stale.features(s.Ref(b.Pixels), s.Ref(b.IDs), s.Ref(b.Mask), false)
	})
	written := s.Ref(p.Queues.Text).Narrow(1, 0, 4).Transpose(0, 1)
	near(t, "written text features", f32(t, written), f32(t, updated), 1e-6)
	if d := maxAbsDiffOf(f32(t, written), f32(t, before)); d < 1e-4 {
		t.Fatalf("the queue holds features the stale momentum model would give too (|diff| %g): the test cannot tell the order", d)
	}
	near(t, "untouched queue columns", f32(t, s.Ref(p.Queues.Text).Narrow(1, 4, 4)), f32(t, oldQ.Narrow(1, 4, 4)), 0)
	if p.Queues.Ptr != 4 {
		t.Fatalf("pointer %d after one step of 4", p.Queues.Ptr)
	}
}

func maxAbsDiffOf(a, b []float32) float64 {
	var d float64
	for i := range a {
		d = math.Max(d, math.Abs(float64(a[i]-b[i])))
	}
	return d
}

// trainerSnapshot is everything a pretraining step changes besides the weights: what a
// resume restores.
type trainerSnapshot struct {
	dflt, neg []byte
	momentum  map[string]*torch.Tensor
	queues    map[string]*torch.Tensor
}

func snapshot(t *testing.T, p *Pretrainer) trainerSnapshot {
	t.Helper()
	var sn trainerSnapshot
	var err error
	if sn.dflt, err = torch.DefaultGeneratorState(torch.CPU); err != nil {
		t.Fatal(err)
	}
	if sn.neg, err = p.Negatives.State(); err != nil {
		t.Fatal(err)
	}
	clone := func(m map[string]*torch.Tensor) map[string]*torch.Tensor {
		out := map[string]*torch.Tensor{}
		for k, v := range m {
			out[k] = v.DetachedClone()
		}
		return out
	}
	sn.momentum, sn.queues = clone(p.Momentum.State()), clone(p.Queues.State())
	return sn
}

func (sn trainerSnapshot) restore(t *testing.T, p *Pretrainer) {
	t.Helper()
	if err := torch.SetDefaultGeneratorState(torch.CPU, sn.dflt); err != nil {
		t.Fatal(err)
	}
	if err := p.Negatives.SetState(sn.neg); err != nil {
		t.Fatal(err)
	}
	if err := p.Momentum.SetState(sn.momentum); err != nil {
		t.Fatal(err)
	}
	if err := p.Queues.SetState(sn.queues); err != nil {
		t.Fatal(err)
	}
}

// Dropout works in training mode, and restoring the generator states, the momentum
// model and the queues replays a training step bit for bit (dropout masks and drawn
// hard negatives included).
func TestTrainModeDropoutReplaysFromSavedStates(t *testing.T) {
	m := tinyTrainModel(t, 1, 0.1)
	p, err := NewPretrainer(m, 8, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.Negatives = torch.NewGenerator(4)
	defer p.Negatives.Close()
	s := torch.NewScope()
	defer s.Close()
	b := tinyBatch(s, 4, 6)
	step := func(train bool) [3]float64 {
		sc := s.Child()
		defer sc.Close()
		l, err := p.Losses(sc, b, StepOptions{Alpha: 0.4, Train: train})
		if err != nil {
			t.Fatal(err)
		}
		var out [3]float64
		for i, x := range []*torch.Tensor{l.ITC, l.ITM, l.LM} {
			out[i], _ = x.Item()
		}
		return out
	}
	sn := snapshot(t, p)
	first := step(true)
	sn.restore(t, p)
	again := step(true)
	if first != again {
		t.Fatalf("replayed training step %v, first %v", again, first)
	}
	sn.restore(t, p)
	eval := step(false)
	sn.restore(t, p)
	if eval2 := step(false); eval != eval2 {
		t.Fatalf("eval math is not deterministic: %v vs %v", eval, eval2)
	}
	for i := range first {
		if first[i] == eval[i] {
			t.Errorf("loss %d is the same with dropout on and off (%v): dropout does not act", i, first[i])
		}
	}
}

func TestAlphaRamps(t *testing.T) {
	for _, c := range []struct {
		got, want float64
	}{
		{PretrainAlpha(0.4, 0, 0, 100), 0}, {PretrainAlpha(0.4, 0, 50, 100), 0.1}, {PretrainAlpha(0.4, 1, 0, 100), 0.2},
		{PretrainAlpha(0.4, 1, 50, 100), 0.3}, {PretrainAlpha(0.4, 2, 0, 100), 0.4}, {PretrainAlpha(0.4, 7, 3, 100), 0.4},
		{RetrievalAlpha(0.4, 0, 0, 100), 0}, {RetrievalAlpha(0.4, 0, 25, 100), 0.1}, {RetrievalAlpha(0.4, 1, 0, 100), 0.4},
	} {
		if math.Abs(c.got-c.want) > 1e-12 {
			t.Errorf("alpha %v, want %v", c.got, c.want)
		}
	}
}

func TestTempIsClampedIntoItsRange(t *testing.T) {
	m := tinyTrainModel(t, 1, 0)
	for _, c := range []struct{ set, want float64 }{{0.0001, TempMin}, {0.9, TempMax}, {0.07, 0.07}} {
		_ = m.Temp.Detach().Fill(c.set)
		if err := m.ClampTemp(); err != nil {
			t.Fatal(err)
		}
		if v, _ := m.Temp.Item(); math.Abs(v-c.want) > 1e-7 || !m.Temp.RequiresGrad() {
			t.Errorf("temp %v clamped to %v (trainable %v), want %v", c.set, v, m.Temp.RequiresGrad(), c.want)
		}
	}
}

func TestAdamWGroupsHoldEveryTensorOnce(t *testing.T) {
	m := tinyTrainModel(t, 1, 0)
	groups := m.AdamWGroups(1e-4, WeightDecay)
	if len(groups) != 1 || groups[0].WeightDecay != WeightDecay || groups[0].Beta2 != 0.999 || groups[0].Eps != 1e-8 {
		t.Fatalf("groups %+v", groups)
	}
	seen := map[*torch.Tensor]bool{}
	for _, p := range groups[0].Params {
		if seen[p] {
			t.Fatal("a shared tensor is listed twice")
		}
		seen[p] = true
	}
	enc, _ := m.Param("text_encoder.encoder.layer.0.intermediate.dense.weight")
	dec, _ := m.Param("text_decoder.bert.encoder.layer.0.intermediate.dense.weight")
	if enc != dec || !seen[enc] || !seen[m.Temp] {
		t.Fatal("the shared FFN weight and temp must be in the group, once")
	}
	if len(groups[0].Params) != len(m.Params()) {
		t.Fatalf("%d parameters in the group, the model lists %d", len(groups[0].Params), len(m.Params()))
	}
}

// NegativeAllRank draws negatives from every process's batch, with gradients through
// the gathered image embeddings; without a gradient-passing gatherer it is an error.
func TestRetrievalNegativesFromAllRanks(t *testing.T) {
	cfg := Tiny()
	m, err := New(cfg, Parts{Vision: true, TextEncoder: true, ITC: true, ITM: true, Temp: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	_ = m.InitDeterministic(2)
	_ = m.SetTrainable(true)
	r, err := NewRetrievalTrainer(m, 8, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	r.NegativeAllRank = true
	r.Gather = fakeGatherer{2}
	s := torch.NewScope()
	defer s.Close()
	b := tinyBatch(s, 2, 8)
	b.ImageIDs = s.Track(torch.FromInt64([]int64{5, 6}, 2))
	// Negatives 2 and 3 are the other rank's rows.
	neg := &HardNegatives{Images: s.Track(torch.FromInt64([]int64{3, 2}, 2)), Texts: s.Track(torch.FromInt64([]int64{2, 3}, 2))}
	l, tr, err := r.losses(s, b, StepOptions{Alpha: 0.4, Negatives: neg})
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.weightsT2I.MustShape("weights over both ranks", 2, 4); err != nil {
		t.Fatal(err)
	}
	w := f32(t, tr.weightsT2I)
	if w[0] != 0 || w[5] != 0 || w[2] == 0 {
		t.Fatalf("weights %v: same-image entries must be 0, the other rank's not", w)
	}
	if err := l.Total.Backward(); err != nil {
		t.Fatal(err)
	}
	if r.Queues.Ptr != 4 {
		t.Fatalf("queue pointer %d after a 2-process step of 2", r.Queues.Ptr)
	}
	r.Gather = plainGatherer{fakeGatherer{2}}
	if _, err := r.Losses(s, b, StepOptions{}); err == nil || !strings.Contains(err.Error(), "gradients") {
		t.Fatalf("NegativeAllRank without a GradGatherer: %v", err)
	}
}

func TestStateOfMomentumAndQueuesRoundTrips(t *testing.T) {
	m := tinyTrainModel(t, 1, 0)
	p, err := NewPretrainer(m, 8, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	q, err := NewPretrainer(m, 8, torch.NewGenerator(3))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	p.Queues.Ptr = 4
	for _, prm := range p.Momentum.Model.Params() {
		if err := prm.Tensor().ScaleAdd(2, prm.Tensor(), 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.Momentum.SetState(p.Momentum.State()); err != nil {
		t.Fatal(err)
	}
	if err := q.Queues.SetState(p.Queues.State()); err != nil {
		t.Fatal(err)
	}
	for name, want := range p.Momentum.State() {
		if !strings.Contains(name, "_m.") {
			t.Fatalf("momentum name %s", name)
		}
		near(t, name, f32(t, q.Momentum.State()[name]), f32(t, want), 0)
	}
	near(t, "image queue", f32(t, q.Queues.Image), f32(t, p.Queues.Image), 0)
	if q.Queues.Ptr != 4 {
		t.Fatalf("pointer %d", q.Queues.Ptr)
	}
	if err := q.Momentum.SetState(map[string]*torch.Tensor{}); err == nil {
		t.Fatal("a state without the momentum tensors must be an error")
	}
}
