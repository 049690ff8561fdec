"""Ray Tune sweeps measured: early stopping against none, PBT against random search, and the cost
of running a configuration as a Tune trial instead of a bare `genray train`.

1. ASHA vs FIFO, both with random search over the same seed (so the same configurations in the
   same order), the same trial count and epoch cap: the best validation NLL, the epochs run, the
   wall time. Target: ASHA within 2% of FIFO's best NLL on at most 1/3 of its epochs.
2. PBT vs random (FIFO) on the transformer's learning rate, trials of one worker running side by side.
3. Start-up overhead: one trial of a sweep against one bare training run of the same settings.

    python benchmarks/tune.py [--trials 9] [--max-epochs 9] [--limit 2048] [--parts asha,pbt,overhead]
                              [--results DIR] [--smoke]

Writes a JSON record (benchmarks/record.py) that docs/benchmarks.md is rendered from: tune.json for
all three parts, tune-<parts>.json for fewer.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")

from benchmarks.record import Record  # noqa: E402

PARTS = ("asha", "pbt", "overhead")
HEADER = ["sweep", "trials", "best val NLL (nats/char)", "epochs run", "stopped early", "failed", "wall"]

# Small enough for minutes on two cores, wide enough that the learning rate and width matter.
SPACE = {"n_layer": ("choice", [1, 2]), "n_embd": ("choice", [32, 64]), "n_head": ("choice", [2, 4]),
         "block_size": ("choice", [64]), "dropout": ("choice", [0.0]), "weight_decay": ("choice", [0.0]),
         "lr": ("loguniform", 1e-4, 3e-2)}


def sweep(storage, name: str, **kw):
    from genray.trainers.sweep import SweepSpec
    from genray.trainers.tuning import run_sweep

    spec = SweepSpec("transformer", name=name, fresh=True, **kw)
    out = run_sweep(spec, storage, echo=lambda line: None)
    best = out.best
    return {"best": best.val_nll if best else float("nan"), "epochs": out.summary["epochs_run"],
            "wall": out.summary["wall_time_s"], "trials": len(out.rows),
            "stopped": sum(r.state == "stopped" for r in out.rows), "errors": sum(r.state == "error" for r in out.rows),
            "lr": best.config.get("lr") if best else None}


def row(label: str, r: dict) -> list:
    return [label, r["trials"], f"{r['best']:.4f}", r["epochs"], r["stopped"], r["errors"], f"{r['wall']:.0f} s"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--trials", type=int, default=9)
    p.add_argument("--max-epochs", type=int, default=9)
    p.add_argument("--limit", type=int, default=2048, help="rows per split of Shakespeare")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--parts", default=",".join(PARTS))
    p.add_argument("--results", default=None, help="where the JSON record goes (default benchmarks/results)")
    p.add_argument("--smoke", action="store_true", help="the fewest trials and epochs, tiny data: checks it runs")
    args = p.parse_args()
    if args.smoke:  # every part, at the least that runs it: one-worker trials, one epoch
        args.trials, args.max_epochs, args.limit, args.workers = 1, 1, 128, 1
    parts = set(args.parts.split(","))

    from genray.cluster.connect import connect
    from genray.cluster.storage import Storage

    home = tempfile.mkdtemp(prefix="genray-tune-bench-")
    rec = Record("tune", None if parts >= set(PARTS) else "-".join(p for p in PARTS if p in parts), args,
                 seeds=[args.seed], out_dir=os.path.join(home, "results") if args.smoke else args.results)
    connect()
    storage = Storage(home)
    common = dict(trials=args.trials, max_epochs=args.max_epochs, limit=args.limit, seed=args.seed,
                  space=SPACE, latency_samples=0)

    asha = None
    if "asha" in parts:
        title = (f"ASHA vs FIFO: random search, seed {args.seed}, {args.trials} trials x up to {args.max_epochs} "
                 f"epochs x {args.workers} workers, Shakespeare, {args.limit} rows")
        print(title, flush=True)
        # The smoke run skips the FIFO baseline: part 3 runs a FIFO sweep.
        fifo = None if args.smoke else sweep(storage, "bench-fifo", scheduler="fifo", workers=args.workers, **common)
        asha = sweep(storage, "bench-asha", scheduler="asha", workers=args.workers, grace_period=1,
                     reduction_factor=3, **common)
        rec.table("asha", title, HEADER, ([row("random + FIFO", fifo)] if fifo else []) + [row("random + ASHA", asha)])
        if fifo:
            gap, share = asha["best"] / fifo["best"] - 1, asha["epochs"] / fifo["epochs"]
            wall = asha["wall"] / fifo["wall"]
            print(f"ASHA/FIFO: best NLL {gap:+.2%}, epochs {share:.2f}, wall {wall:.2f}", flush=True)
            rec.figure("ASHA/FIFO wall", round(wall, 2))
            rec.target("ASHA's best val NLL / FIFO's - 1 (within 2%)", gap, "<=", 0.02)
            rec.target("ASHA's epochs run / FIFO's", share, "<=", 0.33)

    if "pbt" in parts:
        population = max(2, min(3, args.trials))  # side by side: 3 fit beside Ray Data's CPU on 4
        lr_only = {**common, "trials": population, "space": {**SPACE, "n_layer": ("choice", [1]),
                                                             "n_embd": ("choice", [64]), "n_head": ("choice", [4])}}
        title = (f"PBT vs random on the learning rate: {population} trials of 1 worker side by side, "
                 f"{args.max_epochs} epochs")
        print(f"\n{title}", flush=True)
        # The smoke run skips the random baseline, a FIFO sweep like part 3's.
        rand = None if args.smoke else sweep(storage, "bench-random-lr", scheduler="fifo", workers=1, **lr_only)
        pbt = sweep(storage, "bench-pbt-lr", scheduler="pbt", workers=1, **lr_only)
        rec.table("pbt", title, HEADER, ([row("random + FIFO", rand)] if rand else []) + [row("random + PBT", pbt)])
        rec.figure("PBT's best lr (the last it mutated to)", pbt["lr"])
        if rand:
            gap = pbt["best"] / rand["best"] - 1
            print(f"PBT/random: best NLL {gap:+.2%}; best lr {rand['lr']:.2e} vs "
                  f"{pbt['lr']:.2e} (PBT's is the last it mutated to)", flush=True)
            rec.figure("PBT/random best val NLL - 1", gap)
            rec.figure("random's best lr", rand["lr"])

    if "overhead" in parts:
        from genray.trainers.run import TrainSpec, build_trainer

        fixed = {k: v[1][0] for k, v in SPACE.items() if v[0] == "choice"}
        spec = TrainSpec("transformer", name="bench-bare", workers=args.workers, epochs=1, limit=args.limit,
                         lr=3e-3, model={k: v for k, v in fixed.items() if k != "weight_decay"},
                         train={"weight_decay": 0.0, "log_every": 0}, fresh=True)
        t0 = time.time()
        build_trainer(spec, storage).fit()
        bare = time.time() - t0
        # The smoke's ASHA sweep is one trial of one epoch already: it stands in for this one.
        one = asha if args.smoke and asha else sweep(
            storage, "bench-one", scheduler="fifo", workers=args.workers, trials=1, max_epochs=1, limit=args.limit,
            seed=args.seed, space={**{k: ("choice", [v]) for k, v in fixed.items()}, "lr": ("choice", [3e-3])},
            latency_samples=0)
        rec.table("overhead", f"Start-up overhead: one epoch, {args.workers} workers, Shakespeare, {args.limit} "
                  "rows", ["one epoch of the same configuration", "wall"],
                  [["bare genray train (build + fit)", f"{bare:.1f} s"],
                   ["one-trial Tune sweep (Tuner + trial + Train run)", f"{one['wall']:.1f} s"]])
        print(f"Tune overhead per trial: {one['wall'] - bare:+.1f} s", flush=True)
        rec.figure("Tune overhead per trial (s)", round(one["wall"] - bare, 1))
    rec.save()
    print("tune benchmark done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
