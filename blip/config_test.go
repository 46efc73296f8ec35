package blip

import (
	"fmt"
	"strings"
	"testing"

	"github.com/capfilt/capfilt/blip/checkpoint"
)

// Hub config.json files list only what differs from HF's defaults, and HF's text default
// is 8 heads: reading one must fill the gaps with HF's values, not BLIP-base's.
func TestHubConfigGetsHFDefaults(t *testing.T) {
	large := `{"model_type": "blip", "text_config": {"num_attention_heads": 12, "encoder_hidden_size": 1024},
	  "vision_config": {"hidden_size": 1024, "intermediate_size": 4096, "num_attention_heads": 16, "num_hidden_layers": 24}}`
	c, err := ParseHFConfig([]byte(large))
	if err != nil {
		t.Fatal(err)
	}
	want := Large()
	want.Vision.DropPath = 0 // a hub config says nothing of training-time stochastic depth
	if c != want {
		t.Fatalf("large hub config read as\n%+v\nwant\n%+v", c, want)
	}
	bare, err := ParseHFConfig([]byte(`{"text_config": {}, "vision_config": {}}`))
	if err != nil {
		t.Fatal(err)
	}
	if bare.Text.NumHeads != 8 || bare.Vision.LayerNormEps != 1e-5 || bare.Text.LayerNormEps != 1e-12 || bare.Vision.ImageSize != 384 {
		t.Fatalf("HF defaults: %+v", bare)
	}
	if bare.Text.ClsID != 101 || bare.Text.EncID != 30523 || bare.Text.BosID != 30522 || bare.Text.SepID != 102 || bare.EmbedDim != 256 {
		t.Fatalf("special ids / ITC width: %+v", bare.Text)
	}
	tiny, err := Tiny().HFConfigJSON()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseHFConfig(tiny)
	if err != nil || back != Tiny() {
		t.Fatalf("tiny round trip: %+v %v", back, err)
	}
}

func TestBadConfigsAreNamedErrors(t *testing.T) {
	cases := map[string]string{
		`{"model_type": "clip"}`: `model_type "clip"`,
		`{"text_config": {"hidden_size": "big"}, "vision_config": {}}`:       "text_config.hidden_size",
		`{"text_config": {"hidden_act": "relu"}, "vision_config": {}}`:       "hidden_act relu",
		`{"text_config": {"hidden_size": 100}, "vision_config": {}}`:         "not divisible",
		`{"text_config": {"encoder_hidden_size": 512}, "vision_config": {}}`: "encoder_hidden_size 512",
		`{"text_config": {"enc_token_id": 40000}, "vision_config": {}}`:      "enc ([ENC]) id 40000",
		`{"text_config": {}, "vision_config": {"image_size": 100}}`:          "not a multiple of patch size",
		`not json`: "config.json",
	}
	for in, want := range cases {
		if _, err := ParseHFConfig([]byte(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error naming %q", in, err, want)
		}
	}
}

// An original .pth has no config.json: its sizes come off the tensors, and its ViT's
// LayerNorm eps is BLIP's own 1e-6, not the 1e-5 of HF configs.
func TestConfigInferredFromAnOriginalCheckpointUsesBLIPsViTEps(t *testing.T) {
	records := map[string]checkpoint.TensorRecord{}
	add := func(name string, shape ...int64) { records[name] = checkpoint.TensorRecord{Name: name, Shape: shape} }
	add("vision_model.embeddings.class_embedding", 1, 1, 768)
	add("vision_model.embeddings.patch_embedding.weight", 768, 3, 16, 16)
	add("vision_model.embeddings.position_embedding", 1, 577, 768)
	add("text_encoder.embeddings.word_embeddings.weight", 30524, 768)
	add("text_encoder.embeddings.position_embeddings.weight", 512, 768)
	add("vision_proj.weight", 256, 768)
	for i := range 12 {
		add(fmt.Sprintf("vision_model.encoder.layers.%d.mlp.fc1.weight", i), 3072, 768)
		add(fmt.Sprintf("text_encoder.encoder.layer.%d.intermediate.dense.weight", i), 3072, 768)
		add(fmt.Sprintf("text_encoder.encoder.layer.%d.crossattention.self.key.weight", i), 768, 768)
	}
	c, err := inferConfig(records)
	if err != nil {
		t.Fatal(err)
	}
	want := Base()
	want.Vision.LayerNormEps = 1e-6
	if c != want {
		t.Fatalf("inferred\n%+v\nwant BLIP-base with ViT eps 1e-6\n%+v", c, want)
	}
	if _, err := ParseHFConfig([]byte(`{"text_config": {}, "vision_config": {}}`)); err != nil || Base().Vision.LayerNormEps != 1e-5 {
		t.Fatal("HF configs keep their own 1e-5")
	}
}
