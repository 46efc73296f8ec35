#!/usr/bin/python3
"""Independent BLIP reference (plain torch, float32, CPU) for capfilt's golden tests.

  make-random {tiny|base} OUTDIR [--format hf|original] [--lm-head present|absent] [--bin]
              [--seed S]
  make-inputs {tiny|base} OUT.safetensors [--seed N]
  dump MODELDIR INPUTS.safetensors OUT.safetensors [--extras] [--decoder-positions N]
  dump-itm-cls MODELDIR INPUTS.safetensors OUT.safetensors   (ITM with [CLS] first, as HF)
  weights-check MODELDIR OUT.safetensors   (first 8 values + float64 sum per parameter)
  compare A.safetensors B.safetensors [--atol X]
  selftest
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

import checkpoint  # noqa: E402
import generate  # noqa: E402
import model  # noqa: E402
import st  # noqa: E402
import weights  # noqa: E402

torch.set_grad_enabled(False)

# default input seeds: tiny 251 = widest decision margins for weight seed 1 (see README;
# tiny-gen uses weight seed 11 with input seed 974)
INPUT_SEEDS = {"tiny": 251, "base": 0}

GEN = {
    "greedy": dict(num_beams=1, max_length=20, min_length=5, repetition_penalty=1.0),
    "greedy_pen": dict(num_beams=1, max_length=20, min_length=5, repetition_penalty=1.1),
    "beam3": dict(num_beams=3, max_length=20, min_length=5, repetition_penalty=1.0),
}
NUCLEUS = dict(top_k=50, top_p=0.9, temperature=1.0, repetition_penalty=1.1, min_length=10,
               max_length=30)


def make_inputs(preset, seed):
    g = torch.Generator().manual_seed(seed)
    t = weights.PRESETS[preset]["text"]
    cls, sep, bos = t["cls_token_id"], t["sep_token_id"], t["bos_token_id"]
    if preset == "tiny":
        B, S, S2, L, lengths, lo, hi = 3, 64, 96, 9, [9, 6, 4], 4, 118
    else:
        B, S, S2, L, lengths, lo, hi = 2, 384, None, 12, [12, 8], 1000, 30000
    out = {"pixel_values": torch.randn(B, 3, S, S, generator=g).clamp(-2, 2)}
    if S2:
        out["pixel_values_hires"] = torch.randn(B, 3, S2, S2, generator=g).clamp(-2, 2)
    ids = torch.randint(lo, hi, (B, L), generator=g)
    mask = torch.zeros(B, L, dtype=torch.int64)
    for r, n in enumerate(lengths):
        ids[r, 0], ids[r, n - 1], ids[r, n:] = cls, sep, t["pad_token_id"]
        mask[r, :n] = 1
    out["input_ids"], out["attention_mask"] = ids, mask
    if preset == "tiny":
        while True:
            body = torch.randint(5, 118, (B, 3), generator=g)
            if len({tuple(r.tolist()) for r in body}) == B:
                break
        out["decoder_input_ids"] = torch.cat([torch.full((B, 1), bos), body], dim=1)
    else:
        out["decoder_input_ids"] = torch.tensor([[bos, 1037, 3861, 1997]] * B)
    meta = {"preset": preset, "seed": str(seed), "generator": "torch.Generator().manual_seed",
            "text_lengths": ",".join(map(str, lengths))}
    return out, meta


def run_generation(sd, cfg, image_embeds, prompt):
    t = cfg["text_config"]
    eos, pad = t["sep_token_id"], t["pad_token_id"]

    def next_logits(ids, rows):
        mask = torch.ones_like(ids)
        logits, _ = model.decoder_logits(sd, cfg, ids, mask, image_embeds[rows], set_bos=False)
        return logits[:, -1]

    res, meta = {}, {}
    for name, g in GEN.items():
        key = f"generate.{name}"
        if g["num_beams"] == 1:
            ids, info = generate.greedy(next_logits, prompt, g["max_length"], g["min_length"],
                                        g["repetition_penalty"], eos, pad)
            meta[key + ".min_top2_margin"] = f"{info['min_margin']:.6g}"
        else:
            ids, scores, info = generate.beam_search(next_logits, prompt, g["num_beams"],
                                                     g["max_length"], g["min_length"],
                                                     g["repetition_penalty"], eos, pad)
            res[key + ".scores"] = scores.float()
            meta[key + ".min_candidate_gap"] = f"{info['min_gap']:.6g}"
            meta[key + ".closed_hypotheses"] = str(len(info["closed"]))
            meta[key + ".done_before_max_length"] = str(info["done_before_max_length"])
        res[key + ".ids"] = ids
        for k, v in g.items():
            meta[f"{key}.{k}"] = str(v)
        meta[key + ".min_length_blocked_sep"] = str(info["min_length_blocked"])
        meta[key + ".sep_positions"] = str([(r == eos).nonzero().flatten().tolist() for r in ids])
        print(f"{key}: {ids.tolist()}")
        print(f"  info: { {k: v for k, v in info.items() if k != 'closed'} }")
        if "closed" in info:
            print(f"  closed: {info['closed']}")
    last = next_logits(prompt, torch.arange(prompt.shape[0]))
    probs, ninfo = generate.nucleus_distribution(
        last, prompt, NUCLEUS["repetition_penalty"], NUCLEUS["min_length"], eos,
        NUCLEUS["top_k"], NUCLEUS["top_p"])
    res["nucleus.probs"] = probs
    for k, v in NUCLEUS.items():
        meta[f"nucleus.{k}"] = str(v)
    meta["nucleus.kept"] = ",".join(str(i["kept"]) for i in ninfo)
    meta["nucleus.kth_gap"] = ",".join(f"{i['kth_gap']:.6g}" for i in ninfo)
    meta["nucleus.mass_before_last_kept"] = ",".join(
        f"{i['mass_before_last_kept']:.6g}" for i in ninfo)
    meta["nucleus.mass_before_first_dropped"] = ",".join(
        f"{i['mass_before_first_dropped']:.6g}" for i in ninfo)
    print(f"nucleus: {ninfo}")
    return res, meta


def dump(modeldir, inputs_path, out_path, extras=False, decoder_positions=None):
    cfg, sd = checkpoint.read_model(modeldir)
    inp, imeta = st.load(inputs_path)
    t = cfg["text_config"]
    pv, ids, mask = inp["pixel_values"], inp["input_ids"], inp["attention_mask"]
    out, meta = {}, {"inputs": os.path.basename(inputs_path), "model": os.path.basename(
        os.path.normpath(modeldir)), "dtype": "float32", "mask_value": "-10000"}
    vcol = {} if extras else None
    img = model.vision_forward(sd, cfg, pv, vcol)
    out["vision.last_hidden_state"] = img
    if "pixel_values_hires" in inp:
        out["vision.last_hidden_state_hires"] = model.vision_forward(
            sd, cfg, inp["pixel_values_hires"])
    tcol = {} if extras else None
    txt = model.text_forward(sd, cfg, "text_encoder.", ids, model.padding_mask(mask), None, tcol)
    out["text_unimodal.last_hidden_state"] = txt
    img_feat, txt_feat = model.itc_features(sd, img, txt)
    out["itc.image_feat"], out["itc.text_feat"] = img_feat, txt_feat
    out["itc.cosine"] = (img_feat * txt_feat).sum(-1)
    itm, itm_h = model.itm_logits(sd, cfg, ids, mask, img)
    out["itm.logits"] = itm
    out["itm.prob"] = itm.softmax(-1)[:, 1]
    dec, dec_h = model.decoder_logits(sd, cfg, ids, mask, img)
    meta["itm.first_token"] = str(t["enc_token_id"])
    meta["decoder.first_token"] = str(t["bos_token_id"])
    meta["text_unimodal.first_token"] = "as given (cls_token_id)"
    if decoder_positions:
        dec = dec[:, :decoder_positions]
        meta["decoder.logits.positions"] = f"0:{decoder_positions} (first {decoder_positions} of {ids.shape[1]})"
    else:
        meta["decoder.logits.positions"] = f"0:{ids.shape[1]} (all)"
    out["decoder.logits"] = dec
    if extras:
        for k, v in vcol.items():
            out[f"vision.{k}"] = v
        for k, v in tcol.items():
            out[f"text_unimodal.{k}"] = v
        out["itm.last_hidden_state"] = itm_h
        out["decoder.last_hidden_state"] = dec_h
    res, gmeta = run_generation(sd, cfg, img, inp["decoder_input_ids"])
    out.update(res)
    meta.update(gmeta)
    meta["generate.prompt"] = "inputs.decoder_input_ids (all 4 tokens); attention all ones"
    meta["generate.eos"] = str(t["sep_token_id"])
    meta["generate.pad"] = str(t["pad_token_id"])
    st.save(out_path, {k: v.contiguous() for k, v in out.items()}, meta)
    for k in sorted(out):
        print(f"{k}: {list(out[k].shape)} {out[k].dtype}")


def dump_itm_cls(modeldir, inputs_path, out_path):
    """ITM scores with the tokenizer's [CLS] left first, as HF transformers'
    BlipForImageTextRetrieval computes them, on the same inputs as `dump` (whose itm.* put
    [ENC] first, as BLIP does)."""
    cfg, sd = checkpoint.read_model(modeldir)
    inp, _ = st.load(inputs_path)
    t = cfg["text_config"]
    ids, mask = inp["input_ids"], inp["attention_mask"]
    if not bool((ids[:, 0] == t["cls_token_id"]).all()):
        raise SystemExit(f"{inputs_path}: input_ids do not all start with [CLS] {t['cls_token_id']}")
    img = model.vision_forward(sd, cfg, inp["pixel_values"])
    logits = model.itm_logits_cls(sd, cfg, ids, mask, img)
    out = {"itm_cls.logits": logits, "itm_cls.prob": logits.softmax(-1)[:, 1]}
    meta = {"inputs": os.path.basename(inputs_path), "model": os.path.basename(os.path.normpath(modeldir)),
            "dtype": "float32", "mask_value": "-10000", "itm_cls.first_token": str(t["cls_token_id"]),
            "what": "ITM with input_ids unchanged ([CLS] first), as HF BlipForImageTextRetrieval; "
                    "the case's golden.safetensors itm.* put [ENC] first"}
    st.save(out_path, {k: v.contiguous() for k, v in out.items()}, meta)
    for k in sorted(out):
        print(f"{k}: {list(out[k].shape)} {out[k].dtype}")


def weights_check(modeldir, out_path):
    """A small file that lets a re-implementation of the generator check itself without the
    (large) checkpoint: per parameter, the first 8 values and the float64 sum of all values."""
    _, sd = checkpoint.read_model(modeldir)
    out = {}
    for k, v in sd.items():
        flat = v.reshape(-1)
        out[k + ".first"] = flat[:8].clone()
        out[k + ".sum"] = torch.tensor(flat.double().numpy().sum(), dtype=torch.float64)
    st.save(out_path, out, {"what": "per parameter: .first = first 8 values (row-major), "
                                    ".sum = float64 sum of all values (numpy pairwise)",
                            "model": os.path.basename(os.path.normpath(modeldir))})


def compare(a_path, b_path, atol):
    a, _ = st.load(a_path)
    b, _ = st.load(b_path)
    bad = 0
    for k in sorted(set(a) | set(b)):
        if k not in a or k not in b:
            print(f"{k}: only in {'A' if k in a else 'B'}")
            bad += 1
            continue
        if a[k].shape != b[k].shape:
            print(f"{k}: shape {list(a[k].shape)} vs {list(b[k].shape)}")
            bad += 1
            continue
        d = (a[k].double() - b[k].double()).abs().max().item() if a[k].numel() else 0.0
        ok = d <= atol
        bad += not ok
        print(f"{k}: max abs diff {d:.3g} {'ok' if ok else 'FAIL'}")
    return bad


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("make-random")
    p.add_argument("preset", choices=sorted(weights.PRESETS))
    p.add_argument("outdir")
    p.add_argument("--format", choices=["hf", "original"], default="hf")
    p.add_argument("--lm-head", choices=["present", "absent"], default="present")
    p.add_argument("--bin", action="store_true")
    p.add_argument("--seed", type=int, help="weight seed S (default: tiny 1, base 2)")
    p = sub.add_parser("make-inputs")
    p.add_argument("preset", choices=sorted(weights.PRESETS))
    p.add_argument("out")
    p.add_argument("--seed", type=int)
    p = sub.add_parser("dump")
    p.add_argument("modeldir")
    p.add_argument("inputs")
    p.add_argument("out")
    p.add_argument("--extras", action="store_true", help="also per-layer hidden states")
    p.add_argument("--decoder-positions", type=int, help="store only the first N positions")
    p = sub.add_parser("dump-itm-cls")
    p.add_argument("modeldir")
    p.add_argument("inputs")
    p.add_argument("out")
    p = sub.add_parser("weights-check")
    p.add_argument("modeldir")
    p.add_argument("out")
    p = sub.add_parser("compare")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--atol", type=float, default=0.0)
    sub.add_parser("selftest")
    a = ap.parse_args(argv)
    if a.cmd == "make-random":
        path = checkpoint.write_model(a.preset, a.outdir, a.format, a.lm_head == "present", a.bin,
                                      a.seed)
        print(path)
    elif a.cmd == "make-inputs":
        seed = INPUT_SEEDS[a.preset] if a.seed is None else a.seed
        out, meta = make_inputs(a.preset, seed)
        st.save(a.out, out, meta)
        for k, v in out.items():
            print(f"{k}: {list(v.shape)} {v.dtype}")
    elif a.cmd == "dump":
        dump(a.modeldir, a.inputs, a.out, a.extras, a.decoder_positions)
    elif a.cmd == "dump-itm-cls":
        dump_itm_cls(a.modeldir, a.inputs, a.out)
    elif a.cmd == "weights-check":
        weights_check(a.modeldir, a.out)
    elif a.cmd == "compare":
        return 1 if compare(a.a, a.b, a.atol) else 0
    elif a.cmd == "selftest":
        import selftest
        return selftest.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
