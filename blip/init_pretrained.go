package blip

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/capfilt/capfilt/blip/checkpoint"
	"github.com/capfilt/capfilt/torch"
)

// InitReport says what an initialisation from a foreign checkpoint took and left.
type InitReport struct {
	Path    string   `json:"path"`
	Loaded  []string `json:"loaded"`            // model parameters written
	Resized []string `json:"resized,omitempty"` // position embeddings interpolated, vocabularies grown
	Ignored []string `json:"ignored,omitempty"` // "checkpoint key (why)"
}

// InitVision copies a timm / DeiT ViT state dict into the vision model, as BLIP's
// pretraining starts (deit_base_patch16_224 for ViT-B, vit_large_patch16_224_in21k for
// ViT-L). path is a .pth (DeiT keeps the weights under "model"), a .bin or .safetensors
// file, or a directory holding one. timm names: cls_token, pos_embed, patch_embed.proj.*,
// blocks.N.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}.*, norm.*; the classifier
// (head.*) is ignored. The position embedding is interpolated to the config's image size
// (bicubic, class row kept). Every vision parameter must be found; an unknown key, or a
// distilled DeiT's distillation token, is an error.
func (m *Model) InitVision(path string) (*InitReport, error) {
	if m.VisionModel == nil {
		return nil, errNoVision
	}
	rep := &InitReport{Path: path}
	ck, err := checkpoint.Open(path)
	if err != nil {
		return rep, err
	}
	mapper := newRecordMapper()
	defer mapper.close()
	found := map[string]bool{}
	var unknown []string
	for _, r := range ck.Tensors {
		name := strings.TrimPrefix(r.Name, "visual_encoder.")
		switch {
		case strings.HasPrefix(name, "head.") || strings.HasPrefix(name, "head_dist.") || strings.HasPrefix(name, "pre_logits."):
			rep.Ignored = append(rep.Ignored, r.Name+" (classifier)")
			continue
		case name == "dist_token":
			return rep, fmt.Errorf("%s: %s is a distilled DeiT (dist_token): BLIP starts from the plain deit_base_patch16_224", path, r.Name)
		}
		hf := OriginalToHF("visual_encoder." + name)
		p, ok := m.ps.get(hf)
		if !ok || !strings.HasPrefix(hf, "vision_model.") {
			unknown = append(unknown, r.Name)
			continue
		}
		t, err := mapper.float32View(r)
		if err != nil {
			return rep, err
		}
		if strings.HasSuffix(hf, "embeddings.position_embedding") && !slices.Equal(r.Shape, p.Shape) {
			if len(r.Shape) != 3 || r.Shape[2] != p.Shape[2] {
				t.Free()
				return rep, fmt.Errorf("%s: %s has shape %v, the model wants %v", path, r.Name, r.Shape, p.Shape)
			}
			grid := int(math.Round(math.Sqrt(float64(p.Shape[1] - 1))))
			resized, err := interpolatePositions(t, grid)
			t.Free()
			if err != nil {
				return rep, fmt.Errorf("%s: %s: %w", path, r.Name, err)
			}
			t = resized
			rep.Resized = append(rep.Resized, fmt.Sprintf("%s %v → %v", r.Name, r.Shape, p.Shape))
		}
		err = m.assign(p, t, path, r.Name)
		t.Free()
		if err != nil {
			return rep, err
		}
		found[p.Name] = true
		rep.Loaded = append(rep.Loaded, p.Name)
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return rep, fmt.Errorf("%s: keys that are not a timm ViT's: %s", path, strings.Join(unknown, ", "))
	}
	if missing := m.missingUnder(found, "vision_model."); len(missing) > 0 {
		return rep, fmt.Errorf("%s: no weights for %s", path, strings.Join(missing, ", "))
	}
	m.VisionModel.dropPositionCache()
	return rep, nil
}

