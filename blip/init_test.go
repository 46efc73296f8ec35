package blip

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/capfilt/capfilt/blip/checkpoint"
	"github.com/capfilt/capfilt/torch"
)

// fakeTensor is a named tensor with reproducible values for a foreign checkpoint.
type fakeTensor struct {
	name  string
	shape []int64
	vals  []float32
}

func fake(name string, shape ...int64) fakeTensor {
	return fakeTensor{name, shape, DeterministicValues("fake."+name, numel(shape), 77)}
}

func toWrite(ts []fakeTensor) []checkpoint.TensorToWrite {
	out := make([]checkpoint.TensorToWrite, len(ts))
	for i, t := range ts {
		var b bytes.Buffer
		_ = binary.Write(&b, binary.LittleEndian, t.vals)
		out[i] = checkpoint.TensorToWrite{Name: t.name, DType: checkpoint.F32, Shape: t.shape, Data: bytes.NewReader(b.Bytes())}
	}
	return out
}

// timmViT is a timm ViT state dict for cfg at grid×grid patches, plus a classifier.
func timmViT(c VisionConfig, grid int64) []fakeTensor {
	d, mlp, p := int64(c.HiddenSize), int64(c.IntermediateSize), int64(c.PatchSize)
	ts := []fakeTensor{fake("cls_token", 1, 1, d), fake("pos_embed", 1, 1+grid*grid, d),
		fake("patch_embed.proj.weight", d, 3, p, p), fake("patch_embed.proj.bias", d),
		fake("norm.weight", d), fake("norm.bias", d), fake("head.weight", 1000, d), fake("head.bias", 1000)}
	for i := 0; i < c.NumLayers; i++ {
		n := fmt.Sprintf("blocks.%d.", i)
		ts = append(ts, fake(n+"norm1.weight", d), fake(n+"norm1.bias", d), fake(n+"attn.qkv.weight", 3*d, d), fake(n+"attn.qkv.bias", 3*d),
			fake(n+"attn.proj.weight", d, d), fake(n+"attn.proj.bias", d), fake(n+"norm2.weight", d), fake(n+"norm2.bias", d),
			fake(n+"mlp.fc1.weight", mlp, d), fake(n+"mlp.fc1.bias", mlp), fake(n+"mlp.fc2.weight", d, mlp), fake(n+"mlp.fc2.bias", d))
	}
	return ts
}

func paramValues(t *testing.T, m *Model, name string) []float32 {
	t.Helper()
	p, ok := m.Param(name)
	if !ok {
		t.Fatalf("no parameter %s", name)
	}
	return f32(t, p)
}

