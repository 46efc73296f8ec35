#!/usr/bin/python3
"""PIL reference outputs for capfilt's image preprocessing (package blip).

Run by hand with Debian's Python (Pillow 9.4, libjpeg-turbo, libwebp, torch):

    /usr/bin/python3 testdata/ref/pil_resize.py imageproc/testdata/image

It writes small test images in every format and mode BLIP meets, and for each:
  NAME.decoded.png     what Image.open(f).convert("RGB") gives (BLIP's loader)
  NAME.WxH.png         that RGB image after .resize((W, H), Image.BICUBIC), the call
                       torchvision's Resize((S, S), BICUBIC) makes
  manifest.json        the list of cases
plus one torchvision-style ToTensor()+Normalize(CLIP) output as raw little-endian
float32 (torch does the arithmetic, as in BLIP). The Go tests read these; they never
run Python. Everything is seeded, but the outputs are only as reproducible as the
Pillow/libjpeg/libwebp versions, so they are committed.
"""
import io
import json
import os
import struct
import sys
import zlib

import numpy as np
import torch
from PIL import Image, ImageDraw

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

rng = np.random.default_rng(20240601)
out_dir = sys.argv[1] if len(sys.argv) > 1 else "imageproc/testdata/image"
os.makedirs(out_dir, exist_ok=True)
manifest = []


def png_chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def raw_png(width, height, bit_depth, color_type, rows, extra=b""):
    """A PNG written by hand, for the sample layouts PIL cannot save (16-bit, 2-bit)."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    raw = b"".join(b"\x00" + r for r in rows)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + extra
            + png_chunk(b"IDAT", zlib.compress(raw, 9)) + png_chunk(b"IEND", b""))


def encode(im, fmt, **kw):
    b = io.BytesIO()
    im.save(b, fmt, **kw)
    return b.getvalue()


def add(name, ext, data, sizes=(), decode_exact=True):
    """Store the input bytes, PIL's RGB decode and its bicubic resizes."""
    path = f"{name}.{ext}"
    with open(os.path.join(out_dir, path), "wb") as f:
        f.write(data)
    im = Image.open(io.BytesIO(data))
    fmt = im.format.lower()
    rgb = im.convert("RGB")
    rgb.info.pop("transparency", None)  # metadata only; the pixels are what BLIP sees
    rgb.save(os.path.join(out_dir, f"{name}.decoded.png"))
    case = {"name": name, "input": path, "format": fmt, "pil_mode": im.mode,
            "width": rgb.width, "height": rgb.height,
            "decoded": f"{name}.decoded.png", "decode_exact": decode_exact, "resized": []}
    for w, h in sizes:
        f = f"{name}.{w}x{h}.png"
        rgb.resize((w, h), Image.BICUBIC).save(os.path.join(out_dir, f))
        case["resized"].append({"width": w, "height": h, "file": f})
    manifest.append(case)
    return rgb


def noise(h, w, c):
    base = rng.integers(0, 256, (h, w, c)).astype(np.float64)
    y, x = np.mgrid[0:h, 0:w]
    grad = (x / max(w - 1, 1) * 255)[..., None]
    return np.clip(0.5 * base + 0.5 * grad, 0, 255).astype(np.uint8)


