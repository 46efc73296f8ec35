"""Hand-computed checks of train.py (run: /usr/bin/python3 train_ref.py selftest).

The objectives themselves are checked piece by piece against values worked out here, and
the whole pretraining step against the same step in float64 (the float32 noise bound the
goldens' tolerances rest on).
"""
import math

import torch
import torch.nn.functional as F

import train
import train_ref
import weights

FAILS = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        FAILS.append(what)


def test_label_smoothing():
    # 3-token vocabulary, one row: logits (0, ln 2, ln 4) -> p = (1/7, 2/7, 4/7); target 2.
    logits = torch.tensor([[0.0, math.log(2), math.log(4)]], dtype=torch.float64)
    nll = -math.log(4 / 7)
    uniform = -(math.log(1 / 7) + math.log(2 / 7) + math.log(4 / 7)) / 3
    want = 0.9 * nll + 0.1 * uniform
    got = train.smoothed_ce(logits, torch.tensor([2]))
    check(abs(float(got) - want) < 1e-12, f"label smoothing on 3 tokens: {float(got):.12f} = {want:.12f}")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(9, 5, generator=g, dtype=torch.float64)
    t = torch.tensor([1, -100, 4, 0, -100, 2, 2, 3, 0])
    ref = F.cross_entropy(x, t, ignore_index=-100, label_smoothing=0.1)
    check(abs(float(train.smoothed_ce(x, t)) - float(ref)) < 1e-12,
          "written-out smoothing equals F.cross_entropy(label_smoothing=0.1), ignored targets excluded")


def test_soft_ce_and_targets():
    # two rows; target = onehot: soft CE is the plain CE.
    logits = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]], dtype=torch.float64)
    onehot = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]], dtype=torch.float64)
    want = F.cross_entropy(logits, torch.tensor([0, 1]))
    check(abs(float(train.soft_ce(logits, onehot)) - float(want)) < 1e-12, "soft CE with one-hot targets")


def test_share_text():
    cfg = weights.hf_config("tiny")
    full = weights.random_state_dict(cfg, 5, lm_head=False)
    sd = train.share_text({k: full[k] for k in weights.param_shapes(cfg)})
    enc = "text_encoder.encoder.layer.1.crossattention.self.key.weight"
    dec = "text_decoder.bert.encoder.layer.1.crossattention.self.key.weight"
    check(sd[enc] is sd[dec], "cross-attention is shared")
    for k in ("embeddings.word_embeddings.weight", "encoder.layer.0.output.dense.weight",
              "encoder.layer.0.intermediate.dense.bias"):
        check(sd["text_encoder." + k] is sd["text_decoder.bert." + k], f"{k} is shared")
    for k in ("encoder.layer.0.attention.self.query.weight", "encoder.layer.1.attention.output.LayerNorm.bias"):
        check(sd["text_encoder." + k] is not sd["text_decoder.bert." + k], f"{k} is the decoder's own")
    names = [n for n, _ in train.unique_params(sd)]
    shared = len(train_ref.shared_text_names(cfg))
    check(len(names) == len(weights.param_shapes(cfg)) - shared,
          f"unique parameters: {len(names)} (every name minus {shared} shared decoder names)")


def test_momentum_and_queue():
    sd = {"vision_model.w": torch.tensor([1.0, 2.0]), "text_proj.b": torch.tensor([4.0]), "itm_head.w": torch.tensor([9.0])}
    msd = train.momentum_copy(sd)
    check(sorted(msd) == ["text_proj.b", "vision_model.w"], "momentum copies ViT/text/projections only")
    msd["vision_model.w"] = torch.tensor([0.0, 0.0])
    train.momentum_update(msd, sd, m=0.9)
    check(torch.allclose(msd["vision_model.w"], torch.tensor([0.1, 0.2])), "theta_m = m theta_m + (1-m) theta")
    q = torch.zeros(2, 6)
    ptr = train.enqueue(q, 0, torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    check(ptr == 2 and q[:, 0].tolist() == [1, 2] and q[:, 1].tolist() == [3, 4], "enqueue writes columns, pointer +B")
    ptr = train.enqueue(q, 4, torch.tensor([[5.0, 6.0], [7.0, 8.0]]))
    check(ptr == 0 and q[:, 5].tolist() == [7, 8], "the pointer wraps at the queue size")
    g = torch.Generator().manual_seed(0)
    qq = train.init_queue(4, 5, g)
    check(torch.allclose(qq.norm(dim=0), torch.ones(5)), "queue columns are unit vectors")


def test_retrieval_positives():
    idx = torch.tensor([7, 3, 7]).view(-1, 1)
    idx_all = torch.cat([idx.t(), torch.tensor([[3, -100, 7, 7]])], 1)
    pos = (idx == idx_all).float()
    tgt = pos / pos.sum(1, keepdim=True)
    want0 = [0.25, 0, 0.25, 0, 0, 0.25, 0.25]
    check(torch.allclose(tgt[0], torch.tensor(want0)), "same-image positives spread evenly over batch and queue")
    check(torch.allclose(tgt[1], torch.tensor([0, 0.5, 0, 0.5, 0, 0, 0])), "image 3: itself and the queued 3")


def test_float64_agreement():
    """The whole pretraining step in float32 against float64: the noise the golden
    tolerances must cover."""
    import os
    import tempfile
    d = tempfile.mkdtemp()
    train_ref.make_models(d, train_ref.MODEL_SEED)
    inp, _ = train_ref.make_inputs(train_ref.INPUT_SEED)

    def run(dt):
        cfg, raw = train_ref.read_dir(os.path.join(d, "tiny-train"))
        sd = train.share_text({k: v.to(dt) for k, v in raw.items()})
        params = train_ref.trainable(sd)
        msd = train.momentum_copy(sd)
        x = {k: (v.to(dt) if v.is_floating_point() else v) for k, v in inp.items()}
        q = {"image": x["image_queue"].clone(), "text": x["text_queue"].clone(), "ptr": 0}
        losses, _ = train.pretrain_losses(sd, msd, cfg, train_ref.batch_of(x), q, 0.3,
                                          x["neg_image_idx"], x["neg_text_idx"])
        losses["total"].backward()
        return {k: float(v) for k, v in losses.items()}, {n: p.grad.double() for n, p in params}

    l32, g32 = run(torch.float32)
    l64, g64 = run(torch.float64)
    dl = max(abs(l32[k] - l64[k]) for k in l32)
    dg = max((g32[n] - g64[n]).abs().max().item() for n in g32)
    check(dl < 1e-6, f"losses float32 vs float64: max |diff| {dl:.2e}")
    check(dg < 1e-6, f"gradients float32 vs float64: max |diff| {dg:.2e}")
    # Attention key biases have a true gradient of zero (softmax ignores a shift shared by
    # all keys): in float32 they are pure rounding noise, far below AdamW's eps.
    kb = max(g32[n].abs().max().item() for n in g32 if n.endswith("key.bias"))
    check(kb < 1e-9, f"key-bias gradients are rounding noise: max {kb:.2e}")


def run():
    for t in (test_label_smoothing, test_soft_ce_and_targets, test_share_text, test_momentum_and_queue,
              test_retrieval_positives, test_float64_agreement):
        print(f"-- {t.__name__}")
        t()
    print(f"{len(FAILS)} failure(s)")
    return 1 if FAILS else 0
