"""Ray Train overhead: the same model, data, batch size and epochs trained by a bare PyTorch loop
and by genray's train_loop_per_worker on a one-worker TorchTrainer. Prints the ratio of steady-state
epoch times (epochs after the first) and the fixed start-up cost.

    python benchmarks/train_overhead.py [--family vae] [--epochs 5] [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch


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
    p.add_argument("--smoke", action="store_true", help="2 epochs of the VAE on the 8x8 digits: checks the script runs")
    args = p.parse_args()
    if args.smoke:
        args.family, args.dataset, args.epochs, args.batch_size = "vae", "digits", 2, 64
    os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    if args.phase:
        return phase_main(args)

    with tempfile.TemporaryDirectory() as home:
        # This machine's speed drifts over minutes: the baseline runs first and last.
        before = run_phase("bare", args, home)["epochs"]
        ray_run = run_phase("genray", args, home)
        in_worker = run_phase("in-worker", args, home)["epochs"]
        after = run_phase("bare", args, home)["epochs"]
    ray_epochs = ray_run["epochs"]

    def steady(times):
        return statistics.median(times[1:] or times)

    bare = [(a + b) / 2 for a, b in zip(before, after)]
    print(f"\n{args.family}: {args.epochs} epochs, batch {args.batch_size}, {args.threads} threads; "
          f"bare PyTorch = mean of a run before ({steady(before):.2f} s/epoch) and after ({steady(after):.2f} s/epoch)")
    print(f"{'':<28}{'bare PyTorch':>14}{'bare, in Ray worker':>21}{'genray/Ray Train':>18}")
    for i, (b, w, r) in enumerate(zip(bare, in_worker, ray_epochs), 1):
        print(f"{'epoch ' + str(i) + ' (s)':<28}{b:>14.2f}{w:>21.2f}{r:>18.2f}")
    print(f"{'steady epoch, median (s)':<28}{steady(bare):>14.2f}{steady(in_worker):>21.2f}{steady(ray_epochs):>18.2f}")
    print(f"genray: seconds per epoch waiting for Ray Data batches: {', '.join(f'{w:.2f}' for w in ray_run['waits'])}")
    print(f"epoch-time ratio genray/bare (after start-up): {steady(ray_epochs) / steady(bare):.3f}  (target <= 1.05)")
    print(f"  of which the Ray worker process: {steady(in_worker) / steady(bare):.3f}, "
          f"genray's loop and Ray Data: {steady(ray_epochs) / steady(in_worker):.3f}")
    print(f"start-up, validation and teardown of the Ray Train run: {ray_run['wall'] - sum(ray_epochs):.1f} s "
          f"of {ray_run['wall']:.1f} s wall")
    return 0


if __name__ == "__main__":
    sys.exit(main())