func freshPretrainModel(t *testing.T) *Model {
	t.Helper()
	m, err := New(Tiny(), AllParts())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	g := torch.NewGenerator(1)
	defer g.Close()
	if err := m.InitRandom(g); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestInitRandomFollowsTheOriginalsInitialisers(t *testing.T) {
	m := freshPretrainModel(t)
	stats := func(name string) (mean, std, lo, hi float64) {
		v := paramValues(t, m, name)
		lo, hi = math.Inf(1), math.Inf(-1)
		for _, x := range v {
			mean += float64(x)
			lo, hi = math.Min(lo, float64(x)), math.Max(hi, float64(x))
		}
		mean /= float64(len(v))
		for _, x := range v {
			std += (float64(x) - mean) * (float64(x) - mean)
		}
		return mean, math.Sqrt(std / float64(len(v))), lo, hi
	}
	for _, name := range []string{"text_encoder.embeddings.word_embeddings.weight", "text_encoder.encoder.layer.0.crossattention.self.key.weight",
		"vision_model.encoder.layers.1.mlp.fc1.weight", "vision_model.embeddings.position_embedding", "text_decoder.cls.predictions.transform.dense.weight"} {
		if mean, std, _, _ := stats(name); math.Abs(std-0.02) > 0.003 || math.Abs(mean) > 0.003 {
			t.Errorf("%s: mean %.4f std %.4f, want N(0, 0.02)", name, mean, std)
		}
	}
	for name, want := range map[string]float32{"text_encoder.embeddings.LayerNorm.weight": 1, "vision_model.encoder.layers.0.layer_norm2.weight": 1,
		"text_encoder.encoder.layer.1.output.dense.bias": 0, "vision_model.encoder.layers.0.self_attn.qkv.bias": 0,
		"text_decoder.cls.predictions.bias": 0, "temp": 0.07} {
		for _, v := range paramValues(t, m, name) {
			if math.Abs(float64(v-want)) > 1e-7 {
				t.Fatalf("%s holds %v, want %v", name, v, want)
			}
		}
	}
	// torch's default Linear/Conv2d init: uniform in ±1/√fan_in, weights and biases.
	for name, fan := range map[string]float64{"itm_head.weight": 32, "itm_head.bias": 32, "vision_proj.weight": 48, "text_proj.bias": 32,
		"vision_model.embeddings.patch_embedding.weight": 3 * 16 * 16, "vision_model.embeddings.patch_embedding.bias": 3 * 16 * 16} {
		_, _, lo, hi := stats(name)
		b := 1 / math.Sqrt(fan)
		if lo < -b || hi > b || hi-lo < b/2 {
			t.Errorf("%s spans [%.4f, %.4f], want uniform in ±%.4f", name, lo, hi, b)
		}
	}
}

func TestInitVisionFromADeiTCheckpoint(t *testing.T) {
	cfg := Tiny().Vision
	dir := t.TempDir()
	// A DeiT-style .pth (weights under "model"), trained at 3×3 patches: the position
	// embedding must be interpolated to the config's 4×4.
	vit := timmViT(cfg, 3)
	pth := filepath.Join(dir, "deit.pth")
	if err := checkpoint.WriteTorchZip(pth, toWrite(vit), true); err != nil {
		t.Fatal(err)
	}
	// The same as a safetensors file at the right grid, no classifier.
	same := timmViT(cfg, 4)[:6]
	same = append(same, timmViT(cfg, 4)[8:]...)
	st := filepath.Join(dir, "vit.safetensors")
	if err := checkpoint.WriteSafetensors(st, toWrite(same), nil); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path string
		src  []fakeTensor
	}{{pth, vit}, {st, same}} {
		m := freshPretrainModel(t)
		textBefore := paramValues(t, m, "text_encoder.encoder.layer.0.intermediate.dense.weight")
		rep, err := m.InitVision(c.path)
		if err != nil {
			t.Fatal(err)
		}
		byName := map[string]fakeTensor{}
		for _, f := range c.src {
			byName[f.name] = f
		}
		for timm, hf := range map[string]string{"cls_token": "vision_model.embeddings.class_embedding",
			"patch_embed.proj.weight": "vision_model.embeddings.patch_embedding.weight", "norm.bias": "vision_model.post_layernorm.bias",
			"blocks.1.attn.qkv.weight": "vision_model.encoder.layers.1.self_attn.qkv.weight", "blocks.0.attn.proj.bias": "vision_model.encoder.layers.0.self_attn.projection.bias",
			"blocks.1.mlp.fc2.weight": "vision_model.encoder.layers.1.mlp.fc2.weight", "blocks.0.norm2.weight": "vision_model.encoder.layers.0.layer_norm2.weight"} {
			near(t, timm+" → "+hf, paramValues(t, m, hf), byName[timm].vals, 0)
		}
		pos := paramValues(t, m, "vision_model.embeddings.position_embedding")
		src := byName["pos_embed"]
		if src.shape[1] == 17 {
			near(t, "pos_embed", pos, src.vals, 0)
		} else {
			near(t, "interpolated pos_embed", pos, resizePositionGrid(src.vals, 3, 4, cfg.HiddenSize), 1e-6)
			near(t, "class row kept", pos[:cfg.HiddenSize], src.vals[:cfg.HiddenSize], 0)
			if len(rep.Resized) != 1 || !strings.Contains(strings.Join(rep.Ignored, " "), "head.weight") {
				t.Errorf("report %+v", rep)
			}
		}
		near(t, "text untouched", paramValues(t, m, "text_encoder.encoder.layer.0.intermediate.dense.weight"), textBefore, 0)
		if len(rep.Loaded) != len(m.missingUnder(map[string]bool{}, "vision_model.")) {
			t.Errorf("%d loaded, the ViT has %d parameters", len(rep.Loaded), len(m.missingUnder(map[string]bool{}, "vision_model.")))
		}
	}
	// A block missing, an unknown key, a distilled DeiT: errors naming the key.
	for want, ts := range map[string][]fakeTensor{
		"vision_model.encoder.layers.1.mlp.fc2.bias": timmViT(cfg, 4)[:len(timmViT(cfg, 4))-1],
		"blocks.0.ls1.gamma":                         append(timmViT(cfg, 4), fake("blocks.0.ls1.gamma", 48)),
		"dist_token":                                 append(timmViT(cfg, 4), fake("dist_token", 1, 1, 48)),
	} {
		p := filepath.Join(t.TempDir(), "bad.safetensors")
		if err := checkpoint.WriteSafetensors(p, toWrite(ts), nil); err != nil {
			t.Fatal(err)
		}
		m := freshPretrainModel(t)
		if _, err := m.InitVision(p); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want an error naming %s, got %v", want, err)
		}
	}
}

