"""genray defend: defenses measured on registry models.

    detect      likelihood detection by a VAE or flow: AUROC against out-of-distribution images and
                against PGD examples of a classifier, with the threshold at 5% false positives
    purify      reconstruct with a VAE or flow, then classify: accuracy under PGD, non-adaptive and
                adaptive (BPDA and, where the purifier is differentiable, the full gradient)
    spectral | clustering | knn
                flag rows of a (poisoned) classifier's training set, retrain without them on Ray
                Train, and compare clean accuracy and backdoor success before and after
"""
from __future__ import annotations

from genray.cli.common import CliError

SANITIZERS = ("spectral", "clustering", "knn")


def add_parser(sub, storage, ray) -> None:
    d = sub.add_parser("defend", parents=[storage, ray], help="measure a defense: likelihood detection, "
                                                              "purification, or training-set sanitization")
    d.add_argument("model", help="NAME or NAME@VERSION: a vae or flow (detect, purify); a classifier (sanitizers)")
    d.add_argument("--method", required=True, choices=["detect", "purify", *SANITIZERS])
    d.add_argument("--classifier", help="detect, purify: the classifier whose PGD examples are scored / that "
                                        "classifies the purified images (default: one trained on the same data)")
    d.add_argument("--eps", type=float, default=0.3, help="detect, purify: the PGD budget (L-inf)")
    d.add_argument("--expected-rate", type=float, default=0.1,
                   help="spectral: the expected fraction of poisoned rows within a label")
    d.add_argument("--steps", type=int, default=40, help="PGD steps")
    d.add_argument("-n", type=int, default=200, help="detect, purify: test images to use (a class-stratified "
                                                                   "sample); the detector's threshold is set on "
                                                                   "validation images")
    d.add_argument("--workers", type=int, help="sanitizers: training workers for the retraining run")
    d.add_argument("--name", help="sanitizers: registry name of the retrained model (default NAME-METHOD)")
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(fn=run)


def run(args) -> int:
    import time

    from genray.cluster.storage import Storage

    storage = Storage(args.storage)
    t0 = time.perf_counter()
    if args.method in SANITIZERS:
        _sanitize(args, storage)
    else:
        _generative(args, storage)
    print(f"({time.perf_counter() - t0:.0f} s)")
    return 0


def _sanitize(args, storage) -> None:
    from genray.cluster.connect import connect
    from genray.trainers.sanitize import sanitize

    connect(args.address)
    r = sanitize(args.model, storage, method=args.method, eps=args.expected_rate, name=args.name,
                 workers=args.workers).summary()
    print(f"{r['model']}: {args.method} flagged {r['flagged']} of {r['rows']} training rows")
    if r["poisoned"]:
        print(f"  {r['caught']} of the {r['poisoned']} poisoned rows caught: recall {r['recall']:.3f}, "
              f"precision {r['precision']:.3f}")
    for when in ("before", "after"):
        m = r[when]
        asr = f"   backdoor success {m['asr']:.4f}" if "asr" in m else ""
        label = r["model"] if when == "before" else f"{r['retrained']} (retrained without them)"
        print(f"  {label}: clean accuracy {m['clean_accuracy']:.4f}{asr}")


def _generative(args, storage) -> None:
    import torch

    from genray.cluster.datacache import evaluation_rows
    from genray.cluster.registry import Registry
    from genray.models.robustness import (
        Purifier,
        attack,
        auroc,
        evaluate_purification,
        evasive_pgd,
        ood_sets,
        threshold,
    )
    from genray.models.robustness.catalog import defense_methods
    from genray.models.robustness.detect import anomaly_scores

    registry = Registry(storage)
    model, rec = registry.load(args.model)
    if args.method not in defense_methods(rec.config):
        raise CliError(f"{rec.ref} is a {rec.config['family']} model; --method {args.method} takes a vae or flow")
    if not 1 <= args.n <= 5000:
        raise CliError("-n must be in [1, 5000]")
    classifier = judge(storage, rec, args.classifier)
    test = evaluation_rows(rec, storage, "test", n=args.n)
    x, y = test["image"].float() / 255.0, test["label"]
    torch.manual_seed(args.seed)
    if args.method == "purify":
        r = evaluate_purification(Purifier(model), classifier, x, y, eps=args.eps, steps=args.steps, seed=args.seed)
        print(f"{rec.ref} purifying for {args.classifier or 'the default classifier'} on {len(x)} test "
              f"images, PGD-{args.steps} L-inf eps={args.eps:g}:")
        for k, v in r.items():
            print(f"  {k:<16} {v:.4f}" if isinstance(v, float) else f"  {k:<16} {v}")
        return
    normal = anomaly_scores(model, x)
    # The threshold flags 5% of validation images: set on val, scored on test.
    calibration = evaluation_rows(rec, storage, "val", n=args.n)["image"].float() / 255.0
    t = threshold(anomaly_scores(model, calibration), fpr=0.05)
    adv = attack(classifier, x, y, method="pgd", eps=args.eps, steps=args.steps, seed=args.seed).x_adv
    # The attack of Carlini & Wagner (2017) on the detector: misclassified and under its threshold.
    aware = evasive_pgd(classifier, model, x, y, eps=args.eps, steps=args.steps, threshold=t, seed=args.seed)
    others = {**ood_sets(list(model.shape), len(x), seed=args.seed, x=x), f"pgd-{args.eps:g}": adv,
              f"pgd-{args.eps:g}-adaptive": aware}
    print(f"{rec.ref} likelihood detection ({len(x)} test images; threshold {t:.3f} bits/dim flags 5% of "
          f"{len(calibration)} validation images)")
    print(f"  {'inputs':<22} {'AUROC':>7} {'flagged':>8} {'bits/dim':>9} {'classifier accuracy':>20}")
    for name, images in others.items():
        s = anomaly_scores(model, images)
        print(f"  {name:<22} {auroc(normal, s):7.4f} {float((s > t).float().mean()):8.3f} {float(s.mean()):9.3f} "
              f"{classifier.accuracy(images, y) if name.startswith('pgd') else float('nan'):20.3f}")


def judge(storage, rec, name: str | None):
    """The classifier for model `rec`'s images, looked up as the endpoints do it: `name`, or by
    default one trained on the same data; either must take images of that shape."""
    from genray.models.errors import InputError
    from genray.services.workbench import Workbench

    try:
        return Workbench(storage.uri, {}).judge(name, rec)
    except InputError as e:
        raise CliError(f"--classifier: {e}") from None
