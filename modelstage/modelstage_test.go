package modelstage_test

import (
	"bytes"
	"context"
	"errors"
	"image/color"
	"image/png"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/capfilt/capfilt/blip"
	"github.com/capfilt/capfilt/filter"
	"github.com/capfilt/capfilt/internal/testutil/tinyblip"
	"github.com/capfilt/capfilt/modelstage"
	"github.com/capfilt/capfilt/pipeline"
	"github.com/capfilt/capfilt/pipeline/spec"
	"github.com/capfilt/capfilt/shards"
	"github.com/capfilt/capfilt/synth"
	"github.com/capfilt/capfilt/torch"
	"github.com/capfilt/capfilt/workers"
)

func scenePNG(t *testing.T, w, h int) []byte {
	t.Helper()
	img := synth.Render(synth.Scene{Shape: "square", Colour: "red", Position: "left"}, w, h, color.RGBA{90, 90, 90, 255})
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestPrepareSaysWhyAnImageIsSkipped(t *testing.T) {
	p := modelstage.PassThrough{Side: 16}
	px, w, h, err := p.Prepare(scenePNG(t, 40, 30), 0)
	if err != nil || len(px) != 3*16*16 || w != 40 || h != 30 {
		t.Fatalf("good image: %d values, %dx%d, %v", len(px), w, h, err)
	}
	if _, _, _, err := p.Prepare(scenePNG(t, 40, 30), 40*30-1); !errors.Is(err, workers.ErrTooManyPixels) {
		t.Fatalf("an image over the pixel limit: %v, want workers.ErrTooManyPixels", err)
	}
	if _, _, _, err := p.Prepare([]byte("not an image"), 0); err == nil || errors.Is(err, workers.ErrTooManyPixels) {
		t.Fatalf("a corrupt image: %v", err)
	}
}

func TestBLIPSourceLoadsEachModelOnceAndScoresEveryInputCaptionBeforeTheSynthetic(t *testing.T) {
	torch.SetNumThreads(1)
	model := tinyblip.ModelDir(t, 5)
	src := modelstage.NewBLIPSource(torch.CPU, torch.Float32)
	defer src.Close()
	ctx := context.Background()
	rs := tinyblip.RunSettings(t, "a", []string{"x"}, t.TempDir(), model)
	if n := src.Loaded(); n != 0 {
		t.Fatalf("%d model stages loaded before any run asked for one", n)
	}
	l1, err := src.Labeler(ctx, rs)
	if err != nil || src.Loaded() != 1 {
		t.Fatal(err, src.Loaded())
	}
	// The same checkpoint named another way is the same model: one labeler.
	rel, _ := filepath.Rel(must(os.Getwd()), model)
	rs2 := rs
	rs2.Captioner.Path = rel
	if l2, err := src.Labeler(ctx, rs2); err != nil || l2 != l1 {
		t.Fatalf("same models and settings: labeler %p vs %p (%v)", l2, l1, err)
	}
	rs3 := rs
	rs3.Generation.Samples = 2
	l3, err := src.Labeler(ctx, rs3)
	if err != nil || l3 == l1 {
		t.Fatalf("other generation settings need their own labeler: %v", err)
	}
	rs4 := rs
	rs4.ITMFirstToken = spec.ITMFirstCLS
	if l4, err := src.Labeler(ctx, rs4); err != nil || l4 == l1 {
		t.Fatalf("ITM with [CLS] first (HF's scores) needs its own labeler: %v", err)
	}
	if !l3.(*modelstage.BLIPLabeler).SharesViT() {
		t.Fatal("one checkpoint with both towers runs the ViT once")
	}
	side := l3.ImageSize()
	px, _, _, err := l3.Prepare(scenePNG(t, 40, 30), 0)
	if err != nil {
		t.Fatal(err)
	}
	// Image 0 has two web captions (a caption list), image 1 one human caption: each input
	// caption is scored on its own, with its source, before the synthetic ones.
	b := workers.Batch{Pixels: append(append([]float32{}, px...), px...), Keys: []string{"k0", "k1"},
		Captions: [][]string{{"a red square", "a shape on grey"}, {"a blue circle"}},
		Sources:  []string{shards.SourceWeb, shards.SourceHuman}, Size: side}
	labels, err := l3.Label(ctx, b)
	if err != nil || len(labels) != 2 {
		t.Fatalf("labels %+v (%v)", labels, err)
	}
	for i, lab := range labels {
		cs, in := lab.Captions, b.Captions[i]
		if len(cs) != len(in)+2 {
			t.Fatalf("image %d: captions %+v, want %d input ones then 2 synthetic", i, cs, len(in))
		}
		for k, c := range cs {
			want := shards.SourceSynthetic
			if k < len(in) {
				want = b.Sources[i]
				if c.Text != in[k] {
					t.Fatalf("image %d caption %d is %q, want the input's %q", i, k, c.Text, in[k])
				}
			}
			if c.Source != want {
				t.Fatalf("image %d caption %d (%q) has source %q, want %q", i, k, c.Text, c.Source, want)
			}
			if c.ITM < 0 || c.ITM > 1 || c.ITC < -1 || c.ITC > 1 {
				t.Fatalf("score out of range: %+v", c)
			}
		}
	}
	if cs := labels[0].Captions; cs[0].ITM == cs[1].ITM && cs[0].ITC == cs[1].ITC {
		t.Fatalf("two different captions of one image scored alike: %+v", cs[:2])
	}
	if _, err := src.Labeler(ctx, pipeline.RunSettings{Run: "b", Captioner: pipeline.ModelSpec{Path: "/no/model"}, Filter: rs.Filter,
		Generation: rs.Generation}); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a missing captioner: %v", err)
	}
}

