"""Every family against strong classical baselines on the same held-out split.

    python benchmarks/quality.py [--storage DIR] [--workers 2] [--only text,music,image,series] [--smoke]

The benchmark trains its own models (names `quality-*`, trainers/presets.py) at the families'
default budgets with Ray Train (--workers workers), unless the registry already holds them
trained with exactly those settings; then `genray eval` scores each one on the test split, with
its validation score beside it. So the table never depends on what other commands trained before
it. Both sides choose the same way: genray's models publish their lowest-validation-NLL epoch, and
each baseline is fitted on the training split with the order / size / period that scores best on
the validation split; both are reported on the test split:

    text, music   interpolated modified Kneser-Ney at its best order          nats/char, nats/note
    images        better of a per-pixel 256-way categorical mixture and a     bits/dim
                  diagonal Gaussian mixture (sklearn, integrated over pixel bins);
                  digit-FID of samples drawn from that mixture
    series        last value and seasonal naive (period tuned)                one-step MSE

It prints one table: model, metric, test value, validation value, and the budget (wall time, cores)
that produced it, and writes it as a JSON record (benchmarks/record.py). With --seeds N every model
is trained N times (seeds 0..N-1) and its row shows the mean and standard deviation. For each task
and metric the model and the baseline with the best validation score are compared on test: a win
where every seed beats the baseline, a loss where none does, a tie otherwise (the difference is
inside the spread of the seeds); the target is the win.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import baselines  # noqa: E402
from benchmarks.record import Record  # noqa: E402
from genray.cluster.registry import Registry  # noqa: E402
from genray.cluster.storage import Storage  # noqa: E402
from genray.trainers import datasets  # noqa: E402
from genray.trainers.evaluate import evaluate, image_quality  # noqa: E402
from genray.trainers.presets import QUALITY as MODELS  # noqa: E402
from genray.trainers.run import TrainSpec, model_config  # noqa: E402

DATASET = {"text": "shakespeare", "music": "chorales", "image": "mnist"}

rows: list[tuple] = []
# (task, metric) -> {"model" | "baseline": [(label, test values (one per seed), mean val value)]}
scores: dict[tuple, dict[str, list]] = {}


def row(task, model, metric, tests, vals, budget, side="baseline"):
    """A table row (mean ± std over seeds where there are several) and its scores for the verdicts."""
    tests, vals = list(np.atleast_1d(tests)), list(np.atleast_1d(vals))
    test, val = float(np.mean(tests)), float(np.mean(vals))
    shown = f"{test:.4f} ± {np.std(tests, ddof=1):.4f}" if len(tests) > 1 else test
    rows.append((task, model, metric, shown, val, budget))
    scores.setdefault((task, metric.split(" (")[0]), {"model": [], "baseline": []})[side].append((model, tests, val))
    print(f"  {task:<10} {model:<34} {metric:<22} {shown!s:>18} {val:>10.4f}   {budget}", flush=True)


def verdicts() -> list[dict]:
    """Per task and metric (lower is better): the best model and the best baseline, each chosen on
    val, compared on test seed by seed."""
    out = []
    for (task, metric), sides in scores.items():
        if not sides["model"] or not sides["baseline"]:
            continue
        model, tests, _ = min(sides["model"], key=lambda r: r[2])
        base, (base_test,), _ = min(sides["baseline"], key=lambda r: r[2])
        wins = sum(t < base_test for t in tests)
        out.append({"task": task, "metric": metric, "model": model, "mean": float(np.mean(tests)),
                    "worst": float(max(tests)), "baseline": base, "baseline_test": float(base_test),
                    "wins": f"{wins} of {len(tests)}",
                    "verdict": "win" if wins == len(tests) else "loss" if wins == 0 else "tie"})
    return out


def _current(storage: Storage, spec: TrainSpec) -> bool:
    """The registry holds `spec.name` trained with the spec's architecture and training settings."""
    registry = Registry(storage)
    if spec.name not in registry.names():
        return False
    rec = registry.record(spec.name)
    meta = datasets.prepare(spec.resolved().dataset, storage)
    return (rec.config == model_config(spec, meta) and rec.metrics.get("workers") == spec.workers
            and rec.metrics.get("training") == spec.training_config(meta["modality"]).to_dict())


