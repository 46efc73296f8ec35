"""The work of `capfilt bench model`, in plain PyTorch eager, for a side-by-side ratio.

    bench_eager.py run     [--preset base] [--batch 8] [--images 8] [--warmup 1] [--stages ...]
    bench_eager.py compare --capfilt bin/capfilt [--rounds 3] [same options]

`run` prints the table capfilt prints. `compare` alternates, stage by stage and round by
round, a capfilt child and an eager child doing the same stage (so both see the same load
on a shared machine), and prints each side's best images/s, their ratio and both peaks.

The model is this folder's independent reference (model.py: ViT, MED text transformer,
ITM/ITC heads, written from the spec) with the same deterministic random weights as
capfilt's (weights.py). What eager adds is what a PyTorch user would write, the way
transformers 4.15 does it: a decoder KV cache that concatenates self-attention keys and
values each step and keeps the cross-attention ones as the split-head views it first
computed; sampling as transformers' sample() (repetition penalty by gather/scatter,
min length, top-k then top-p over the whole vocabulary, multinomial, finished rows fed
[PAD] until every row is done); the filter feeding each caption its image's embeddings.

Same work: the same weights, image size, batch, prompt ([DEC] a picture of), CapFilt's
generation settings (top-k 50, top-p 0.9, repetition penalty 1.1, lengths 30/10), the same
web caption per image and, for the filter stage, the same synthetic caption (capfilt's
bench vocabulary makes every id but the specials one word, so ids and words correspond).
Pixels are random normal in both (the values do not change the work), and the random
draws differ, so captions differ; with random weights neither side emits [SEP], so both
decode to max length.

Peak memory: each stage runs in a child process; after the weights and inputs are made,
freed heap is returned (malloc_trim, as capfilt's child does), the kernel's high-water mark
is reset (/proc/self/clear_refs 5) and read again at the end (VmHWM).
"""
import argparse
import ctypes
import gc
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import model  # noqa: E402
import weights  # noqa: E402

STAGES = ["vit", "caption", "filter", "whole"]
PROMPT_WORDS = ["a", "picture", "of"]  # "a picture of " after [DEC]
MAX_LENGTH, MIN_LENGTH, TOP_K, TOP_P, PENALTY = 30, 10, 50, 0.9, 1.1
WEB_WORDS, CAPTION_MAX_TOKENS, CAPTION_MAX_WORDS = 20, 35, 30


# ------------------------------------------------------------------ vocabulary and captions

def bench_vocab(preset, cfg):
    """The vocabulary capfilt bench model builds (cmd/capfilt/cmd_bench_model.go)."""
    if preset == "tiny":
        with open(os.path.join(HERE, "..", "..", "synth", "tiny_vocab.txt")) as f:
            return f.read().strip().split("\n")
    n = cfg["text_config"]["vocab_size"] - 2
    vocab = [f"w{i}" for i in range(n)]
    for i, tok in {0: "[PAD]", 100: "[UNK]", 101: "[CLS]", 102: "[SEP]", 103: "[MASK]", 1037: "a",
                   3861: "picture", 1997: "of"}.items():
        vocab[i] = tok
    return vocab


def plain_words(vocab):
    ok = set("abcdefghijklmnopqrstuvwxyz0123456789")
    return [w for w in vocab if w and all(c in ok for c in w)]


def caption_words(words, i, n, stride):
    return [words[(i * stride + j * 17 + 5) % len(words)] for j in range(n)]


def encode(ids_of, words, cls, sep):
    """[CLS] words [SEP], pre_caption's 30 words, truncated to 35 ids as the filter does."""
    ids = [cls] + [ids_of[w] for w in words[:CAPTION_MAX_WORDS]] + [sep]
    if len(ids) > CAPTION_MAX_TOKENS:
        ids = ids[:CAPTION_MAX_TOKENS - 1] + [sep]
    return ids


def pad_batch(rows, pad):
    width = max(len(r) for r in rows)
    ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], dtype=torch.long)
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], dtype=torch.long)
    return ids, mask


