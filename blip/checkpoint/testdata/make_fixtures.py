#!/usr/bin/python3
"""Writes the checkpoint fixtures the Go tests read, with real torch (1.13) and an
independent, hand-rolled safetensors writer. Run once from this folder:

    /usr/bin/python3 make_fixtures.py

Outputs (committed): *.pth, hf_bin/, hf_sharded_bin/, hf_safetensors/, expected.json and
the fuzz seed corpus under fuzz/. The Go tests never run Python.
"""
import argparse
import collections
import json
import os
import struct
import zipfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
torch.manual_seed(0)

DTYPE_NAMES = {
    torch.float32: "F32", torch.float64: "F64", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL",
}


def row_major_bytes(t):
    """The tensor's elements, row-major, little-endian, as bytes."""
    t = t.detach().contiguous().reshape(-1)
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)  # numpy has no bfloat16; the bits are what we compare
    return t.numpy().tobytes()


def plain_values(t):
    t = t.detach().reshape(-1)
    if t.dtype in (torch.float16, torch.bfloat16):
        t = t.float()
    if t.dtype == torch.bool:
        t = t.to(torch.int64)
    return t.tolist()


def expectation(sd):
    """What the Go reader must report for each tensor of a state dict."""
    out, owner = {"names": [k for k, v in sd.items() if isinstance(v, torch.Tensor)]}, {}
    for name, t in sd.items():
        if not isinstance(t, torch.Tensor):
            continue
        st = t.storage()
        group = owner.setdefault(st.data_ptr(), name)  # first name seen on this storage
        out.setdefault("by_name", {})[name] = {
            "dtype": DTYPE_NAMES[t.dtype],
            "shape": list(t.shape),
            "stride": list(t.stride()),
            "storage_offset": t.storage_offset(),
            "storage_bytes": st.nbytes(),
            "storage_group": group,
            "hex": row_major_bytes(t).hex(),
            "values": plain_values(t),
        }
    return out


def all_dtypes_state_dict():
    sd = collections.OrderedDict()
    sd["f32"] = torch.arange(12, dtype=torch.float32).reshape(3, 4) * 0.5 - 1.25
    sd["f64"] = torch.tensor([1e-300, -2.5, 3.141592653589793], dtype=torch.float64)
    sd["f16"] = torch.tensor([[0.1, -2.0], [65504.0, 6e-8]], dtype=torch.float16)
    sd["bf16"] = torch.tensor([1.0, -0.00390625, 3.0e38, 7.5], dtype=torch.bfloat16)
    sd["i64"] = torch.tensor([0, -1, 2**40 + 3, -(2**62)], dtype=torch.int64)
    sd["i32"] = torch.tensor([[7, -8, 2**31 - 1]], dtype=torch.int32)
    sd["i16"] = torch.tensor([-32768, 32767], dtype=torch.int16)
    sd["i8"] = torch.tensor([-128, 5, 127], dtype=torch.int8)
    sd["u8"] = torch.tensor([0, 200, 255], dtype=torch.uint8)
    sd["bool"] = torch.tensor([[True, False, True]], dtype=torch.bool)
    tied = torch.randn(2, 3)
    sd["tied.a"] = tied  # one storage, two names: how torch saves shared weights
    sd["tied.b"] = tied
    base = torch.arange(15, dtype=torch.float32).reshape(3, 5)
    sd["transposed"] = base.t()  # a view, saved as is: strides (1, 5)
    big = torch.arange(20, dtype=torch.float32).reshape(4, 5) / 4
    sd["rows"] = big[2:4]  # contiguous, storage offset 10
    sd["window"] = big[1:3, 1:4]  # strided and offset
    sd["scalar"] = torch.tensor(3.25)
    sd["empty"] = torch.zeros(0, 4)
    return sd


class TinyBlip(torch.nn.Module):
    """A few BLIP-named weights, with the LM head tied to the word embeddings."""

    def __init__(self):
        super().__init__()
        self.visual_encoder = torch.nn.Module()
        self.visual_encoder.cls_token = torch.nn.Parameter(torch.randn(1, 1, 4))
        self.visual_encoder.norm = torch.nn.LayerNorm(4)
        self.word_embeddings = torch.nn.Embedding(6, 4)
        self.decoder = torch.nn.Linear(4, 6)
        self.decoder.weight = self.word_embeddings.weight
        self.temp = torch.nn.Parameter(torch.tensor(0.07))
        self.register_buffer("position_ids", torch.arange(5).unsqueeze(0))


def salesforce_dump(model):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss = model.decoder(model.word_embeddings.weight).sum() + model.temp + model.visual_encoder.cls_token.sum()
    loss.backward()
    opt.step()
    return model, opt


