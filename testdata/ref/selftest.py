"""Checks of the reference against hand-computed cases and an explicit-loop re-derivation.

Run: /usr/bin/python3 blip_ref.py selftest
"""
import math
import os
import tempfile

import numpy as np
import torch

import checkpoint
import generate
import model
import st
import weights

FAILS = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        FAILS.append(what)


def close(a, b, tol):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return a.shape == b.shape and np.max(np.abs(a - b), initial=0.0) <= tol


# ------------------------------------------------------------------ PRNG

def test_prng():
    check(weights.fnv1a64("") == 0xCBF29CE484222325, "fnv1a64('') is the offset basis")
    check(weights.fnv1a64("a") == 0xAF63DC4C8601EC8C, "fnv1a64('a') = 0xaf63dc4c8601ec8c")

    def scalar(name, i, seed):  # one element, plain Python integers
        m = (1 << 64) - 1
        z = ((weights.fnv1a64(name) ^ seed) + (i + 1) * 0x9E3779B97F4A7C15) & m
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
        z ^= z >> 31
        return z

    # base 0 reproduces splitmix64(seed 0): first output 0xe220a8397b1dcdaf
    s0 = weights.fnv1a64("x")
    check(scalar("x", 0, s0) == 0xE220A8397B1DCDAF, "splitmix64 seed-0 first output")
    r = weights.uniform_pm1("x", 3, s0)
    want = [2.0 * (scalar("x", i, s0) >> 40) / 2**24 - 1.0 for i in range(3)]
    check(list(r) == want, "vectorised generator equals the scalar one")
    name = "text_encoder.encoder.layer.1.output.dense.weight"
    r = weights.uniform_pm1(name, 1000, 1)
    want = [2.0 * (scalar(name, i, 1) >> 40) / 2**24 - 1.0 for i in (0, 1, 999)]
    check([r[0], r[1], r[999]] == want, "vectorised generator equals the scalar one (seed 1)")
    kinds = {
        "vision_model.encoder.layers.0.layer_norm1.weight": "norm_weight",
        "vision_model.post_layernorm.bias": "bias",
        "text_encoder.embeddings.LayerNorm.weight": "norm_weight",
        "text_decoder.cls.predictions.transform.LayerNorm.weight": "norm_weight",
        "text_decoder.cls.predictions.bias": "bias",
        "vision_model.embeddings.class_embedding": "weight",
        "vision_model.embeddings.position_embedding": "weight",
        "itm_head.weight": "weight",
        "temp": "temp",
    }
    check(all(weights.value_kind(k) == v for k, v in kinds.items()), "value rule per name")
    cfg = weights.hf_config("tiny")
    sd = weights.random_state_dict(cfg, 1)
    ln = sd["text_encoder.embeddings.LayerNorm.weight"].double()
    check(bool(((ln >= 0.9) & (ln <= 1.1)).all()), "LayerNorm weights in [0.9, 1.1]")
    check(float(sd["temp"]) == np.float32(0.07) and sd["temp"].dim() == 0, "temp is 0.07, shape []")
    check(sd["text_decoder.cls.predictions.decoder.weight"] is
          sd["text_decoder.bert.embeddings.word_embeddings.weight"], "LM head weight tied")
    check(torch.equal(sd["text_encoder.embeddings.position_ids"], torch.arange(64)[None]),
          "position_ids buffer 0..max_pos-1")
    v = sd["text_decoder.cls.predictions.transform.dense.weight"]
    want = (0.05 * weights.uniform_pm1("text_decoder.cls.predictions.transform.dense.weight",
                                       v.numel(), 1)).astype(np.float32).reshape(v.shape)
    check(np.array_equal(v.numpy(), want), "weight = float32(0.05*r), row-major")
    # parameter counts against blip-spec.md §1
    shapes = weights.param_shapes(weights.hf_config("base"))
    count = lambda pre: sum(int(np.prod(s)) for k, s in shapes.items() if k.startswith(pre))
    check(round(count("vision_model.") / 1e6, 1) == 86.1, "ViT-B@384 has 86.1 M parameters")
    check(round(count("text_encoder.") / 1e6, 1) == 137.3, "text transformer with CA: 137.3 M")


