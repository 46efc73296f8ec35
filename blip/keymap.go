package blip

import (
	"strings"
)

// originalToHF is the one table between the original Salesforce checkpoint names and
// HF's (the convert script's renames). Text modules, projections and heads have the
// same names in both; only the ViT differs. {N} stands for a layer number.
var originalToHF = []struct{ orig, hf string }{
	{"visual_encoder.cls_token", "vision_model.embeddings.class_embedding"},
	{"visual_encoder.pos_embed", "vision_model.embeddings.position_embedding"},
	{"visual_encoder.patch_embed.proj.", "vision_model.embeddings.patch_embedding."},
	{"visual_encoder.blocks.{N}.norm1.", "vision_model.encoder.layers.{N}.layer_norm1."},
	{"visual_encoder.blocks.{N}.norm2.", "vision_model.encoder.layers.{N}.layer_norm2."},
	{"visual_encoder.blocks.{N}.attn.qkv.", "vision_model.encoder.layers.{N}.self_attn.qkv."},
	{"visual_encoder.blocks.{N}.attn.proj.", "vision_model.encoder.layers.{N}.self_attn.projection."},
	{"visual_encoder.blocks.{N}.mlp.fc1.", "vision_model.encoder.layers.{N}.mlp.fc1."},
	{"visual_encoder.blocks.{N}.mlp.fc2.", "vision_model.encoder.layers.{N}.mlp.fc2."},
	{"visual_encoder.norm.", "vision_model.post_layernorm."},
}

// OriginalToHF maps an original checkpoint name to its HF name (unchanged when the table
// has no row for it).
func OriginalToHF(name string) string { return translate(name, true) }

// HFToOriginal maps an HF name to the original checkpoint's.
func HFToOriginal(name string) string { return translate(name, false) }

func translate(name string, toHF bool) string {
	for _, row := range originalToHF {
		from, to := row.orig, row.hf
		if !toHF {
			from, to = to, from
		}
		if n, rest, ok := matchPattern(from, name); ok {
			return strings.ReplaceAll(to, "{N}", n) + rest
		}
	}
	return name
}

// matchPattern matches name against a pattern with at most one {N}; a pattern ending in
// '.' is a prefix. It returns the layer number and the rest after a prefix.
func matchPattern(pattern, name string) (n, rest string, ok bool) {
	before, after, hasN := strings.Cut(pattern, "{N}")
	if !hasN {
		if strings.HasSuffix(pattern, ".") {
			if strings.HasPrefix(name, pattern) {
				return "", name[len(pattern):], true
			}
			return "", "", false
		}
		return "", "", name == pattern
	}
	if !strings.HasPrefix(name, before) {
		return "", "", false
	}
	tail := name[len(before):]
	i := 0
	for i < len(tail) && tail[i] >= '0' && tail[i] <= '9' {
		i++
	}
	if i == 0 {
		return "", "", false
	}
	n, tail = tail[:i], tail[i:]
	if strings.HasSuffix(after, ".") {
		if strings.HasPrefix(tail, after) {
			return n, tail[len(after):], true
		}
		return "", "", false
	}
	return n, "", tail == after
}

// isOriginalNaming tells a Salesforce checkpoint by its ViT names.
func isOriginalNaming(names []string) bool {
	for _, n := range names {
		if strings.HasPrefix(n, "visual_encoder.") {
			return true
		}
	}
	return false
}

// ignoredKey says why a checkpoint entry that is not a parameter may be skipped, or "".
// These are training state and buffers BLIP checkpoints carry: momentum copies, feature
// queues, position-id buffers, BERT poolers BLIP never uses.
func ignoredKey(name string) string {
	switch {
	case strings.HasSuffix(name, "position_ids"):
		return "position-id buffer"
	case strings.Contains(name, "_m.") || strings.HasSuffix(name, "_m"):
		return "momentum model (training state)"
	case name == "image_queue" || name == "text_queue" || name == "idx_queue" || name == "queue_ptr" || name == "ptr_queue":
		return "ITC queue (training state)"
	case strings.Contains(name, ".pooler."):
		return "BERT pooler (unused by BLIP)"
	}
	return ""
}
