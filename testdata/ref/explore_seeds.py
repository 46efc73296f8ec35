#!/usr/bin/python3
"""Scan make-inputs seeds of the tiny preset for a given weight seed and report what the
generation goldens would cover. Used to choose tiny-gen (weight seed 11, input seed 974).

  explore_seeds.py WEIGHT_SEED FIRST LAST [--all]

Without --all only seeds where greedy [SEP] ends rows at two or more different steps and the
min_length rule blocks a [SEP] are printed. The rules are never changed; only seeds are chosen.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

import blip_ref  # noqa: E402
import generate  # noqa: E402
import model  # noqa: E402
import weights  # noqa: E402

torch.set_grad_enabled(False)


def main(weight_seed, first, last, show_all):
    cfg = weights.hf_config("tiny")
    sd = dict(weights.random_state_dict(cfg, weight_seed))
    t = cfg["text_config"]
    eos, pad = t["sep_token_id"], t["pad_token_id"]
    for seed in range(first, last + 1):
        inp, _ = blip_ref.make_inputs("tiny", seed)
        img = model.vision_forward(sd, cfg, inp["pixel_values"])

        def nl(ids, rows):
            lg, _ = model.decoder_logits(sd, cfg, ids, torch.ones_like(ids), img[rows], False)
            return lg[:, -1]

        prompt = inp["decoder_input_ids"]
        _, g = generate.greedy(nl, prompt, 20, 5, 1.0, eos, pad)
        steps = {s for s in g["eos_step"] if s is not None}
        if not show_all and (len(steps) < 2 or not g["min_length_blocked"]):
            continue
        _, gp = generate.greedy(nl, prompt, 20, 5, 1.1, eos, pad)
        ids, _, b = generate.beam_search(nl, prompt, 3, 20, 5, 1.0, eos, pad)
        closed = sorted({(c["row"], c["cur_len"]) for c in b["closed"]})
        print(f"seed {seed} | greedy sep={g['eos_step']} blocked={g['min_length_blocked']} "
              f"margin={g['min_margin']:.2g} | pen sep={gp['eos_step']} margin={gp['min_margin']:.2g}"
              f" | beam closed={closed} blocked={b['min_length_blocked']} "
              f"done={b['done_before_max_length']} gap={b['min_gap']:.2g}", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), "--all" in sys.argv[4:])
