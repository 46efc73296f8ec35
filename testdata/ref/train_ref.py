#!/usr/bin/python3
"""Independent reference for BLIP's training objectives (plain torch, float32, CPU).

  make-models GOLDEN_DIR [--seed S]       tiny-train/ (pretraining: shared text weights),
                                          tiny-train-retrieval/, tiny-train-caption/
  make-inputs OUT.safetensors [--seed N]  batch, queues, alphas, fixed hard negatives
  dump-pretrain MODELDIR INPUTS OUT [--steps 3] [--lr X] [--wd X]
  dump-retrieval MODELDIR INPUTS OUT
  dump-caption MODELDIR INPUTS OUT
  selftest

See README.md ("Training goldens") for what each file holds.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import st  # noqa: E402
import train  # noqa: E402
import weights  # noqa: E402

MODEL_SEED = 5
INPUT_SEED = 7
# The pretraining checkpoint's temp starts above the clamp so the first step's clamp to
# 0.5 shows in every loss (the generator's rule would give 0.07).
START_TEMP = 0.6
B, T, LENGTHS = 4, 10, [10, 7, 5, 8]
QUEUE = 12  # divisible by B: the pointer runs 0, 4, 8 and wraps to 0 after step 3
STEPS = 3
ALPHAS = [0.3, 0.35, 0.4]
LR, WD = 1e-4, 0.05
IMAGE_IDS = [7, 3, 7, 5]
IDX_QUEUE = [-100, -100, 3, -100, 9, 7, -100, -100, 5, -100, 11, -100]
CAPTION_PROMPT = [66, 15, 6]  # "a picture of" in synth/tiny_vocab.txt; [DEC] replaces [CLS]
CAPTION_LENGTHS, CAPTION_T = [12, 9, 7, 10], 12
PROMPT_LEN = 4


def shared_text_names(cfg):
    return [k for k in weights.param_shapes(cfg)
            if k.startswith("text_decoder.bert.") and not train.is_own_decoder_name(k)]


def write_dir(outdir, cfg, sd, meta):
    os.makedirs(outdir, exist_ok=True)
    with open(os.path.join(outdir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    st.save(os.path.join(outdir, "model.safetensors"), {k: v.contiguous() for k, v in sd.items()},
            meta)


def make_models(golden, seed):
    cfg = weights.hf_config("tiny")
    full = weights.random_state_dict(cfg, seed, lm_head=False)
    full["temp"] = torch.tensor(START_TEMP, dtype=torch.float32)
    # pretraining: the decoder's copies of the shared tensors hold the encoder's values
    pre = dict(full)
    for k in shared_text_names(cfg):
        pre[k] = full["text_encoder." + k[len("text_decoder.bert."):]].clone()
    meta = {"format": "pt", "capfilt.preset": "tiny", "capfilt.seed": str(seed),
            "capfilt.shared_text": "true", "temp": str(START_TEMP)}
    write_dir(os.path.join(golden, "tiny-train"), cfg, pre, meta)
    retr = {k: v for k, v in full.items() if not k.startswith("text_decoder.")}
    write_dir(os.path.join(golden, "tiny-train-retrieval"), cfg, retr,
              {"format": "pt", "capfilt.seed": str(seed), "parts": "vision, text_encoder, itc, itm, temp"})
    cap = {k: v for k, v in full.items() if k.startswith(("vision_model.", "text_decoder."))}
    write_dir(os.path.join(golden, "tiny-train-caption"), cfg, cap,
              {"format": "pt", "capfilt.seed": str(seed), "parts": "vision, text_decoder"})


def read_dir(modeldir):
    with open(os.path.join(modeldir, "config.json")) as f:
        cfg = json.load(f)
    raw, _ = st.load(os.path.join(modeldir, "model.safetensors"))
    sd = {k: v.float().clone() for k, v in raw.items() if not k.endswith("position_ids")}
    order = [k for k in weights.param_shapes(cfg) if k in sd]
    return cfg, {k: sd[k] for k in order}


def negatives(g, n_rows, allowed):
    """One index per row drawn uniformly from allowed(row)."""
    out = []
    for r in range(n_rows):
        choices = allowed(r)
        out.append(choices[int(torch.randint(len(choices), (1,), generator=g))])
    return torch.tensor(out, dtype=torch.int64)


def padded_ids(g, lengths, width, prefix=()):
    t = weights.PRESETS["tiny"]["text"]
    ids = torch.randint(4, 118, (len(lengths), width), generator=g)
    mask = torch.zeros(len(lengths), width, dtype=torch.int64)
    for r, n in enumerate(lengths):
        ids[r, 0] = t["cls_token_id"]
        ids[r, 1:1 + len(prefix)] = torch.tensor(prefix, dtype=torch.int64)
        ids[r, n - 1], ids[r, n:] = t["sep_token_id"], t["pad_token_id"]
        mask[r, :n] = 1
    return ids, mask


def make_inputs(seed):
    g = torch.Generator().manual_seed(seed)
    E = weights.PRESETS["tiny"]["image_text_hidden_size"]
    out = {"pixel_values": torch.randn(B, 3, 64, 64, generator=g).clamp(-2, 2)}
    out["input_ids"], out["attention_mask"] = padded_ids(g, LENGTHS, T)
    out["image_queue"] = train.init_queue(E, QUEUE, g)
    out["text_queue"] = train.init_queue(E, QUEUE, g)
    out["alpha"] = torch.tensor(ALPHAS[0], dtype=torch.float32)
    out["alphas"] = torch.tensor(ALPHAS, dtype=torch.float32)
    others = lambda r: [c for c in range(B) if c != r]
    steps_img = torch.stack([negatives(g, B, others) for _ in range(STEPS)])
    steps_txt = torch.stack([negatives(g, B, others) for _ in range(STEPS)])
    out["neg_image_idx"], out["neg_text_idx"] = steps_img[0], steps_txt[0]
    out["neg_image_idx_steps"], out["neg_text_idx_steps"] = steps_img, steps_txt
    out["image_ids"] = torch.tensor(IMAGE_IDS, dtype=torch.int64)
    out["idx_queue"] = torch.tensor([IDX_QUEUE], dtype=torch.int64)
    other_image = lambda r: [c for c in range(B) if IMAGE_IDS[c] != IMAGE_IDS[r]]
    out["retrieval_neg_image_idx"] = negatives(g, B, other_image)
    out["retrieval_neg_text_idx"] = negatives(g, B, other_image)
    out["caption_input_ids"], out["caption_attention_mask"] = padded_ids(
        g, CAPTION_LENGTHS, CAPTION_T, CAPTION_PROMPT)
    meta = {"seed": str(seed), "generator": "torch.Generator().manual_seed",
            "text_lengths": ",".join(map(str, LENGTHS)),
            "caption_lengths": ",".join(map(str, CAPTION_LENGTHS)),
            "caption_prompt_len": str(PROMPT_LEN), "queue_size": str(QUEUE)}
    return out, meta


def batch_of(inp, caption=False):
    if caption:
        return {"pixel_values": inp["pixel_values"], "input_ids": inp["caption_input_ids"],
                "attention_mask": inp["caption_attention_mask"]}
    return {"pixel_values": inp["pixel_values"], "input_ids": inp["input_ids"],
            "attention_mask": inp["attention_mask"], "image_ids": inp["image_ids"]}


def trainable(sd):
    params = train.unique_params(sd)
    for _, p in params:
        p.requires_grad_(True)
    return params


def record_grads(out, prefix, params):
    for name, p in params:
        out[f"{prefix}grad.{name}"] = p.grad.detach().clone()


def dump_pretrain(modeldir, inputs_path, out_path, steps, lr, wd):
    cfg, raw = read_dir(modeldir)
    sd = train.share_text(raw)
    params = trainable(sd)
    msd = train.momentum_copy(sd)
    inp, _ = st.load(inputs_path)
    queues = {"image": inp["image_queue"].clone(), "text": inp["text_queue"].clone(), "ptr": 0}
    opt = torch.optim.AdamW([p for _, p in params], lr=lr, betas=(0.9, 0.999), eps=1e-8,
                            weight_decay=wd)
    out = {}
    batch = batch_of(inp)
    for k in range(steps):
        opt.zero_grad()
        losses, extras = train.pretrain_losses(
            sd, msd, cfg, batch, queues, float(inp["alphas"][k]),
            inp["neg_image_idx_steps"][k], inp["neg_text_idx_steps"][k])
        losses["total"].backward()
        for name, v in losses.items():
            out[f"step{k + 1}.loss.{name}"] = v.detach().clone()
        out[f"step{k + 1}.temp"] = sd["temp"].detach().clone()
        if k == 0:
            record_grads(out, "step1.", params)
            for name, v in extras.items():
                out[f"step1.{name}"] = v.detach().clone()
            out["step1.image_queue"] = queues["image"].clone()
            out["step1.text_queue"] = queues["text"].clone()
            out["step1.queue_ptr"] = torch.tensor(queues["ptr"], dtype=torch.int64)
        opt.step()
        print(f"step {k + 1}: " + ", ".join(f"{n} {float(v):.6f}" for n, v in losses.items()))
    for name, p in params:
        out[f"after.param.{name}"] = p.detach().clone()
    for name, p in msd.items():
        out[f"after.momentum.{name}"] = p.clone()
    out["after.image_queue"] = queues["image"].clone()
    out["after.text_queue"] = queues["text"].clone()
    out["after.queue_ptr"] = torch.tensor(queues["ptr"], dtype=torch.int64)
    meta = {"steps": str(steps), "lr": repr(lr), "weight_decay": repr(wd), "betas": "0.9,0.999",
            "eps": "1e-08", "momentum": repr(train.MOMENTUM),
            "alphas": ",".join(map(str, ALPHAS[:steps])), "label_smoothing": "0.1",
            "optimizer": "torch.optim.AdamW over every distinct tensor (shared ones once)",
            "math": "eval (no dropout)"}
    st.save(out_path, {k: v.contiguous() for k, v in out.items()}, meta)


def dump_retrieval(modeldir, inputs_path, out_path):
    cfg, sd = read_dir(modeldir)
    params = trainable(sd)
    msd = train.momentum_copy(sd)
    inp, _ = st.load(inputs_path)
    queues = {"image": inp["image_queue"].clone(), "text": inp["text_queue"].clone(),
              "idx": inp["idx_queue"].clone(), "ptr": 0}
    losses, extras = train.retrieval_losses(sd, msd, cfg, batch_of(inp), queues,
                                            float(inp["alpha"]), inp["retrieval_neg_image_idx"],
                                            inp["retrieval_neg_text_idx"])
    losses["total"].backward()
    out = {f"loss.{n}": v.detach() for n, v in losses.items()}
    record_grads(out, "", params)
    out.update({k: v.detach() for k, v in extras.items()})
    out["queue.image"], out["queue.text"], out["queue.idx"] = (queues["image"], queues["text"],
                                                               queues["idx"])
    out["queue.ptr"] = torch.tensor(queues["ptr"], dtype=torch.int64)
    print(", ".join(f"{n} {float(v):.6f}" for n, v in losses.items()))
    st.save(out_path, {k: v.contiguous() for k, v in out.items()},
            {"alpha": str(float(inp["alpha"])), "math": "eval (no dropout)"})


def dump_caption(modeldir, inputs_path, out_path):
    cfg, sd = read_dir(modeldir)
    params = trainable(sd)
    inp, _ = st.load(inputs_path)
    losses = train.caption_loss(sd, cfg, batch_of(inp, caption=True), PROMPT_LEN)
    losses["total"].backward()
    out = {f"loss.{n}": v.detach() for n, v in losses.items()}
    record_grads(out, "", params)
    print(", ".join(f"{n} {float(v):.6f}" for n, v in losses.items()))
    st.save(out_path, {k: v.contiguous() for k, v in out.items()},
            {"prompt_len": str(PROMPT_LEN), "label_smoothing": "0.1", "math": "eval (no dropout)"})


def selftest():
    import train_selftest
    return train_selftest.run()


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("make-models")
    p.add_argument("golden")
    p.add_argument("--seed", type=int, default=MODEL_SEED)
    p = sub.add_parser("make-inputs")
    p.add_argument("out")
    p.add_argument("--seed", type=int, default=INPUT_SEED)
    for name in ("dump-pretrain", "dump-retrieval", "dump-caption"):
        p = sub.add_parser(name)
        p.add_argument("modeldir")
        p.add_argument("inputs")
        p.add_argument("out")
        if name == "dump-pretrain":
            p.add_argument("--steps", type=int, default=STEPS)
            p.add_argument("--lr", type=float, default=LR)
            p.add_argument("--wd", type=float, default=WD)
    sub.add_parser("selftest")
    a = ap.parse_args(argv)
    if a.cmd == "make-models":
        make_models(a.golden, a.seed)
    elif a.cmd == "make-inputs":
        out, meta = make_inputs(a.seed)
        st.save(a.out, {k: v.contiguous() for k, v in out.items()}, meta)
        for k, v in sorted(out.items()):
            print(f"{k}: {list(v.shape)} {v.dtype}")
    elif a.cmd == "dump-pretrain":
        dump_pretrain(a.modeldir, a.inputs, a.out, a.steps, a.lr, a.wd)
    elif a.cmd == "dump-retrieval":
        dump_retrieval(a.modeldir, a.inputs, a.out)
    elif a.cmd == "dump-caption":
        dump_caption(a.modeldir, a.inputs, a.out)
    elif a.cmd == "selftest":
        return selftest()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
