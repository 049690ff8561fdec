"""Ray Train overhead: the same model, data, batch size and epochs trained by a bare PyTorch loop
and by genray's train_loop_per_worker on a one-worker TorchTrainer. Prints the ratio of steady-state
epoch times (epochs after the first) and the fixed start-up cost.

    python benchmarks/train_overhead.py [--family vae] [--epochs 4] [--threads 2]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import torch


def bare_loop(family: str, dataset: str, epochs: int, batch_size: int, threads: int, storage) -> list[float]:
    from models import build
    from trainers import datasets
    from trainers.run import TrainSpec, model_config

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    meta = datasets.prepare(dataset, storage)
    data = datasets.local_arrays(meta, "train", storage)
    n = len(next(iter(data.values())))
    model = build(model_config(TrainSpec(family, dataset=dataset).resolved(), meta))
    opts = model.make_optimizers()
    times = []
    for _ in range(epochs):
        model.train()
        t0 = time.perf_counter()
        perm = torch.randperm(n)
        for i in range(0, n, batch_size):
            idx = perm[i:i + batch_size]
            model.train_step({k: v[idx] for k, v in data.items()}, opts)
        model.reduce_statistics(lambda t: None)
        times.append(time.perf_counter() - t0)
    return times


def genray_run(family: str, dataset: str, epochs: int, batch_size: int, threads: int, storage) -> tuple[list[float], float]:
    from cluster.connect import connect
    from trainers.run import TrainSpec, train

    connect()
    t0 = time.perf_counter()
    rec = train(TrainSpec(family, name=f"bench-{family}", dataset=dataset, workers=1, epochs=epochs,
                          batch_size=batch_size, cpus_per_worker=threads, fresh=True, max_failures=0), storage)
    wall = time.perf_counter() - t0
    return [h["epoch_time_s"] for h in rec.metrics["history"]], wall


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--family", default="vae")
    p.add_argument("--dataset", default=None)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=2, help="torch threads in the bare loop = CPUs of the Ray worker")
    args = p.parse_args()
    os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from cluster.storage import Storage
    from trainers.run import TrainSpec

    dataset = args.dataset or TrainSpec(args.family).resolved().dataset
    with tempfile.TemporaryDirectory() as home:
        storage = Storage(home)
        bare = bare_loop(args.family, dataset, args.epochs, args.batch_size, args.threads, storage)
        ray_epochs, ray_wall = genray_run(args.family, dataset, args.epochs, args.batch_size, args.threads, storage)
    steady_bare = statistics.median(bare[1:] or bare)
    steady_ray = statistics.median(ray_epochs[1:] or ray_epochs)
    print(f"\n{args.family} on {dataset}: {args.epochs} epochs, batch {args.batch_size}, {args.threads} threads")
    print(f"{'':<28}{'bare PyTorch':>14}{'genray/Ray Train':>18}")
    for i, (b, r) in enumerate(zip(bare, ray_epochs), 1):
        print(f"{'epoch ' + str(i) + ' (s)':<28}{b:>14.2f}{r:>18.2f}")
    print(f"{'steady epoch, median (s)':<28}{steady_bare:>14.2f}{steady_ray:>18.2f}")
    print(f"epoch-time ratio genray/bare (after start-up): {steady_ray / steady_bare:.3f}  (target <= 1.05)")
    print(f"start-up and teardown of the Ray Train run: {ray_wall - sum(ray_epochs):.1f} s "
          f"(validation passes included) of {ray_wall:.1f} s wall")
    return 0


if __name__ == "__main__":
    sys.exit(main())
