"""A multi-node Ray cluster on one machine: a head and worker nodes, each a raylet with its own
CPU resources and object store (ray.cluster_utils.Cluster, which starts them as `ray start`
would). For trying multi-node training, placement and node failures without a second machine.

    python -m genray.cluster.local --nodes 2 --cpus 2

prints the address for `genray train --address` and the nodes, then reads commands on stdin:
`kill N` kills node N's raylet and everything on it (SIGKILL; node 0 is the head), `quit` (or
end of input) stops the cluster.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from genray.cluster.connect import LOCAL_DEFAULTS


def start(nodes: int, cpus: float):
    """A running cluster of `nodes` nodes with `cpus` CPUs each; the caller shuts it down."""
    from ray.cluster_utils import Cluster

    for k, v in LOCAL_DEFAULTS.items():
        os.environ.setdefault(k, v)
    cluster = Cluster(initialize_head=True, connect=False,
                      head_node_args={"num_cpus": cpus, "include_dashboard": True, "dashboard_port": 0})
    for _ in range(nodes - 1):
        cluster.add_node(num_cpus=cpus)
    cluster.wait_for_nodes()
    return cluster


def describe(cluster) -> dict:
    nodes = [cluster.head_node, *cluster.worker_nodes]
    return {"address": cluster.address,
            "nodes": [{"index": i, "node_id": n.node_id, "raylet_pid": n.all_processes["raylet"][0].process.pid}
                      for i, n in enumerate(nodes)]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, default=2)
    p.add_argument("--cpus", type=float, default=2, help="CPUs each node advertises")
    args = p.parse_args(argv)
    if args.nodes < 1 or args.cpus <= 0:
        p.error("--nodes must be >= 1 and --cpus > 0")
    cluster = start(args.nodes, args.cpus)
    try:
        print(json.dumps(describe(cluster)), flush=True)
        nodes = [cluster.head_node, *cluster.worker_nodes]
        for line in sys.stdin:
            cmd = line.split()
            if not cmd:
                continue
            if cmd == ["quit"]:
                break
            if cmd[:1] == ["kill"] and len(cmd) == 2 and cmd[1].isdigit() and 0 < int(cmd[1]) < len(nodes):
                cluster.remove_node(nodes[int(cmd[1])], allow_graceful=False)
                print(json.dumps({"killed": int(cmd[1])}), flush=True)
            else:
                print(json.dumps({"error": f"unknown command {line.strip()!r}: kill N (1..{len(nodes) - 1}) or quit"}),
                      flush=True)
    finally:
        cluster.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