def write_safetensors(path, sd, metadata):
    """An independent safetensors writer: JSON header, then the data, in name order."""
    header, blobs, off = {}, [], 0
    for name in sorted(sd):
        b = row_major_bytes(sd[name])
        header[name] = {"dtype": DTYPE_NAMES[sd[name].dtype], "shape": list(sd[name].shape),
                        "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    header["__metadata__"] = metadata
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def go_fuzz_seed(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("go test fuzz v1\n[]byte(\"" + "".join("\\x%02x" % b for b in data) + "\")\n")


def main():
    os.chdir(HERE)
    expected = {}

    sd = all_dtypes_state_dict()
    torch.save(sd, "state_dict.pth")
    expected["state_dict.pth"] = {"weights_key": "", "tensors": expectation(sd)}

    model, opt = salesforce_dump(TinyBlip())
    msd = model.state_dict()
    torch.save({
        "model": msd,
        "optimizer": opt.state_dict(),
        "config": {"image_size": 384, "vit": "base", "init_lr": 1e-5, "queue_size": 57600,
                   "alpha": 0.4, "layers": [12, 12], "pair": (1, "x"), "flag": True,
                   "none": None, "nested": {"med_config": "configs/bert_config.json"}},
        "epoch": 3,
    }, "salesforce.pth")
    expected["salesforce.pth"] = {"weights_key": "model", "tensors": expectation(msd)}

    # Parameters saved as Parameters (torch._utils._rebuild_parameter), beside objects a
    # loader cannot build: an argparse config, a numpy epoch, a set, a torch.Size.
    params = collections.OrderedDict(model.named_parameters())
    params["note"] = "not a tensor"
    torch.save({
        "model": params,
        "config": argparse.Namespace(vit="large", batch_size=32),
        "epoch": np.int64(3),
        "seen": {1, 2, 3},
        "size": torch.Size([2, 3]),
    }, "salesforce_namespace.pth")
    expected["salesforce_namespace.pth"] = {
        "weights_key": "model", "skipped": ["note (str)"],
        "tensors": expectation(collections.OrderedDict((k, v) for k, v in params.items() if k != "note")),
    }

    torch.save(sd, "legacy.pth", _use_new_zipfile_serialization=False)

    os.makedirs("hf_bin", exist_ok=True)
    hf = collections.OrderedDict((k, v) for k, v in msd.items())
    torch.save(hf, "hf_bin/pytorch_model.bin")
    with open("hf_bin/config.json", "w") as f:
        json.dump({"architectures": ["BlipForConditionalGeneration"], "text_config": {"num_attention_heads": 12}}, f)
    expected["hf_bin/pytorch_model.bin"] = {"weights_key": "", "tensors": expectation(hf)}

    os.makedirs("hf_sharded_bin", exist_ok=True)
    names = list(hf)
    parts = [names[:3], names[3:]]
    weight_map = {}
    for i, part in enumerate(parts):
        fn = "pytorch_model-%05d-of-%05d.bin" % (i + 1, len(parts))
        torch.save(collections.OrderedDict((k, hf[k]) for k in part), "hf_sharded_bin/" + fn)
        weight_map.update({k: fn for k in part})
    with open("hf_sharded_bin/pytorch_model.bin.index.json", "w") as f:
        json.dump({"metadata": {"total_size": 0}, "weight_map": weight_map}, f, indent=2)

    os.makedirs("hf_safetensors", exist_ok=True)
    st = collections.OrderedDict((k, v.clone(memory_format=torch.contiguous_format)) for k, v in sd.items() if k != "tied.b")
    write_safetensors("hf_safetensors/model.safetensors", st, {"format": "pt"})
    with open("hf_safetensors/config.json", "w") as f:
        json.dump({"architectures": ["BlipForImageTextRetrieval"]}, f)
    expected["hf_safetensors/model.safetensors"] = {"weights_key": "", "tensors": expectation(st)}

    with open("expected.json", "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)
        f.write("\n")

    for fn in ("state_dict.pth", "salesforce.pth", "salesforce_namespace.pth"):
        with zipfile.ZipFile(fn) as z:
            pkl = [n for n in z.namelist() if n.endswith("/data.pkl")][0]
            go_fuzz_seed("fuzz/FuzzUnpickle/" + fn.replace(".pth", ""), z.read(pkl))
    with open("hf_safetensors/model.safetensors", "rb") as f:
        raw = f.read()
    go_fuzz_seed("fuzz/FuzzReadSafetensors/hf_model", raw)
    n = struct.unpack("<Q", raw[:8])[0]
    go_fuzz_seed("fuzz/FuzzReadSafetensors/header_only", raw[: 8 + n])


if __name__ == "__main__":
    main()
