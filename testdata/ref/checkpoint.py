"""Writing and reading model directories: config.json + model.safetensors |
pytorch_model.bin | model.pth (original BLIP names under "model")."""
import json
import os
from collections import OrderedDict

import torch

import st
import weights

LM_HEAD = ("text_decoder.cls.predictions.decoder.weight",
           "text_decoder.cls.predictions.decoder.bias")


def write_model(preset, outdir, fmt="hf", lm_head=True, binary=False, seed=None):
    """Random checkpoint for a preset; seed None = the preset's seed (tiny 1, base 2)."""
    cfg = weights.hf_config(preset)
    if seed is None:
        seed = weights.PRESETS[preset]["seed"]
    sd = weights.random_state_dict(cfg, seed, lm_head=lm_head)
    os.makedirs(outdir, exist_ok=True)
    with open(os.path.join(outdir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    if fmt == "original":
        orig = OrderedDict((weights.hf_to_original(k), v) for k, v in sd.items())
        D = cfg["vision_config"]["hidden_size"]
        # extras a loader must ignore (momentum copy, queue, pointer)
        orig["visual_encoder_m.norm.weight"] = weights.random_param(
            "visual_encoder_m.norm.weight", [D], seed)
        orig["text_queue"] = weights.random_param("text_queue", [16, 32], seed)
        orig["queue_ptr"] = torch.zeros(1, dtype=torch.int64)
        path = os.path.join(outdir, "model.pth")
        torch.save({"model": orig}, path)
    elif binary:
        path = os.path.join(outdir, "pytorch_model.bin")
        torch.save(sd, path)
    else:
        path = os.path.join(outdir, "model.safetensors")
        st.save(path, sd, {"format": "pt", "capfilt.preset": preset, "capfilt.seed": str(seed)})
    return path


def read_config(modeldir):
    with open(os.path.join(modeldir, "config.json")) as f:
        return json.load(f)


def read_model(modeldir):
    """Returns (cfg, HF-named float32 state dict restricted to the known parameters)."""
    cfg = read_config(modeldir)
    p = lambda n: os.path.join(modeldir, n)
    if os.path.exists(p("model.safetensors")):
        raw, _ = st.load(p("model.safetensors"))
    elif os.path.exists(p("pytorch_model.bin")):
        raw = torch.load(p("pytorch_model.bin"), map_location="cpu")
    elif os.path.exists(p("model.pth")):
        ck = torch.load(p("model.pth"), map_location="cpu")
        raw = {weights.original_to_hf(k): v for k, v in ck["model"].items()}
    else:
        raise FileNotFoundError(f"{modeldir}: no model.safetensors, pytorch_model.bin or model.pth")
    shapes = weights.param_shapes(cfg)
    sd = {}
    for name, shape in shapes.items():
        if name not in raw:
            raise KeyError(f"{modeldir}: missing {name}")
        t = raw[name].float()
        if list(t.shape) != list(shape):
            raise ValueError(f"{modeldir}: {name} has shape {list(t.shape)}, want {shape}")
        sd[name] = t
    w, b = LM_HEAD
    if w in raw and not torch.equal(raw[w], sd["text_decoder.bert.embeddings.word_embeddings.weight"]):
        print(f"warning: {w} differs from the decoder word embeddings; using the embeddings")
    if b in raw and not torch.equal(raw[b], sd["text_decoder.cls.predictions.bias"]):
        print(f"warning: {b} differs from cls.predictions.bias; using cls.predictions.bias")
    return cfg, sd
