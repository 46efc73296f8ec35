"""BLIP forward passes in plain torch, written from blip-spec.md (§2, §3, §5).

Functional style over an HF-named state dict `sd` (float32, CPU). No dropout (eval).
"""
import math

import torch
import torch.nn.functional as F

MASK_VALUE = -10000.0


def linear(x, sd, prefix):
    return F.linear(x, sd[prefix + ".weight"], sd[prefix + ".bias"])


def layer_norm(x, sd, prefix, eps):
    return F.layer_norm(x, (x.shape[-1],), sd[prefix + ".weight"], sd[prefix + ".bias"], eps)


def gelu(x):
    return F.gelu(x)  # exact erf form: x * 0.5 * (1 + erf(x / sqrt(2)))


def split_heads(x, heads):
    B, L, D = x.shape
    return x.view(B, L, heads, D // heads).transpose(1, 2)  # [B, h, L, d]


def merge_heads(x):
    B, h, L, d = x.shape
    return x.transpose(1, 2).reshape(B, L, h * d)


def attend(q, k, v, additive_mask=None):
    """Scaled dot-product attention on [B, h, L, d] tensors; mask is added to the scores."""
    scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    if additive_mask is not None:
        scores = scores + additive_mask
    return torch.matmul(scores.softmax(dim=-1), v)


# ---------------------------------------------------------------- vision (§2)

def interpolate_pos_embed(pos, new_grid):
    """[1, 1+N, D] -> [1, 1+new_grid^2, D]: CLS row kept, grid resized bicubically."""
    n = pos.shape[1] - 1
    g = int(round(math.sqrt(n)))
    if g * g != n:
        raise ValueError(f"position embedding has {n} patch rows, not a square grid")
    if g == new_grid:
        return pos
    D = pos.shape[2]
    grid = pos[:, 1:].reshape(1, g, g, D).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(new_grid, new_grid), mode="bicubic", align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, new_grid * new_grid, D)
    return torch.cat([pos[:, :1], grid], dim=1)


def vision_forward(sd, cfg, pixel_values, collect=None):
    """pixel_values [B,3,S,S] -> post-LN last hidden state [B, 1+N, D]."""
    v = cfg["vision_config"]
    heads, eps, P = v["num_attention_heads"], v["layer_norm_eps"], v["patch_size"]
    x = F.conv2d(pixel_values, sd["vision_model.embeddings.patch_embedding.weight"],
                 sd["vision_model.embeddings.patch_embedding.bias"], stride=P)
    B, D, gh, gw = x.shape
    if gh != gw:
        raise ValueError("only square images are supported")
    x = x.flatten(2).transpose(1, 2)  # row-major over (y, x)
    cls = sd["vision_model.embeddings.class_embedding"].expand(B, 1, D)
    pos = interpolate_pos_embed(sd["vision_model.embeddings.position_embedding"], gh)
    x = torch.cat([cls, x], dim=1) + pos
    if collect is not None:
        collect["embeddings"] = x
    for i in range(v["num_hidden_layers"]):
        p = f"vision_model.encoder.layers.{i}."
        h = layer_norm(x, sd, p + "layer_norm1", eps)
        qkv = linear(h, sd, p + "self_attn.qkv")
        q, k, vv = qkv.split(D, dim=-1)  # output features are [q | k | v]
        a = attend(split_heads(q, heads), split_heads(k, heads), split_heads(vv, heads))
        x = x + linear(merge_heads(a), sd, p + "self_attn.projection")
        h = layer_norm(x, sd, p + "layer_norm2", eps)
        x = x + linear(gelu(linear(h, sd, p + "mlp.fc1")), sd, p + "mlp.fc2")
        if collect is not None:
            collect[f"layer.{i}"] = x
    return layer_norm(x, sd, "vision_model.post_layernorm", eps)


# ---------------------------------------------------------------- text (§3)

def padding_mask(attention_mask):
    """[B, L] of {0,1} -> additive [B, 1, 1, L]."""
    return (1.0 - attention_mask[:, None, None, :].float()) * MASK_VALUE


def causal_mask(attention_mask):
    """m[i, j] = [j <= i] * pad[j] -> additive [B, 1, L, L]."""
    L = attention_mask.shape[1]
    causal = torch.tril(torch.ones(L, L))
    m = causal[None, None] * attention_mask[:, None, None, :].float()
    return (1.0 - m) * MASK_VALUE


