#!/usr/bin/python3
"""Checks, with real torch, that files written by this package load in torch.load with
the values of the torch-written fixtures they were made from. A manual check (the Go
tests never run Python); run from the repository root:

    /usr/bin/python3 blip/checkpoint/testdata/check_torch_load.py

It has the Go test TestExportForTorchLoad write, from testdata/state_dict.pth and
testdata/salesforce.pth: the tensors as a bare state dict, under "model", in zip64 form,
as safetensors and as sharded safetensors. It then loads each with torch.load (plain and
weights_only) or a hand-rolled safetensors parser and compares dtype, shape and values
with torch.load of the original fixture.
"""
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
PKG = os.path.dirname(HERE)

NP = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "BF16": np.int16, "I64": np.int64,
      "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}
TORCH = {"F32": torch.float32, "F64": torch.float64, "F16": torch.float16, "BF16": torch.bfloat16,
         "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
         "U8": torch.uint8, "BOOL": torch.bool}


def original(stem):
    obj = torch.load(os.path.join(HERE, stem + ".pth"))
    return obj["model"] if "model" in obj else obj


def same(name, got, want, where):
    if got.dtype != want.dtype or got.shape != want.shape or not torch.equal(got, want):
        sys.exit("%s: %s differs: got %s %s, want %s %s" % (where, name, got.dtype, tuple(got.shape),
                                                            want.dtype, tuple(want.shape)))


def compare(sd, want, where):
    if list(sd) != list(want):
        sys.exit("%s: names %s, want %s" % (where, list(sd), list(want)))
    for name in want:
        same(name, sd[name], want[name], where)
        if not sd[name].is_contiguous():
            sys.exit("%s: %s is not contiguous" % (where, name))


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    header.pop("__metadata__", None)
    out = {}
    for name, e in header.items():
        b, end = e["data_offsets"]
        arr = np.frombuffer(raw[8 + n + b:8 + n + end], dtype=NP[e["dtype"]]).copy()
        t = torch.from_numpy(arr)
        if e["dtype"] == "BF16":
            t = t.view(torch.bfloat16)
        out[name] = t.reshape(e["shape"])
    return out


def main():
    with tempfile.TemporaryDirectory() as out:
        env = dict(os.environ, CAPFILT_CHECKPOINT_EXPORT_DIR=out)
        subprocess.run(["go", "test", "-count=1", "-run", "^TestExportForTorchLoad$", "."],
                       cwd=PKG, env=env, check=True)
        checked = 0
        for stem in ("state_dict", "salesforce"):
            want = original(stem)
            for weights_only in (False, True):
                kw = {"weights_only": True} if weights_only else {}
                bare = torch.load(os.path.join(out, stem + ".bare.pth"), **kw)
                if type(bare).__name__ != "OrderedDict":
                    sys.exit("bare file loads as %s, want OrderedDict" % type(bare))
                compare(bare, want, stem + ".bare.pth")
                for form in ("wrapped", "zip64"):
                    obj = torch.load(os.path.join(out, "%s.%s.pth" % (stem, form)), **kw)
                    if list(obj) != ["model"]:
                        sys.exit("%s.%s.pth: keys %s, want ['model']" % (stem, form, list(obj)))
                    compare(obj["model"], want, "%s.%s.pth" % (stem, form))
                checked += 3
            st = read_safetensors(os.path.join(out, stem + ".safetensors"))
            compare({k: st[k] for k in want}, want, stem + ".safetensors")
            sharded_dir = os.path.join(out, stem + ".sharded")
            with open(os.path.join(sharded_dir, "model.safetensors.index.json")) as f:
                index = json.load(f)
            merged = {}
            for shard in sorted(set(index["weight_map"].values())):
                merged.update(read_safetensors(os.path.join(sharded_dir, shard)))
            compare({k: merged[k] for k in want}, want, stem + ".sharded")
            checked += 2
        print("torch %s loads all %d files with identical values" % (torch.__version__, checked))


if __name__ == "__main__":
    main()
