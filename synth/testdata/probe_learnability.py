#!/usr/bin/python3
"""Is the synthetic world learnable by a tiny model in a minute or two of CPU, and does
noise in the web text hurt? An independent probe, not part of the product or the tests.

It trains a tiny two-tower contrastive model (ViT 64 wide, 3 layers, 16-px patches over
48-px images; a text transformer 64 wide, 2 layers; ITC loss only, no momentum, no
queue) for a fixed number of steps on the annotated set plus the web set, once with the web
text as written (noisy) and once with the noise removed and each web image given its
clean caption (an oracle CapFilt), and prints the test set's TR@1 / IR@1 for both.

    capfilt synth --out /tmp/w --jpeg 0 --seed 1   # PNG only: this script decodes PNG itself
    /usr/bin/python3 synth/testdata/probe_learnability.py /tmp/w [steps per run] [seed]

Run it by path, not from the repository root with -c: the repo's torch/ folder would
shadow the torch package.

Measured on the 2-core machine the project builds on (30-140 s a run, under other load),
worlds of seed 1, 500 steps of 64, test TR@1 / IR@1 of 200 images:

  default world (40% noise, 45% incomplete, 150 annotated images)
    seed 0  noisy 0.585 / 0.581   oracle 0.625 / 0.691
    seed 1  noisy 0.515 / 0.523   oracle 0.780 / 0.806
    seed 2  noisy 0.565 / 0.594   oracle 0.665 / 0.690
  --incomplete 0.3 --annotated 300
    seed 0  noisy 0.615 / 0.628   oracle 0.670 / 0.664
    seed 1  noisy 0.565 / 0.622   oracle 0.715 / 0.724
"""
import io, json, math, os, re, sys, tarfile, time, zlib

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def png_rgb(data):
    """Decodes an 8-bit, non-interlaced RGB or RGBA PNG (what Go's encoder writes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, w = 8, b"", 0
    while pos < len(data):
        n = int.from_bytes(data[pos:pos + 4], "big")
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype = int.from_bytes(body[:4], "big"), int.from_bytes(body[4:8], "big"), body[8], body[9]
            assert depth == 8 and ctype in (2, 6) and body[12] == 0, "only 8-bit RGB(A) PNG"
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(h, 1 + w * bpp)
    out = np.zeros((h, w * bpp), np.int32)
    for y in range(h):
        f, line = raw[y, 0], raw[y, 1:].astype(np.int32)
        prev = out[y - 1] if y else np.zeros(w * bpp, np.int32)
        if f == 0:
            out[y] = line
        elif f == 1:  # sub: a running sum along the row, per channel
            out[y] = (np.cumsum(line.reshape(w, bpp), axis=0) & 255).reshape(-1)
        elif f == 2:
            out[y] = (line + prev) & 255
        else:  # average, paeth: sequential in x
            cur, ln, pv = [0] * (w * bpp), line.tolist(), prev.tolist()
            for x in range(w * bpp):
                a = cur[x - bpp] if x >= bpp else 0
                b, c = pv[x], pv[x - bpp] if x >= bpp else 0
                if f == 3:
                    p = (a + b) // 2
                else:
                    pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                    p = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                cur[x] = (ln[x] + p) & 255
            out[y] = cur
    return out.reshape(h, w, bpp)[:, :, :3].astype(np.uint8)


def load_world(d):
    web = []
    for name in json.load(open(os.path.join(d, "world.json")))["web"]["shards"]:
        with tarfile.open(os.path.join(d, name)) as tf:
            members = {m.name: tf.extractfile(m).read() for m in tf.getmembers()}
        for k in sorted({n.rsplit(".", 1)[0] for n in members}):
            meta = json.loads(members[k + ".json"])
            web.append((png_rgb(members[k + ".png"]), members[k + ".txt"].decode(), meta["synth"]))
    sets = {}
    for s in ("annotated", "test"):
        entries = json.load(open(os.path.join(d, s, "annotations.json")))
        sets[s] = [(png_rgb(open(os.path.join(d, s, e["image"]), "rb").read()), e["caption"]) for e in entries]
    vocab = {t: i for i, t in enumerate(open(os.path.join(d, "vocab.txt")).read().split("\n")) if t}
    return web, sets, vocab


def encode(texts, vocab, n=32):
    ids = torch.zeros(len(texts), n, dtype=torch.long)
    for i, t in enumerate(texts):
        toks = [vocab["[CLS]"]] + [vocab.get(w, vocab["[UNK]"]) for w in re.findall(r"[a-z0-9]+|[^a-z0-9\s]", t.lower())][: n - 2] + [vocab["[SEP]"]]
        ids[i, : len(toks)] = torch.tensor(toks)
    return ids


class Block(nn.Module):
    def __init__(self, d, heads=4):
        super().__init__()
        self.n1, self.n2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x, pad=None):
        h = self.n1(x)
        x = x + self.attn(h, h, h, key_padding_mask=pad, need_weights=False)[0]
        return x + self.mlp(self.n2(x))


class TwoTower(nn.Module):
    def __init__(self, vocab_size, d=64, embed=32, size=48, patch=16):
        super().__init__()
        self.patch = nn.Conv2d(3, d, patch, patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        self.vpos = nn.Parameter(torch.randn(1, 1 + (size // patch) ** 2, d) * 0.02)
        self.vblocks = nn.ModuleList(Block(d) for _ in range(3))
        self.vnorm = nn.LayerNorm(d)
        self.tok = nn.Embedding(vocab_size, d)
        self.tpos = nn.Parameter(torch.randn(1, 32, d) * 0.02)
        self.tblocks = nn.ModuleList(Block(d) for _ in range(2))
        self.tnorm = nn.LayerNorm(d)
        self.vproj, self.tproj = nn.Linear(d, embed), nn.Linear(d, embed)
        self.temp = nn.Parameter(torch.tensor(0.07))

    def image(self, px):
        x = self.patch(px).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(len(x), -1, -1), x], 1) + self.vpos
        for b in self.vblocks:
            x = b(x)
        return F.normalize(self.vproj(self.vnorm(x)[:, 0]), dim=-1)

    def text(self, ids):
        x = self.tok(ids) + self.tpos[:, : ids.shape[1]]
        for b in self.tblocks:
            x = b(x, pad=ids == 0)
        return F.normalize(self.tproj(self.tnorm(x)[:, 0]), dim=-1)


def pixels(imgs):
    x = torch.tensor(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255
    return (x - 0.45) / 0.27


def evaluate(model, test, vocab):
    model.eval()
    with torch.no_grad():
        img = model.image(pixels([im for im, _ in test]))
        caps = [c for _, cs in test for c in cs]
        owner = torch.tensor([i for i, (_, cs) in enumerate(test) for _ in cs])
        txt = model.text(encode(caps, vocab))
        sim = img @ txt.T
        tr1 = (owner[sim.argmax(1)] == torch.arange(len(test))).float().mean().item()
        ir1 = (sim.argmax(0) == owner).float().mean().item()
    model.train()
    return tr1, ir1


def train(pairs, test, vocab, max_steps, seed):
    torch.manual_seed(seed)
    model = TwoTower(len(vocab))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    px, ids = pixels([p[0] for p in pairs]), encode([p[1] for p in pairs], vocab)
    start, steps, rng = time.time(), 0, np.random.default_rng(seed)
    while steps < max_steps:
        for b in np.array_split(rng.permutation(len(pairs)), len(pairs) // 64):
            b = torch.tensor(b)
            sim = model.image(px[b]) @ model.text(ids[b]).T / model.temp.clamp(0.001, 0.5)
            target = torch.arange(len(b))
            loss = (F.cross_entropy(sim, target) + F.cross_entropy(sim.T, target)) / 2
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
            if steps == max_steps:
                break
    return evaluate(model, test, vocab), time.time() - start


def main():
    d = sys.argv[1]
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 500
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    torch.set_num_threads(int(os.environ.get("PROBE_THREADS", "1")))  # 2 threads thrash on a shared 2-core machine
    t0 = time.time()
    web, sets, vocab = load_world(d)
    print(f"loaded {len(web)} web, {len(sets['annotated'])} annotated, {len(sets['test'])} test images in {time.time() - t0:.0f}s")
    annotated = [(im, c) for im, cs in sets["annotated"] for c in cs]
    noisy = annotated + [(im, t) for im, t, _ in web]
    oracle = annotated + [(im, t) for im, t, s in web if s["kind"] in ("full", "incomplete")] + [(im, s["clean_caption"]) for im, _, s in web]
    for name, pairs in (("annotated + noisy web", noisy), ("annotated + filtered web + clean captions (oracle CapFilt)", oracle)):
        (tr1, ir1), took = train(pairs, sets["test"], vocab, steps, seed)
        print(f"{name:60s} {len(pairs):5d} pairs, {steps} steps of 64 in {took:.0f}s: TR@1 {tr1:.3f} IR@1 {ir1:.3f}", flush=True)


if __name__ == "__main__":
    main()