def mha(sd, p, q_in, kv_in, heads, additive_mask):
    q = split_heads(linear(q_in, sd, p + ".self.query"), heads)
    k = split_heads(linear(kv_in, sd, p + ".self.key"), heads)
    v = split_heads(linear(kv_in, sd, p + ".self.value"), heads)
    return linear(merge_heads(attend(q, k, v, additive_mask)), sd, p + ".output.dense")


def text_forward(sd, cfg, prefix, input_ids, additive_mask, image_embeds=None, collect=None):
    """MED text transformer. prefix: 'text_encoder.' or 'text_decoder.bert.'.
    image_embeds None = unimodal (no cross-attention); otherwise every layer cross-attends
    to all image tokens (image mask all ones, so no additive mask)."""
    t = cfg["text_config"]
    heads, eps = t["num_attention_heads"], t["layer_norm_eps"]
    L = input_ids.shape[1]
    # padding_idx: the [PAD] row gets no gradient from the lookup (nn.Embedding, spec §3 "pad 0")
    x = F.embedding(input_ids, sd[prefix + "embeddings.word_embeddings.weight"],
                    padding_idx=t["pad_token_id"])
    x = x + sd[prefix + "embeddings.position_embeddings.weight"][:L][None]
    x = layer_norm(x, sd, prefix + "embeddings.LayerNorm", eps)
    if collect is not None:
        collect["embeddings"] = x
    for i in range(t["num_hidden_layers"]):
        p = f"{prefix}encoder.layer.{i}."
        x = layer_norm(x + mha(sd, p + "attention", x, x, heads, additive_mask),
                       sd, p + "attention.output.LayerNorm", eps)
        if image_embeds is not None:
            x = layer_norm(x + mha(sd, p + "crossattention", x, image_embeds, heads, None),
                           sd, p + "crossattention.output.LayerNorm", eps)
        h = gelu(linear(x, sd, p + "intermediate.dense"))
        x = layer_norm(x + linear(h, sd, p + "output.dense"), sd, p + "output.LayerNorm", eps)
        if collect is not None:
            collect[f"layer.{i}"] = x
    return x


def lm_logits(sd, cfg, hidden):
    """Tied LM head: dense -> GELU -> LN -> hidden . E^T + b (E = decoder word embeddings)."""
    c = "text_decoder.cls.predictions."
    h = gelu(linear(hidden, sd, c + "transform.dense"))
    h = layer_norm(h, sd, c + "transform.LayerNorm", cfg["text_config"]["layer_norm_eps"])
    E = sd["text_decoder.bert.embeddings.word_embeddings.weight"]
    return F.linear(h, E, sd[c + "bias"])


def with_first_token(input_ids, token):
    ids = input_ids.clone()
    ids[:, 0] = token
    return ids


def unimodal(sd, cfg, input_ids, attention_mask):
    return text_forward(sd, cfg, "text_encoder.", input_ids, padding_mask(attention_mask))


def normalize(x):
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def itc_features(sd, image_embeds, text_hidden):
    img = normalize(linear(image_embeds[:, 0], sd, "vision_proj"))
    txt = normalize(linear(text_hidden[:, 0], sd, "text_proj"))
    return img, txt


def itm_logits(sd, cfg, input_ids, attention_mask, image_embeds, collect=None):
    ids = with_first_token(input_ids, cfg["text_config"]["enc_token_id"])
    h = text_forward(sd, cfg, "text_encoder.", ids, padding_mask(attention_mask), image_embeds,
                     collect)
    return linear(h[:, 0], sd, "itm_head"), h


def itm_logits_cls(sd, cfg, input_ids, attention_mask, image_embeds):
    """The ITM head as HF transformers' BlipForImageTextRetrieval computes it: the
    image-grounded encoder reads the ids unchanged, so the tokenizer's [CLS] stays first
    (BLIP itself puts [ENC] there: itm_logits)."""
    h = text_forward(sd, cfg, "text_encoder.", input_ids, padding_mask(attention_mask), image_embeds)
    return linear(h[:, 0], sd, "itm_head")


def decoder_logits(sd, cfg, input_ids, attention_mask, image_embeds, set_bos=True):
    ids = input_ids
    if set_bos:
        ids = with_first_token(input_ids, cfg["text_config"]["bos_token_id"])
    h = text_forward(sd, cfg, "text_decoder.bert.", ids, causal_mask(attention_mask),
                     image_embeds)
    return lm_logits(sd, cfg, h), h
