#!/usr/bin/env python3
"""Goldens for imageproc's train-time augmentation, from an independent implementation.

Geometric ops: OpenCV's own cv2.warpAffine (INTER_LINEAR, BORDER_CONSTANT), on matrices
built the way BLIP's transform/randaugment.py builds them (np.float32 shear/translate
matrices, cv2.getRotationMatrix2D about (W/2, H/2)), plus a few generic matrices.

AutoContrast and Equalize: restated here with numpy from the semantics of BLIP's
randaugment.py (its cv2 "same output as PIL" versions), including its uint8 arithmetic:
the channel minimum is a numpy uint8, so negating it wraps.

Run: /usr/bin/python3 imageproc/testdata/augment/make_goldens.py   (Debian python3-opencv)
Writes goldens.json beside this file.
"""
import base64
import json
import os

import cv2
import numpy as np

FILL = (128, 128, 128)


def b64(a):
    return base64.b64encode(np.ascontiguousarray(a, dtype=np.uint8).tobytes()).decode()


def images():
    rng = np.random.default_rng(20220128)
    out = []
    for h, w in [(5, 5), (17, 23), (32, 32), (29, 40)]:
        out.append(("random_%dx%d" % (w, h), rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)))
    # A smooth image: bilinear blends show up as exact intermediate values.
    y, x = np.mgrid[0:24, 0:31]
    smooth = np.stack([x * 8, y * 10, (x + y) * 4], axis=-1).clip(0, 255).astype(np.uint8)
    out.append(("gradient_31x24", smooth))
    return out


def warp_cases(w, h):
    f32 = np.float32
    cases = []
    for s in (0.15, -0.15, 0.5):
        cases.append(("shear_x_%g" % s, np.array([[1, s, 0], [0, 1, 0]], dtype=f32), FILL))
        cases.append(("shear_y_%g" % s, np.array([[1, 0, 0], [s, 1, 0]], dtype=f32), FILL))
    for t in (5.0, -5.0, 2.0):
        cases.append(("translate_x_%g" % t, np.array([[1, 0, -t], [0, 1, 0]], dtype=f32), FILL))
        cases.append(("translate_y_%g" % t, np.array([[1, 0, 0], [0, 1, -t]], dtype=f32), FILL))
    for deg in (15.0, -15.0, 37.0, 90.0):
        cases.append(("rotate_%g" % deg, cv2.getRotationMatrix2D((w / 2, h / 2), deg, 1), FILL))
    cases.append(("generic", np.array([[0.9, 0.2, 1.3], [-0.1, 1.1, -2.7]], dtype=np.float64), (10, 200, 30)))
    return cases


def autocontrast(img):
    chans = []
    for c in range(3):
        ch = img[:, :, c]
        hi, lo = ch.max(), ch.min()  # numpy uint8 scalars
        if hi <= lo:
            table = np.arange(256)
        else:
            scale = 255 / (hi - lo)
            table = np.arange(256) * scale + (-lo) * scale  # -lo wraps: uint8
            table = table.clip(0, 255)
        chans.append(table.astype(np.uint8)[ch])
    return np.stack(chans, axis=-1)


def equalize(img):
    chans = []
    for c in range(3):
        ch = img[:, :, c]
        hist = np.bincount(ch.ravel(), minlength=256).astype(np.float32)
        used = hist[hist != 0]
        step = np.sum(used[:-1]) // 255
        if step == 0:
            chans.append(ch)
            continue
        shifted = np.empty_like(hist)
        shifted[0] = step // 2
        shifted[1:] = hist[:-1]
        table = (np.cumsum(shifted) // step).clip(0, 255).astype(np.uint8)
        chans.append(table[ch])
    return np.stack(chans, axis=-1)


def tone_images():
    rng = np.random.default_rng(7)
    out = []
    a = rng.integers(0, 256, size=(19, 13, 3), dtype=np.uint8)
    a[0, 0] = (0, 0, 0)  # every channel reaches 0: a real stretch
    a[1, 1] = (200, 255, 90)
    a[:, :, 2] = a[:, :, 2] // 3  # channel 2 max well below 255
    out.append(("stretch", a))
    b = rng.integers(10, 180, size=(11, 17, 3), dtype=np.uint8)  # minimum above 0
    b[:, :, 1] = 77  # a constant channel
    out.append(("min_above_zero", b))
    c = np.zeros((8, 9, 3), dtype=np.uint8)
    c[:, :, 0] = rng.choice([3, 50, 51, 200], size=(8, 9))
    c[:, :, 1] = 9  # one value only: equalize's step is 0
    c[:, :, 2] = rng.integers(0, 256, size=(8, 9))
    out.append(("few_levels", c))
    return out


def main():
    doc = {"opencv": cv2.__version__, "numpy": np.__version__, "fill": FILL, "warps": [], "tones": []}
    for name, img in images():
        h, w = img.shape[:2]
        entry = {"name": name, "width": w, "height": h, "pixels": b64(img), "cases": []}
        for cname, m, fill in warp_cases(w, h):
            out = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=fill)
            entry["cases"].append({"name": cname, "matrix": [float(v) for v in np.asarray(m, dtype=np.float64).ravel()],
                                   "fill": list(fill), "pixels": b64(out)})
        doc["warps"].append(entry)
    for name, img in tone_images():
        h, w = img.shape[:2]
        doc["tones"].append({"name": name, "width": w, "height": h, "pixels": b64(img),
                             "autocontrast": b64(autocontrast(img)), "equalize": b64(equalize(img))})
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "goldens.json")
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
