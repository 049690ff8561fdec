"""Robustness of genray's models on MNIST-5k (and Shakespeare for the text rows): every model is
trained on Ray Train and published, then attacked or defended in one process, on a class-stratified
sample of the test split (the first --n of its evaluation order, models/splits.py); whatever a
defense calibrates (a detector's threshold) it calibrates on the validation split.

    python benchmarks/robustness.py [--part evasion|backdoor|detection|generative|all] [--storage DIR]
                                    [--workers 2] [--n 500] [--reuse] [--models A,B] [--columns C,D]
                                    [--alias ROLE=NAME,...] [--smoke]

evasion      a standard classifier, one trained on augmented images, and the adversarially trained
             preset (`genray train classifier --defense adversarial --eps 0.3`: PGD training, Madry et
             al.) under FGSM at eps 0.1 / 0.2 / 0.3, PGD-40, PGD-100 with 5 restarts (step 0.01), APGD
             (CE then DLR, 100 steps from a step of 2 eps) and AutoAttack standard (APGD-CE, APGD-T,
             FAB-T, Square with 5,000 queries), all at L-inf 0.3, and the per-image worst case over
             the 0.3 attacks; Carlini-Wagner L2 (100 iterations, 10 binary-search steps; a success
             counts within L2 2) beside PGD-40 at L2 2; then the sanity checks of Carlini et al. 2019
             on the adversarially trained model
backdoor     BadNets at a 10% poison rate, undefended and after each training-set sanitizer
             (spectral signatures, activation clustering, k-NN) and retraining; clean accuracy
             against the rate of flipped labels; a trigger-phrase backdoor in the char transformer
detection    likelihood detection (VAE, flow) of out-of-distribution and PGD inputs as AUROC, and
             the detector under Carlini & Wagner's (2017) attack at its 5%-false-positive threshold;
             purification (VAE, flow) under PGD: non-adaptive, and adaptive by BPDA and by the full
             gradient through the purifier
generative   the VAE reconstruction attack (target-class rate against the L2 budget), GCG suffixes
             on the char transformer, and the GAN's discriminator under PGD

Each row says its training budget and the wall time of its attack or defense (2 cores). Each
part writes a JSON record (benchmarks/record.py) that docs/benchmarks.md is rendered from.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.record import Record  # noqa: E402
from genray.cluster.datacache import ordered_rows  # noqa: E402
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
    threshold,
)
from genray.models.robustness.attacks import worst_case  # noqa: E402
from genray.models.robustness.poison import Poison, text_backdoor_success  # noqa: E402
from genray.models.robustness.sanity import sanity_checks  # noqa: E402
from genray.trainers import datasets  # noqa: E402
from genray.trainers.run import TrainSpec, train_bundle  # noqa: E402
from genray.trainers.sanitize import DETECTORS, sanitize  # noqa: E402

EVASION_MODELS = {  # name -> TrainSpec arguments on top of the classifier's preset
    "robust-standard": {},
    "robust-augment": {"train": {"defense": "augment"}},
    # Exactly what `genray train classifier --defense adversarial --eps 0.3` trains.
    "robust-adversarial": {"train": {"defense": "adversarial", "defense_eps": 0.3}},
}
ADVERSARIAL = "robust-adversarial"
EVASION_ATTACKS = [  # column, attack() arguments
    ("FGSM .1", {"method": "fgsm", "eps": 0.1}),
    ("FGSM .2", {"method": "fgsm", "eps": 0.2}),
    ("FGSM .3", {"method": "fgsm", "eps": 0.3}),
    ("PGD-40 .3", {"method": "pgd", "eps": 0.3, "steps": 40}),
    # Madry et al.'s MNIST evaluation: 100 steps of 0.01, here with 5 random restarts.
    ("PGD-100x5 .3", {"method": "pgd", "eps": 0.3, "steps": 100, "step_size": 0.01, "restarts": 5}),
    ("APGD .3", {"method": "apgd", "eps": 0.3, "steps": 100}),
    ("AutoAttack .3", {"method": "autoattack", "eps": 0.3, "steps": 100}),
    # Minimum-norm: an example counts where CW found one within L2 2 (the L-inf 0.3 ball reaches 8.4).
    ("CW-L2 2", {"method": "cw", "eps": 2.0, "norm": "l2", "steps": 100}),
    ("PGD-40 L2 2", {"method": "pgd", "eps": 2.0, "norm": "l2", "steps": 40}),
]
FLIP_RATES = (0.01, 0.05, 0.1, 0.2, 0.3)
ADAPTIVE_WEIGHTS = (1.0, 10.0, 100.0)  # on the detector's excess bits/dim against the classifier's margin
DETECT_FPR = 0.05
GCG_TARGET = " my lord"
TEXT_POISON = Poison("text_backdoor", 0.05)
SMOKE_TEXT_MODEL = {"n_layer": 1, "n_embd": 32, "n_head": 2, "block_size": 64}


def flip_rates(args) -> tuple[float, ...]:
    return (0.1,) if args.smoke else FLIP_RATES


def text_models(args) -> list[str]:
    return ["robust-text-backdoor"] if args.smoke else ["robust-text-clean", "robust-text-backdoor"]


def gcg_model(args) -> str:
    return text_models(args)[0]


def models(args) -> dict[str, tuple[str, dict]]:
    """Every model the parts train: name -> (family, TrainSpec arguments over the family's preset)."""
    text = {"dataset": "shakespeare", "model": SMOKE_TEXT_MODEL if args.smoke else {}}
    return {
        **{name: ("classifier", kw) for name, kw in EVASION_MODELS.items()},
        "robust-badnets": ("classifier", {"poison": {"method": "badnets", "rate": 0.1}}),
        **{f"robust-flip-{rate:g}": ("classifier", {"epochs": None if args.smoke else 10,
                                                    "poison": {"method": "label_flip", "rate": rate}})
           for rate in flip_rates(args)},
        "robust-text-clean": ("transformer", text),
        "robust-text-backdoor": ("transformer", {**text, "poison": TEXT_POISON.to_dict()}),
        "robust-vae": ("vae", {}),
        # The flow at 6 of its preset's 24 epochs: its full-gradient purification is the slow part.
        "robust-flow": ("flow", {"epochs": 6}),
        "robust-gan": ("gan", {}),
    }


NEEDS = {  # part -> the models it uses
    "evasion": lambda args: [n for n in EVASION_MODELS if n in args.models.split(",")],
    "backdoor": lambda args: ["robust-badnets", "robust-standard", *(f"robust-flip-{r:g}" for r in flip_rates(args)),
                              *text_models(args)],
    "detection": lambda args: ["robust-standard", "robust-vae", "robust-flow"],
    "generative": lambda args: ["robust-standard", "robust-vae", gcg_model(args), "robust-gan"],
}


class Bench:
    def __init__(self, args):
        self.args, self.storage = args, Storage(args.storage)
        self.registry = Registry(self.storage)
        self.image_data = "digits" if args.smoke else "mnist"
        self.meta = datasets.prepare(self.image_data, self.storage)
        # Roles filled by models already in the registry (--alias), trained nowhere here.
        self.aliases = dict(pair.split("=", 1) for pair in args.alias.split(",") if pair)
        if args.gan:
            self.aliases["robust-gan"] = args.gan
        (self.x, self.y), (self.val_x, _) = (self.sample(self.meta, s, args.n) for s in ("test", "val"))

    def sample(self, meta: dict, split: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first n images of a split's class-stratified evaluation order, and their labels."""
        rows = ordered_rows(meta, split, self.storage, n)
        return rows["image"].float() / 255.0, rows["label"]

    def record(self, part: str) -> Record:
        out = os.path.join(self.args.storage, "results") if self.args.smoke else self.args.results
        return Record("robustness", part, self.args, seeds=[0], out_dir=out)

    def prepare(self, parts: list[str]) -> None:
        """Trains the models the parts use that no alias names (and, with --reuse, the registry lacks),
        one after another in one Ray Train run (a bundle: its start-up is paid once)."""
        specs = models(self.args)
        names = dict.fromkeys(n for p in parts for n in NEEDS[p](self.args))
        missing = [n for n in names if n not in self.aliases
                   and not (self.args.reuse and n in self.registry.names())]
        if missing:
            train_bundle([self.spec(n, *specs[n]) for n in missing], self.storage, "robustness")

    def spec(self, name: str, family: str, kw: dict) -> TrainSpec:
        if self.args.smoke:
            kw = {"limit": 512, **kw, "epochs": 1}
        return TrainSpec(family, name=name, workers=self.args.workers, fresh=True,
                         **{"dataset": self.image_data, **kw})

    def train(self, name: str):
        """A model of the run (prepared), or the registry model its alias names; the model and its record."""
        return self.registry.load(self.aliases.get(name, name))

    def budget(self, rec) -> str:
        m = rec.metrics
        return f"{m['wall_time_s']:.0f} s, {m['epochs']} epochs on {m['workers']} workers"


def progress(row: list) -> list:
    """Print a row as soon as it is measured (long parts lose nothing if stopped), and return it."""
    print("  measured:", row, file=sys.stderr, flush=True)
    return row


def timed(fn, *a, **kw):
    t0 = time.perf_counter()
    out = fn(*a, **kw)
    return out, time.perf_counter() - t0


# ---- parts -----------------------------------------------------------------------------------
def evasion(b: Bench) -> Record:
    rec_ = b.record("evasion")
    attacks = b.args.attacks
    rows, sanity_rows = [], []
    for name, spec in EVASION_MODELS.items():
        if name not in b.args.models.split(","):
            continue
        model, rec = b.train(name)
        cells, seconds, at_03 = [], 0.0, []
        for column, kw in attacks:
            r, t = timed(attack, model, b.x, b.y, **kw)
            cells.append(r.robust_accuracy)
            seconds += t
            if kw.get("norm", "linf") == "linf" and kw["eps"] == 0.3:
                at_03.append(r)
            if r.parts:
                rec_.figure(f"{name} {column} parts", r.parts)
        worst = worst_case(at_03) if at_03 else None
        rows.append(progress([name, spec.get("train", {}).get("defense", "none"), r.clean_accuracy, *cells, worst,
                              b.budget(rec), f"{seconds:.0f} s"]))
        rec_.figure(f"{name} clean", r.clean_accuracy)
        rec_.figure(f"{name} worst case .3", worst)
        if name == ADVERSARIAL:
            if worst is not None:
                rec_.target(f"{name}: worst case at L-inf 0.3 >= 0.70", worst, ">=", 0.70)
            rec_.target(f"{name}: clean accuracy >= 0.95", r.clean_accuracy, ">=", 0.95)
            if not b.args.no_sanity:
                steps = 10 if b.args.smoke else 100
                checks, t = timed(sanity_checks, model, b.x, b.y, eps=0.3, steps=steps, square_steps=steps,
                                  white_box=worst)
                for c in checks:
                    measured = "; ".join(f"{k} {v:.4f}" for k, v in c.figures.items())
                    sanity_rows.append(progress([c.name, c.rule, measured, "passed" if c.passed else "FAILED"]))
                rec_.target(f"{name}: sanity checks passed (of {len(checks)})", sum(c.passed for c in checks),
                            "==", len(checks))
                rec_.figure("sanity seconds", round(t))
    rec_.table("evasion", f"Evasion: accuracy on {len(b.x)} test images of {b.image_data} (class-stratified)",
               ["model", "defense", "clean", *[c for c, _ in attacks], "worst case .3", "training", "attacks"], rows)
    if sanity_rows:
        rec_.table("sanity", f"Sanity checks (Carlini et al. 2019) on {ADVERSARIAL}, the same images",
                   ["check", "rule", "measured", "verdict"], sanity_rows)
    return rec_


def backdoor(b: Bench) -> Record:
    rec_ = b.record("backdoor")
    rows = []
    poisoned, rec = b.train("robust-badnets")
    for method in ("knn",) if b.args.smoke else DETECTORS:
        r, t = timed(sanitize, rec.ref, b.storage, method=method, workers=b.args.workers)
        s = r.summary()
        if not rows:
            rows.append(["none", "-", "-", s["before"]["clean_accuracy"], s["before"]["asr"], b.budget(rec)])
        after = b.registry.record(s["retrained"])
        rows.append([method, f"{s['flagged']} ({s['caught']} of {s['poisoned']})", f"{s['recall']:.3f}",
                     s["after"]["clean_accuracy"], s["after"]["asr"], f"{t:.0f} s (retraining {b.budget(after)})"])
    # The targets: a backdoor that works without costing clean accuracy, and each sanitizer's
    # retrained model free of it at little cost; all measured against the unpoisoned classifier.
    standard, _ = b.train("robust-standard")
    test = datasets.local_arrays(b.meta, "test", b.storage)
    clean = standard.accuracy(test["image"], test["label"])  # the split sanitize() scores
    rec_.figure("robust-standard clean accuracy", clean)
    before = rows[0]
    rec_.target("undefended ASR >= 0.95", before[4], ">=", 0.95)
    rec_.target("undefended clean-accuracy drop <= 0.01", round(clean - before[3], 4), "<=", 0.01)
    for row in rows[1:]:
        rec_.target(f"{row[0]}: ASR after retraining <= 0.05", row[4], "<=", 0.05)
        rec_.target(f"{row[0]}: clean-accuracy drop <= 0.02", round(clean - row[3], 4), "<=", 0.02)
    side = Poison("badnets", 0.1).patch_size(list(b.x.shape[1:]))
    rec_.table("badnets", f"BadNets, 10% of the training rows ({side}x{side} trigger, target 0), scored on the test "
               "split", ["sanitizer", "flagged (poisoned caught)", "recall", "clean accuracy", "ASR", "time"], rows)

    flips = []
    for rate in flip_rates(b.args):
        model, rec = b.train(f"robust-flip-{rate:g}")
        flips.append([f"{rate:.0%}", model.accuracy(b.x, b.y), b.budget(rec)])
    rec_.table("flips", f"Label flips: clean accuracy on {len(b.x)} test images against the rate",
               ["flipped", "clean accuracy", "training"], flips)

    text_rows = []
    meta = datasets.prepare("shakespeare", b.storage)
    test = ordered_rows(meta, "test", b.storage, n=50 if b.args.smoke else 200)["tokens"]
    from genray.models.codecs import make_vocab

    vocab = make_vocab(meta["vocab"])
    prompts = [vocab.decode(row[:64]) for row in test]
    poison = TEXT_POISON
    specs = models(b.args)
    for name in text_models(b.args):
        model, rec = b.train(name)
        r, t = timed(text_backdoor_success, model, prompts, poison, temperature=0.5)
        poisoned = "5%" if "poison" in specs[name][1] else "0%"
        text_rows.append([name, poisoned, rec.metrics["val_nll"], r["asr"], r["base_rate"], b.budget(rec),
                          f"{t:.0f} s"])
    rec_.table("text", f"Text backdoor: trigger {poison.trigger!r} -> {poison.target_text!r}, {len(prompts)} test "
               "prompts (a seeded sample of rows), temperature 0.5",
               ["model", "poisoned rows", "clean val NLL (nats/char)", "ASR", "rate without trigger", "training",
                "sampling"], text_rows)
    return rec_


def detection(b: Bench) -> Record:
    rec_ = b.record("detection")
    classifier, _ = b.train("robust-standard")
    adv = attack(classifier, b.x, b.y, method="pgd", eps=0.3, steps=40).x_adv
    adv_small = attack(classifier, b.x, b.y, method="pgd", eps=0.1, steps=40).x_adv
    inputs = {**ood_sets(list(b.x.shape[1:]), len(b.x), x=b.x), "PGD-40 .1": adv_small, "PGD-40 .3": adv}
    steps = 10 if b.args.smoke else 100
    rows, aware_rows, purify_rows = [], [], []
    for family in ("vae", "flow"):
        model, rec = b.train(f"robust-{family}")
        normal, t = timed(anomaly_scores, model, b.x)
        cells = [auroc(normal, anomaly_scores(model, v)) for v in inputs.values()]
        rows.append(progress([f"{family} ({b.budget(rec)})", *cells, f"{t:.1f} s per {len(b.x)}"]))
        # Carlini & Wagner (2017): misclassified *and* under the threshold that flags 5% of clean
        # validation images, from the clean input with restarts.
        t_ = threshold(anomaly_scores(model, b.val_x), fpr=DETECT_FPR)
        flagged = lambda images, t_=t_, model=model: (anomaly_scores(model, images) > t_)  # noqa: E731
        # On the first images of the stratified sample: each step differentiates the detector's
        # likelihood (the VAE's bound over every class, the flow's exact density).
        m = min(len(b.x), b.args.n_adaptive)
        x, y = b.x[:m], b.y[:m]
        (x_adv, secs) = timed(evasive_pgd, classifier, model, x, y, eps=0.3, threshold=t_, steps=steps,
                              weights=ADAPTIVE_WEIGHTS, restarts=2)
        with torch.no_grad():
            wrong_adv = classifier(x_adv).argmax(1) != y
            wrong_pgd = classifier(adv[:m]).argmax(1) != y
        for label, images, wrong in (("PGD-40 .3 (naive)", adv[:m], wrong_pgd),
                                     ("C&W joint loss .3", x_adv, wrong_adv)):
            f = flagged(images)
            aware_rows.append(progress([family, label, float((~f).float().mean()), float(wrong.float().mean()),
                                        float((wrong & ~f).float().mean())]))
        rec_.figure(f"{family} threshold bits/dim", t_)
        rec_.figure(f"{family} clean test flagged", float((normal > t_).float().mean()))
        rec_.figure(f"{family} C&W seconds", round(secs))
        for eps in (0.1,) if b.args.smoke else (0.1, 0.3):
            # b.x is in the class-stratified evaluation order: every prefix holds the digits equally.
            n = 16 if b.args.smoke else min(len(b.x), 200 if family == "vae" else 100)
            r, t = timed(evaluate_purification, Purifier(model), classifier, b.x[:n], b.y[:n], eps=eps,
                         steps=5 if b.args.smoke else 40)
            purify_rows.append(progress([family, f"{eps:g}", r["clean"], r["purified_clean"], r["undefended"],
                                         r["nonadaptive"], r["adaptive_bpda"], r["adaptive_full"],
                                         r.get("adaptive_label", "-"), r["adaptive"], f"{t:.0f} s"]))
    rec_.table("detection", f"Likelihood detection: AUROC against {len(b.x)} test images (PGD on robust-standard)",
               ["detector", *inputs, "scoring"], rows)
    rec_.table("adaptive", f"The detector at its {DETECT_FPR:.0%}-false-positive threshold (set on {len(b.val_x)} "
               f"validation images) under Carlini & Wagner's attack (L-inf 0.3, {steps} steps, weights "
               f"{', '.join(f'{w:g}' for w in ADAPTIVE_WEIGHTS)}, 2 starts each), on robust-standard, "
               f"the first {min(len(b.x), b.args.n_adaptive)} test images of the sample",
               ["detector", "attack", "unflagged", "misclassified", "misclassified and unflagged"], aware_rows)
    rec_.table("purification", "Purification, then robust-standard: accuracy under PGD-40 (L-inf), the first "
               "images of the stratified sample",
               ["purifier", "eps", "clean", "purified clean", "undefended", "non-adaptive", "adaptive BPDA",
                "adaptive full gradient", "adaptive on the VAE's class", "adaptive (lowest)", "time"], purify_rows)
    return rec_


def generative(b: Bench) -> Record:
    rec_ = b.record("generative")
    classifier, _ = b.train("robust-standard")
    vae, _ = b.train("robust-vae")
    n = min(len(b.x), 100)  # a prefix of the class-stratified evaluation order: 10 of each digit
    target = (b.y[:n] + 1) % 10
    rows = []
    for eps in (2.0,) if b.args.smoke else (1.0, 2.0, 3.0, 4.0):
        r, t = timed(reconstruction_attack, vae, b.x[:n], target=target, classifier=classifier, eps=eps,
                     steps=20 if b.args.smoke else 100)
        s = r.summary()
        rows.append([f"{eps:g}", s["clean_target_rate"], s["target_rate"], s["mean_l2"], f"{t:.0f} s"])
    rec_.table("reconstruction", f"VAE reconstruction attack: {n} test images (class-stratified), each aimed at "
               "(label + 1) mod 10, judged by robust-standard",
               ["L2 eps", "target rate (clean)", "target rate (attacked)", "mean L2", "time"], rows)

    lm, rec = b.train(gcg_model(b.args))
    meta = datasets.prepare("shakespeare", b.storage)
    from genray.models.codecs import make_vocab

    vocab = make_vocab(meta["vocab"])
    test = ordered_rows(meta, "test", b.storage, n=1 if b.args.smoke else 5)["tokens"]
    gcg = []
    for row in test:
        r, t = timed(suffix_attack, lm, vocab.decode(row[:48]), GCG_TARGET, suffix_len=10,
                     steps=5 if b.args.smoke else 50, samples=32)
        gcg.append([repr(r.suffix), r.logprob_before, r.logprob_after, r.hit_rate_before, r.hit_rate_after,
                    f"{t:.0f} s"])
    rec_.table("gcg", f"GCG suffixes on {gcg_model(b.args)} ({b.budget(rec)}): target {GCG_TARGET!r}, 10 characters, "
               "50 steps, 32 samples at temperature 1, prompts from a seeded sample of test rows",
               ["suffix", "log P before", "log P after", "hit rate before", "hit rate after", "time"], gcg)

    gan, rec = b.train("robust-gan")
    rows = []
    for eps in (0.1,) if b.args.smoke else (0.05, 0.1, 0.2):
        r, t = timed(discriminator_attack, gan, b.x, b.y, eps=eps, steps=5 if b.args.smoke else 40)
        s = r.summary()
        rows.append([f"{eps:g}", s["real_rate_before"], s["real_rate_after"], s["fooled_rate"], f"{t:.0f} s"])
    rec_.table("discriminator", f"GAN discriminator under PGD-40 (L-inf) on {len(b.x)} real test images "
               f"({b.budget(rec)})", ["eps", "scored real (clean)", "scored real (attacked)", "fooled", "time"], rows)
    return rec_


PARTS = {"evasion": evasion, "backdoor": backdoor, "detection": detection, "generative": generative}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", default="all", choices=["all", *PARTS])
    ap.add_argument("--storage", default=None)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--n-adaptive", type=int, default=100, help="detection: images under Carlini & Wagner's "
                                                                 "attack (the first of the sample)")
    ap.add_argument("--n", type=int, default=500, help="test images to attack: the first n of the test split's "
                                                       "class-stratified evaluation order")
    ap.add_argument("--results", default=None, help="where the JSON records go (default benchmarks/results)")
    ap.add_argument("--no-sanity", action="store_true", help="evasion: skip the sanity checks")
    ap.add_argument("--reuse", action="store_true", help="take models of the same name from the registry "
                                                                "instead of training them")
    ap.add_argument("--alias", default="", help="ROLE=NAME,...: take registry model NAME as the run's model "
                                                "ROLE (robust-standard, robust-vae, ...) instead of training it")
    ap.add_argument("--models", default=",".join(EVASION_MODELS), help="evasion: the classifiers to train and attack")
    ap.add_argument("--gan", default=None, help="generative: a registry GAN to attack (default: robust-gan, trained "
                                                "at its preset)")
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
        args.attacks = [(c, {**a, "steps": min(a.get("steps", 1), 5), "restarts": min(a.get("restarts", 1), 2)})
                        for c, a in args.attacks]
        if not args.storage:
            args.storage = tempfile.mkdtemp(prefix="genray-robustness-smoke-")
            atexit.register(shutil.rmtree, args.storage, ignore_errors=True)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    from genray.cluster.connect import connect

    connect()
    b = Bench(args)
    b.prepare([name for name in PARTS if args.part in ("all", name)])
    for name, part in PARTS.items():
        if args.part in ("all", name):
            t0 = time.perf_counter()
            part(b).save()
            print(f"({name}: {time.perf_counter() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
