package captioner

import (
	"context"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/capfilt/capfilt/blip"
	"github.com/capfilt/capfilt/internal/testutil/reference"
	"github.com/capfilt/capfilt/pipeline/spec"
	"github.com/capfilt/capfilt/torch"
)

func tinyCaptioner(t testing.TB, st spec.Generation) *Captioner {
	t.Helper()
	m, err := blip.New(blip.Tiny(), blip.Parts{Vision: true, TextDecoder: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	if err := m.InitDeterministic(11); err != nil {
		t.Fatal(err)
	}
	c, err := New(m, reference.TinyTokenizer(t, m.Config), st)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func pixels(s *torch.Scope, seed uint64, b int64) *torch.Tensor {
	g := torch.NewGenerator(seed)
	defer g.Close()
	return s.Track(torch.Randn(g, torch.Float32, torch.CPU, b, 3, 64, 64))
}

// An image's nucleus captions depend on (seed, key) alone, not on the batch around it.
func TestImageGetsTheSameCaptionInAnyBatch(t *testing.T) {
	st := spec.NucleusDefaults()
	st.Seed, st.Samples = 42, 2
	c := tinyCaptioner(t, st)
	s := torch.NewScope()
	defer s.Close()
	px := pixels(s, 1, 4)
	keys := []string{"shard-0/a", "shard-0/b", "shard-0/c", "shard-0/d"}
	all, err := c.CaptionPixels(context.Background(), px, keys)
	if err != nil {
		t.Fatal(err)
	}
	alone, err := c.CaptionPixels(context.Background(), px.Narrow(0, 2, 1), keys[2:3])
	if err != nil {
		t.Fatal(err)
	}
	swapped, err := c.CaptionPixels(context.Background(), px.IndexSelect(0, s.Track(torch.FromInt64([]int64{3, 2}, 2))), []string{keys[3], keys[2]})
	if err != nil {
		t.Fatal(err)
	}
	for k := 0; k < 2; k++ {
		if a, b, w := alone[0][k].Text, swapped[1][k].Text, all[2][k].Text; a != w || b != w {
			t.Fatalf("sample %d of image c: in the batch %q, alone %q, swapped %q", k, w, a, b)
		}
	}
	if all[2][0].Text == all[2][1].Text && all[0][0].Text == all[0][1].Text {
		t.Fatal("two samples per image came out identical twice: the sample index does not seed the draw")
	}
	other := spec.NucleusDefaults()
	other.Seed, other.Samples = 43, 2
	c2 := tinyCaptioner(t, other)
	reseeded, err := c2.CaptionPixels(context.Background(), px, keys)
	if err != nil {
		t.Fatal(err)
	}
	same := 0
	for i := range keys {
		if reseeded[i][0].Text == all[i][0].Text {
			same++
		}
	}
	if same == len(keys) {
		t.Fatal("another run seed gave exactly the same captions")
	}
}

func TestCaptionTextDropsThePromptAndHonoursLengths(t *testing.T) {
	st := spec.NucleusDefaults()
	st.MinLength, st.MaxLength = 10, 12
	c := tinyCaptioner(t, st)
	s := torch.NewScope()
	defer s.Close()
	caps, err := c.CaptionPixels(context.Background(), pixels(s, 3, 3), []string{"x", "y", "z"})
	if err != nil {
		t.Fatal(err)
	}
	for _, cs := range caps {
		cp := cs[0]
		if len(cp.IDs) < 10 || len(cp.IDs) > 12 {
			t.Fatalf("%d tokens with lengths 10..12: %v", len(cp.IDs), cp.IDs)
		}
		if cp.IDs[0] != 118 || strings.HasPrefix(cp.Text, "a picture of") {
			t.Fatalf("caption %q ids %v: [DEC] first, prompt stripped", cp.Text, cp.IDs)
		}
		for i, id := range cp.IDs[:len(cp.IDs)-1] {
			if id == 3 && i < 9 {
				t.Fatalf("[SEP] at %d below min length 10: %v", i, cp.IDs)
			}
		}
	}
}

// countingStepper records how the batch shrinks.
type countingStepper struct {
	stepper
	retains int
	rows    []int
}

func (c *countingStepper) Step(s *torch.Scope, tokens []int64, rows, width int) *torch.Tensor {
	c.rows = append(c.rows, rows)
	return c.stepper.Step(s, tokens, rows, width)
}

func (c *countingStepper) Retain(units []int64, groups int) error {
	c.retains++
	return c.stepper.Retain(units, groups)
}

// Images whose rows have all emitted [SEP] leave the decoding batch; what every image
// gets is what it gets decoded alone: greedy on tiny-gen's reference images (rows end at
// lengths 7 and 14 and run to the maximum: testdata/ref/README.md), and two nucleus
// samples per image on 8 random images (one image's pair ends early).
func TestFinishedImagesLeaveTheBatchWithoutChangingCaptions(t *testing.T) {
	t.Run("greedy", func(t *testing.T) {
		st := spec.GreedyDefaults()
		st.MaxLength, st.MinLength = 20, 5
		rc := loadRefCase(t, "tiny-gen")
		checkLeavingTheBatch(t, rc.model, rc.image, rc.start, st)
	})
	t.Run("nucleus, 2 samples", func(t *testing.T) {
		st := spec.NucleusDefaults()
		st.MinLength, st.Samples, st.Seed = 5, 2, 7
		c := tinyCaptioner(t, st)
		s := torch.NewScope()
		defer s.Close()
		var img *torch.Tensor
		torch.NoGrad(func() { img = c.model.EncodeImage(pixels(s, 5, 8), false) })
		start := make([][]int64, 8)
		for i := range start {
			start[i] = c.prompt
		}
		checkLeavingTheBatch(t, c.model, img, start, st)
	})
}

func checkLeavingTheBatch(t *testing.T, m *blip.Model, image *torch.Tensor, start [][]int64, st spec.Generation) {
	t.Helper()
	keys := make([]string, len(start))
	for i := range keys {
		keys[i] = string(rune('a' + i))
	}
	cache := m.NewKVCache(st.MaxLength)
	defer cache.Close()
	own := torch.NewScope()
	defer own.Close()
	dec := &countingStepper{stepper: &modelStepper{m: m, image: image, groups: rowsPerImage(st), cache: cache, scope: own}}
	req := request{start: start, keys: keys, st: st, sepID: m.Config.Text.SepID, padID: m.Config.Text.PadID, vocab: m.Config.Text.VocabSize}
	var batch [][]Sequence
	var err error
	torch.NoGrad(func() { batch, err = generate(context.Background(), dec, req) })
	if err != nil {
		t.Fatal(err)
	}
	if dec.retains == 0 || dec.rows[len(dec.rows)-1] >= dec.rows[0] {
		t.Fatalf("the batch never shrank (rows per step %v): no image finished early, the test proves nothing", dec.rows)
	}
	t.Logf("rows per step %v", dec.rows)
	for i := range keys {
		alone, err := Generate(context.Background(), m, image.Narrow(0, int64(i), 1), start[i:i+1], keys[i:i+1], st)
		if err != nil {
			t.Fatal(err)
		}
		for k := range batch[i] {
			if got, want := batch[i][k].IDs, alone[0][k].IDs; !slices.Equal(got, want) {
				t.Fatalf("image %d sample %d: %v in the batch, %v alone", i, k, got, want)
			}
			if math.Abs(batch[i][k].Score-alone[0][k].Score) > 1e-4 {
				t.Fatalf("image %d sample %d: score %v in the batch, %v alone", i, k, batch[i][k].Score, alone[0][k].Score)
			}
		}
	}
}
