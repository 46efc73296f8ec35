package blip

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/capfilt/capfilt/blip/checkpoint"
	"github.com/capfilt/capfilt/torch"
)

func tinyModel(t *testing.T, parts Parts, seed uint64) *Model {
	t.Helper()
	m, err := New(Tiny(), parts)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.InitDeterministic(seed); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

func assertSameParams(t *testing.T, a, b *Model) {
	t.Helper()
	if len(a.Params()) != len(b.Params()) {
		t.Fatalf("%d params vs %d", len(a.Params()), len(b.Params()))
	}
	for _, p := range a.Params() {
		q, ok := b.Param(p.Name)
		if !ok {
			t.Fatalf("%s missing after reload", p.Name)
		}
		x, err1 := p.Tensor().Float32s()
		y, err2 := q.Float32s()
		if err1 != nil || err2 != nil || len(x) != len(y) {
			t.Fatalf("%s: %v %v", p.Name, err1, err2)
		}
		for i := range x {
			if x[i] != y[i] {
				t.Fatalf("%s[%d]: %v vs %v", p.Name, i, x[i], y[i])
			}
		}
	}
}

func TestSaveAndLoadRoundTripBothNamings(t *testing.T) {
	for _, parts := range []Parts{AllParts(), {Vision: true, TextDecoder: true}, {Vision: true, TextEncoder: true, ITC: true, ITM: true}} {
		m := tinyModel(t, parts, 5)
		dir := t.TempDir()
		if err := m.SaveHF(dir, nil); err != nil {
			t.Fatal(err)
		}
		hf, rep, err := Load(dir, LoadOptions{})
		if err != nil {
			t.Fatalf("load HF: %v", err)
		}
		defer hf.Close()
		if !rep.Clean() || rep.Naming != "hf" || hf.SharedText != m.SharedText {
			t.Fatalf("HF report %+v, shared %v", rep, hf.SharedText)
		}
		assertSameParams(t, m, hf)

		pth := filepath.Join(t.TempDir(), "model.pth")
		if err := m.SaveOriginal(pth); err != nil {
			t.Fatal(err)
		}
		orig, rep, err := Load(pth, LoadOptions{})
		if err != nil {
			t.Fatalf("load .pth: %v", err)
		}
		defer orig.Close()
		if !rep.Clean() || rep.Naming != "original" || rep.WeightsKey() != "model" {
			t.Fatalf(".pth report %+v", rep)
		}
		assertSameParams(t, m, orig)
	}
}

func TestKeyMappingTableIsOneToOne(t *testing.T) {
	m := tinyModel(t, AllParts(), 1)
	seen := map[string]string{}
	for _, p := range m.Params() {
		o := HFToOriginal(p.Name)
		if back := OriginalToHF(o); back != p.Name {
			t.Fatalf("%s → %s → %s", p.Name, o, back)
		}
		if prev, dup := seen[o]; dup {
			t.Fatalf("%s and %s both map to %s", prev, p.Name, o)
		}
		seen[o] = p.Name
	}
	for hf, orig := range map[string]string{
		"vision_model.encoder.layers.11.self_attn.projection.weight":  "visual_encoder.blocks.11.attn.proj.weight",
		"vision_model.embeddings.class_embedding":                     "visual_encoder.cls_token",
		"vision_model.post_layernorm.bias":                            "visual_encoder.norm.bias",
		"text_encoder.encoder.layer.3.crossattention.self.key.weight": "text_encoder.encoder.layer.3.crossattention.self.key.weight",
	} {
		if got := HFToOriginal(hf); got != orig {
			t.Errorf("HFToOriginal(%s) = %s, want %s", hf, got, orig)
		}
	}
}

func TestStrictLoadReportsMissingUnexpectedAndMismatched(t *testing.T) {
	m := tinyModel(t, Parts{Vision: true, TextEncoder: true, ITC: true, ITM: true}, 2)
	tensors, err := m.tensorsToWrite(func(s string) string { return s })
	if err != nil {
		t.Fatal(err)
	}
	var kept []checkpoint.TensorToWrite
	for _, tw := range tensors {
		switch tw.Name {
		case "itm_head.bias": // missing
		case "text_proj.weight": // wrong shape
			tw.Shape = []int64{8, 64}
			kept = append(kept, tw)
		default:
			kept = append(kept, tw)
		}
	}
	extra := torch.FromFloat32([]float32{1, 2}, 2)
	kept = append(kept, checkpoint.TensorToWrite{Name: "mystery.weight", DType: checkpoint.F32, Shape: []int64{2}, Data: &tensorData{t: extra}},
		checkpoint.TensorToWrite{Name: "text_queue", DType: checkpoint.F32, Shape: []int64{2}, Data: &tensorData{t: extra}})
	dir := t.TempDir()
	cfg, _ := m.Config.HFConfigJSON()
	writeFile(t, filepath.Join(dir, "config.json"), cfg)
	if err := checkpoint.WriteSafetensors(filepath.Join(dir, "model.safetensors"), kept, nil); err != nil {
		t.Fatal(err)
	}
	_, rep, err := Load(dir, LoadOptions{})
	if err == nil {
		t.Fatal("a strict load of a mismatching checkpoint must fail")
	}
	for _, want := range []string{"1 missing (itm_head.bias)", "1 unexpected (mystery.weight)", "text_proj.weight: checkpoint [8 64] vs model [16 32]"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if len(rep.Ignored) != 1 || !strings.Contains(rep.Ignored[0], "text_queue") {
		t.Errorf("ignored %v, want the queue", rep.Ignored)
	}
	part, rep, err := Load(dir, LoadOptions{AllowPartial: true})
	if err != nil {
		t.Fatalf("partial load: %v", err)
	}
	defer part.Close()
	if rep.Loaded != len(m.Params())-2 {
		t.Fatalf("partial load loaded %d of %d", rep.Loaded, len(m.Params()))
	}
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestShardedSafetensorsLoad(t *testing.T) {
	m := tinyModel(t, Parts{Vision: true, TextDecoder: true}, 8)
	tensors, err := m.tensorsToWrite(func(s string) string { return s })
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	files, err := checkpoint.WriteSafetensorsSharded(dir, tensors, nil, 100_000)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 3 {
		t.Fatalf("want several shards, got %v", files)
	}
	cfg, _ := m.Config.HFConfigJSON()
	writeFile(t, filepath.Join(dir, "config.json"), cfg)
	back, rep, err := Load(dir, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	if !rep.Clean() {
		t.Fatalf("report %+v", rep)
	}
	assertSameParams(t, m, back)
}

// A stored LM-head matrix must equal the word embeddings it is tied to (else a warning),
// and a shared decoder tensor must equal the encoder's (else a mismatch).
func TestTiedAndSharedTensorsAreVerified(t *testing.T) {
	m := tinyModel(t, AllParts(), 3)
	tensors, err := m.tensorsToWrite(func(s string) string { return s })
	if err != nil {
		t.Fatal(err)
	}
	write := func(extra map[string]*torch.Tensor) string {
		dir := t.TempDir()
		all := append([]checkpoint.TensorToWrite(nil), tensors...)
		for i, tw := range all {
			if x, ok := extra[tw.Name]; ok {
				all[i].Data = &tensorData{t: x}
				delete(extra, tw.Name)
			} else {
				p, _ := m.Param(tw.Name)
				all[i].Data = &tensorData{t: p}
			}
		}
		for name, x := range extra {
			all = append(all, checkpoint.TensorToWrite{Name: name, DType: checkpoint.F32, Shape: x.Shape(), Data: &tensorData{t: x}})
		}
		cfg, _ := m.Config.HFConfigJSON()
		writeFile(t, filepath.Join(dir, "config.json"), cfg)
		if err := checkpoint.WriteSafetensors(filepath.Join(dir, "model.safetensors"), all, map[string]string{"capfilt.shared_text": "true"}); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	words, _ := m.Param("text_encoder.embeddings.word_embeddings.weight")
	_, rep, err := Load(write(map[string]*torch.Tensor{"text_decoder.cls.predictions.decoder.weight": words}), LoadOptions{})
	if err != nil || len(rep.Warnings) != 0 {
		t.Fatalf("an equal stored LM head: %v, warnings %v", err, rep.Warnings)
	}
	_, rep, err = Load(write(map[string]*torch.Tensor{"text_decoder.cls.predictions.decoder.weight": words.AddScalar(1)}), LoadOptions{})
	if err != nil || len(rep.Warnings) != 1 || !strings.Contains(rep.Warnings[0], "max |diff| 1") {
		t.Fatalf("a different stored LM head: %v, warnings %v", err, rep.Warnings)
	}
	ffn, _ := m.Param("text_encoder.encoder.layer.1.intermediate.dense.weight")
	_, _, err = Load(write(map[string]*torch.Tensor{"text_decoder.bert.encoder.layer.1.intermediate.dense.weight": ffn.MulScalar(2)}), LoadOptions{})
	if err == nil || !strings.Contains(err.Error(), "should equal the shared text_encoder.encoder.layer.1.intermediate.dense.weight") {
		t.Fatalf("a shared tensor that differs: %v", err)
	}
}