# ------------------------------------------------------------------ decoder with a KV cache

def decoder_step(sd, cfg, ids, past, image_embeds):
    """transformers' BertLMHeadModel step: ids [B, t] after len(past) cached positions.
    past: per layer (self_k, self_v, cross_k, cross_v) or None. Returns logits [B, t, V]."""
    t_cfg = cfg["text_config"]
    heads, eps = t_cfg["num_attention_heads"], t_cfg["layer_norm_eps"]
    p = "text_decoder.bert."
    start = 0 if past is None else past[0][0].shape[2]
    t = ids.shape[1]
    x = sd[p + "embeddings.word_embeddings.weight"][ids]
    x = x + sd[p + "embeddings.position_embeddings.weight"][start:start + t][None]
    x = model.layer_norm(x, sd, p + "embeddings.LayerNorm", eps)
    mask = None
    if t > 1:
        mask = model.causal_mask(torch.ones(ids.shape[0], t))
    new_past = []
    for i in range(t_cfg["num_hidden_layers"]):
        lp = f"{p}encoder.layer.{i}."
        a = lp + "attention"
        q = model.split_heads(model.linear(x, sd, a + ".self.query"), heads)
        k = model.split_heads(model.linear(x, sd, a + ".self.key"), heads)
        v = model.split_heads(model.linear(x, sd, a + ".self.value"), heads)
        if past is not None:
            k = torch.cat([past[i][0], k], dim=2)
            v = torch.cat([past[i][1], v], dim=2)
        att = model.linear(model.merge_heads(model.attend(q, k, v, mask)), sd, a + ".output.dense")
        x = model.layer_norm(x + att, sd, a + ".output.LayerNorm", eps)
        c = lp + "crossattention"
        if past is None:
            ck = model.split_heads(model.linear(image_embeds, sd, c + ".self.key"), heads)
            cv = model.split_heads(model.linear(image_embeds, sd, c + ".self.value"), heads)
        else:
            ck, cv = past[i][2], past[i][3]
        cq = model.split_heads(model.linear(x, sd, c + ".self.query"), heads)
        catt = model.linear(model.merge_heads(model.attend(cq, ck, cv)), sd, c + ".output.dense")
        x = model.layer_norm(x + catt, sd, c + ".output.LayerNorm", eps)
        h = model.gelu(model.linear(x, sd, lp + "intermediate.dense"))
        x = model.layer_norm(x + model.linear(h, sd, lp + "output.dense"), sd, lp + "output.LayerNorm", eps)
        new_past.append((k, v, ck, cv))
    return model.lm_logits(sd, cfg, x), new_past


def sample_captions(sd, cfg, image_embeds, prompt_ids, gen):
    """transformers 4.15 sample() with CapFilt's settings; returns ids [B, L]."""
    t_cfg = cfg["text_config"]
    sep, pad = t_cfg["sep_token_id"], t_cfg["pad_token_id"]
    b = image_embeds.shape[0]
    ids = torch.tensor([prompt_ids] * b, dtype=torch.long)
    step_ids, past = ids, None
    unfinished = torch.ones(b, dtype=torch.long)
    while ids.shape[1] < MAX_LENGTH:
        logits, past = decoder_step(sd, cfg, step_ids, past, image_embeds)
        scores = logits[:, -1, :]
        picked = torch.gather(scores, 1, ids)
        picked = torch.where(picked < 0, picked * PENALTY, picked / PENALTY)
        scores = scores.scatter(1, ids, picked)
        if ids.shape[1] < MIN_LENGTH:
            scores[:, sep] = float("-inf")
        kth = torch.topk(scores, TOP_K)[0][..., -1, None]
        scores = scores.masked_fill(scores < kth, float("-inf"))
        sorted_scores, order = torch.sort(scores, descending=True)
        remove = sorted_scores.softmax(dim=-1).cumsum(dim=-1) > TOP_P
        remove[..., 1:] = remove[..., :-1].clone()
        remove[..., 0] = False
        scores = scores.masked_fill(remove.scatter(1, order, remove), float("-inf"))
        nxt = torch.multinomial(scores.softmax(dim=-1), 1, generator=gen).squeeze(1)
        nxt = nxt * unfinished + pad * (1 - unfinished)
        ids = torch.cat([ids, nxt[:, None]], dim=1)
        step_ids = nxt[:, None]
        unfinished = unfinished.mul((nxt != sep).long())
        if unfinished.max() == 0:
            break
    return ids


