"""Presets, HF config.json, parameter names and the deterministic weight generator.

Every parameter value is a pure function of (HF key name, element index, seed), so the Go
side can regenerate the same checkpoint without any file. See README.md for the rule.
"""
from collections import OrderedDict

import numpy as np
import torch

MASK64 = (1 << 64) - 1
FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
GOLDEN = 0x9E3779B97F4A7C15
MIX1 = 0xBF58476D1CE4E5B9
MIX2 = 0x94D049BB133111EB

PRESETS = {
    "tiny": dict(
        seed=1,
        vision=dict(hidden_size=48, num_hidden_layers=2, num_attention_heads=4,
                    intermediate_size=96, image_size=64, patch_size=16, layer_norm_eps=1e-5),
        text=dict(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=64, max_position_embeddings=64, layer_norm_eps=1e-12,
                  encoder_hidden_size=48, pad_token_id=0, bos_token_id=118, sep_token_id=3,
                  cls_token_id=2, enc_token_id=119),
        image_text_hidden_size=16,
    ),
    "base": dict(
        seed=2,
        vision=dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                    intermediate_size=3072, image_size=384, patch_size=16, layer_norm_eps=1e-5),
        text=dict(vocab_size=30524, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                  intermediate_size=3072, max_position_embeddings=512, layer_norm_eps=1e-12,
                  encoder_hidden_size=768, pad_token_id=0, bos_token_id=30522, sep_token_id=102,
                  cls_token_id=101, enc_token_id=30523),
        image_text_hidden_size=256,
    ),
}


def hf_config(preset):
    """The config.json dict (HF BlipConfig layout, every field written out)."""
    p = PRESETS[preset]
    v, t = p["vision"], p["text"]
    return OrderedDict([
        ("architectures", ["BlipForConditionalGeneration", "BlipForImageTextRetrieval"]),
        ("model_type", "blip"),
        ("image_text_hidden_size", p["image_text_hidden_size"]),
        # BlipModel-only fields, present in hub configs; a loader must not use them.
        ("projection_dim", 512),
        ("logit_scale_init_value", 2.6592),
        ("initializer_factor", 1.0),
        ("initializer_range", 0.02),
        ("torch_dtype", "float32"),
        ("text_config", OrderedDict([
            ("model_type", "blip_text_model"),
            ("vocab_size", t["vocab_size"]),
            ("hidden_size", t["hidden_size"]),
            ("encoder_hidden_size", t["encoder_hidden_size"]),
            ("intermediate_size", t["intermediate_size"]),
            ("projection_dim", t["hidden_size"]),
            ("num_hidden_layers", t["num_hidden_layers"]),
            ("num_attention_heads", t["num_attention_heads"]),
            ("max_position_embeddings", t["max_position_embeddings"]),
            ("hidden_act", "gelu"),
            ("layer_norm_eps", t["layer_norm_eps"]),
            ("hidden_dropout_prob", 0.0),
            ("attention_probs_dropout_prob", 0.0),
            ("initializer_range", 0.02),
            ("pad_token_id", t["pad_token_id"]),
            ("bos_token_id", t["bos_token_id"]),
            # HF default, unused by BLIP: generation stops on sep_token_id ([SEP]).
            ("eos_token_id", 2),
            ("sep_token_id", t["sep_token_id"]),
            # capfilt extension keys (HF configs lack them; HF-only loaders use bos+1 for [ENC]).
            ("cls_token_id", t["cls_token_id"]),
            ("enc_token_id", t["enc_token_id"]),
            ("is_decoder", True),
            ("use_cache", True),
            ("label_smoothing", 0.0),
        ])),
        ("vision_config", OrderedDict([
            ("model_type", "blip_vision_model"),
            ("hidden_size", v["hidden_size"]),
            ("intermediate_size", v["intermediate_size"]),
            ("projection_dim", 512),
            ("num_hidden_layers", v["num_hidden_layers"]),
            ("num_attention_heads", v["num_attention_heads"]),
            ("num_channels", 3),
            ("image_size", v["image_size"]),
            ("patch_size", v["patch_size"]),
            ("hidden_act", "gelu"),
            ("layer_norm_eps", v["layer_norm_eps"]),
            ("attention_dropout", 0.0),
            ("initializer_range", 1e-10),
        ])),
    ])