func TestLoadForInferenceNamesWhatIsWrong(t *testing.T) {
	model := tinyblip.ModelDir(t, 1)
	bare := t.TempDir()
	data, err := os.ReadFile(filepath.Join(model, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(bare, "model.safetensors"), data, 0o644)
	cfg, _ := os.ReadFile(filepath.Join(model, "config.json"))
	os.WriteFile(filepath.Join(bare, "config.json"), cfg, 0o644)
	for _, tc := range []struct {
		name string
		path string
		o    blip.InferenceOptions
		want error
		text string
	}{
		{"missing checkpoint", filepath.Join(bare, "nope"), blip.InferenceOptions{}, fs.ErrNotExist, "nope"},
		{"no tokenizer beside it", bare, blip.InferenceOptions{}, blip.ErrNoTokenizer, bare},
		{"a named tokenizer that is not there", model, blip.InferenceOptions{Tokenizer: filepath.Join(bare, "vocab.txt")}, fs.ErrNotExist, "vocab.txt"},
		{"a CUDA device this machine lacks", model, blip.InferenceOptions{Device: torch.Device{CUDA: true, Index: 7}}, blip.ErrDevice, "cuda:7"},
		{"half precision on the CPU", model, blip.InferenceOptions{DType: torch.BFloat16}, blip.ErrDevice, "bfloat16"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := blip.LoadForInference(tc.path, tc.o) // the zero dtype is float32
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("err %v; want %v naming %q", err, tc.want, tc.text)
			}
		})
	}
	l, err := blip.LoadForInference(bare, blip.InferenceOptions{SkipTokenizer: true})
	if err != nil || l.Tokenizer != nil || !l.Report.Clean() {
		t.Fatalf("without a tokenizer: %+v %v", l, err)
	}
	l.Close()
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// A hub vocabulary may lack [PAD] and [MASK] (HF accepts one): the model loads, pads with
// its config's pad_token_id, says what is missing, and scores as with the full vocabulary.
func TestVocabularyWithoutPadAndMaskLoadsWithTheConfigsIDsAndAWarning(t *testing.T) {
	torch.SetNumThreads(1)
	model := tinyblip.ModelDir(t, 3)
	bare := t.TempDir()
	for _, name := range []string{"model.safetensors", "config.json"} {
		data, err := os.ReadFile(filepath.Join(model, name))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(bare, name), data, 0o644)
	}
	vocab := synth.TinyVocab()
	if vocab[0] != "[PAD]" || vocab[4] != "[MASK]" {
		t.Fatalf("tiny vocabulary starts %v", vocab[:5])
	}
	vocab[0], vocab[4] = "[unused0]", "[unused1]" // same ids, no [PAD] or [MASK] token
	os.WriteFile(filepath.Join(bare, "vocab.txt"), []byte(strings.Join(vocab, "\n")+"\n"), 0o644)

	l, err := blip.LoadForInference(bare, blip.InferenceOptions{})
	if err != nil {
		t.Fatalf("a vocabulary without [PAD]/[MASK] whose config gives pad_token_id: %v", err)
	}
	defer l.Close()
	warned := strings.Join(l.Report.Warnings, "\n")
	if !strings.Contains(warned, "no [PAD]") || !strings.Contains(warned, "pad_token_id 0") || !strings.Contains(warned, "no [MASK]") {
		t.Fatalf("warnings %q: want both missing tokens named", l.Report.Warnings)
	}
	if l.Tokenizer.PadID() != l.Model.Config.Text.PadID {
		t.Fatalf("pads with %d, config says %d", l.Tokenizer.PadID(), l.Model.Config.Text.PadID)
	}
	full, err := blip.LoadForInference(model, blip.InferenceOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer full.Close()
	if len(full.Report.Warnings) != 0 {
		t.Fatalf("the full vocabulary warns: %q", full.Report.Warnings)
	}

	score := func(l *blip.Inference) []filter.Score {
		sc, err := filter.NewScorer(l.Model, l.Tokenizer, filter.DefaultOptions())
		if err != nil {
			t.Fatal(err)
		}
		px, _, _, err := modelstage.PassThrough{Side: l.Model.Config.Vision.ImageSize}.Prepare(scenePNG(t, 40, 30), 0)
		if err != nil {
			t.Fatal(err)
		}
		pixels := torch.FromFloat32(px, 1, 3, int64(l.Model.Config.Vision.ImageSize), int64(l.Model.Config.Vision.ImageSize))
		defer pixels.Free()
		// Captions of unequal length, so the shorter ones are padded.
		got, err := sc.ScorePixels(context.Background(), pixels, [][]string{{"a red square on the left of a grey picture", "a square"}})
		if err != nil {
			t.Fatal(err)
		}
		return got[0]
	}
	if a, b := score(l), score(full); !reflect.DeepEqual(a, b) {
		t.Fatalf("scores %+v without [PAD]/[MASK], %+v with them", a, b)
	}
}
