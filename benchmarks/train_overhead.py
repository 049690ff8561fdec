"""Ray Train overhead: the same model, data, batch size and epochs trained by a bare PyTorch loop
and by genray's train_loop_per_worker on a one-worker TorchTrainer. Prints the ratio of steady-state
epoch times (epochs after the first) and the fixed start-up cost.

    python benchmarks/train_overhead.py [--family vae] [--epochs 5] [--threads 2] [--results DIR] [--smoke]

Writes a JSON record (benchmarks/record.py) that docs/benchmarks.md is rendered from.
"""
from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.record import Record  # noqa: E402


def bare_loop(family: str, dataset: str, epochs: int, batch_size: int, threads: int, storage) -> list[float]:
    from genray.models import build
    from genray.trainers import datasets
    from genray.trainers.run import TrainSpec, model_config

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    meta = datasets.prepare(dataset, storage)
    data = datasets.local_arrays(meta, "train", storage)
    n = len(next(iter(data.values())))
    spec = TrainSpec(family, dataset=dataset).resolved()
    model = build(model_config(spec, meta))
    tc = spec.training_config(meta["modality"])
    opts = model.make_optimizers(tc.optimizer())
    times = []
    for _ in range(epochs):
        model.train()
        t0 = time.perf_counter()
        perm = torch.randperm(n)
        for i in range(0, n, batch_size):
            idx = perm[i:i + batch_size]
            model.train_step({k: v[idx] for k, v in data.items()}, opts, max_grad_norm=tc.max_grad_norm)
        model.reduce_statistics(lambda t: None)
        times.append(time.perf_counter() - t0)
    return times


def bare_loop_in_ray_worker(family: str, dataset: str, epochs: int, batch_size: int, threads: int,
                            storage) -> list[float]:
    """The bare loop again, inside a one-worker TorchTrainer: separates what the Ray worker process
    costs from what genray's loop and Ray Data add."""
    import ray.train
    from ray.train.torch import TorchTrainer

    from genray.cluster.connect import connect

    connect()
    args = (family, dataset, epochs, batch_size, threads, storage.uri)

    def loop(cfg):
        from genray.cluster.storage import Storage

        store = Storage(cfg["args"][5])
        store.write_json(store.path("bench", "in_worker.json"), bare_loop(*cfg["args"][:5], store))

    TorchTrainer(loop, train_loop_config={"args": args},
                 scaling_config=ray.train.ScalingConfig(num_workers=1, resources_per_worker={"CPU": threads}),
                 run_config=ray.train.RunConfig(storage_path=storage.uri + "/runs")).fit()
    return storage.read_json(storage.path("bench", "in_worker.json"))


def genray_run(family: str, dataset: str, epochs: int, batch_size: int, threads: int,
               storage) -> tuple[list[float], float, list[float]]:
    from genray.cluster.connect import connect
    from genray.trainers.run import TrainSpec, train

    connect()
    t0 = time.perf_counter()
    rec = train(TrainSpec(family, name=f"bench-{family}", dataset=dataset, workers=1, epochs=epochs,
                          batch_size=batch_size, cpus_per_worker=threads, fresh=True, max_failures=0), storage)
    wall = time.perf_counter() - t0
    history = rec.metrics["history"]
    return [h["epoch_time_s"] for h in history], wall, [h["data_wait_s"] for h in history]


def run_phase(phase: str, args, home: str) -> dict:
    """Each measurement in a fresh process: leftover Ray processes of one run skew the next."""
    cmd = [sys.executable, os.path.abspath(__file__), "--phase", phase, "--home", home, "--family", args.family,
           "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--threads", str(args.threads)]
    if args.dataset:
        cmd += ["--dataset", args.dataset]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads([line for line in out.splitlines() if line.startswith("{")][-1])