def filter_scores(sd, cfg, image_embeds, captions, owner):
    """ITM P(match) and ITC cosine of captions[k] (ids lists) against image owner[k]."""
    ids, mask = pad_batch(captions, cfg["text_config"]["pad_token_id"])
    rows = image_embeds[torch.tensor(owner)]
    itm, _ = model.itm_logits(sd, cfg, ids, mask, rows)
    img_feat, txt_feat = model.itc_features(sd, rows, model.unimodal(sd, cfg, ids, mask))
    return itm.softmax(-1)[:, 1], (img_feat * txt_feat).sum(-1)


# ------------------------------------------------------------------ one stage in this process

class Work:
    def __init__(self, args, sd, cfg):
        self.args, self.sd, self.cfg = args, sd, cfg
        t = cfg["text_config"]
        self.cls, self.sep, self.pad = t["cls_token_id"], t["sep_token_id"], t["pad_token_id"]
        self.specials = {t["pad_token_id"], t["cls_token_id"], t["sep_token_id"], t["bos_token_id"],
                         t["enc_token_id"]}
        vocab = bench_vocab(args.preset, cfg)
        self.specials |= {i for i, w in enumerate(vocab) if w in ("[UNK]", "[MASK]")}
        ids_of = {w: i for i, w in enumerate(vocab)}
        self.ids_of = ids_of
        words = plain_words(vocab)
        self.prompt = [t["bos_token_id"]] + [ids_of[w] for w in PROMPT_WORDS if w in ids_of]
        syn_words = MAX_LENGTH - len(self.prompt)
        self.web = [encode(ids_of, caption_words(words, i, WEB_WORDS, 31), self.cls, self.sep)
                    for i in range(args.batch)]
        self.syn = [encode(ids_of, caption_words(words, i, syn_words, 7), self.cls, self.sep)
                    for i in range(args.batch)]
        torch.manual_seed(args.seed)
        side = cfg["vision_config"]["image_size"]
        self.pixels = torch.randn(args.batch, 3, side, side)
        self.gen = torch.Generator().manual_seed(args.seed)
        self.image = None

    def generated_caption(self, row):
        kept = []
        for tok in row[len(self.prompt):].tolist():
            if tok == self.sep:
                break
            if tok not in self.specials:
                kept.append(tok)
        ids = [self.cls] + kept[:CAPTION_MAX_WORDS] + [self.sep]
        return ids[:CAPTION_MAX_TOKENS - 1] + [self.sep] if len(ids) > CAPTION_MAX_TOKENS else ids

    def run(self, stage, n):
        sd, cfg = self.sd, self.cfg
        if stage == "vit":
            model.vision_forward(sd, cfg, self.pixels[:n])
        elif stage == "caption":
            sample_captions(sd, cfg, self.image[:n], self.prompt, self.gen)
        elif stage == "filter":
            caps = [c for i in range(n) for c in (self.web[i], self.syn[i])]
            filter_scores(sd, cfg, self.image[:n], caps, [i for i in range(n) for _ in range(2)])
        else:
            image = model.vision_forward(sd, cfg, self.pixels[:n])
            ids = sample_captions(sd, cfg, image, self.prompt, self.gen)
            caps = [c for i in range(n) for c in (self.web[i], self.generated_caption(ids[i]))]
            filter_scores(sd, cfg, image, caps, [i for i in range(n) for _ in range(2)])


def status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no " + field)


