"""Python parts of scripts/gpu-check.sh (run with the GPU machine's pip PyTorch).

    gpu_check.py compare OUT.safetensors GOLDEN.safetensors --atol X
    gpu_check.py sdpa
    gpu_check.py hold --free-gb N
    gpu_check.py hf --model DIR --inputs INPUTS --forward FWD --generate GEN

compare: every tensor both files hold, capfilt's output narrowed to the golden's shape where
the reference kept less (base decoder logits: 3 positions); fails above atol.
sdpa: whether PyTorch has a fused kernel (flash or memory-efficient, the math fallback
disabled) for the attention shapes and dtypes of BLIP base: the ViT's self-attention, the
decoder's cross-attention and the text encoder's padded self-attention.
hold: allocates all but N GB of GPU 0 and waits, so that a capfilt run beside it meets a
real out-of-memory.
hf: HF transformers' BlipForImageTextRetrieval and BlipForConditionalGeneration on the
same checkpoint and reference inputs: ITM P(match) ([ENC] first, as capfilt and the
original BLIP feed it), ITC cosine, greedy ids (max length 20, min length 5), compared with
capfilt's `model forward` and `model generate` outputs.
"""
import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "testdata", "ref"))

import torch  # noqa: E402

import st  # noqa: E402  (testdata/ref's safetensors reader: no package needed)


def cmd_compare(a):
    out, _ = st.load(a.out)
    gold, _ = st.load(a.golden)
    bad = compared = 0
    for k in sorted(set(out) & set(gold)):
        x, y = out[k].double(), gold[k].double()
        if x.dim() == y.dim() and x.shape != y.shape and all(s >= t for s, t in zip(x.shape, y.shape)):
            x = x[tuple(slice(0, t) for t in y.shape)]
        if x.shape != y.shape:
            print(f"{k}: shape {list(x.shape)}, reference {list(y.shape)} FAIL")
            bad += 1
            continue
        d = (x - y).abs().max().item() if x.numel() else 0.0
        ok = d <= a.atol
        bad += not ok
        compared += 1
        print(f"{k:36s} max |diff| {d:.3g} {'ok' if ok else 'FAIL'} (atol {a.atol:g})")
    if compared < 6:
        print(f"only {compared} tensors compared")
        return 1
    return 1 if bad else 0


def cmd_sdpa(_):
    import torch.nn.functional as F
    if not torch.cuda.is_available():
        print("no CUDA device")
        return 1
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
        fused = lambda: sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION])  # noqa: E731
    except ImportError:
        fused = lambda: torch.backends.cuda.sdp_kernel(enable_flash=True, enable_mem_efficient=True,  # noqa: E731
                                                       enable_math=False)
    bad = 0
    B, H, d = 64, 12, 64
    for dt in (torch.float32, torch.bfloat16):
        cases = {
            "ViT self-attention [64,12,577,64]": (B, 577, 577, None),
            "decoder cross-attention, one query [64,12,1,577]": (B, 1, 577, None),
            "text self-attention, padding mask [64,12,35,35]": (B, 35, 35, "pad"),
        }
        for name, (b, lq, lk, mask) in cases.items():
            q = torch.randn(b, H, lq, d, device="cuda", dtype=dt)
            k = torch.randn(b, H, lk, d, device="cuda", dtype=dt)
            v = torch.randn(b, H, lk, d, device="cuda", dtype=dt)
            m = None
            if mask:
                m = torch.zeros(b, 1, 1, lk, device="cuda", dtype=dt)
                m[:, :, :, -5:] = -10000.0
            try:
                with fused():
                    F.scaled_dot_product_attention(q, k, v, attn_mask=m)
                print(f"{dt} {name}: fused kernel available")
            except RuntimeError as e:
                first = str(e).strip().split("\n")[0]
                print(f"{dt} {name}: NO fused kernel (math fallback): {first}")
                bad += dt == torch.bfloat16  # float32 may lack flash; bf16 is the target
    return 1 if bad else 0


def cmd_hold(a):
    free, total = torch.cuda.mem_get_info()
    keep = int(a.free_gb * 1e9)
    n = max(free - keep, 0)
    x = torch.empty(n, dtype=torch.uint8, device="cuda")
    x.fill_(1)
    free2, _ = torch.cuda.mem_get_info()
    print(f"holding {n / 1e9:.1f} GB of {total / 1e9:.1f} GB: {free2 / 1e9:.1f} GB left for capfilt", flush=True)
    while True:
        time.sleep(5)


def cmd_hf(a):
    from transformers import BlipForConditionalGeneration, BlipForImageTextRetrieval
    inputs, _ = st.load(a.inputs)
    fwd, _ = st.load(a.forward)
    gen, _ = st.load(a.generate)
    get = lambda n: inputs.get("inputs." + n, inputs.get(n))  # noqa: E731
    px = get("pixel_values").cuda()
    ids, mask = get("input_ids").cuda(), get("attention_mask").cuda()
    dec = get("decoder_input_ids").cuda()
    bad = 0
    with torch.no_grad():
        ret = BlipForImageTextRetrieval.from_pretrained(a.model).cuda().eval()
        enc_ids = ids.clone()
        enc_ids[:, 0] = ret.config.text_config.enc_token_id if hasattr(ret.config.text_config, "enc_token_id") else 30523
        itm = ret(input_ids=enc_ids, pixel_values=px, attention_mask=mask, use_itm_head=True).itm_score.softmax(-1)[:, 1]
        itc = ret(input_ids=ids, pixel_values=px, attention_mask=mask, use_itm_head=False).itm_score.diagonal()
        for name, hf, ours in (("itm.prob", itm, fwd["itm.prob"]), ("itc.cosine", itc, fwd["itc.cosine"])):
            d = (hf.double().cpu() - ours.double()).abs().max().item()
            ok = d <= 1e-3
            bad += not ok
            print(f"{name:12s} HF {hf.cpu().tolist()} capfilt {ours.tolist()} max |diff| {d:.3g} {'ok' if ok else 'FAIL'}")
        del ret
        cap = BlipForConditionalGeneration.from_pretrained(a.model).cuda().eval()
        sep = cap.config.text_config.sep_token_id
        prompt = torch.cat([dec, torch.full_like(dec[:, :1], sep)], 1)  # HF's generate drops the last token
        out = cap.generate(pixel_values=px, input_ids=prompt, max_length=20, min_length=5, num_beams=1, do_sample=False,
                           repetition_penalty=1.0)
    ours = gen["generate.ids"]
    for r in range(out.shape[0]):
        h = [t for t in out[r].tolist()]
        o = ours[r].tolist()
        while h and h[-1] == 0 and (sep in h[:-1]):
            h.pop()
        while o and o[-1] == 0 and (sep in o[:-1]):
            o.pop()
        ok = h == o
        bad += not ok
        print(f"greedy row {r}: {'same ids' if ok else 'DIFFERENT'}\n  HF      {h}\n  capfilt {o}")
    return 1 if bad else 0


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("compare")
    p.add_argument("out")
    p.add_argument("golden")
    p.add_argument("--atol", type=float, required=True)
    sub.add_parser("sdpa")
    p = sub.add_parser("hold")
    p.add_argument("--free-gb", type=float, required=True)
    p = sub.add_parser("hf")
    for f in ("--model", "--inputs", "--forward", "--generate"):
        p.add_argument(f, required=True)
    a = ap.parse_args(argv)
    return {"compare": cmd_compare, "sdpa": cmd_sdpa, "hold": cmd_hold, "hf": cmd_hf}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
