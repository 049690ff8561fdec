"""genray attack: evasion attacks on a registry classifier, on its data set's validation images."""
from __future__ import annotations

from genray.cli.common import CliError


def add_parser(sub, storage, ray) -> None:
    a = sub.add_parser("attack", parents=[storage], help="attack a registry classifier (FGSM, PGD, Carlini-Wagner, "
                                                         "AutoAttack's APGD) and report its robust accuracy")
    a.add_argument("model", help="NAME or NAME@VERSION of a classifier")
    a.add_argument("--method", default="pgd", help="fgsm | pgd | cw | autoattack")
    a.add_argument("--eps", type=float, required=True, help="perturbation budget in the norm, images in [0, 1]")
    a.add_argument("--norm", default="linf", help="linf | l2 (cw: l2)")
    a.add_argument("--steps", type=int, default=40)
    a.add_argument("--step-size", type=float)
    a.add_argument("--restarts", type=int, default=1, help="random starts (pgd, autoattack)")
    a.add_argument("--target", type=int, help="make a targeted attack towards this class")
    a.add_argument("-n", type=int, default=256, help="validation images to attack (the first n)")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("-o", "--output", help="PNG grid: clean, adversarial and difference rows (first 16 images)")
    a.set_defaults(fn=run)


def run(args) -> int:
    import time

    import torch

    from genray.cluster.registry import Registry
    from genray.cluster.storage import Storage
    from genray.models.codecs.images import grid, to_png
    from genray.models.robustness import attack
    from genray.trainers import datasets

    storage = Storage(args.storage)
    model, rec = Registry(storage).load(args.model)
    if rec.kind != "classifier":
        raise CliError(f"{rec.ref} is a {rec.kind} model; genray attack takes a classifier")
    if not 1 <= args.n <= 10_000:
        raise CliError("-n must be in [1, 10000]")
    meta = datasets.prepare(rec.metrics["dataset"], storage)
    val = datasets.local_arrays(meta, "val", storage, limit=args.n)
    x, y = val["image"].float() / 255.0, val["label"]
    t0 = time.perf_counter()
    r = attack(model, x, y, method=args.method, eps=args.eps, norm=args.norm, steps=args.steps,
               step_size=args.step_size, targeted=args.target is not None, target=args.target, seed=args.seed,
               restarts=args.restarts)
    s = r.summary()
    goal = f"targeted at class {args.target}" if args.target is not None else "untargeted"
    print(f"{rec.ref}: {args.method} {args.norm} eps={args.eps:g}, {args.steps} steps, {goal}, on {s['n']} "
          f"validation images of {rec.metrics['dataset']} ({time.perf_counter() - t0:.1f} s)")
    print(f"  clean accuracy {s['clean_accuracy']:.4f}   robust accuracy {s['robust_accuracy']:.4f}   "
          f"attack success {s['success_rate']:.4f}")
    print(f"  perturbation: mean L-inf {s['mean_linf']:.4f} (max {s['max_linf']:.4f}), mean L2 {s['mean_l2']:.4f}")
    if args.output:
        k = min(16, len(x))
        diff = (r.x_adv[:k] - x[:k]).abs()
        diff = diff / diff.flatten(1).max(1).values.clamp(min=1e-12).view(-1, 1, 1, 1)  # each scaled to its max
        with open(args.output, "wb") as f:
            f.write(to_png(grid(torch.cat([x[:k], r.x_adv[:k], diff]), ncol=k)))
        print(f"wrote {args.output}: clean, adversarial and |difference| (scaled) rows")
    return 0