// InitText copies a bert-base-uncased Hugging Face checkpoint (a directory with
// model.safetensors or pytorch_model.bin, or the file) into every text tower of the
// model, as BLIP's pretraining builds both the encoder and the decoder from BERT:
//
//   - bert.embeddings.* (word, position, LayerNorm; token types dropped: BLIP has none);
//     the word embeddings grow to the model's vocabulary ([DEC], [ENC]), the new rows
//     keeping their N(0, 0.02) initialisation;
//   - bert.encoder.layer.N.* into the encoder and, as its own copy, the decoder's
//     self-attention; the shared sublayers once. Cross attention is not in BERT and
//     keeps its fresh initialisation;
//   - cls.predictions.transform.* and cls.predictions.bias into the decoder's LM head
//     (BertLMHeadModel.from_pretrained loads them), the bias padded with zeros for the
//     new tokens; cls.predictions.decoder.* is the tied word embedding, cls.seq_relationship
//     (next-sentence head) and bert.pooler.* are dropped.
//
// TF-era names (LayerNorm.gamma/beta) are accepted. Run InitRandom first.
func (m *Model) InitText(path string) (*InitReport, error) {
	var towers []string
	if m.TextEncoder != nil {
		towers = append(towers, "text_encoder.")
	}
	if m.TextDecoder != nil {
		towers = append(towers, "text_decoder.bert.")
	}
	if len(towers) == 0 {
		return nil, errNoEncoder
	}
	rep := &InitReport{Path: path}
	if err := m.checkBERTConfig(path); err != nil {
		return rep, err
	}
	ck, err := checkpoint.Open(path)
	if err != nil {
		return rep, err
	}
	mapper := newRecordMapper()
	defer mapper.close()
	found := map[string]bool{}
	var unknown []string
	for _, r := range ck.Tensors {
		name := strings.TrimPrefix(r.Name, "bert.")
		if strings.HasSuffix(name, ".gamma") {
			name = strings.TrimSuffix(name, ".gamma") + ".weight"
		} else if strings.HasSuffix(name, ".beta") {
			name = strings.TrimSuffix(name, ".beta") + ".bias"
		}
		var targets []string
		switch {
		case strings.HasSuffix(name, "position_ids"):
			rep.Ignored = append(rep.Ignored, r.Name+" (buffer)")
		case strings.HasPrefix(name, "embeddings.token_type_embeddings."):
			rep.Ignored = append(rep.Ignored, r.Name+" (BLIP has no token types)")
		case strings.HasPrefix(name, "pooler."):
			rep.Ignored = append(rep.Ignored, r.Name+" (pooler, unused)")
		case strings.HasPrefix(name, "cls.seq_relationship."):
			rep.Ignored = append(rep.Ignored, r.Name+" (next-sentence head)")
		case strings.HasPrefix(name, "cls.predictions.decoder."):
			rep.Ignored = append(rep.Ignored, r.Name+" (tied to the word embeddings)")
		case strings.HasPrefix(name, "cls.predictions."):
			if m.TextDecoder == nil {
				rep.Ignored = append(rep.Ignored, r.Name+" (no decoder)")
			} else {
				targets = []string{"text_decoder." + name}
			}
		case strings.HasPrefix(name, "embeddings.") || strings.HasPrefix(name, "encoder.layer."):
			for _, tw := range towers {
				targets = append(targets, tw+name)
			}
		default:
			unknown = append(unknown, r.Name)
		}
		for _, target := range targets {
			p, ok := m.ps.get(target)
			if !ok {
				unknown = append(unknown, r.Name)
				break
			}
			if err := m.copyBERT(mapper, r, p, path, rep); err != nil {
				return rep, err
			}
			found[target] = true
			rep.Loaded = append(rep.Loaded, target)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return rep, fmt.Errorf("%s: keys that are not BERT's: %s", path, strings.Join(slices.Compact(unknown), ", "))
	}
	for _, tw := range towers {
		var missing []string
		for _, n := range m.missingUnder(found, tw) {
			if !strings.Contains(n, ".crossattention.") {
				missing = append(missing, n)
			}
		}
		if len(missing) > 0 {
			return rep, fmt.Errorf("%s: no BERT weights for %s", path, strings.Join(missing, ", "))
		}
	}
	return rep, nil
}

// copyBERT writes one BERT tensor into parameter p: whole, or for the vocabulary-sized
// ones (word embeddings, LM bias) into the first rows, the rest untouched (new
// embedding rows) or zeroed (the bias, as HF pads it).
func (m *Model) copyBERT(mapper *recordMapper, r checkpoint.TensorRecord, p param, path string, rep *InitReport) error {
	t, err := mapper.float32View(r)
	if err != nil {
		return err
	}
	defer t.Free()
	if slices.Equal(r.Shape, p.Shape) {
		return m.assign(p, t, path, r.Name)
	}
	vocab := strings.HasSuffix(p.Name, "word_embeddings.weight") || p.Name == "text_decoder.cls.predictions.bias"
	if !vocab || len(r.Shape) != len(p.Shape) || r.Shape[0] > p.Shape[0] || !slices.Equal(r.Shape[1:], p.Shape[1:]) {
		return fmt.Errorf("%s: %s has shape %v, the model's %s wants %v", path, r.Name, r.Shape, p.Name, p.Shape)
	}
	dst := p.Tensor()
	if dst == nil {
		return fmt.Errorf("blip: %s has no value: run InitRandom before InitText", p.Name)
	}
	if p.Name == "text_decoder.cls.predictions.bias" {
		if err := dst.Fill(0); err != nil {
			return err
		}
	}
	rows := dst.Narrow(0, 0, r.Shape[0])
	err = rows.CopyFrom(t)
	rows.Free()
	if err != nil {
		return fmt.Errorf("%s: %s into %s: %w", path, r.Name, p.Name, err)
	}
	rep.Resized = append(rep.Resized, fmt.Sprintf("%s %v → %v", p.Name, r.Shape, p.Shape))
	return nil
}

// checkBERTConfig compares the sizes shapes cannot tell (the head count) with a
// config.json beside the weights, when there is one.
func (m *Model) checkBERTConfig(path string) error {
	dir := path
	if fi, err := os.Stat(path); err == nil && !fi.IsDir() {
		dir = filepath.Dir(path)
	}
	data, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil
	}
	var c struct {
		Heads  *int `json:"num_attention_heads"`
		Layers *int `json:"num_hidden_layers"`
	}
	if err := json.Unmarshal(data, &c); err != nil {
		return fmt.Errorf("%s: config.json: %w", dir, err)
	}
	if c.Heads != nil && *c.Heads != m.Config.Text.NumHeads {
		return fmt.Errorf("%s: BERT has %d attention heads, the model %d", dir, *c.Heads, m.Config.Text.NumHeads)
	}
	if c.Layers != nil && *c.Layers != m.Config.Text.NumLayers {
		return fmt.Errorf("%s: BERT has %d layers, the model %d", dir, *c.Layers, m.Config.Text.NumLayers)
	}
	return nil
}