def param_shapes(cfg):
    """OrderedDict HF name -> shape for a full checkpoint (both towers and all heads).

    position_ids buffers and the tied LM-head output tensors are not listed here."""
    v, t = cfg["vision_config"], cfg["text_config"]
    D, M, P = v["hidden_size"], v["intermediate_size"], v["patch_size"]
    N = (v["image_size"] // P) ** 2
    H, I, V = t["hidden_size"], t["intermediate_size"], t["vocab_size"]
    E, Dv = cfg["image_text_hidden_size"], t["encoder_hidden_size"]
    s = OrderedDict()
    s["vision_model.embeddings.class_embedding"] = [1, 1, D]
    s["vision_model.embeddings.position_embedding"] = [1, 1 + N, D]
    s["vision_model.embeddings.patch_embedding.weight"] = [D, 3, P, P]
    s["vision_model.embeddings.patch_embedding.bias"] = [D]
    for i in range(v["num_hidden_layers"]):
        p = f"vision_model.encoder.layers.{i}."
        for ln in ("layer_norm1", "layer_norm2"):
            s[p + ln + ".weight"] = [D]
            s[p + ln + ".bias"] = [D]
        s[p + "self_attn.qkv.weight"] = [3 * D, D]
        s[p + "self_attn.qkv.bias"] = [3 * D]
        s[p + "self_attn.projection.weight"] = [D, D]
        s[p + "self_attn.projection.bias"] = [D]
        s[p + "mlp.fc1.weight"] = [M, D]
        s[p + "mlp.fc1.bias"] = [M]
        s[p + "mlp.fc2.weight"] = [D, M]
        s[p + "mlp.fc2.bias"] = [D]
    s["vision_model.post_layernorm.weight"] = [D]
    s["vision_model.post_layernorm.bias"] = [D]

    def bert(prefix):
        s[prefix + "embeddings.word_embeddings.weight"] = [V, H]
        s[prefix + "embeddings.position_embeddings.weight"] = [t["max_position_embeddings"], H]
        s[prefix + "embeddings.LayerNorm.weight"] = [H]
        s[prefix + "embeddings.LayerNorm.bias"] = [H]
        for i in range(t["num_hidden_layers"]):
            p = f"{prefix}encoder.layer.{i}."
            for att, kv in (("attention", H), ("crossattention", Dv)):
                s[p + att + ".self.query.weight"] = [H, H]
                s[p + att + ".self.query.bias"] = [H]
                s[p + att + ".self.key.weight"] = [H, kv]
                s[p + att + ".self.key.bias"] = [H]
                s[p + att + ".self.value.weight"] = [H, kv]
                s[p + att + ".self.value.bias"] = [H]
                s[p + att + ".output.dense.weight"] = [H, H]
                s[p + att + ".output.dense.bias"] = [H]
                s[p + att + ".output.LayerNorm.weight"] = [H]
                s[p + att + ".output.LayerNorm.bias"] = [H]
            s[p + "intermediate.dense.weight"] = [I, H]
            s[p + "intermediate.dense.bias"] = [I]
            s[p + "output.dense.weight"] = [H, I]
            s[p + "output.dense.bias"] = [H]
            s[p + "output.LayerNorm.weight"] = [H]
            s[p + "output.LayerNorm.bias"] = [H]

    bert("text_encoder.")
    bert("text_decoder.bert.")
    c = "text_decoder.cls.predictions."
    s[c + "bias"] = [V]
    s[c + "transform.dense.weight"] = [H, H]
    s[c + "transform.dense.bias"] = [H]
    s[c + "transform.LayerNorm.weight"] = [H]
    s[c + "transform.LayerNorm.bias"] = [H]
    s["vision_proj.weight"] = [E, v["hidden_size"]]
    s["vision_proj.bias"] = [E]
    s["text_proj.weight"] = [E, H]
    s["text_proj.bias"] = [E]
    s["itm_head.weight"] = [2, H]
    s["itm_head.bias"] = [2]
    s["temp"] = []
    return s


def fnv1a64(name):
    h = FNV_OFFSET
    for b in name.encode("utf-8"):
        h ^= b
        h = (h * FNV_PRIME) & MASK64
    return h


def uniform_pm1(name, n, seed):
    """r_i in [-1, 1) (float64) for i = 0..n-1: splitmix64-style hash of (name, seed, i)."""
    base = np.uint64(fnv1a64(name) ^ (seed & MASK64))
    with np.errstate(over="ignore"):
        z = base + np.arange(1, n + 1, dtype=np.uint64) * np.uint64(GOLDEN)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(MIX1)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(MIX2)
        z = z ^ (z >> np.uint64(31))
    u = (z >> np.uint64(40)).astype(np.float64) / float(1 << 24)
    return 2.0 * u - 1.0


def value_kind(name):
    """Which scale rule applies to a parameter name (see README)."""
    parts = name.split(".")
    last = parts[-1]
    prev = parts[-2].lower() if len(parts) > 1 else ""
    if last == "temp":
        return "temp"
    if last == "weight" and "norm" in prev:
        return "norm_weight"
    if last == "bias":
        return "bias"
    return "weight"


def random_param(name, shape, seed):
    n = int(np.prod(shape)) if shape else 1
    kind = value_kind(name)
    if kind == "temp":
        return torch.tensor(0.07, dtype=torch.float32)
    r = uniform_pm1(name, n, seed)
    if kind == "norm_weight":
        v = 1.0 + 0.1 * r
    elif kind == "bias":
        v = 0.1 * r
    else:
        v = 0.05 * r
    return torch.from_numpy(v.astype(np.float32).reshape(shape))


def random_state_dict(cfg, seed, lm_head=True):
    """Full HF-named state dict. The LM-head output tensors are the SAME tensor objects as
    the decoder word embeddings / cls.predictions.bias (tied), as in torch checkpoints."""
    sd = OrderedDict()
    for name, shape in param_shapes(cfg).items():
        sd[name] = random_param(name, shape, seed)
    maxpos = cfg["text_config"]["max_position_embeddings"]
    for prefix in ("text_encoder.", "text_decoder.bert."):
        sd[prefix + "embeddings.position_ids"] = torch.arange(maxpos, dtype=torch.int64)[None]
    if lm_head:
        c = "text_decoder.cls.predictions."
        sd[c + "decoder.weight"] = sd["text_decoder.bert.embeddings.word_embeddings.weight"]
        sd[c + "decoder.bias"] = sd[c + "bias"]
    return sd


_VISION_RENAMES = [  # (HF fragment, original fragment), applied to vision_model.* names
    ("vision_model.embeddings.class_embedding", "visual_encoder.cls_token"),
    ("vision_model.embeddings.position_embedding", "visual_encoder.pos_embed"),
    ("vision_model.embeddings.patch_embedding.", "visual_encoder.patch_embed.proj."),
    ("vision_model.encoder.layers.", "visual_encoder.blocks."),
    ("vision_model.post_layernorm.", "visual_encoder.norm."),
    (".layer_norm1.", ".norm1."),
    (".layer_norm2.", ".norm2."),
    (".self_attn.qkv.", ".attn.qkv."),
    (".self_attn.projection.", ".attn.proj."),
]


def hf_to_original(name):
    if not name.startswith("vision_model."):
        return name  # text, projections, heads and temp keep their names (spec §11)
    for a, b in _VISION_RENAMES:
        name = name.replace(a, b)
    return name


def original_to_hf(name):
    if not name.startswith("visual_encoder."):
        return name
    for a, b in _VISION_RENAMES:
        name = name.replace(b, a)
    return name