def photo(w, h):
    """A smooth synthetic scene with hard edges, like a photo as far as JPEG cares."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 255 / w, y * 255 / h, 128 + 100 * np.sin(x / 23) * np.cos(y / 17)], -1)
    img += rng.normal(0, 2, img.shape)
    im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(im)
    d.ellipse((w // 6, h // 6, w // 2, 7 * h // 12), fill=(220, 30, 40))
    d.rectangle((w // 2 + 30, h // 2 - 40, w - 40, h - 60), fill=(20, 200, 60))
    d.polygon([(50, h - 30), (200, h - 180), (320, h - 20)], fill=(250, 250, 20))
    return im


# --- PNG in every mode --------------------------------------------------------
rgb_noise = Image.fromarray(noise(61, 97, 3))
add("rgb_noise", "png", encode(rgb_noise, "PNG"),
    sizes=[(40, 23), (131, 89), (97, 30), (50, 61), (5, 3), (1, 1)])
add("wide", "png", encode(Image.fromarray(noise(7, 1000, 3)), "PNG"), sizes=[(32, 32)])
add("tall", "png", encode(Image.fromarray(noise(300, 5, 3)), "PNG"), sizes=[(32, 32)])
add("one_pixel", "png", encode(Image.fromarray(noise(1, 1, 3)), "PNG"), sizes=[(4, 4)])
add("two_by_three", "png", encode(Image.fromarray(noise(3, 2, 3)), "PNG"), sizes=[(16, 16)])

rgba = noise(40, 50, 4)
rgba[..., 3] = np.linspace(0, 255, 50, dtype=np.uint8)[None, :]
add("rgba", "png", encode(Image.fromarray(rgba, "RGBA"), "PNG"), sizes=[(24, 24)])

pal = Image.fromarray((noise(33, 45, 1)[..., 0] // 16).astype(np.uint8), "P")
pal.putpalette(list(rng.integers(0, 256, 48)) + [0] * (768 - 48))
add("palette", "png", encode(pal, "PNG", transparency=3), sizes=[(20, 20)])

add("gray", "png", encode(Image.fromarray(noise(45, 60, 1)[..., 0], "L"), "PNG"), sizes=[(30, 30)])
la = noise(20, 30, 2)
add("gray_alpha", "png", encode(Image.fromarray(la, "LA"), "PNG"), sizes=[(16, 16)])

# 16-bit and 2-bit PNGs, written by hand.
w16, h16 = 40, 30
rgb16 = rng.integers(0, 65536, (h16, w16, 3), dtype=np.uint16)
add("rgb16", "png", raw_png(w16, h16, 16, 2, [r.astype(">u2").tobytes() for r in rgb16]), sizes=[(20, 20)])
rgba16 = rng.integers(0, 65536, (h16, w16, 4), dtype=np.uint16)
add("rgba16", "png", raw_png(w16, h16, 16, 6, [r.astype(">u2").tobytes() for r in rgba16]), sizes=[(20, 20)])
gray16 = rng.integers(0, 600, (h16, w16), dtype=np.uint16)  # PIL clips these at 255
add("gray16", "png", raw_png(w16, h16, 16, 0, [r.astype(">u2").tobytes() for r in gray16]), sizes=[(20, 20)])
add("gray16_trns", "png", raw_png(w16, h16, 16, 0, [r.astype(">u2").tobytes() for r in gray16],
                                  extra=png_chunk(b"tRNS", struct.pack(">H", int(gray16[0, 0])))))
la16 = rng.integers(0, 65536, (h16, w16, 2), dtype=np.uint16)
add("gray_alpha16", "png", raw_png(w16, h16, 16, 4, [r.astype(">u2").tobytes() for r in la16]))
gray2 = rng.integers(0, 4, (10, 20), dtype=np.uint8)
add("gray2", "png", raw_png(20, 10, 2, 0, [np.packbits(np.unpackbits(r[:, None], axis=1)[:, 6:].reshape(-1)).tobytes()
                                           for r in gray2]))

# --- JPEG ---------------------------------------------------------------------
scene = photo(640, 480)
add("photo", "jpg", encode(scene, "JPEG", quality=90), sizes=[(384, 384)], decode_exact=False)
small = scene.resize((61, 47), Image.BICUBIC)
add("jpeg444", "jpg", encode(small, "JPEG", quality=85, subsampling=0), decode_exact=False)
add("jpeg422", "jpg", encode(small, "JPEG", quality=85, subsampling=1), decode_exact=False)
add("jpeg420_tiny", "jpg", encode(scene.resize((3, 5), Image.BICUBIC), "JPEG", quality=95), decode_exact=False)
add("jpeg_progressive", "jpg", encode(small, "JPEG", quality=80, progressive=True), decode_exact=False)
add("jpeg_gray", "jpg", encode(small.convert("L"), "JPEG", quality=85), decode_exact=False)
add("jpeg_cmyk", "jpg", encode(small.convert("CMYK"), "JPEG", quality=90), decode_exact=False)

# --- GIF, BMP, WebP -------------------------------------------------------------
frames = [Image.fromarray((noise(30, 40, 1)[..., 0] // 32).astype(np.uint8), "P") for _ in range(2)]
for f in frames:
    f.putpalette(list(rng.integers(0, 256, 24)) + [0] * (768 - 24))
add("anim", "gif", encode(frames[0], "GIF", save_all=True, append_images=frames[1:], optimize=False))
# A first frame smaller than the logical screen, with a transparent index: patch the
# screen size and frame offset of a plain GIF.
g = bytearray(encode(frames[0].crop((0, 0, 12, 7)), "GIF", transparency=2, optimize=False))
g[6:10] = struct.pack("<HH", 20, 11)
desc = g.index(b"\x2c", 13 + 3 * (2 << (g[10] & 7)))
g[desc + 1:desc + 5] = struct.pack("<HH", 5, 3)
add("gif_partial_frame", "gif", bytes(g))

add("bmp24", "bmp", encode(Image.fromarray(noise(21, 33, 3)), "BMP"))
add("bmp8", "bmp", encode(pal, "BMP"))

add("webp_lossy", "webp", encode(small, "WEBP", quality=80), sizes=[(24, 24)])
add("webp_lossless", "webp", encode(Image.fromarray(noise(20, 30, 3)), "WEBP", lossless=True))
add("webp_alpha", "webp", encode(Image.fromarray(noise(17, 31, 4), "RGBA"), "WEBP", quality=80))

# --- ToTensor + Normalize, as torchvision does them in BLIP's transform ------------
src = Image.open(os.path.join(out_dir, "rgb_noise.40x23.png"))
t = torch.from_numpy(np.asarray(src).copy()).permute(2, 0, 1).contiguous().to(torch.float32).div(255)
t = t.sub(torch.tensor(CLIP_MEAN, dtype=torch.float32)[:, None, None]).div(
    torch.tensor(CLIP_STD, dtype=torch.float32)[:, None, None])
t.numpy().astype("<f4").tofile(os.path.join(out_dir, "rgb_noise.40x23.normalized.f32"))

with open(os.path.join(out_dir, "manifest.json"), "w") as f:
    json.dump({"pillow": Image.__version__, "normalized": {
        "source": "rgb_noise.40x23.png", "file": "rgb_noise.40x23.normalized.f32"},
        "cases": manifest}, f, indent=1)
total = sum(os.path.getsize(os.path.join(out_dir, n)) for n in os.listdir(out_dir))
print(f"{len(manifest)} cases, {total} bytes in {out_dir}")