// assign copies t into parameter p (keeping the parameter tensor, its device and its
// autograd flag), or makes p's tensor when it has none yet.
func (m *Model) assign(p param, t *torch.Tensor, path, key string) error {
	if !slices.Equal(t.Shape(), p.Shape) {
		return fmt.Errorf("%s: %s has shape %v, the model's %s wants %v", path, key, t.Shape(), p.Name, p.Shape)
	}
	if dst := p.Tensor(); dst != nil {
		if err := dst.CopyFrom(t); err != nil {
			return fmt.Errorf("%s: %s into %s: %w", path, key, p.Name, err)
		}
		return nil
	}
	c := ownedCopy(t, m.device)
	if m.dtype != torch.Float32 {
		d := c.ToDType(m.dtype)
		c.Free()
		c = d
	}
	if err := c.Err(); err != nil {
		return fmt.Errorf("%s: %s: %w", path, key, err)
	}
	p.set(c)
	return nil
}

// missingUnder lists the parameters under prefix not in found.
func (m *Model) missingUnder(found map[string]bool, prefix string) []string {
	var out []string
	for _, p := range m.ps.list {
		if strings.HasPrefix(p.Name, prefix) && !found[p.Name] {
			out = append(out, p.Name)
		}
	}
	return out
}

// float32View is a record as an unscoped float32 tensor (converted when stored otherwise).
func (rm *recordMapper) float32View(r checkpoint.TensorRecord) (*torch.Tensor, error) {
	t, err := rm.view(r)
	if err != nil {
		return nil, err
	}
	if t.DType() == torch.Float32 {
		return t, nil
	}
	f := t.ToDType(torch.Float32)
	t.Free()
	if err := f.Err(); err != nil {
		return nil, fmt.Errorf("%s: %s: %w", r.Path, r.Name, err)
	}
	return f, nil
}
