"""Robustness of genray's models on MNIST-5k (and Shakespeare for the text rows): every model is
trained on Ray Train and published, then attacked or defended in one process.

    python benchmarks/robustness.py [--part evasion|backdoor|detection|generative|all] [--storage DIR]
                                    [--workers 2] [--n 500] [--reuse] [--models A,B] [--columns C,D] [--smoke]

evasion      a standard classifier, one trained on augmented images and two trained adversarially
             (PGD, Madry et al.) under FGSM at eps 0.1 / 0.2 / 0.3, PGD-40 at 0.3 with a random start,
             and AutoAttack's APGD-CE + APGD-DLR core at 0.3 (100 steps each), all L-inf; Carlini-Wagner
             L2 (100 iterations, 10 binary-search steps; a success counts within L2 2) beside PGD-40 at L2 2
backdoor     BadNets at a 10% poison rate, undefended and after each training-set sanitizer
             (spectral signatures, activation clustering, k-NN) and retraining; clean accuracy
             against the rate of flipped labels; a trigger-phrase backdoor in the char transformer
detection    likelihood detection (VAE, flow) of out-of-distribution and PGD inputs as AUROC;
             purification (VAE, flow) under PGD: non-adaptive, and adaptive by BPDA and by the full
             gradient through the purifier
generative   the VAE reconstruction attack (target-class rate against the L2 budget), GCG suffixes
             on the char transformer, and the GAN's discriminator under PGD

Each row says its training budget and the wall time of its attack or defense (2 cores).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from genray.cluster.datacache import local_arrays  # noqa: E402
from genray.cluster.registry import Registry  # noqa: E402
from genray.cluster.storage import Storage  # noqa: E402
from genray.models.robustness import (  # noqa: E402
    Purifier,
    anomaly_scores,
    attack,
    auroc,
    discriminator_attack,
    evaluate_purification,
    evasive_pgd,
    ood_sets,
    reconstruction_attack,
    suffix_attack,
)
from genray.models.robustness.poison import Poison, text_backdoor_success  # noqa: E402
from genray.trainers import datasets  # noqa: E402
from genray.trainers.run import TrainSpec, train  # noqa: E402
from genray.trainers.sanitize import DETECTORS, sanitize  # noqa: E402

PGD_TRAINING = {"defense": "adversarial", "defense_eps": 0.3, "defense_steps": 10}
# Two adversarial rows keep the one-stage CNN and budget they were first measured with.
FIRST = {**PGD_TRAINING, "schedule": "constant", "warmup_steps": 0, "defense_ramp": 0.0}
SMALL = {"depth": 1}
EVASION_MODELS = {  # name -> TrainSpec arguments on top of the classifier's preset
    "robust-standard": {},
    "robust-augment": {"train": {"defense": "augment"}},
    "robust-adversarial": {"train": FIRST, "model": SMALL, "epochs": 10},
    "robust-adversarial-wide": {"train": FIRST, "model": {**SMALL, "width": 64, "features": 128}, "epochs": 30},
    # The preset's two-convolution CNN, its cosine schedule and its budget ramp, for 30 epochs.
    "robust-adversarial-deep": {"train": PGD_TRAINING, "epochs": 30},
}
EVASION_ATTACKS = [  # column, attack() arguments
    ("FGSM .1", {"method": "fgsm", "eps": 0.1}),
    ("FGSM .2", {"method": "fgsm", "eps": 0.2}),
    ("FGSM .3", {"method": "fgsm", "eps": 0.3}),
    ("PGD-40 .3", {"method": "pgd", "eps": 0.3, "steps": 40}),
    ("APGD .3", {"method": "autoattack", "eps": 0.3, "steps": 100}),
    # Minimum-norm: an example counts where CW found one within L2 2 (the L-inf 0.3 ball reaches 8.4).
    ("CW-L2 2", {"method": "cw", "eps": 2.0, "norm": "l2", "steps": 100}),
    ("PGD-40 L2 2", {"method": "pgd", "eps": 2.0, "norm": "l2", "steps": 40}),
]
FLIP_RATES = (0.01, 0.05, 0.1, 0.2, 0.3)
ADAPTIVE_WEIGHTS = (1.0, 10.0, 100.0)  # on the detector's bits/dim against the classifier's cross-entropy
GCG_TARGET = " my lord"


class Bench:
    def __init__(self, args):
        self.args, self.storage = args, Storage(args.storage)
        self.registry = Registry(self.storage)
        self.image_data = "digits" if args.smoke else "mnist"
        self.text_model = {"n_layer": 1, "n_embd": 32, "n_head": 2, "block_size": 64} if args.smoke else {}
        meta = datasets.prepare(self.image_data, self.storage)
        val = local_arrays(meta, "val", self.storage, limit=args.n)
        self.x, self.y = val["image"].float() / 255.0, val["label"]

    def train(self, name: str, family: str, *, reuse: bool = False, **kw):
        """Train and publish (or, with reuse, take the registry's latest `name`); the model and its record."""
        if reuse and name in self.registry.names():
            return self.registry.load(name)
        if self.args.smoke:
            kw = {"limit": 512, **kw, "epochs": 1}
        kw.setdefault("dataset", self.image_data)
        rec = train(TrainSpec(family, name=name, workers=self.args.workers, fresh=True, **kw), self.storage)
        return self.registry.load(rec.ref)

    def budget(self, rec) -> str:
        m = rec.metrics
        return f"{m['wall_time_s']:.0f} s, {m['epochs']} epochs on {m['workers']} workers"


def table(title: str, header: list[str], rows: list[list]) -> None:
    print(f"\n{title}\n| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for r in rows:
        print("| " + " | ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in r) + " |", flush=True)


def progress(row: list) -> list:
    """Print a row as soon as it is measured (long parts lose nothing if stopped), and return it."""
    print("  measured:", row, file=sys.stderr, flush=True)
    return row


def timed(fn, *a, **kw):
    t0 = time.perf_counter()
    out = fn(*a, **kw)
    return out, time.perf_counter() - t0


# ---- parts -----------------------------------------------------------------------------------
def evasion(b: Bench) -> None:
    attacks = b.args.attacks
    rows = []
    for name, spec in EVASION_MODELS.items():
        if name not in b.args.models.split(","):
            continue
        model, rec = b.train(name, "classifier", epochs=spec.get("epochs"), train=spec.get("train", {}),
                             model=spec.get("model", {}), reuse=b.args.reuse)
        cells, seconds = [], 0.0
        for _column, kw in attacks:
            r, t = timed(attack, model, b.x, b.y, **kw)
            cells.append(r.robust_accuracy)
            seconds += t
        rows.append(progress([name, spec.get("train", {}).get("defense", "none"), r.clean_accuracy, *cells,
                              b.budget(rec), f"{seconds:.0f} s"]))
    table(f"Evasion: accuracy on {len(b.x)} validation images of {b.image_data}",
          ["model", "defense", "clean", *[c for c, _ in attacks], "training", "attacks"], rows)


def backdoor(b: Bench) -> None:
    rows = []
    poisoned, rec = b.train("robust-badnets", "classifier", poison={"method": "badnets", "rate": 0.1})
    for method in ("knn",) if b.args.smoke else DETECTORS:
        r, t = timed(sanitize, rec.ref, b.storage, method=method, workers=b.args.workers)
        s = r.summary()
        if not rows:
            rows.append(["none", "-", "-", s["before"]["clean_accuracy"], s["before"]["asr"], b.budget(rec)])
        after = b.registry.record(s["retrained"])
        rows.append([method, f"{s['flagged']} ({s['caught']} of {s['poisoned']})", f"{s['recall']:.3f}",
                     s["after"]["clean_accuracy"], s["after"]["asr"], f"{t:.0f} s (retraining {b.budget(after)})"])
    side = Poison("badnets", 0.1).patch_size(list(b.x.shape[1:]))
    table(f"BadNets, 10% of the training rows ({side}x{side} trigger, target 0)",
          ["sanitizer", "flagged (poisoned caught)", "recall", "clean accuracy", "ASR", "time"], rows)

    flips = []
    for rate in (0.1,) if b.args.smoke else FLIP_RATES:
        model, rec = b.train(f"robust-flip-{rate:g}", "classifier", epochs=None if b.args.smoke else 10,
                             poison={"method": "label_flip", "rate": rate})
        flips.append([f"{rate:.0%}", model.accuracy(b.x, b.y), b.budget(rec)])
    table("Label flips: clean accuracy against the rate", ["flipped", "clean accuracy", "training"], flips)

    text_rows = []
    meta = datasets.prepare("shakespeare", b.storage)
    val = local_arrays(meta, "val", b.storage, limit=50 if b.args.smoke else 200)
    from genray.models.codecs import make_vocab

    vocab = make_vocab(meta["vocab"])
    prompts = [vocab.decode(row[:64]) for row in val["tokens"]]
    poison = Poison("text_backdoor", 0.05)
    for name, p in (("robust-text-clean", None), ("robust-text-backdoor", poison.to_dict())):
        if b.args.smoke and p is None:
            continue
        model, rec = b.train(name, "transformer", dataset="shakespeare", poison=p, model=b.text_model)
        r, t = timed(text_backdoor_success, model, prompts, poison, temperature=0.5)
        text_rows.append([name, "5%" if p else "0%", rec.metrics["val_nll"], r["asr"], r["base_rate"],
                          b.budget(rec), f"{t:.0f} s"])
    table(f"Text backdoor: trigger {poison.trigger!r} -> {poison.target_text!r}, {len(prompts)} validation prompts, "
          "temperature 0.5", ["model", "poisoned rows", "clean val NLL (nats/char)", "ASR", "rate without trigger",
                              "training", "sampling"], text_rows)


def detection(b: Bench) -> None:
    classifier, _ = b.train("robust-standard", "classifier", reuse=True)
    adv = attack(classifier, b.x, b.y, method="pgd", eps=0.3, steps=40).x_adv
    adv_small = attack(classifier, b.x, b.y, method="pgd", eps=0.1, steps=40).x_adv
    inputs = {**ood_sets(list(b.x.shape[1:]), len(b.x), x=b.x), "PGD-40 .1": adv_small, "PGD-40 .3": adv}
    rows, purify_rows = [], []
    for family in ("vae", "flow"):
        # The flow at 6 of its preset's 24 epochs: its full-gradient purification below is the slow part.
        model, rec = b.train(f"robust-{family}", family, reuse=b.args.reuse, epochs=6 if family == "flow" else None)
        normal, t = timed(anomaly_scores, model, b.x)
        cells = [auroc(normal, anomaly_scores(model, v)) for v in inputs.values()]
        # PGD at 0.3 that also lowers the detector's bits/dim: the lowest AUROC over the weights,
        # with the classifier's accuracy on those examples (the attack must still fool it).
        adaptive = []
        for weight in ADAPTIVE_WEIGHTS:
            x_adv = evasive_pgd(classifier, model, b.x, b.y, eps=0.3, steps=40, weight=weight)
            adaptive.append((auroc(normal, anomaly_scores(model, x_adv)), classifier.accuracy(x_adv, b.y), weight))
        a, acc, weight = min(adaptive)
        rows.append(progress([f"{family} ({b.budget(rec)})", *cells, f"{a:.4f} (accuracy {acc:.3f}, weight {weight:g})",
                     f"{t:.1f} s per {len(b.x)}"]))
        for eps in (0.1,) if b.args.smoke else (0.1, 0.3):
            n = 16 if b.args.smoke else min(len(b.x), 200 if family == "vae" else 100)
            r, t = timed(evaluate_purification, Purifier(model), classifier, b.x[:n], b.y[:n], eps=eps,
                         steps=5 if b.args.smoke else 40)
            purify_rows.append(progress([family, f"{eps:g}", r["clean"], r["purified_clean"], r["undefended"],
                                         r["nonadaptive"], r["adaptive_bpda"], r["adaptive_full"],
                                         r.get("adaptive_label", "-"), r["adaptive"], f"{t:.0f} s"]))
    table(f"Likelihood detection: AUROC against {len(b.x)} validation images (PGD on robust-standard)",
          ["detector", *inputs, "PGD-40 .3 knowing the detector", "scoring"], rows)
    table("Purification, then robust-standard: accuracy under PGD-40 (L-inf)",
          ["purifier", "eps", "clean", "purified clean", "undefended", "non-adaptive", "adaptive BPDA",
           "adaptive full gradient", "adaptive on the VAE's class", "adaptive (lowest)", "time"], purify_rows)


def generative(b: Bench) -> None:
    classifier, _ = b.train("robust-standard", "classifier", reuse=True)
    vae, _ = b.train("robust-vae", "vae", reuse=True)
    n = min(len(b.x), 100)
    target = (b.y[:n] + 1) % 10
    rows = []
    for eps in (2.0,) if b.args.smoke else (1.0, 2.0, 3.0, 4.0):
        r, t = timed(reconstruction_attack, vae, b.x[:n], target=target, classifier=classifier, eps=eps,
                     steps=20 if b.args.smoke else 100)
        s = r.summary()
        rows.append([f"{eps:g}", s["clean_target_rate"], s["target_rate"], s["mean_l2"], f"{t:.0f} s"])
    table(f"VAE reconstruction attack: {n} validation images, each aimed at (label + 1) mod 10, "
          "judged by robust-standard", ["L2 eps", "target rate (clean)", "target rate (attacked)", "mean L2", "time"],
          rows)

    lm, rec = b.train("robust-text-backdoor" if b.args.smoke else "robust-text-clean", "transformer",
                      dataset="shakespeare", reuse=True, model=b.text_model)
    meta = datasets.prepare("shakespeare", b.storage)
    from genray.models.codecs import make_vocab

    vocab = make_vocab(meta["vocab"])
    val = local_arrays(meta, "val", b.storage, limit=1 if b.args.smoke else 5)
    gcg = []
    for row in val["tokens"]:
        r, t = timed(suffix_attack, lm, vocab.decode(row[:48]), GCG_TARGET, suffix_len=10,
                     steps=5 if b.args.smoke else 50, samples=32)
        gcg.append([repr(r.suffix), r.logprob_before, r.logprob_after, r.hit_rate_before, r.hit_rate_after,
                    f"{t:.0f} s"])
    table(f"GCG suffixes on robust-text-clean ({b.budget(rec)}): target {GCG_TARGET!r}, 10 characters, 50 steps, "
          "32 samples at temperature 1", ["suffix", "log P before", "log P after", "hit rate before",
                                          "hit rate after", "time"], gcg)

    gan, rec = b.train(b.args.gan, "gan", reuse=True)
    rows = []
    for eps in (0.1,) if b.args.smoke else (0.05, 0.1, 0.2):
        r, t = timed(discriminator_attack, gan, b.x, b.y, eps=eps, steps=5 if b.args.smoke else 40)
        s = r.summary()
        rows.append([f"{eps:g}", s["real_rate_before"], s["real_rate_after"], s["fooled_rate"], f"{t:.0f} s"])
    table(f"GAN discriminator under PGD-40 (L-inf) on {len(b.x)} real validation images ({b.budget(rec)})",
          ["eps", "scored real (clean)", "scored real (attacked)", "fooled", "time"], rows)


PARTS = {"evasion": evasion, "backdoor": backdoor, "detection": detection, "generative": generative}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", default="all", choices=["all", *PARTS])
    ap.add_argument("--storage", default=None)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--n", type=int, default=500, help="validation images to attack")
    ap.add_argument("--reuse", action="store_true", help="take models of the same name from the registry")
    ap.add_argument("--models", default=",".join(EVASION_MODELS), help="evasion: the classifiers to train and attack")
    ap.add_argument("--gan", default="robust-gan", help="generative: the GAN to attack (trained at its preset if "
                                                        "the registry lacks it)")
    ap.add_argument("--columns", default=",".join(c for c, _ in EVASION_ATTACKS),
                    help="evasion: the attack columns to run")
    ap.add_argument("--smoke", action="store_true", help="the 8x8 digits, 1 epoch, 64 images, short attacks, "
                                                         "one row of each kind")
    args = ap.parse_args()
    args.attacks = [(c, a) for c, a in EVASION_ATTACKS if c in args.columns.split(",")]
    if args.smoke:
        import atexit
        import shutil
        import tempfile

        args.n, args.workers, args.models = 64, 1, "robust-standard,robust-adversarial"
        args.attacks = [(c, {**a, "steps": min(a.get("steps", 1), 5)}) for c, a in args.attacks]
        if not args.storage:
            args.storage = tempfile.mkdtemp(prefix="genray-robustness-smoke-")
            atexit.register(shutil.rmtree, args.storage, ignore_errors=True)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    from genray.cluster.connect import connect

    connect()
    b = Bench(args)
    for name, part in PARTS.items():
        if args.part in ("all", name):
            t0 = time.perf_counter()
            part(b)
            print(f"({name}: {time.perf_counter() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
