"""Robustness of image classifiers on MNIST-5k: a standard classifier, one trained on augmented
images, and two trained adversarially (PGD, Madry et al.: the preset's small CNN for 10 epochs,
and a wider one for 30), each trained on Ray Train and attacked on the 500 validation images with
the Adversarial Robustness Toolbox.

    python benchmarks/robustness.py [--storage DIR] [--workers 2] [--n 500] [--smoke]

Columns: clean accuracy; accuracy under FGSM at eps 0.1 / 0.2 / 0.3 (L-inf); PGD-40 at 0.3 with a
random start; Carlini-Wagner L2 counted within an L2 budget of 2.0; AutoAttack's APGD-CE +
APGD-DLR core at 0.3 (100 steps, 1 restart each). Each row says the training budget.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from genray.cluster.registry import Registry  # noqa: E402
from genray.cluster.storage import Storage  # noqa: E402
from genray.models.robustness import attack  # noqa: E402
from genray.trainers import datasets  # noqa: E402
from genray.trainers.run import TrainSpec, train  # noqa: E402

# name -> TrainSpec arguments on top of the classifier's preset (10 epochs)
ADVERSARIAL = {"defense": "adversarial", "defense_eps": 0.3, "defense_steps": 10}
MODELS = {
    "robust-standard": {},
    "robust-augment": {"train": {"defense": "augment"}},
    "robust-adversarial": {"train": ADVERSARIAL},
    "robust-adversarial-wide": {"train": ADVERSARIAL, "model": {"width": 64, "features": 128}, "epochs": 30},
}
ATTACKS = [  # column, attack() arguments
    ("FGSM .1", {"method": "fgsm", "eps": 0.1}),
    ("FGSM .2", {"method": "fgsm", "eps": 0.2}),
    ("FGSM .3", {"method": "fgsm", "eps": 0.3}),
    ("PGD-40 .3", {"method": "pgd", "eps": 0.3, "steps": 40}),
    ("CW-L2 2.0", {"method": "cw", "eps": 2.0, "norm": "l2", "steps": 20}),
    ("APGD .3", {"method": "autoattack", "eps": 0.3, "steps": 100}),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--storage", default=None)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--n", type=int, default=500, help="validation images to attack")
    ap.add_argument("--epochs", type=int, help="training epochs (default: the classifier preset's)")
    ap.add_argument("--smoke", action="store_true", help="the 8x8 digits, 2 epochs, 64 images, short attacks")
    args = ap.parse_args()
    dataset, attacks = "mnist", ATTACKS
    if args.smoke:
        import atexit
        import shutil
        import tempfile

        dataset, args.epochs, args.n, args.workers = "digits", 2, 64, 1
        attacks = [(c, {**a, "steps": min(a.get("steps", 1), 5)}) for c, a in ATTACKS]
        if not args.storage:
            args.storage = tempfile.mkdtemp(prefix="genray-robustness-smoke-")
            atexit.register(shutil.rmtree, args.storage, ignore_errors=True)
    storage = Storage(args.storage)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    from genray.cluster.connect import connect

    connect()
    meta = datasets.prepare(dataset, storage)
    val = datasets.local_arrays(meta, "val", storage, limit=args.n)
    x, y = val["image"].float() / 255.0, val["label"]
    rows = []
    for name, spec in MODELS.items():
        epochs = args.epochs or spec.get("epochs")
        rec = train(TrainSpec("classifier", name=name, dataset=dataset, workers=args.workers, epochs=epochs,
                              train=spec.get("train", {}), model=spec.get("model", {}), fresh=True), storage)
        model, _ = Registry(storage).load(rec.ref)
        budget = f"{rec.metrics['wall_time_s']:.0f} s, {args.workers} workers x 1 CPU, {rec.metrics['epochs']} epochs"
        cells, times = [], []
        for _column, kw in attacks:
            t0 = time.perf_counter()
            r = attack(model, x, y, **kw)
            times.append(time.perf_counter() - t0)
            cells.append(r.robust_accuracy)
        clean = r.clean_accuracy
        rows.append((name, spec.get("train", {}).get("defense", "none"), clean, cells, budget, sum(times)))
        print(f"{name}: clean {clean:.4f} " + " ".join(f"{c}={v:.4f}" for (c, _), v in zip(attacks, cells)), flush=True)
    print(f"\nMNIST-5k validation ({len(x)} images) accuracy, {dataset}; attacks on 1 process")
    print("| model | defense | clean | " + " | ".join(c for c, _ in attacks) + " | training | attacks |")
    print("|---|---|---|" + "---|" * len(attacks) + "---|---|")
    for name, defense, clean, cells, budget, t in rows:
        print(f"| {name} | {defense} | {clean:.4f} | " + " | ".join(f"{v:.4f}" for v in cells)
              + f" | {budget} | {t:.0f} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
