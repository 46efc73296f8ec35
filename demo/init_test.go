package demo

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/capfilt/capfilt/blip"
	"github.com/capfilt/capfilt/synth"
	"github.com/capfilt/capfilt/torch"
)

// worldModelFiles writes the world's model config and vocabulary, as synth.Generate does.
func worldModelFiles(t *testing.T) (config, vocab string) {
	t.Helper()
	dir := t.TempDir()
	cfg, err := synth.ModelConfigJSON(48)
	if err != nil {
		t.Fatal(err)
	}
	config, vocab = filepath.Join(dir, "model_config.json"), filepath.Join(dir, "vocab.txt")
	if err := os.WriteFile(config, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(vocab, []byte(strings.Join(synth.WorldVocab(), "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return config, vocab
}

func std(t *testing.T, x *torch.Tensor) (mean, sd float64) {
	t.Helper()
	v, err := x.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range v {
		mean += float64(f)
	}
	mean /= float64(len(v))
	for _, f := range v {
		sd += (float64(f) - mean) * (float64(f) - mean)
	}
	return mean, math.Sqrt(sd / float64(len(v)))
}

// maxAbsDiff is max |a − k·b|.
func maxAbsDiff(t *testing.T, a, b *torch.Tensor, k float64) float64 {
	t.Helper()
	av, err := a.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	bv, err := b.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	d := 0.0
	for i := range av {
		d = math.Max(d, math.Abs(float64(av[i])-k*float64(bv[i])))
	}
	return d
}

func TestInitModelScalesBlipsNormalWeightsAndNothingElse(t *testing.T) {
	config, vocab := worldModelFiles(t)
	out := filepath.Join(t.TempDir(), "init")
	if err := InitModel(config, vocab, 0.07, 5, out); err != nil {
		t.Fatal(err)
	}
	m, _, err := blip.Load(out, blip.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if !m.SharedText || m.TextDecoder == nil || m.ITMHead == nil {
		t.Fatal("the init is not a pretraining model with every part and shared text weights")
	}
	// The same seed through blip's own initialisation, unscaled.
	cfg, err := blip.FromHFConfig(config)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := blip.New(cfg, blip.AllParts())
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	g := torch.NewGenerator(5)
	defer g.Close()
	if err := ref.InitRandom(g); err != nil {
		t.Fatal(err)
	}
	scaled := 0
	for _, p := range m.Params() {
		got := p.Tensor()
		want, _ := ref.Param(p.Name)
		d, same := maxAbsDiff(t, got, want, 0.07/0.02), maxAbsDiff(t, got, want, 1)
		if normalInit(p.Name) {
			scaled++
			if d > 1e-6 {
				t.Errorf("%s is not blip's N(0, 0.02) init times 3.5 (max diff %g)", p.Name, d)
			}
			continue
		}
		if same != 0 {
			t.Errorf("%s changed (max diff %g): only the N(0, 0.02) weights are scaled", p.Name, same)
		}
	}
	if scaled < 20 {
		t.Fatalf("only %d parameters scaled", scaled)
	}
	w, _ := m.Param("text_encoder.encoder.layer.0.intermediate.dense.weight")
	if mean, sd := std(t, w); math.Abs(sd-0.07) > 0.005 || math.Abs(mean) > 0.005 {
		t.Errorf("a text layer's weight has mean %.4f, std %.4f; want 0 and 0.07", mean, sd)
	}
	for name, want := range map[string]bool{
		"vision_model.encoder.layers.0.self_attn.qkv.weight": true, "vision_model.embeddings.position_embedding": true,
		"text_encoder.embeddings.word_embeddings.weight": true, "text_encoder.embeddings.LayerNorm.weight": false,
		"vision_model.encoder.layers.1.layer_norm2.weight": false, "vision_model.post_layernorm.weight": false,
		"text_decoder.cls.predictions.bias": false, "itm_head.weight": false, "vision_proj.weight": false,
		"vision_model.embeddings.patch_embedding.weight": false, "temp": false,
	} {
		if _, ok := m.Param(name); !ok {
			t.Errorf("the model has no %s", name)
		}
		if normalInit(name) != want {
			t.Errorf("normalInit(%s) = %v, want %v", name, !want, want)
		}
	}
}
