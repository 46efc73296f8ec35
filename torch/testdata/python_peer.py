#!/usr/bin/env python3
"""A Python torch.distributed rank and a capfilt (Go) rank in one Gloo group.

Proves the Go binding is a wire-level peer of torch.distributed of the same libtorch
version: the store layout, the init barrier, and every collective of the Go test
"collectives" role (run as rank 0 by the Go test binary) against plain PyTorch as rank 1.
Not part of `make test` (the product never runs Python). Run it from outside the repo
(the repo's torch/ folder would shadow the torch module):

    go test -c -o /tmp/torch.test ./torch
    cd /tmp && /usr/bin/python3 /path/to/capfilt/torch/testdata/python_peer.py /tmp/torch.test 1
    cd /tmp && /usr/bin/python3 /path/to/capfilt/torch/testdata/python_peer.py /tmp/torch.test 0

The last argument is the Python rank (0: Python hosts the store and is the broadcast root).
"""
import datetime
import json
import os
import socket
import subprocess
import sys
import tempfile

import torch
import torch.distributed as dist


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(go_test_binary, py_rank):
    go_rank = 1 - py_rank
    out = tempfile.mkdtemp()
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), WORLD_SIZE="2",
               GLOO_SOCKET_IFNAME="lo", CAPFILT_DIST_ROLE="collectives", CAPFILT_DIST_OUT=out,
               CAPFILT_DIST_TIMEOUT_MS="20000")
    go = subprocess.Popen([go_test_binary, "-test.run=^TestDistChild$", "-test.v"],
                          env=dict(env, RANK=str(go_rank), LOCAL_RANK=str(go_rank)))
    os.environ.update(env, RANK=str(py_rank), LOCAL_RANK=str(py_rank))
    dist.init_process_group("gloo", init_method="env://", timeout=datetime.timedelta(seconds=20))
    r = dist.get_rank()
    assert r == py_rank and dist.get_world_size() == 2
    res = {}

    # The Go side packs into buckets; with these dtypes and sizes every tensor is a bucket
    # of its own in both passes (16 B and 25 MB), so one all-reduce each, in list order.
    for bucket in (16, 25 << 20):
        a = torch.arange(0, 12, dtype=torch.float32).reshape(3, 4) + 100 * r
        b = torch.arange(0, 5, dtype=torch.float64) * (r + 1)
        c = torch.tensor([r + 1, 7], dtype=torch.int64)
        nc = (torch.arange(0, 12, dtype=torch.float32).reshape(4, 3) * (r + 2)).t()
        flat = nc.reshape(-1).clone()
        for t in (a, b, c, flat):
            dist.all_reduce(t)
        nc = flat.view(3, 4)
        for name, t in (("a", a), ("b", b), ("c", c), ("nc", nc)):
            res[f"sum/{bucket}/{name}"] = t.double().flatten().tolist()
    avg = torch.full((4,), r + 1.0)
    dist.all_reduce(avg)
    avg /= 2
    mx = torch.tensor([r, -r], dtype=torch.int64)
    dist.all_reduce(mx, op=dist.ReduceOp.MAX)
    res["avg"], res["max"] = avg.double().tolist(), mx.double().tolist()

    g = torch.Generator().manual_seed(10 + r)
    w, v = torch.randn(3, 5, generator=g), torch.randn(7, generator=g, dtype=torch.float64)
    nt = torch.randn(4, 3, generator=g).t()
    res["before/w"], res["before/v"], res["before/nt"] = (t.double().flatten().tolist() for t in (w, v, nt))
    flat = nt.reshape(-1).clone()
    for t in (w, v, flat):
        dist.broadcast(t, 0)
    nt = flat.view(3, 4)
    res["after/w"], res["after/v"], res["after/nt"] = (t.double().flatten().tolist() for t in (w, v, nt))

    x = torch.arange(0, 6, dtype=torch.float32).reshape(2, 3) + 10 * r
    parts = [torch.empty_like(x) for _ in range(2)]
    dist.all_gather(parts, x)
    res["gather"] = torch.cat(parts).double().flatten().tolist()
    dist.barrier()

    if go.wait(timeout=60) != 0:
        sys.exit("the Go rank failed")
    with open(os.path.join(out, f"rank{go_rank}.json")) as f:
        gores = json.load(f)
    root = res if py_rank == 0 else gores
    bad = [k for k in res if not k.startswith("before/") and gores.get(k) != res[k]]
    bad += [f"{who} after/{n} != rank 0's before/{n}" for who, rs in (("python", res), ("go", gores))
            for n in ("w", "v", "nt") if rs[f"after/{n}"] != root[f"before/{n}"]]
    if bad:
        sys.exit("mismatch: " + ", ".join(bad))
    print(f"OK: {len(res)} results of a Go rank {go_rank} and a PyTorch {torch.__version__} rank {py_rank} agree")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