// bertBase is a BertForPreTraining state dict at the tiny text sizes with vocab words.
func bertState(c TextConfig, words int64, tfNames, prefix bool) []fakeTensor {
	d, ff := int64(c.HiddenSize), int64(c.IntermediateSize)
	ln := func(n string) []fakeTensor {
		if tfNames {
			return []fakeTensor{fake(n+".gamma", d), fake(n+".beta", d)}
		}
		return []fakeTensor{fake(n+".weight", d), fake(n+".bias", d)}
	}
	b := ""
	if prefix {
		b = "bert."
	}
	ts := []fakeTensor{fake(b+"embeddings.word_embeddings.weight", words, d), fake(b+"embeddings.position_embeddings.weight", int64(c.MaxPositions), d),
		fake(b+"embeddings.token_type_embeddings.weight", 2, d), fake(b+"embeddings.position_ids", 1, int64(c.MaxPositions)),
		fake(b+"pooler.dense.weight", d, d), fake(b+"pooler.dense.bias", d)}
	ts = append(ts, ln(b+"embeddings.LayerNorm")...)
	for i := 0; i < c.NumLayers; i++ {
		n := fmt.Sprintf("%sencoder.layer.%d.", b, i)
		for _, l := range []string{"attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"} {
			ts = append(ts, fake(n+l+".weight", d, d), fake(n+l+".bias", d))
		}
		ts = append(ts, ln(n+"attention.output.LayerNorm")...)
		ts = append(ts, fake(n+"intermediate.dense.weight", ff, d), fake(n+"intermediate.dense.bias", ff),
			fake(n+"output.dense.weight", d, ff), fake(n+"output.dense.bias", d))
		ts = append(ts, ln(n+"output.LayerNorm")...)
	}
	if prefix {
		ts = append(ts, fake("cls.predictions.bias", words), fake("cls.predictions.transform.dense.weight", d, d),
			fake("cls.predictions.transform.dense.bias", d), fake("cls.predictions.decoder.weight", words, d),
			fake("cls.seq_relationship.weight", 2, d), fake("cls.seq_relationship.bias", 2))
		ts = append(ts, ln("cls.predictions.transform.LayerNorm")...)
	}
	return ts
}

