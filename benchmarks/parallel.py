"""Training strategies and a two-node cluster, measured on a local multi-node Ray cluster
(genray.cluster.local: a head and a worker raylet, each with its own CPUs) through `genray train`.

1. strategies: the char transformer under ddp, fsdp, tensor and pipeline on 2 workers, and hybrid
   (2 x 2 mesh) on 4 workers of 0.5 CPU: the most bytes of parameters, gradients and optimizer
   state any worker holds (and the ratio to DDP's), the share of the split layers' parameters a
   worker holds, samples/s, and the training loss and validation NLL after the same steps.
2. nodes: a model whose step compute dominates, on 1 worker (one node) and on 2 workers spread
   over the two nodes (SPREAD): samples/s and the ratio.
3. recovery: the 2-worker run again, with the training worker on the second node SIGKILLed after
   the first checkpoint: the time from the kill to the first progress line of the resumed run,
   and whether its final weights equal the uninterrupted run's (bit for bit, else the NLL gap).

    python benchmarks/parallel.py [--parts strategies,nodes,recovery] [--results DIR] [--storage DIR]
                                  [--precision fp32|bf16] [--smoke]

Writes a JSON record (benchmarks/record.py) that docs/benchmarks.md is rendered from: parallel.json
for all three parts, parallel-<parts>.json for fewer.
"""
from __future__ import annotations

import argparse
import atexit
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.record import Record  # noqa: E402

PARTS = ("strategies", "nodes", "recovery")
ENV = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}


