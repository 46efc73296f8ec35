#!/usr/bin/python3
"""The PyTorch eager twin of blip's BenchmarkPretrainStep: the same pretraining step
(train.pretrain_losses: ViT + momentum ViT, unimodal text + momentum text, ITM over 3B
pairs, LM; backward; torch.optim.AdamW over every distinct tensor), the same sizes, eval
math (no dropout), drawn hard negatives. Prints seconds per step and images/s.

  bench_train.py {tiny|base224} [--batch B] [--tokens T] [--steps N] [--threads N]

Compare with: go test ./blip -run '^$' -bench 'PretrainStep/(tiny/B8|base224/B2)/eval'
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

import train  # noqa: E402
import weights  # noqa: E402

QUEUE = 57600


def config(name):
    if name == "tiny":
        return weights.hf_config("tiny")
    cfg = weights.hf_config("base")
    cfg["vision_config"]["image_size"] = 224
    return cfg


def random_params(cfg, g):
    """BERT-style values (the speed does not depend on them); shared text tied."""
    sd = {}
    for name, shape in weights.param_shapes(cfg).items():
        kind = weights.value_kind(name)
        if kind == "temp":
            sd[name] = torch.tensor(0.07)
        elif kind == "norm_weight":
            sd[name] = torch.ones(shape)
        elif kind == "bias":
            sd[name] = torch.zeros(shape)
        else:
            sd[name] = torch.randn(shape, generator=g) * 0.02
    return train.share_text(sd)


def batch(cfg, B, T, g):
    t, S = cfg["text_config"], cfg["vision_config"]["image_size"]
    ids = torch.randint(5, t["vocab_size"] - 5, (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.int64)
    for r in range(B):
        n = T - r % (T // 2)
        ids[r, 0], ids[r, n - 1], ids[r, n:] = t["cls_token_id"], t["sep_token_id"], 0
        mask[r, n:] = 0
    return {"pixel_values": torch.randn(B, 3, S, S, generator=g), "input_ids": ids, "attention_mask": mask}


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("preset", choices=["tiny", "base224"])
    ap.add_argument("--batch", type=int)
    ap.add_argument("--tokens", type=int, default=30)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int)
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    B = a.batch or (8 if a.preset == "tiny" else 2)
    cfg = config(a.preset)
    g = torch.Generator().manual_seed(1)
    sd = random_params(cfg, g)
    params = [p for _, p in train.unique_params(sd)]
    for p in params:
        p.requires_grad_(True)
    msd = train.momentum_copy(sd)
    E = cfg["image_text_hidden_size"]
    queues = {"image": train.init_queue(E, QUEUE, g), "text": train.init_queue(E, QUEUE, g), "ptr": 0}
    opt = torch.optim.AdamW(params, lr=3e-4, weight_decay=0.05)
    b = batch(cfg, B, a.tokens, g)

    def step():
        opt.zero_grad()
        # The reference takes the negatives as inputs: draw them off the diagonal (the
        # softmax weights it also computes cost a few [B,B] ops; the ITM pass is the cost).
        w = torch.ones(B, B) - torch.eye(B)
        neg = torch.multinomial(w, 1, generator=g).view(-1), torch.multinomial(w, 1, generator=g).view(-1)
        losses, _ = train.pretrain_losses(sd, msd, cfg, b, queues, 0.4, *neg)
        losses["total"].backward()
        opt.step()

    step()  # warm-up
    times = []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    sec = sum(times) / len(times)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {a.preset} B={B} T={a.tokens}: "
          f"{sec:.4f} s/step, {B / sec:.2f} images/s, fastest step {min(times):.4f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
