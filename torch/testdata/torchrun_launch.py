#!/usr/bin/env python3
"""Launches two capfilt (Go) ranks with torch's own elastic agent, the engine of torchrun.

Proves capfilt reads what torchrun hands its workers: with --rdzv_backend static the agent
hosts the store and sets TORCHELASTIC_USE_AGENT_STORE=True (every rank is a client, keys
under /worker/attempt_N); with c10d, rank 0 hosts it at MASTER_ADDR:MASTER_PORT. Calls the
launcher API rather than the torchrun command because Debian's torchrun 1.13 fails to
parse its own --redirects default on Python 3.11. Not part of `make test`. Run from outside
the repo:

    go test -c -o /tmp/torch.test ./torch
    cd /tmp && /usr/bin/python3 /path/to/capfilt/torch/testdata/torchrun_launch.py /tmp/torch.test static
    cd /tmp && /usr/bin/python3 /path/to/capfilt/torch/testdata/torchrun_launch.py /tmp/torch.test c10d
"""
import json
import os
import socket
import sys
import tempfile
import uuid

from torch.distributed.elastic.multiprocessing import Std
from torch.distributed.launcher.api import LaunchConfig, elastic_launch


def main(go_test_binary, backend):
    out = tempfile.mkdtemp()
    os.environ.update(CAPFILT_DIST_ROLE="collectives", CAPFILT_DIST_OUT=out, CAPFILT_DIST_TIMEOUT_MS="20000",
                      GLOO_SOCKET_IFNAME="lo")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=2, run_id=str(uuid.uuid4()), rdzv_backend=backend,
                       rdzv_endpoint=f"127.0.0.1:{port}", rdzv_configs={"rank": 0} if backend == "static" else {},
                       max_restarts=0, monitor_interval=1, redirects=Std.NONE, tee=Std.NONE)
    elastic_launch(cfg, go_test_binary)("-test.run=^TestDistChild$", "-test.v")
    res = []
    for r in range(2):
        with open(os.path.join(out, f"rank{r}.json")) as f:
            res.append(json.load(f))
    want = {"sum/16/c": [3, 14], "avg": [1.5] * 4, "gather": [0, 1, 2, 3, 4, 5, 10, 11, 12, 13, 14, 15]}
    for r in range(2):
        for k, v in want.items():
            if res[r][k] != v:
                sys.exit(f"rank {r} {k} = {res[r][k]}, want {v}")
        for n in ("w", "v", "nt"):
            if res[r][f"after/{n}"] != res[0][f"before/{n}"]:
                sys.exit(f"rank {r} {n} is not rank 0's after the broadcast")
    print(f"OK: two Go ranks launched by the elastic agent ({backend} rendezvous) agree")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