def seeded(name: str, seed: int) -> str:
    return name if seed == 0 else f"{name}-s{seed}"


def ensure_models(storage: Storage, kinds: list[str], workers: int, seeds: int) -> None:
    from genray.trainers.run import train_bundle

    specs = [TrainSpec(name=seeded(n, s), workers=workers, fresh=True, seed=s, **a)
             for k in kinds for n, a in MODELS[k].items() for s in range(seeds)]
    missing = [s for s in specs if not _current(storage, s)]
    if not missing:
        return
    from genray.cluster.connect import connect

    connect()
    print(f"training {', '.join(s.name for s in missing)} (one Ray Train run) ...", flush=True)
    train_bundle(missing, storage, "quality")


def model_rows(storage: Storage, kind: str, seeds: int) -> None:
    for name in MODELS[kind]:
        recs = []
        for s in range(seeds):
            evaluate(seeded(name, s), storage, split="val")
            recs.append(evaluate(seeded(name, s), storage))
        ev, m = recs[0].metrics["eval"], recs[0].metrics

        def both(key, recs=recs):  # per seed: test values, val values
            return [r.metrics["eval"][key] for r in recs], [r.metrics["eval_val"][key] for r in recs]

        budget = (f"{np.mean([r.metrics['wall_time_s'] for r in recs]):.0f} s, {m['workers']} workers x "
                  f"{m['cpus_per_worker']:g} CPU, {m['epochs']} epochs"
                  + (f", seeds 0-{seeds - 1}" if seeds > 1 else ""))
        if "heldout_bits_per_dim" in ev:
            bound = {"vae": " (IW bound)", "flow": " (dequantized)"}.get(recs[0].config["family"], "")
            row(kind, name, "bits/dim" + bound, *both("heldout_bits_per_dim"), budget, "model")
        elif "heldout_nll" in ev:
            row(kind, name, ev["nll_unit"], *both("heldout_nll"), budget, "model")
        if "forecast_mse" in ev:
            row(kind, f"{name} ({ev['dataset']})", f"one-step MSE, {ev['dataset']}", *both("forecast_mse"), budget,
                "model")
        if "fid" in ev:
            row(kind, name, "digit-FID", *both("fid"), budget, "model")


def sequence_baseline(storage: Storage, kind: str) -> None:
    meta = datasets.prepare(DATASET[kind], storage)
    V = len(meta["vocab"])
    train, val, test = (datasets.local_arrays(meta, s, storage)["tokens"].numpy() for s in ("train", "val", "test"))
    t0 = time.time()
    order, scores = baselines.tune_kneser_ney(train, val, V, range(1, 13))
    lm = baselines.KneserNey(order, V).fit(train)
    nll = float(-lm.target_log_probs(test).mean())
    unit = "nats/char" if kind == "text" else "nats/note"
    tuned = ", ".join(f"{n}:{s:.3f}" for n, s in scores.items())
    print(f"  Kneser-Ney validation NLL by order: {tuned}")
    row(kind, f"Kneser-Ney {order}-gram (order chosen on val)", unit, nll, scores[order],
        f"{time.time() - t0:.0f} s, 1 CPU (tuning included)")


