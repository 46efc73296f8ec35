"""Minimal safetensors reader/writer (no `safetensors` package).

Format: 8-byte little-endian u64 header length N, then N bytes of UTF-8 JSON
{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}},
then the raw little-endian tensor bytes; offsets are relative to the end of the header.
The header is padded with spaces to a multiple of 8 bytes, as the reference library does.
"""
import json
import struct

import numpy as np
import torch

_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8,
    "U8": np.uint8, "BOOL": np.bool_,
}
_NAMES = {np.dtype(v).str: k for k, v in _DTYPES.items()}


def _as_numpy(t):
    if isinstance(t, torch.Tensor):
        t = t.detach().cpu().contiguous().numpy()
    a = np.asarray(t)
    if not a.flags.c_contiguous:
        a = a.copy(order="C")  # (np.ascontiguousarray would turn a 0-d array into 1-d)
    return a.astype(a.dtype.newbyteorder("<"), copy=False)


def save(path, tensors, metadata=None):
    """Write {name: tensor} to path; tensors are stored in sorted-name order."""
    header = {}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        a = _as_numpy(tensors[name])
        key = np.dtype(a.dtype).str
        if key not in _NAMES:
            raise ValueError(f"{name}: unsupported dtype {a.dtype}")
        raw = a.tobytes()
        header[name] = {"dtype": _NAMES[key], "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    hb = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hb += b" " * ((8 - len(hb) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for b in blobs:
            f.write(b)


def load(path):
    """Return ({name: torch.Tensor}, metadata dict)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {}) or {}
    base = 8 + n
    out = {}
    for name, info in header.items():
        dt = np.dtype(_DTYPES[info["dtype"]]).newbyteorder("<")
        b, e = info["data_offsets"]
        a = np.frombuffer(data, dtype=dt, count=(e - b) // dt.itemsize, offset=base + b)
        a = a.reshape(info["shape"]).astype(dt.newbyteorder("="))
        out[name] = torch.from_numpy(a.copy())
    return out, meta