# ------------------------------------------------------------------ safetensors, checkpoints

def test_formats():
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "t.safetensors")
        ts = {"a": torch.arange(6, dtype=torch.float32).view(2, 3), "s": torch.tensor(1.5),
              "i": torch.tensor([[1, -2]], dtype=torch.int64)}
        st.save(p, ts, {"k": "v"})
        got, meta = st.load(p)
        check(all(torch.equal(got[k], ts[k]) for k in ts) and got["s"].dim() == 0 and meta == {
            "k": "v"}, "safetensors round trip (0-d, int64, metadata)")
        with open(p, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
        check(n % 8 == 0, "safetensors header padded to 8 bytes")
        dirs = {}
        for tag, kw in {"hf": {}, "orig": {"fmt": "original"}, "bin": {"binary": True},
                        "nolm": {"lm_head": False}}.items():
            dirs[tag] = os.path.join(d, tag)
            checkpoint.write_model("tiny", dirs[tag], **kw)
        _, ref = checkpoint.read_model(dirs["hf"])
        same = all(all(torch.equal(ref[k], checkpoint.read_model(dirs[t])[1][k]) for k in ref)
                   for t in ("orig", "bin", "nolm"))
        check(same, "hf / original .pth / .bin / no-LM-head checkpoints load to equal weights")
        orig = torch.load(os.path.join(dirs["orig"], "model.pth"))["model"]
        want = {"visual_encoder.cls_token", "visual_encoder.pos_embed",
                "visual_encoder.patch_embed.proj.weight", "visual_encoder.blocks.1.norm2.bias",
                "visual_encoder.blocks.0.attn.qkv.weight", "visual_encoder.blocks.0.attn.proj.bias",
                "visual_encoder.blocks.0.mlp.fc1.weight", "visual_encoder.norm.weight",
                "text_encoder.encoder.layer.0.crossattention.self.key.weight",
                "text_decoder.cls.predictions.decoder.weight", "temp", "queue_ptr"}
        check(want <= set(orig), "original checkpoint uses the orig names (spec §11)")
        hf, _ = st.load(os.path.join(dirs["hf"], "model.safetensors"))
        nolm, _ = st.load(os.path.join(dirs["nolm"], "model.safetensors"))
        check(set(hf) - set(nolm) == set(checkpoint.LM_HEAD), "lm-head absent drops decoder.*")


# ------------------------------------------------------------------ attention and masks

def test_attention():
    q = torch.tensor([[[[1.0, 0.0]]]])
    k = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    v = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    w0 = math.exp(1 / math.sqrt(2)) / (math.exp(1 / math.sqrt(2)) + 1)
    want = [w0 * 1 + (1 - w0) * 3, w0 * 2 + (1 - w0) * 4]
    check(close(model.attend(q, k, v)[0, 0, 0], want, 1e-6), "attention on a 2-key example")
    mask = model.padding_mask(torch.tensor([[1, 0]]))
    check(close(model.attend(q, k, v, mask)[0, 0, 0], [1, 2], 1e-6), "padding mask -10000")
    cm = model.causal_mask(torch.tensor([[1, 1, 0]]))[0, 0]
    want = -10000.0 * np.array([[0, 1, 1], [0, 0, 1], [0, 0, 1]], dtype=np.float64)
    check(close(cm, want, 0), "causal x padding mask")


def micro_config():
    cfg = weights.hf_config("tiny")
    cfg["vision_config"].update(hidden_size=6, num_hidden_layers=1, num_attention_heads=2,
                                intermediate_size=8, image_size=4, patch_size=2)
    cfg["text_config"].update(vocab_size=9, hidden_size=4, num_hidden_layers=1,
                              num_attention_heads=2, intermediate_size=6,
                              max_position_embeddings=8, encoder_hidden_size=6,
                              bos_token_id=7, enc_token_id=8, cls_token_id=2, sep_token_id=3)
    cfg["image_text_hidden_size"] = 3
    return cfg


class Loops:
    """The same network written element by element in float64 (spec §2, §3, §5)."""

    def __init__(self, sd, cfg):
        self.w = {k: v.double().numpy() for k, v in sd.items()}
        self.cfg = cfg

    def lin(self, x, p):
        W, b = self.w[p + ".weight"], self.w[p + ".bias"]
        return [[sum(W[o, i] * row[i] for i in range(len(row))) + b[o] for o in range(W.shape[0])]
                for row in x]

    def ln(self, x, p, eps):
        out = []
        for row in x:
            m = sum(row) / len(row)
            var = sum((a - m) ** 2 for a in row) / len(row)
            out.append([(a - m) / math.sqrt(var + eps) * self.w[p + ".weight"][i] +
                        self.w[p + ".bias"][i] for i, a in enumerate(row)])
        return out

    @staticmethod
    def gelu(x):
        return [[0.5 * a * (1 + math.erf(a / math.sqrt(2))) for a in row] for row in x]

    @staticmethod
    def add(x, y):
        return [[a + b for a, b in zip(r, s)] for r, s in zip(x, y)]

    @staticmethod
    def mha(q, k, v, heads, allowed):
        d = len(q[0]) // heads
        out = [[0.0] * len(q[0]) for _ in q]
        for h in range(heads):
            sl = slice(h * d, (h + 1) * d)
            for i in range(len(q)):
                s = [sum(a * b for a, b in zip(q[i][sl], k[j][sl])) / math.sqrt(d) +
                     (0.0 if allowed(i, j) else -10000.0) for j in range(len(k))]
                mx = max(s)
                e = [math.exp(a - mx) for a in s]
                for j in range(len(k)):
                    for c in range(d):
                        out[i][h * d + c] += e[j] / sum(e) * v[j][h * d + c]
        return out

    def vision(self, pix):
        v = self.cfg["vision_config"]
        D, P, eps, heads = v["hidden_size"], v["patch_size"], v["layer_norm_eps"], v["num_attention_heads"]
        g = v["image_size"] // P
        W, b = self.w["vision_model.embeddings.patch_embedding.weight"], self.w[
            "vision_model.embeddings.patch_embedding.bias"]
        x = [list(self.w["vision_model.embeddings.class_embedding"][0, 0])]
        for y in range(g):
            for xx in range(g):
                x.append([b[o] + sum(W[o, c, i, j] * pix[c, y * P + i, xx * P + j]
                                     for c in range(3) for i in range(P) for j in range(P))
                          for o in range(D)])
        x = self.add(x, self.w["vision_model.embeddings.position_embedding"][0].tolist())
        for n in range(v["num_hidden_layers"]):
            p = f"vision_model.encoder.layers.{n}."
            qkv = self.lin(self.ln(x, p + "layer_norm1", eps), p + "self_attn.qkv")
            q = [r[:D] for r in qkv]
            k = [r[D:2 * D] for r in qkv]
            vv = [r[2 * D:] for r in qkv]
            x = self.add(x, self.lin(self.mha(q, k, vv, heads, lambda i, j: True),
                                     p + "self_attn.projection"))
            h = self.gelu(self.lin(self.ln(x, p + "layer_norm2", eps), p + "mlp.fc1"))
            x = self.add(x, self.lin(h, p + "mlp.fc2"))
        return self.ln(x, "vision_model.post_layernorm", eps)

    def text(self, prefix, ids, pad, causal, image):
        t = self.cfg["text_config"]
        eps, heads = t["layer_norm_eps"], t["num_attention_heads"]
        E = self.w[prefix + "embeddings.word_embeddings.weight"]
        Pm = self.w[prefix + "embeddings.position_embeddings.weight"]
        x = self.ln([list(E[i] + Pm[n]) for n, i in enumerate(ids)], prefix + "embeddings.LayerNorm", eps)
        allowed = (lambda i, j: pad[j] and j <= i) if causal else (lambda i, j: bool(pad[j]))
        for n in range(t["num_hidden_layers"]):
            p = f"{prefix}encoder.layer.{n}."
            a = p + "attention"
            o = self.mha(self.lin(x, a + ".self.query"), self.lin(x, a + ".self.key"),
                         self.lin(x, a + ".self.value"), heads, allowed)
            x = self.ln(self.add(x, self.lin(o, a + ".output.dense")), a + ".output.LayerNorm", eps)
            if image is not None:
                c = p + "crossattention"
                o = self.mha(self.lin(x, c + ".self.query"), self.lin(image, c + ".self.key"),
                             self.lin(image, c + ".self.value"), heads, lambda i, j: True)
                x = self.ln(self.add(x, self.lin(o, c + ".output.dense")),
                            c + ".output.LayerNorm", eps)
            h = self.gelu(self.lin(x, p + "intermediate.dense"))
            x = self.ln(self.add(x, self.lin(h, p + "output.dense")), p + "output.LayerNorm", eps)
        return x

    def lm(self, x):
        c = "text_decoder.cls.predictions."
        h = self.ln(self.gelu(self.lin(x, c + "transform.dense")), c + "transform.LayerNorm",
                    self.cfg["text_config"]["layer_norm_eps"])
        E, b = self.w["text_decoder.bert.embeddings.word_embeddings.weight"], self.w[c + "bias"]
        return [[sum(r[i] * E[vv, i] for i in range(len(r))) + b[vv] for vv in range(E.shape[0])]
                for r in h]


def test_network_against_loops():
    cfg = micro_config()
    sd = dict(weights.random_state_dict(cfg, 7))
    g = torch.Generator().manual_seed(3)
    pix = torch.randn(2, 3, 4, 4, generator=g)
    ids = torch.tensor([[2, 5, 6, 3], [2, 4, 3, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    ref = Loops(sd, cfg)
    img = model.vision_forward(sd, cfg, pix)
    img_l = [ref.vision(pix[b].double().numpy()) for b in range(2)]
    check(close(img, img_l, 1e-5), "ViT (pre-LN, [q|k|v] heads, post-LN) vs loops")
    uni = model.unimodal(sd, cfg, ids, mask)
    uni_l = [ref.text("text_encoder.", ids[b].tolist(), mask[b].tolist(), False, None) for b in range(2)]
    check(close(uni, uni_l, 1e-5), "unimodal encoder (padding mask, no CA) vs loops")
    itm, _ = model.itm_logits(sd, cfg, ids, mask, img)
    enc_ids = ids.clone()
    enc_ids[:, 0] = 8
    itm_h = [ref.text("text_encoder.", enc_ids[b].tolist(), mask[b].tolist(), False, img_l[b])
             for b in range(2)]
    itm_l = [ref.lin([h[0]], "itm_head")[0] for h in itm_h]
    check(close(itm, itm_l, 1e-5), "ITM head on [ENC] position with CA to all image tokens")
    itm_cls = model.itm_logits_cls(sd, cfg, ids, mask, img)
    cls_h = [ref.text("text_encoder.", ids[b].tolist(), mask[b].tolist(), False, img_l[b]) for b in range(2)]
    cls_l = [ref.lin([h[0]], "itm_head")[0] for h in cls_h]
    check(close(itm_cls, cls_l, 1e-5) and not close(itm_cls, itm_l, 1e-3),
          "ITM head with [CLS] left first (HF's retrieval model) vs loops, and unlike [ENC]'s")
    dec, _ = model.decoder_logits(sd, cfg, ids, mask, img)
    dec_ids = ids.clone()
    dec_ids[:, 0] = 7
    dec_l = [ref.lm(ref.text("text_decoder.bert.", dec_ids[b].tolist(), mask[b].tolist(), True,
                             img_l[b])) for b in range(2)]
    check(close(dec, dec_l, 1e-5), "decoder (causal x padding, CA, tied LM head) vs loops")
    fi, ft = model.itc_features(sd, img, uni)
    pi = [ref.lin([img_l[b][0]], "vision_proj")[0] for b in range(2)]
    pt = [ref.lin([uni_l[b][0]], "text_proj")[0] for b in range(2)]
    unit = lambda v: [a / math.sqrt(sum(c * c for c in v)) for a in v]
    check(close(fi, [unit(v) for v in pi], 1e-6) and close(ft, [unit(v) for v in pt], 1e-6),
          "ITC features = normalize(proj(hidden[:, 0]))")
    # a causal decoder must not see later tokens: change the last token, earlier logits stay
    ids2 = ids.clone()
    ids2[0, 3] = 4
    dec2, _ = model.decoder_logits(sd, cfg, ids2, mask, img)
    check(torch.equal(dec2[0, :3], dec[0, :3]) and not torch.equal(dec2[0, 3], dec[0, 3]),
          "decoder positions do not depend on later tokens")


# ------------------------------------------------------------------ position embedding resize

def cubic(t, A=-0.75):
    t = abs(t)
    if t <= 1:
        return (A + 2) * t ** 3 - (A + 3) * t ** 2 + 1
    if t < 2:
        return A * t ** 3 - 5 * A * t ** 2 + 8 * A * t - 4 * A
    return 0.0


def resize_1d_weights(n_in, n_out):
    """Matrix [n_out, n_in] of torch bicubic (align_corners=False) from the spec formula."""
    W = np.zeros((n_out, n_in))
    for d in range(n_out):
        src = (d + 0.5) * n_in / n_out - 0.5
        f = math.floor(src)
        t = src - f
        for off, w in zip((-1, 0, 1, 2), (cubic(1 + t), cubic(t), cubic(1 - t), cubic(2 - t))):
            W[d, min(max(f + off, 0), n_in - 1)] += w
    return W


def test_pos_resize():
    grid = np.array([[1.0, 2.0], [3.0, 5.0]])
    W = resize_1d_weights(2, 3)
    # src for 2->3: -1/6, 1/2, 7/6
    check(close(W.sum(1), [1, 1, 1], 1e-12), "cubic weights sum to one")
    want = W @ grid @ W.T  # separable: rows then columns
    pos = torch.zeros(1, 5, 2)
    pos[0, 0] = torch.tensor([7.0, -7.0])
    pos[0, 1:, 0] = torch.tensor(grid.flatten(), dtype=torch.float32)
    pos[0, 1:, 1] = -torch.tensor(grid.flatten(), dtype=torch.float32)
    out = model.interpolate_pos_embed(pos, 3)
    check(out.shape == (1, 10, 2) and torch.equal(out[0, 0], pos[0, 0]), "CLS row kept")
    check(close(out[0, 1:, 0].reshape(3, 3), want, 1e-6) and
          close(out[0, 1:, 1].reshape(3, 3), -want, 1e-6), "2x2 -> 3x3 bicubic = hand formula")
    # centre of an upsampled 2x2 grid (src = 0.5 on both axes): taps W(1.5), W(.5), W(.5), W(1.5)
    # with clamped indices -> weights (w1.5 + w.5) on each side -> plain average of the 4 values
    check(abs(float(out[0, 1 + 4, 0]) - 2.75) < 1e-6, "centre value is the mean of the 2x2 grid")
    g4 = np.arange(16, dtype=np.float64).reshape(4, 4) ** 1.5
    W46 = resize_1d_weights(4, 6)
    pos = torch.zeros(1, 17, 1)
    pos[0, 1:, 0] = torch.tensor(g4.flatten(), dtype=torch.float32)
    out = model.interpolate_pos_embed(pos, 6)
    check(close(out[0, 1:, 0].reshape(6, 6), W46 @ g4 @ W46.T, 1e-4), "4x4 -> 6x6 (tiny hires)")


# ------------------------------------------------------------------ logits processors

def kept(scores):
    return sorted(torch.nonzero(torch.isfinite(scores[0])).flatten().tolist())


def test_processors():
    s = torch.tensor([[2.0, -2.0, 0.0, 1.0, 5.0]])
    out = generate.repetition_penalty(s, torch.tensor([[0, 1, 2, 0]]), 2.0)
    check(close(out, [[1.0, -4.0, 0.0, 1.0, 5.0]], 0), "repetition penalty: /p if >0, *p if <=0, once")
    m = generate.min_length_rule(s, 4, 5, 3)
    check(m[0, 3] == float("-inf") and torch.equal(generate.min_length_rule(s, 5, 5, 3), s),
          "min length: [SEP] -inf while len < min_length, untouched at len == min_length")
    s = torch.tensor([[5.0, 3.0, 3.0, 1.0, 0.0]])
    check(kept(generate.top_k_filter(s, 2)) == [0, 1, 2], "top-k keeps ties with the k-th value")
    check(kept(generate.top_k_filter(s, 1)) == [0], "top-k 1")
    # probs 0.5, 0.3, 0.15, 0.05 in shuffled positions: mass before each = 0, .5, .8, .95
    p = torch.tensor([[0.15, 0.5, 0.05, 0.3]]).log()
    check(kept(generate.top_p_filter(p, 0.9)) == [0, 1, 3], "top-p 0.9 keeps .5 .3 .15")
    check(kept(generate.top_p_filter(p, 0.7)) == [1, 3], "top-p 0.7 keeps .5 .3")
    check(kept(generate.top_p_filter(p, 0.0)) == [1], "top-p always keeps the best token")
    u = torch.zeros(1, 4)  # 0.25 each: mass before = 0, .25, .5, .75 (exact in float)
    check(len(kept(generate.top_p_filter(u, 0.5))) == 3, "top-p: mass before exactly p is kept")
    check(len(kept(generate.top_p_filter(u, 0.25))) == 2, "top-p: exactly p (0.25) is kept")
    check(len(kept(generate.top_p_filter(u, 0.2499))) == 1, "top-p: just below p")
    # full nucleus chain on hand-built logits: vocab 6, eos 5, prompt ids [0, 1]
    logits = torch.tensor([[2.2, -0.5, 1.0, 0.5, -3.0, 3.0]])
    probs, _ = generate.nucleus_distribution(logits, torch.tensor([[0, 1]]), penalty=1.1,
                                             min_length=10, eos=5, top_k=3, top_p=0.7)
    # penalty: 2.2/1.1 = 2.0, -0.5*1.1 = -0.55; eos -> -inf; top-3 of [2, -.55, 1, .5, -3]
    # = {0: 2, 2: 1, 3: .5}; softmax -> e^2, e^1, e^.5 / sum = .6285, .2312, .1402
    # mass before: 0, .6285, .8598 -> keep {0, 2}; renormalise e^2, e^1
    z = math.exp(2) + math.exp(1)
    check(close(probs, [[math.exp(2) / z, 0, math.exp(1) / z, 0, 0, 0]], 1e-6),
          "nucleus: penalty -> min length -> top-k -> top-p -> softmax")


# ------------------------------------------------------------------ beam search on a toy model

def toy_model(tables):
    """Next-token distribution depends only on the last token; tables[row][last] = probs."""
    def next_logits(ids, rows):
        out = []
        for seq, r in zip(ids, rows):
            # rows that already ended (last token [SEP] or pad) are still fed to the model
            p = torch.tensor(tables[int(r)].get(int(seq[-1]), [.2] * 5), dtype=torch.float64)
            out.append(p.log().float())
        return torch.stack(out)
    return next_logits


# vocab: 0 pad, 1 bos, 2 x, 3 y, 4 eos
TOY_A = {1: [0, 0, .5, .3, .2], 2: [0, 0, .1, .3, .6], 3: [0, 0, .45, .35, .2]}
TOY_D = {1: [0, 0, .6, .4, 0], 2: [0, 0, .4, .1, .5], 3: [0, 0, .3, .2, .5]}


def test_beam():
    start = torch.tensor([[1]])
    # A, num_beams 2, min 0, max 5 (see README for the hand trace):
    #  len1: beams x(.5) y(.3).  len2: top = x+eos .3 (closes [1,x], ln.3/2 = -.60199),
    #  x+y .15, y+x .135 -> beams.  len3: top = [1,y,x]+eos .081 closes (ln.081/3 = -.83777);
    #  2 hyps, worst -.83777 >= best-candidate ln(.081)/3 -> done after 3 steps.
    out, scores, info = generate.beam_search(toy_model([TOY_A]), start, 2, 5, 0, 1.0, 4, 0)
    check(out.tolist() == [[1, 2, 4]] and abs(scores[0] - math.log(.3) / 2) < 1e-6 and
          info["steps"] == 3 and info["done_before_max_length"] == [True],
          "beam: hypothesis score = sum logp / len without [SEP]; is_done stops early")
    # A with min_length 4: [SEP] blocked at len 1..3; len4: [1,x,y,x]+eos .0405 closes
    # (ln/4 = -.80161); max length reached: open beams [1,x,y,y,x] .023625 (-.74905) and
    # [1,x,y,x,y] .02025 (-.77988) are added; best is the open 5-token beam, no [SEP] appended.
    out, scores, info = generate.beam_search(toy_model([TOY_A]), start, 2, 5, 4, 1.0, 4, 0)
    check(out.tolist() == [[1, 2, 3, 3, 2]] and abs(scores[0] - math.log(.023625) / 5) < 1e-6,
          "beam: min length blocks [SEP]; open beams closed at max_length compete by mean logp")
    check((0, 2) in info["min_length_blocked"], "beam: the blocked [SEP] is reported")
    # D: len2 candidates x+eos .3 (rank 0, closes), x+x .24, y+eos .2 (rank 2 >= beams: ignored),
    # y+x .12; len3: [1,x,x]+eos .12 closes (ln/3 = -.70676), 2 hyps, done.
    out, scores, info = generate.beam_search(toy_model([TOY_D]), start, 2, 6, 0, 1.0, 4, 0)
    closed = [(c["cur_len"], c["beam"]) for c in info["closed"]]
    check(out.tolist() == [[1, 2, 4]] and closed == [(2, 0), (3, 0)] and info["steps"] == 3,
          "beam: [SEP] ranked >= num_beams does not close a hypothesis")
    # batched: rows are independent; the shorter output is padded with 0
    out, _, _ = generate.beam_search(toy_model([TOY_A, TOY_A]), torch.tensor([[1], [1]]), 2, 5,
                                     0, 1.0, 4, 0)
    check(out.tolist() == [[1, 2, 4], [1, 2, 4]], "beam: batch of two")
    # greedy on A: bos -> x (.5) -> eos (.6) ; with min_length 3: x -> y (.3) -> x (.45) -> eos
    out, _ = generate.greedy(toy_model([TOY_A, TOY_A]), torch.tensor([[1], [1]]), 6, 0, 1.0, 4, 0)
    check(out.tolist() == [[1, 2, 4], [1, 2, 4]], "greedy stops at [SEP]")
    out, info = generate.greedy(toy_model([TOY_A]), start, 6, 3, 1.0, 4, 0)
    check(out.tolist() == [[1, 2, 3, 2, 4]] and info["min_length_blocked"] == [(0, 2)],
          "greedy: min length blocks [SEP] at len 2")
    out, _ = generate.greedy(toy_model([TOY_A, TOY_D]), torch.tensor([[1], [1]]), 6, 3, 1.0, 4, 0)
    # D: bos -> x (.6) -> eos blocked -> x (.4) -> eos (.5)
    check(out.tolist() == [[1, 2, 3, 2, 4], [1, 2, 2, 4, 0]], "greedy pads finished rows with 0")


def run():
    for t in (test_prng, test_formats, test_attention, test_network_against_loops,
              test_pos_resize, test_processors, test_beam):
        print(f"-- {t.__name__}")
        t()
    print(f"{len(FAILS)} failure(s)")
    return 1 if FAILS else 0