def set_threads(args):
    torch.set_num_threads(args.intra_op_threads)
    for name in ("libopenblas.so.0", "libblas.so.3"):
        try:
            lib = ctypes.CDLL(name)
            lib.openblas_set_num_threads(args.blas_threads)
            return
        except (OSError, AttributeError):
            continue


def run_stage(args):
    set_threads(args)
    cfg = weights.hf_config(args.preset)
    sd = torch.load(args.weights)
    work = Work(args, sd, cfg)
    with torch.no_grad():
        if args.run_stage in ("caption", "filter"):
            work.image = model.vision_forward(sd, cfg, work.pixels)
        gc.collect()
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        setup = status("VmRSS")
        batches = -(-args.images // args.batch)
        images, began, cpu0 = 0, None, None
        for i in range(args.warmup + batches):
            if i == args.warmup:
                began, cpu0 = time.perf_counter(), time.process_time()
            n = args.batch
            if i >= args.warmup:
                n = min(args.batch, args.images - images)
                images += n
            work.run(args.run_stage, n)
        secs = time.perf_counter() - began
    print(json.dumps(dict(stage=args.run_stage, preset=args.preset, batch=args.batch, images=images,
                          seconds=secs, cpu_seconds=time.process_time() - cpu0,
                          images_per_s=images / secs, setup_rss_bytes=setup,
                          peak_rss_bytes=status("VmHWM"), impl="eager")))


# ------------------------------------------------------------------ parent: children, table, ratio

def child_args(args, stage):
    return ["--preset", args.preset, "--batch", str(args.batch), "--images", str(args.images),
            "--warmup", str(args.warmup), "--seed", str(args.seed), "--run-stage", stage]


def eager_child(args, stage):
    cmd = [sys.executable, os.path.abspath(__file__), "run", *child_args(args, stage), "--weights", args.weights,
           "--intra-op-threads", str(args.intra_op_threads), "--blas-threads", str(args.blas_threads)]
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out.strip().split("\n")[-1])


def capfilt_child(args, stage):
    cmd = [args.capfilt, "bench", "model", "--json", "--stages", stage, "--bench-preset", args.preset, "--batch",
           str(args.batch), "--bench-images", str(args.images), "--warmup", str(args.warmup), "--bench-seed", str(args.seed)]
    if args.capfilt_threads:
        cmd += ["--threads", str(args.capfilt_threads)]
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out.strip().split("\n")[-1])


def write_weights(args, tmp):
    if args.weights:
        return
    cfg = weights.hf_config(args.preset)
    args.weights = os.path.join(tmp, f"{args.preset}-{args.seed}.pt")
    torch.save(weights.random_state_dict(cfg, args.seed, lm_head=False), args.weights)


def header(args):
    blas = ""
    try:
        lib = ctypes.CDLL("libopenblas.so.0")
        lib.openblas_get_corename.restype = ctypes.c_char_p
        lib.openblas_get_config.restype = ctypes.c_char_p
        blas = f"OpenBLAS ({lib.openblas_get_corename().decode()} kernel; {lib.openblas_get_config().decode()})"
    except (OSError, AttributeError):
        blas = "not OpenBLAS"
    print(f"eager PyTorch {torch.__version__}: {args.preset} preset, random weights (seed {args.seed}), batch "
          f"{args.batch}, {args.images} images per stage after {args.warmup} warm-up batch(es)")
    print(f"{os.cpu_count()} CPUs, eager: {args.intra_op_threads} intra-op / {args.blas_threads} BLAS threads")
    print(f"blas: {blas}")


def mb(b):
    return b / 1e6