def image_baselines(storage: Storage) -> None:
    meta = datasets.prepare("mnist", storage)
    train, val, test = (datasets.local_arrays(meta, s, storage)["image"] for s in ("train", "val", "test"))
    D = math.prod(meta["shape"])
    results = {}
    for label, make, grid in (
        ("categorical mixture", baselines.PixelCategoricalMixture,
         [{"components": k, "alpha": a} for k in (10, 30, 60) for a in (0.05, 0.5)]),
        ("diagonal GMM", baselines.DiagonalGMM,
         [{"components": k, "reg_covar": r} for k in (10, 30, 60) for r in (10.0, 100.0)]),
    ):
        t0 = time.time()
        best, model, scores = baselines.tune_image_baseline(train, val, make, grid)
        bpd = baselines.bits_per_dim(model.nll(test), D)
        val_bpd = scores[tuple(best.items())] / (D * math.log(2))
        results[label] = (val_bpd, model, best)
        row("image", f"{label} {best}", "bits/dim", bpd, val_bpd, f"{time.time() - t0:.0f} s, 1 CPU (tuning included)")
    _, model, best = min(results.values(), key=lambda r: r[0])  # the better family, chosen on val
    if isinstance(model, baselines.PixelCategoricalMixture):
        samples = model.sample(1000, meta["shape"])
    else:
        x, _ = model.gmm.sample(1000)
        samples = torch.as_tensor(x).float().clamp(0, 255).round().reshape(-1, *meta["shape"]) / 255.0
    q, qv = (image_quality(samples, None, meta, storage, split) for split in ("test", "val"))
    row("image", "best mixture's samples", "digit-FID", q["fid"], qv["fid"], "as above")
    rows.append(("image", "held-out real images (floor)", "digit-FID", q["fid_real_floor"], qv["fid_real_floor"], "-"))


def series_baselines(storage: Storage) -> None:
    for name in ("sunspots", "macro"):
        meta = datasets.prepare(name, storage)
        va, te = (datasets.local_arrays(meta, s, storage) for s in ("val", "test"))
        period = baselines.tune_period(va["series"].numpy(), va["first"].numpy(), meta["context"])

        def mse(split, p):
            pred, y = baselines.naive_forecasts(split["series"].numpy(), split["first"].numpy(), p)
            return float(((pred - y) ** 2).mean())

        for label, p in (("last value", 1), (f"seasonal naive (period {period}, chosen on val)", period)):
            row("series", f"{label} ({name})", f"one-step MSE, {name}", mse(te, p), mse(va, p), "-")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--storage", default=None)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--only", default="text,music,image,series")
    ap.add_argument("--seeds", type=int, default=1, help="train every model with seeds 0..N-1 (mean ± std)")
    ap.add_argument("--results", default=None, help="where the JSON record goes (default benchmarks/results)")
    ap.add_argument("--smoke", action="store_true", help="the series rows only, in a temporary storage root: "
                                                           "checks the script runs")
    args = ap.parse_args()
    kinds = args.only.split(",")
    if args.smoke and not args.storage:
        import atexit
        import shutil
        import tempfile

        args.storage = tempfile.mkdtemp(prefix="genray-quality-smoke-")
        atexit.register(shutil.rmtree, args.storage, ignore_errors=True)
    if args.smoke:
        kinds, args.workers = ["series"], 1
    record = Record("quality", None if set(kinds) == {*DATASET, "series"} else "-".join(kinds), args,
                    seeds=list(range(args.seeds)),
                    out_dir=os.path.join(args.storage, "results") if args.smoke else args.results)
    storage = Storage(args.storage)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    ensure_models(storage, kinds, args.workers, args.seeds)
    print(f"\n  {'task':<10} {'model':<34} {'metric':<22} {'test':>18} {'val':>10}   budget")
    for kind in kinds:
        model_rows(storage, kind, args.seeds)
        if kind in ("text", "music"):
            sequence_baseline(storage, kind)
        elif kind == "image":
            image_baselines(storage)
        elif kind == "series":
            series_baselines(storage)
    record.table("quality", "Held-out quality: every figure on the test split, the validation split beside it",
                 ["task", "model", "metric", "test", "val", "budget"], [list(r) for r in rows])
    decided = verdicts()
    record.table("verdicts", "The best model against the best baseline (each chosen on val), on test",
                 ["task", "metric", "model", "test (mean)", "baseline", "baseline test", "seeds that win", "verdict"],
                 [[d[k] for k in ("task", "metric", "model", "mean", "baseline", "baseline_test", "wins", "verdict")]
                  for d in decided])
    for d in decided:
        record.target(f"{d['task']}, {d['metric']}: {d['model']} (its worst seed) beats {d['baseline']}", d["worst"],
                      "<", d["baseline_test"])
    record.save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