def phase_main(args) -> int:
    from genray.cluster.storage import Storage
    from genray.trainers.run import TrainSpec

    storage = Storage(args.home)
    dataset = args.dataset or TrainSpec(args.family).resolved().dataset
    common = (args.family, dataset, args.epochs, args.batch_size, args.threads, storage)
    if args.phase == "bare":
        result = {"epochs": bare_loop(*common)}
    elif args.phase == "in-worker":
        result = {"epochs": bare_loop_in_ray_worker(*common)}
    else:
        epochs, wall, waits = genray_run(*common)
        result = {"epochs": epochs, "wall": wall, "waits": waits}
    print(json.dumps(result))
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--family", default="vae")
    p.add_argument("--dataset", default=None)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=2, help="torch threads in the bare loop = CPUs of the Ray worker")
    p.add_argument("--phase", choices=["bare", "in-worker", "genray"], help=argparse.SUPPRESS)
    p.add_argument("--home", help=argparse.SUPPRESS)
    p.add_argument("--results", default=None, help="where the JSON record goes (default benchmarks/results)")
    p.add_argument("--smoke", action="store_true", help="2 epochs of the VAE on the 8x8 digits: checks the script runs")
    args = p.parse_args()
    if args.smoke:
        args.family, args.dataset, args.epochs, args.batch_size = "vae", "digits", 2, 64
    os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    if args.phase:
        return phase_main(args)
    out = args.results
    if args.smoke:  # a smoke run's record is scratch, never benchmarks/results/
        out = tempfile.mkdtemp(prefix="genray-train-overhead-smoke-")
        atexit.register(shutil.rmtree, out, ignore_errors=True)
    rec = Record("train_overhead", None, args, seeds=[0], out_dir=out)

    with tempfile.TemporaryDirectory() as home:
        # This machine's speed drifts over minutes: the baseline runs first and last.
        before = run_phase("bare", args, home)["epochs"]
        ray_run = run_phase("genray", args, home)
        in_worker = run_phase("in-worker", args, home)["epochs"]
        after = before if args.smoke else run_phase("bare", args, home)["epochs"]
    ray_epochs = ray_run["epochs"]

    def steady(times):
        return statistics.median(times[1:] or times)

    bare = [(a + b) / 2 for a, b in zip(before, after)]
    title = (f"{args.family}: {args.epochs} epochs, batch {args.batch_size}, {args.threads} threads; "
             f"bare PyTorch = mean of a run before ({steady(before):.2f} s/epoch) and after "
             f"({steady(after):.2f} s/epoch)")
    columns = ["bare PyTorch", "bare, in Ray worker", "genray/Ray Train"]
    rows = [[f"epoch {i} (s)", b, w, r] for i, (b, w, r) in enumerate(zip(bare, in_worker, ray_epochs), 1)]
    rows.append(["steady epoch, median (s)", steady(bare), steady(in_worker), steady(ray_epochs)])
    print(f"\n{title}")
    print(f"{'':<28}{columns[0]:>14}{columns[1]:>21}{columns[2]:>18}")
    for label, b, w, r in rows:
        print(f"{label:<28}{b:>14.2f}{w:>21.2f}{r:>18.2f}")
    rec.table("epochs", title, ["", *columns], [[label, *(f"{v:.2f}" for v in vals)] for label, *vals in rows])
    print(f"genray: seconds per epoch waiting for Ray Data batches: {', '.join(f'{w:.2f}' for w in ray_run['waits'])}")
    rec.figure("genray: seconds per epoch waiting for Ray Data batches", [round(w, 2) for w in ray_run["waits"]])
    rec.target("epoch-time ratio genray/bare (after start-up)", steady(ray_epochs) / steady(bare), "<=", 1.05)
    worker, loop = steady(in_worker) / steady(bare), steady(ray_epochs) / steady(in_worker)
    print(f"  of which the Ray worker process: {worker:.3f}, genray's loop and Ray Data: {loop:.3f}")
    rec.figure("epoch-time ratio of the Ray worker process", round(worker, 3))
    rec.figure("epoch-time ratio of genray's loop and Ray Data", round(loop, 3))
    fixed = ray_run["wall"] - sum(ray_epochs)
    print(f"start-up, validation and teardown of the Ray Train run: {fixed:.1f} s of {ray_run['wall']:.1f} s wall")
    rec.figure("start-up, validation and teardown of the Ray Train run (s)", round(fixed, 1))
    rec.figure("Ray Train run wall (s)", round(ray_run["wall"], 1))
    rec.save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