def cmd_run(args):
    if args.run_stage:
        return run_stage(args)
    with tempfile.TemporaryDirectory() as tmp:
        write_weights(args, tmp)
        header(args)
        print(f"{'stage':8s} {'images':>6s} {'seconds':>8s} {'images/s':>9s} {'CPU s':>8s} {'peak RSS':>10s} "
              f"{'over setup':>11s} {'setup RSS':>10s}")
        for stage in args.stages.split(","):
            r = eager_child(args, stage)
            print(f"{r['stage']:8s} {r['images']:6d} {r['seconds']:8.2f} {r['images_per_s']:9.3f} {r['cpu_seconds']:8.1f} "
                  f"{mb(r['peak_rss_bytes']):7.0f} MB {mb(r['peak_rss_bytes'] - r['setup_rss_bytes']):8.0f} MB "
                  f"{mb(r['setup_rss_bytes']):7.0f} MB")


def cmd_compare(args):
    with tempfile.TemporaryDirectory() as tmp:
        write_weights(args, tmp)
        header(args)
        print(f"capfilt: {args.capfilt} (--threads {args.capfilt_threads}); {args.rounds} rounds, "
              f"alternating capfilt and eager per stage")
        best = {}
        for rnd in range(args.rounds):
            for stage in args.stages.split(","):
                order = [("capfilt", capfilt_child), ("eager", eager_child)]
                if rnd % 2:
                    order.reverse()
                for side, run in order:
                    r = run(args, stage)
                    print(f"  round {rnd + 1} {stage:8s} {side:8s} {r['images_per_s']:8.3f} img/s "
                          f"(cpu {r['cpu_seconds']:.1f} s)  peak {mb(r['peak_rss_bytes']):6.0f} MB  "
                          f"over setup {mb(r['peak_rss_bytes'] - r['setup_rss_bytes']):6.0f} MB", flush=True)
                    key = (stage, side)
                    if key not in best or r["images_per_s"] > best[key]["images_per_s"]:
                        peak = max(r["peak_rss_bytes"], best.get(key, r)["peak_rss_bytes"])
                        best[key] = dict(r, peak_rss_bytes=peak)
        print(f"{'stage':8s} {'capfilt img/s':>14s} {'eager img/s':>12s} {'ratio':>6s} {'capfilt peak':>13s} "
              f"{'eager peak':>11s} {'capfilt over setup':>19s} {'eager over setup':>17s}")
        for stage in args.stages.split(","):
            c, e = best[(stage, "capfilt")], best[(stage, "eager")]
            print(f"{stage:8s} {c['images_per_s']:14.3f} {e['images_per_s']:12.3f} "
                  f"{c['images_per_s'] / e['images_per_s']:6.2f} {mb(c['peak_rss_bytes']):10.0f} MB "
                  f"{mb(e['peak_rss_bytes']):8.0f} MB {mb(c['peak_rss_bytes'] - c['setup_rss_bytes']):16.0f} MB "
                  f"{mb(e['peak_rss_bytes'] - e['setup_rss_bytes']):14.0f} MB")


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("run", "compare"):
        p = sub.add_parser(name)
        p.add_argument("--preset", default="base", choices=["tiny", "base"])
        p.add_argument("--batch", type=int, default=8)
        p.add_argument("--images", type=int, default=8)
        p.add_argument("--warmup", type=int, default=1)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--stages", default=",".join(STAGES))
        p.add_argument("--weights", default="", help="a torch.save of the state dict (made if not given)")
        p.add_argument("--intra-op-threads", type=int, default=1)
        p.add_argument("--blas-threads", type=int, default=os.cpu_count())
    sub.choices["run"].add_argument("--run-stage", default="", choices=[""] + STAGES)
    sub.choices["compare"].add_argument("--capfilt", required=True, help="the capfilt binary")
    sub.choices["compare"].add_argument("--capfilt-threads", type=int, default=0)
    sub.choices["compare"].add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    for s in args.stages.split(","):
        if s not in STAGES:
            ap.error(f"unknown stage {s!r}")
    if args.batch < 1 or args.images < 1 or args.warmup < 0:
        ap.error("batch and images must be at least 1, warmup at least 0")
    return cmd_run(args) if args.cmd == "run" else cmd_compare(args)


if __name__ == "__main__":
    main(sys.argv[1:])