class Cluster:
    """genray.cluster.local in a subprocess: the address, the nodes, and `kill N` on demand."""

    def __init__(self, nodes: int, cpus: float):
        self.proc = subprocess.Popen([sys.executable, "-m", "genray.cluster.local", "--nodes", str(nodes),
                                      "--cpus", str(cpus)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env=ENV, cwd=ROOT)
        self.info = json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.communicate("quit\n", timeout=120)


def train(cluster: Cluster, storage: str, name: str, args: list[str]) -> tuple[dict, list]:
    """One `genray train` on the cluster; its published metrics and its timestamped output lines."""
    cmd = [sys.executable, "-m", "genray", "train", "transformer", "--name", name, "--address",
           cluster.info["address"], "--storage", storage, "--fresh", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV, cwd=ROOT)
    lines = []
    for line in proc.stdout:
        lines.append((time.time(), line.rstrip()))
    if proc.wait() != 0:
        raise SystemExit(f"genray train {name} failed:\n" + "\n".join(t for _, t in lines[-40:]))
    from genray.cluster.registry import Registry
    from genray.cluster.storage import Storage

    return Registry(Storage(storage)).record(name).metrics, lines


def weights_digest(storage: str, name: str) -> str:
    from genray.cluster.registry import Registry
    from genray.cluster.storage import Storage
    from genray.models.weights import to_bytes

    model, _ = Registry(Storage(storage)).load(name)
    return hashlib.sha256(to_bytes(model)).hexdigest()


def _bare_steps(model: dict, batch: int, steps: int, out) -> None:
    import torch

    from genray.models.catalog import build
    from genray.models.optim import OptimizerSettings

    torch.set_num_threads(1)  # as a Ray worker of one CPU
    torch.manual_seed(0)
    m = build({"family": "transformer", "vocab": "".join(chr(32 + i) for i in range(65)), **model})
    opt = m.make_optimizers(OptimizerSettings(lr=1e-3))
    x = torch.randint(0, 65, (batch, 257))
    m.train_step({"tokens": x}, opt)
    t0 = time.perf_counter()
    for _ in range(steps):
        m.train_step({"tokens": x}, opt)
    out.put(batch * steps / (time.perf_counter() - t0))


def machine_ceiling(model: dict, batch: int, steps: int = 8) -> float:
    """Samples/s of two bare processes stepping the same model side by side, over one's alone
    (no Ray, no all-reduce): what this machine's cores allow two workers."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    rates = []
    for n in (1, 2):
        q = ctx.Queue()
        procs = [ctx.Process(target=_bare_steps, args=(model, batch, steps, q)) for _ in range(n)]
        for proc in procs:
            proc.start()
        total = sum(q.get() for _ in procs)
        for proc in procs:
            proc.join()
        rates.append(total)
    return rates[1] / rates[0]


def model_args(model: dict) -> list[str]:
    return [a for k, v in model.items() for a in ("--set", f"{k}={v}")]


def strategies(rec: Record, cluster, storage, model, limit, batch, smoke: bool) -> None:
    runs = [("ddp", 2, 1.0), ("fsdp", 2, 1.0), ("tensor", 2, 1.0), ("pipeline", 2, 1.0), ("hybrid", 4, 0.5)]
    # The smoke: hybrid, tensor parallelism and sharding at once (tests/test_parallel.py runs the rest).
    runs = runs[4:] if smoke else runs
    rows, ref = [], None
    for strategy, workers, cpus in runs:
        m, _ = train(cluster, storage, f"par-{strategy}", [
            "--strategy", strategy, "--workers", str(workers), "--cpus-per-worker", str(cpus), "--epochs", "1",
            "--limit", str(limit), "--batch-size", str(batch), "--microbatches", "2", "--train-set", "log_every=0",
            *model_args(model)])
        total = m["rank_param_bytes"] + m["rank_grad_bytes"] + m["rank_optim_bytes"]
        ref = ref or total
        share = f"{m['split_layer_share']:.2f}" if "split_layer_share" in m else "-"
        rows.append([strategy, f"{workers} x {cpus:g} CPU", f"{m['rank_param_bytes'] / 1e6:.2f} MB",
                     f"{m['rank_grad_bytes'] / 1e6:.2f} MB", f"{m['rank_optim_bytes'] / 1e6:.2f} MB",
                     f"{total / ref:.2f}", share, f"{m['samples_per_s']:.1f}", f"{m['train_loss']:.5f}",
                     f"{m['val_nll']:.5f}"])
        print("  measured:", rows[-1], file=sys.stderr, flush=True)  # the table prints only once all have run
    rec.table("strategies", f"Strategies: transformer {model}, {limit} rows, batch {batch} per worker",
              ["strategy", "workers", "params/worker", "grads/worker", "optimizer/worker", "vs DDP (all three)",
               "split layers held", "samples/s", "train loss", "val NLL"], rows)


def nodes_and_recovery(rec: Record, cluster, storage, model, limit, batch, epochs, parts, smoke: bool,
                       precision: str) -> None:
    common = ["--epochs", str(epochs), "--limit", str(limit), "--batch-size", str(batch),
              "--train-set", "log_every=5", "--precision", precision, *model_args(model)]
    # The smoke's killed run stands alone: the uninterrupted run it is compared with would cost a run more.
    two = None if smoke else train(cluster, storage, "nodes-2", ["--workers", "2", "--spread", *common])[0]
    if "nodes" in parts and not smoke:
        one, _ = train(cluster, storage, "nodes-1", ["--workers", "1", *common])
        rate = lambda m: sum(h["samples_per_s"] for h in m["history"]) / len(m["history"])  # noqa: E731
        rec.table("nodes", f"Two nodes: transformer {model} ({two['params']:,} parameters), batch {batch} per worker",
                  ["run", "nodes used", "samples/s (mean over epochs)"],
                  [["1 worker", one["nodes"], f"{rate(one):.1f}"],
                   ["2 workers, SPREAD", two["nodes"], f"{rate(two):.1f}"]])
        speedup, ceiling = rate(two) / rate(one), machine_ceiling(model, batch)
        print(f"2-node throughput / 1 node: {speedup:.2f}x", flush=True)
        print(f"machine ceiling (two bare processes of the same step, no Ray, over one): {ceiling:.2f}x", flush=True)
        rec.figure("2-node throughput / 1 node", round(speedup, 2))
        rec.figure("machine ceiling: two bare processes over one", round(ceiling, 2))
    if "recovery" not in parts:
        return
    run_dir = os.path.join(storage, "runs", "nodes-killed")
    killed: dict = {}

    def watch():
        if killed or not os.path.isdir(run_dir) or not any(n.startswith("checkpoint_2") for n in os.listdir(run_dir)):
            return
        import psutil

        raylet = psutil.Process(cluster.info["nodes"][1]["raylet_pid"])
        workers = [p for p in raylet.children(recursive=True) if "RayTrainWorker" in " ".join(p.cmdline())]
        if workers:
            os.kill(workers[0].pid, signal.SIGKILL)
            killed["t"] = time.time()

    stop = threading.Event()

    def poll():
        while not stop.is_set() and not killed:
            watch()
            time.sleep(0.2)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        hurt, lines = train(cluster, storage, "nodes-killed", ["--workers", "2", "--spread", *common])
    finally:
        stop.set()
        poller.join()
    print("\n## Recovery: a training worker on the second node SIGKILLed after the first checkpoint")
    rec.figure("recovery: a worker was killed", bool(killed))
    if not killed:
        print("the run finished before a worker could be killed")
        return
    resumed = next((t for t, line in lines if t > killed["t"] and " step " in line), None)
    print(f"kill -> first progress line of the resumed run: "
          f"{resumed - killed['t']:.1f} s" if resumed else "kill -> resumed: no progress line after the kill")
    rec.figure("recovery: kill -> first progress line of the resumed run (s)",
               round(resumed - killed["t"], 1) if resumed else None)
    runs = [("uninterrupted", two)] if two else []
    runs.append(("killed and resumed", hurt))
    rec.table("recovery", "Recovery: the uninterrupted 2-worker SPREAD run against the killed and resumed one",
              ["", *(label for label, _ in runs)],
              [["epochs", *(len(m["history"]) for _, m in runs)],
               ["final val NLL", *(f"{m['history'][-1]['val_nll']:.6f}" for _, m in runs)],
               ["wall time", *(f"{m['wall_time_s']:.0f} s" for _, m in runs)]])
    if two:
        same = weights_digest(storage, "nodes-killed") == weights_digest(storage, "nodes-2")
        gap = abs(hurt["val_nll"] - two["val_nll"]) / two["val_nll"]
        print(f"final weights bit-identical: {'yes' if same else 'no'}; published val NLL gap {gap:.2e} (relative)")
        rec.figure("recovery: final weights bit-identical", same)
        rec.figure("recovery: published val NLL gap (relative)", gap)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--parts", default=",".join(PARTS))
    p.add_argument("--results", default=None, help="where the JSON record goes (default benchmarks/results)")
    p.add_argument("--storage", default=None, help="where the runs and models go (default: a temporary folder)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="nodes and recovery: the runs' "
                                                                                   "precision")
    p.add_argument("--smoke", action="store_true",
                   help="tiny model and data; hybrid only, no one-node baseline, and the killed run without its "
                        "uninterrupted twin: checks it runs")
    args = p.parse_args()
    parts = set(args.parts.split(","))
    out = args.results
    if args.smoke and not out:  # a smoke run's record is scratch, never benchmarks/results/
        out = tempfile.mkdtemp(prefix="genray-parallel-smoke-")
        atexit.register(shutil.rmtree, out, ignore_errors=True)
    rec = Record("parallel", None if parts >= set(PARTS) else "-".join(p for p in PARTS if p in parts), args,
                 seeds=[0], out_dir=out)
    if args.smoke:
        model = {"n_layer": 2, "n_embd": 32, "n_head": 2, "block_size": 64}
        # Enough steps after the first checkpoint for the recovery part's kill to land.
        big, limit, batch, epochs = model, 256, 4, 3
    else:
        model = {"n_layer": 4, "n_embd": 128, "n_head": 4, "block_size": 128}
        # Wide enough that a step's compute outweighs its gradient all-reduce on loopback.
        big, limit, batch, epochs = {"n_layer": 4, "n_embd": 256, "n_head": 4, "block_size": 256}, 320, 8, 3
    big_batch = 4 if args.smoke else 16
    cluster = Cluster(2, 2)
    print(f"cluster: {cluster.info['address']}, {len(cluster.info['nodes'])} nodes x 2 CPUs; "
          f"host cores: {os.cpu_count()}", flush=True)
    try:
        with tempfile.TemporaryDirectory() as scratch:
            storage = args.storage or scratch
            if "strategies" in parts:
                strategies(rec, cluster, storage, model, 64 if args.smoke else limit, batch, args.smoke)
            if parts & {"nodes", "recovery"}:
                nodes_and_recovery(rec, cluster, storage, big, limit, big_batch, epochs, parts, args.smoke,
                                   args.precision)
    finally:
        cluster.close()
    rec.save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