func TestInitTextFromABERTCheckpoint(t *testing.T) {
	c := Tiny().Text
	const words = 118 // two fewer than the model: [DEC] and [ENC] are new
	hf := t.TempDir()
	if err := checkpoint.WriteSafetensors(filepath.Join(hf, "model.safetensors"), toWrite(bertState(c, words, true, true)), nil); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(hf, "config.json"), []byte(`{"model_type":"bert","num_attention_heads":4,"num_hidden_layers":2}`), 0o644); err != nil {
		t.Fatal(err)
	}
	m := freshPretrainModel(t)
	crossBefore := paramValues(t, m, "text_encoder.encoder.layer.1.crossattention.self.query.weight")
	newRowsBefore := paramValues(t, m, "text_encoder.embeddings.word_embeddings.weight")[words*32:]
	rep, err := m.InitText(hf)
	if err != nil {
		t.Fatal(err)
	}
	src := map[string][]float32{}
	for _, f := range bertState(c, words, true, true) {
		src[f.name] = f.vals
	}
	for bert, blip := range map[string]string{
		"bert.encoder.layer.0.attention.self.query.weight":      "text_encoder.encoder.layer.0.attention.self.query.weight",
		"bert.encoder.layer.1.attention.output.LayerNorm.gamma": "text_encoder.encoder.layer.1.attention.output.LayerNorm.weight",
		"bert.encoder.layer.1.intermediate.dense.weight":        "text_encoder.encoder.layer.1.intermediate.dense.weight",
		"bert.encoder.layer.0.output.LayerNorm.beta":            "text_encoder.encoder.layer.0.output.LayerNorm.bias",
		"bert.embeddings.position_embeddings.weight":            "text_encoder.embeddings.position_embeddings.weight",
		"bert.embeddings.LayerNorm.gamma":                       "text_encoder.embeddings.LayerNorm.weight",
		"cls.predictions.transform.dense.weight":                "text_decoder.cls.predictions.transform.dense.weight",
		"cls.predictions.transform.LayerNorm.beta":              "text_decoder.cls.predictions.transform.LayerNorm.bias",
		// the decoder's own self-attention starts from BERT's too
		"bert.encoder.layer.0.attention.self.key.bias":       "text_decoder.bert.encoder.layer.0.attention.self.key.bias",
		"bert.encoder.layer.1.attention.output.dense.weight": "text_decoder.bert.encoder.layer.1.attention.output.dense.weight",
	} {
		near(t, bert+" → "+blip, paramValues(t, m, blip), src[bert], 0)
	}
	enc, _ := m.Param("text_encoder.encoder.layer.0.attention.self.query.weight")
	dec, _ := m.Param("text_decoder.bert.encoder.layer.0.attention.self.query.weight")
	if enc == dec {
		t.Fatal("the decoder's self-attention must be its own tensor")
	}
	words32 := paramValues(t, m, "text_encoder.embeddings.word_embeddings.weight")
	near(t, "BERT's word rows", words32[:words*32], src["bert.embeddings.word_embeddings.weight"], 0)
	near(t, "the new [DEC]/[ENC] rows keep their N(0,0.02) init", words32[words*32:], newRowsBefore, 0)
	bias := paramValues(t, m, "text_decoder.cls.predictions.bias")
	near(t, "LM bias", bias[:words], src["cls.predictions.bias"], 0)
	near(t, "LM bias of the new tokens", bias[words:], []float32{0, 0}, 0)
	near(t, "cross attention is not BERT's", paramValues(t, m, "text_encoder.encoder.layer.1.crossattention.self.query.weight"), crossBefore, 0)
	ignored := strings.Join(rep.Ignored, " ")
	for _, k := range []string{"token_type_embeddings", "pooler", "seq_relationship", "cls.predictions.decoder.weight"} {
		if !strings.Contains(ignored, k) {
			t.Errorf("%s should be reported ignored: %v", k, rep.Ignored)
		}
	}

	// A bare BertModel as pytorch_model.bin with modern names loads the same way.
	bin := t.TempDir()
	if err := checkpoint.WriteTorchZip(filepath.Join(bin, "pytorch_model.bin"), toWrite(bertState(c, words, false, false)), false); err != nil {
		t.Fatal(err)
	}
	m2 := freshPretrainModel(t)
	if _, err := m2.InitText(bin); err != nil {
		t.Fatal(err)
	}
	near(t, "bare BertModel", paramValues(t, m2, "text_encoder.encoder.layer.1.output.dense.weight"),
		bertState(c, words, false, false)[len(bertState(c, words, false, false))-4].vals, 0)

	// Wrong head count, a missing layer, a wider BERT: errors that say so.
	bad := t.TempDir()
	_ = checkpoint.WriteSafetensors(filepath.Join(bad, "model.safetensors"), toWrite(bertState(c, words, true, true)), nil)
	_ = os.WriteFile(filepath.Join(bad, "config.json"), []byte(`{"num_attention_heads":12}`), 0o644)
	if _, err := freshPretrainModel(t).InitText(bad); err == nil || !strings.Contains(err.Error(), "12 attention heads") {
		t.Errorf("head count: %v", err)
	}
	short := bertState(c, words, true, true)
	var cut []fakeTensor
	for _, f := range short {
		if !strings.Contains(f.name, "layer.1.intermediate.dense.bias") {
			cut = append(cut, f)
		}
	}
	miss := t.TempDir()
	_ = checkpoint.WriteSafetensors(filepath.Join(miss, "model.safetensors"), toWrite(cut), nil)
	if _, err := freshPretrainModel(t).InitText(miss); err == nil || !strings.Contains(err.Error(), "layer.1.intermediate.dense.bias") {
		t.Errorf("missing key: %v", err)
	}
	wide := t.TempDir()
	_ = checkpoint.WriteSafetensors(filepath.Join(wide, "model.safetensors"), toWrite(bertState(c, 130, true, true)), nil)
	if _, err := freshPretrainModel(t).InitText(wide); err == nil || !strings.Contains(err.Error(), "word_embeddings") {
		t.Errorf("a vocabulary larger than the model's: %v", err)
	}
}
