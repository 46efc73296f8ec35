package demo

import (
	"fmt"
	"os"
	"strings"

	"github.com/capfilt/capfilt/blip"
	"github.com/capfilt/capfilt/torch"
)

// bertInitStd is the standard deviation of the weights blip.Model.InitRandom draws
// from a normal law (BERT's _init_weights, timm's trunc_normal_).
const bertInitStd = 0.02

// InitModel writes the fresh pretraining model every pretraining run of one seed starts
// from: blip's random initialisation with its N(0, 0.02) weights scaled to N(0, std).
// BERT's 0.02 is about 0.55/√768, a scale for 768-wide layers; the same rule gives 0.07
// for the world's 64-wide model. At 0.02 the tiny model trained from scratch hardly
// moves in the minutes the demo has: on the default world, 300 steps of ITC alone (batch
// 64, lr 1e-3) reached test TR@1 0.015 at 0.02 and 0.32 at 0.07 in the plain-PyTorch
// reference of testdata/ref. BLIP never meets the problem: it starts from DeiT and BERT.
// Layer norms, biases, temp and the layers left at torch's default init (the patch
// embedding and the projection and ITM heads) keep blip's values.
func InitModel(configFile, vocabFile string, std float64, seed uint64, out string) error {
	cfg, err := blip.FromHFConfig(configFile)
	if err != nil {
		return fmt.Errorf("init model: %w", err)
	}
	tok, err := blip.LoadModelTokenizer(vocabFile, "", cfg)
	if err != nil {
		return fmt.Errorf("init model: %w", err)
	}
	m, err := blip.New(cfg, blip.AllParts())
	if err != nil {
		return fmt.Errorf("init model: %w", err)
	}
	defer m.Close()
	g := torch.NewGenerator(seed)
	defer g.Close()
	if err := m.InitRandom(g); err != nil {
		return fmt.Errorf("init model: %w", err)
	}
	for _, p := range m.Params() {
		if !normalInit(p.Name) {
			continue
		}
		t := p.Tensor()
		scaled := t.MulScalar(std / bertInitStd)
		err := t.CopyFrom(scaled)
		scaled.Free()
		if err != nil {
			return fmt.Errorf("init model: %s: %w", p.Name, err)
		}
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	if err := m.SaveHF(out, tok); err != nil {
		return fmt.Errorf("init model: %w", err)
	}
	return nil
}

// normalInit tells the parameters blip.Model.InitRandom draws from N(0, 0.02): the
// weights and embeddings of the text transformer, the LM head and the ViT (its class
// and position embeddings included), not layer norms, biases, temp or the layers it
// leaves at torch's default.
func normalInit(name string) bool {
	parts := strings.Split(name, ".")
	last := parts[len(parts)-1]
	if name == "temp" || last == "bias" {
		return false
	}
	for _, prefix := range []string{"vision_proj.", "text_proj.", "itm_head.", "vision_model.embeddings.patch_embedding."} {
		if strings.HasPrefix(name, prefix) {
			return false
		}
	}
	if last == "weight" && len(parts) > 1 && strings.Contains(strings.ToLower(parts[len(parts)-2]), "norm") {
		return false
	}
	return true
}
