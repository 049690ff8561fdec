"""genray's applications, each scored against simple baselines on held-out data: one table per
application, with wall times and cores.

    python benchmarks/applications.py [--part inpaint|style|style-net|summarize|music|all] [--storage DIR]
                                      [--workers 2] [--reuse] [--vae inpaint-vae] [--flow inpaint-flow]
                                      [--style-net style-brick] [--net-style brick]
                                      [--scorer summary-scorer] [--abstractor summary-abstractor]
                                      [--music-gan chorale-gan] [--chorale-rnn chorale-rnn] [--melodies 500]
                                      [--n 500] [--masks center,bottom,right,random] [--n-other 100] [--steps 100]
                                      [--style-steps 200] [--max-side 256] [--strength 0.8] [--smoke]

inpaint   MNIST-5k test digits (a class-stratified sample) with the centre square (14x14) hidden,
          completed by the registry's VAE (latent optimisation, pseudo-Gibbs) and flow (MAP,
          Langevin), both trained on Ray Train here (or taken from the registry with --reuse),
          against mean fill, the nearest training image on the visible pixels, a diffusion
          (blurred) fill and scikit-image's biharmonic inpainting. Scored by PSNR on the hidden
          pixels and by the accuracy of a genray-trained digit classifier (the judge of `genray
          eval`) on the completed images. The generative inpainter the target names is chosen on
          validation digits (--n-val), then scored on test; then every method under the other masks.

style     astronaut, chelsea and coffee (scikit-image's photographs) in the textures of
          immunohistochemistry, hubble_deep_field and brick: optimisation-based transfer on a random
          multi-scale CNN's Gram matrices. Scored by texture statistics the optimiser never sees
          (scikit-image's Gabor filter-bank energies, local binary pattern histograms and grey-level
          co-occurrence properties: models/style/texture.py), by the style distance on the network
          optimised (what the optimiser lowers, for reference), and by content SSIM.

style-net a feed-forward network for one style (brick), trained on Ray Train on crops of other
          photographs, on the same three contents, scored the same way.

summarize ACLSum's 99 test papers, each aspect (challenge, approach, outcome) summarized by lead-k,
          random-k, sumy's TextRank and LexRank, the sentence scorer (trained on the highlight
          labels on Ray Train) and the pointer-generator (trained on the highlighted sentences ->
          summary pairs on Ray Train; fed the scorer's best five sentences). Scored by ROUGE-1/2/L
          F1 against the one-sentence aspect summaries, per aspect and overall.

music     a GAN over four-bar piano rolls of the chorale melodies (music-gan, trained on Ray Train
          here) against chorale-rnn's melodies (their first four bars), excerpts of the training
          chorales, and melodies with the held-out excerpts' rhythms and uniformly random pitches;
          each set compared with the held-out excerpts by pitch-class histograms, note lengths,
          empty bars and pitch range.

The theory composer has its own benchmarks/composition.py. Each part writes a JSON record
(benchmarks/record.py) that docs/benchmarks.md is rendered from.
"""
from __future__ import annotations

import argparse
import functools
import os
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.record import Record  # noqa: E402
from genray.cluster.datacache import local_arrays, ordered_rows  # noqa: E402
from genray.cluster.registry import Registry  # noqa: E402
from genray.cluster.storage import Storage  # noqa: E402
from genray.models.codecs.images import grid, to_png  # noqa: E402
from genray.models.inpaint import BASELINES, baseline_fill, inpaint, make_mask, masked_psnr, methods_of, per_image  # noqa: E402
from genray.models.style import photo, transfer  # noqa: E402
from genray.models.style.texture import DESCRIPTORS, texture_fall, texture_stats  # noqa: E402
from genray.models.style.transfer import fit_size  # noqa: E402
from genray.trainers import datasets  # noqa: E402
from genray.trainers.evaluate import judge  # noqa: E402
from genray.trainers.run import TrainSpec, train  # noqa: E402

INPAINTERS = {"vae": {}, "flow": {"epochs": 6}}  # family -> training budget beyond its preset


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class Bench:
    def __init__(self, args):
        self.args, self.storage = args, Storage(args.storage)
        self.registry = Registry(self.storage)

    def train(self, name: str, family: str, dataset: str, **kw):
        """Train and publish (or, with --reuse, take the registry's latest `name`); model and record."""
        if self.args.reuse and name in self.registry.names():
            return self.registry.load(name)
        from genray.cluster.connect import connect

        connect(console=False)  # once per process: only a part that trains needs Ray
        if self.args.smoke:
            kw = {**kw, "limit": 512, "epochs": 1}
        rec = train(TrainSpec(family, name=name, dataset=dataset, workers=self.args.workers, fresh=True, **kw),
                    self.storage)
        return self.registry.load(rec.ref)

    def record(self, part: str) -> Record:
        out = os.path.join(self.args.storage, "results") if self.args.smoke else self.args.results
        return Record("applications", part, self.args, seeds=[0], out_dir=out)

    def picture(self, name: str, rows: list[torch.Tensor]) -> str:
        """Rows of images (each (N, C, H, W) in [0, 1]) as one PNG: into docs/, beside the tables
        rendered from the same run (a smoke run: into its scratch storage)."""
        out = os.path.join(self.args.storage, "results") if self.args.smoke else os.path.join(ROOT, "docs")
        os.makedirs(out, exist_ok=True)
        path = os.path.join(out, name)
        with open(path, "wb") as f:
            f.write(to_png(grid(torch.cat(rows), ncol=len(rows[0]))))
        return path


def timed(fn, *a, **kw):
    t0 = time.perf_counter()
    out = fn(*a, **kw)
    return out, time.perf_counter() - t0


def stratified(meta: dict, split: str, storage: Storage, n: int):
    """The first n images of a split's class-stratified evaluation order (models/splits.py), and labels."""
    rows = ordered_rows(meta, split, storage, n)
    return rows["image"].float() / 255.0, rows["label"]


def inpainting(b: Bench) -> Record:
    a = b.args
    rec_ = b.record("inpaint")
    data = "digits" if a.smoke else "mnist"
    meta = datasets.prepare(data, b.storage)
    splits = {s: local_arrays(meta, s, b.storage) for s in ("train", "val")}
    clf = judge(meta, b.storage, splits)
    train_x = splits["train"]["image"].float() / 255.0
    _, H, W = meta["shape"]
    models = {}
    for family, extra in INPAINTERS.items():
        models[family] = b.train(getattr(a, family), family, data, **extra)
    budget = "; ".join(f"{rec.ref}: {rec.metrics['epochs']} epochs, {rec.metrics['wall_time_s']:.0f} s on "
                       f"{rec.metrics['workers']} workers" for _, rec in models.values())

    # Row label -> (model, method): every generative inpainter, named once for the rows and the picture.
    inpainters = {f"{rec.ref} {method} ({a.steps} steps)": (model, method)
                  for model, rec in models.values() for method in methods_of(model)}

    def scored(mask_kind: str, x, y, baselines: bool = True):
        """[row label, PSNR, judge accuracy, ms per image] of every inpainter (and baseline) under one mask."""
        mask = per_image(make_mask(mask_kind, H, W, seed=0), len(x))
        runs = [(label, inpaint, (model, x, mask), {"method": method, "steps": a.steps, "seed": 0})
                for label, (model, method) in inpainters.items()]
        runs += [(f"baseline: {name}", baseline_fill, (name, x, mask, train_x), {}) for name in BASELINES
                 if baselines]
        for label, fn, args, kw in runs:
            out, s = timed(fn, *args, **kw)
            out = out[:, 0] if out.dim() == 5 else out
            row = [label, float(masked_psnr(out, x, mask).mean()),
                   clf.accuracy((out * 255).round().to(torch.uint8), y), f"{1000 * s / len(x):.1f}"]
            print("  measured:", mask_kind, row, file=sys.stderr, flush=True)
            yield row

    if "center" in a.masks:
        # The generative method the target names is chosen on validation digits, then scored on test.
        xv, yv = stratified(meta, "val", b.storage, a.n_val)
        chosen = max(scored("center", xv, yv, baselines=False), key=lambda r: (r[2], r[1]))
        rec_.table("choice", f"Inpainting, the choice: {len(xv)} {data} validation digits (class-stratified), centre "
                   "square hidden", ["chosen inpainter", "PSNR on the hidden pixels (dB)", "judge accuracy",
                                     "ms per image"], [chosen])
        x, y = stratified(meta, "test", b.storage, a.n)
        rows = list(scored("center", x, y))
        mask = per_image(make_mask("center", H, W), len(x))
        rows.append(["(the masked input itself)", float(masked_psnr(x * ~mask, x, mask).mean()),
                     clf.accuracy((x * ~mask * 255).round().to(torch.uint8), y), "-"])
        rows.append(["(the original images)", 100.0, clf.accuracy((x * 255).round().to(torch.uint8), y), "-"])
        rec_.table("center", f"Inpainting: {len(x)} {data} test digits (class-stratified), centre {H // 2}x{W // 2} "
                   f"square hidden ({cores()} cores, one process; {budget}; judge: genray's digit classifier)",
                   ["inpainter", "PSNR on the hidden pixels (dB)", "judge accuracy", "ms per image"], rows)
        ours = next(r for r in rows if r[0] == chosen[0])
        base = {r[0].removeprefix("baseline: "): r for r in rows if r[0].startswith("baseline")}
        best_base = max(base.values(), key=lambda r: r[2])
        rec_.target(f"{ours[0]} (chosen on val): judge accuracy minus the best baseline's ({best_base[0]}) > 0",
                    ours[2] - best_base[2], ">", 0.0)
        for k in ("mean", "blur"):
            rec_.target(f"{ours[0]}: PSNR minus baseline {k}'s > 0 dB", ours[1] - base[k][1], ">", 0.0)
        # The picture: one test digit of each class (the sample's first ten), hidden square grey.
        model, method = inpainters[chosen[0]]
        k = min(10, len(x))
        xs, m = x[:k], per_image(make_mask("center", H, W), k)
        filled = inpaint(model, xs, m, method=method, steps=a.steps, seed=0)[:, 0]
        rec_.figure("picture", os.path.relpath(b.picture("applications-inpaint.png", [
            torch.where(m, torch.full_like(xs, 0.5), xs), filled, baseline_fill("nearest", xs, m, train_x), xs]),
            ROOT))
    others = [k for k in a.masks if k != "center"]
    if others:
        x, y = stratified(meta, "test", b.storage, a.n_other)
        rows = [[kind, *row] for kind in others for row in scored(kind, x, y)]
        rec_.table("masks", f"Inpainting under other masks ({len(x)} {data} test digits, class-stratified)",
                   ["mask", "inpainter", "PSNR on the hidden pixels (dB)", "judge accuracy", "ms per image"], rows)
    return rec_


STYLE_FALL = 0.7  # the share of the content's texture distance to the style that a transfer should remove


@functools.lru_cache(maxsize=None)  # each photograph is a content or a style of several pairs
def photo_stats(name: str, max_side: int) -> dict:
    return texture_stats(fit_size(photo(name), max_side))


def texture_cells(out: torch.Tensor, c: str, s: str, max_side: int) -> list[float]:
    """The fall of each independent texture descriptor, content -> output, towards the style."""
    fall = texture_fall(out, photo_stats(c, max_side), photo_stats(s, max_side))
    return [fall[k] for k in DESCRIPTORS]


def style_transfer(b: Bench) -> Record:
    a = b.args
    rec_ = b.record("style")
    contents, styles = ("astronaut", "chelsea", "coffee"), ("immunohistochemistry", "hubble_deep_field", "brick")
    if a.smoke:
        contents, styles = contents[:1], styles[:2]
    rows, falls, ssims = [], [], []
    for c in contents:
        for s in styles:
            t = transfer(photo(c), photo(s), steps=a.style_steps, max_side=a.max_side, strength=a.strength)
            r = t.summary()
            cells = texture_cells(t.image, c, s, a.max_side)
            falls.append(sum(cells) / len(cells))
            ssims.append(r["content_ssim"])
            rows.append([f"{c} in {s}", *cells, falls[-1], r["style_reduction"], r["content_ssim"],
                         f"{r['seconds']:.1f}"])
            print("  measured:", rows[-1], file=sys.stderr, flush=True)
    rec_.table("transfer", f"Style transfer: Adam on the pixels against a random multi-scale CNN's Gram statistics, "
               f"{a.style_steps} steps, longer side {a.max_side} px, strength {a.strength:g}; scored by texture "
               f"statistics it never sees ({cores()} cores, one process)",
               ["content in style", *(f"{d} fall" for d in DESCRIPTORS), "mean texture fall",
                "Gram fall (optimised network)", "content SSIM", "s per image"], rows)
    rec_.target(f"worst pair's mean texture-statistics fall >= {STYLE_FALL}", min(falls), ">=", STYLE_FALL)
    rec_.target("worst pair's content SSIM >= 0.4", min(ssims), ">=", 0.4)
    return rec_


def style_network(b: Bench) -> Record:
    a = b.args
    contents = ("astronaut", "chelsea", "coffee")[:1 if a.smoke else None]
    small = {"limit": 64, "model": {"style": a.net_style, "width": 4, "blocks": 1}} if a.smoke else {}
    network, rec = b.train(a.style_net, "style-net", "photo-crops", **{"model": {"style": a.net_style}, **small})
    rec_ = b.record("style-net")
    rows = []
    for c in contents:
        t = network.transfer(photo(c), max_side=a.max_side)
        r = t.summary()
        cells = texture_cells(t.image, c, a.net_style, a.max_side)
        rows.append([f"{c} in {a.net_style}", *cells, sum(cells) / len(cells), r["style_reduction"], r["content_ssim"],
                     f"{1000 * r['seconds']:.0f}"])
        print("  measured:", rows[-1], file=sys.stderr, flush=True)
    rec_.table("network", f"Style transfer: a feed-forward network for {a.net_style} ({rec.ref}: "
               f"{rec.metrics['epochs']} epochs on 64x64 photo crops, {rec.metrics['wall_time_s']:.0f} s on "
               f"{rec.metrics['workers']} workers), one pass, longer side {a.max_side} px, on photographs it never saw "
               f"({cores()} cores, one process)",
               ["content in style", *(f"{d} fall" for d in DESCRIPTORS), "mean texture fall",
                "Gram fall (its training network)", "content SSIM", "ms per image"], rows)
    return rec_


def summarization(b: Bench) -> Record:
    from genray.models.summarize import ASPECTS, picker, rouge, summarize
    from genray.trainers.corpora import aclsum

    a = b.args
    kw = {"limit": 256, "model": {"hidden": 32}} if a.smoke else {}
    scorer, srec = b.train(a.scorer, "sentence-scorer", "aclsum", **kw)
    abstractor, arec = b.train(a.abstractor, "pointer-generator", "aclsum-pairs",
                               model={"extractor": a.scorer, **({"dim": 16, "hidden": 16} if a.smoke else {})},
                               **({"limit": 32} if a.smoke else {}))
    budget = "; ".join(f"{r.ref}: {r.metrics['epochs']} epochs (best {r.metrics.get('published_epoch')}), "
                       f"{r.metrics['wall_time_s']:.0f} s on {r.metrics['workers']} workers" for r in (srec, arec))
    papers = aclsum("test")[:5 if a.smoke else None]

    pick = picker(scorer)  # the abstractor's source: the scorer's best sentences
    systems = {f"lead-{k}": ("lead", k) for k in (1, 2, 3)}
    systems.update({"random-3": ("random", 3), "textrank-3": ("textrank", 3), "lexrank-3": ("lexrank", 3),
                    "sentence scorer, 1": (scorer, 1), "sentence scorer, 2": (scorer, 2),
                    "sentence scorer, 3": (scorer, 3), "pointer-generator": (abstractor, None)})
    def row(label: str, preds: dict[str, list[str]], ms: str) -> dict:
        per = {x: rouge(preds[x], [p["summaries"][x] for p in papers]) for x in ASPECTS}
        overall = {m: sum(per[x][m] for x in ASPECTS) / len(ASPECTS) for m in per[ASPECTS[0]]}
        rows.append([label, overall["rouge1"], overall["rouge2"], overall["rougeL"],
                     *[f"{per[x]['rouge2']:.3f} / {per[x]['rougeL']:.3f}" for x in ASPECTS], ms])
        print("  measured:", rows[-1], file=sys.stderr, flush=True)
        return overall

    rows, scores = [], {}
    for label, (method, k) in systems.items():
        preds, t0 = {x: [] for x in ASPECTS}, time.perf_counter()
        for p in papers:
            for x in ASPECTS:
                preds[x].append(summarize(method, p["sentences"], x, k, extractor=pick)["summary"])
        ms = 1000 * (time.perf_counter() - t0) / (len(papers) * len(ASPECTS))
        scores[label] = row(label, preds, f"{ms:.0f}")
    # The annotators' own highlighted sentences: what an extractive summary at best resembles.
    row("(highlighted sentences)", {x: [" ".join(s for s, h in zip(p["sentences"], p["highlights"][x]) if h)
                                        for p in papers] for x in ASPECTS}, "-")
    rec_ = b.record("summarize")
    rec_.table("rouge", f"Summarization: ACLSum test split ({len(papers)} papers x 3 aspects), ROUGE F1 (rouge-score, "
               f"stemmed) against the one-sentence aspect summaries ({cores()} cores; {budget})",
               ["system", "ROUGE-1", "ROUGE-2", "ROUGE-L", *[f"{x} R-2 / R-L" for x in ASPECTS], "ms per summary"],
               rows)
    ours, lead = scores["sentence scorer, 3"], scores["lead-3"]
    rec_.target("the sentence scorer (3 sentences) beats lead-3 on ROUGE-2: difference > 0",
                ours["rouge2"] - lead["rouge2"], ">", 0.0)
    rec_.target("the sentence scorer (3 sentences) beats lead-3 on ROUGE-L: difference > 0",
                ours["rougeL"] - lead["rougeL"], ">", 0.0)
    return rec_


def music_gan(b: Bench) -> Record:
    from genray.models import seeded
    from genray.models.codecs.pianoroll import from_roll
    from genray.models.composition.statistics import compare, first_bars, uniform_random

    a = b.args
    small = {"limit": 256, "model": {"hidden": 16}} if a.smoke else {}
    gan, grec = b.train(a.music_gan, "music-gan", "chorale-bars", **small)
    rnn, rrec = b.train(a.chorale_rnn, "rnn", "chorales", **small)
    budget = "; ".join(f"{r.ref}: {r.metrics['epochs']} epochs, {r.metrics['wall_time_s']:.0f} s on "
                       f"{r.metrics['workers']} workers" for r in (grec, rrec))
    meta = datasets.prepare("chorale-bars", b.storage)
    excerpts = {s: [from_roll(r.numpy() / 255.0, meta["lowest"]) for r in local_arrays(meta, s, b.storage)["image"]]
                for s in ("train", "test")}
    held, n = excerpts["test"], a.melodies
    bars = meta["bars"]
    rng = torch.Generator().manual_seed(0)
    sets = {"training excerpts": [excerpts["train"][i] for i in torch.randperm(len(excerpts["train"]),
                                                                               generator=rng)[:n]]}
    t0 = time.perf_counter()
    sets["music GAN"] = gan.sample(n, generator=seeded(0))
    seconds = {"music GAN": (time.perf_counter() - t0) / n}
    t0 = time.perf_counter()
    sets["chorale-rnn (first 4 bars)"] = [first_bars(m, bars) for m in
                                          rnn.sample(n, generator=seeded(0), max_tokens=96)]
    seconds["chorale-rnn (first 4 bars)"] = (time.perf_counter() - t0) / n
    sets["uniform-random pitches"] = uniform_random(n, held, seed=0)
    rows, scores = [], {}
    for label, melodies in sets.items():
        s = scores[label] = compare(melodies, held)
        rows.append([label, len(melodies), s["pitch_class_distance"], s["pitch_class_key_distance"],
                     s["note_length_distance"], s["empty_bar_rate"], f"{s['pitch_range']:.1f}",
                     f"{1000 * seconds[label]:.1f}" if label in seconds else "-"])
    own = compare(held, held)
    rows.append(["held-out excerpts (the reference)", len(held), 0.0, 0.0, 0.0, own["empty_bar_rate"],
                 f"{own['pitch_range']:.1f}", "-"])
    rec_ = b.record("music")
    rec_.table("music", f"Music GAN: {bars}-bar melodies against {len(held)} test {bars}-bar chorale excerpts (tunes "
               f"never trained on); distances are total variation, 0 = the same ({cores()} cores; {budget})",
               ["melodies", "n", "pitch-class distance (any key)", "pitch-class distance (in key)",
                "note-length distance", "empty-bar rate", "pitch range (semitones)", "ms per melody"], rows)
    ours, noise = scores["music GAN"]["pitch_class_distance"], scores["uniform-random pitches"]["pitch_class_distance"]
    rec_.target("the music GAN's pitch-class distance over the uniform-random melodies' <= 0.5", ours / noise,
                "<=", 0.5)
    return rec_


PARTS = {"inpaint": inpainting, "style": style_transfer, "style-net": style_network, "summarize": summarization,
         "music": music_gan}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", default="all", choices=["all", *PARTS])
    ap.add_argument("--storage", default=None)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--n", type=int, default=500, help="test images to inpaint (a class-stratified sample)")
    ap.add_argument("--n-val", type=int, default=200, help="validation images the inpainter is chosen on")
    ap.add_argument("--results", default=None, help="where the JSON records go (default benchmarks/results)")
    ap.add_argument("--masks", default="center,bottom,right,random", help="inpainting: the masks to score (center: "
                                                                         "the main table and its target)")
    ap.add_argument("--n-other", type=int, default=100, help="test images for the other masks")
    ap.add_argument("--steps", type=int, default=100, help="optimisation or sampling steps per inpainting")
    ap.add_argument("--style-steps", type=int, default=200, help="style transfer: Adam steps")
    ap.add_argument("--max-side", type=int, default=256, help="style transfer: the output's longer side")
    ap.add_argument("--strength", type=float, default=0.8, help="style transfer: the share of the style distance "
                                                                "to remove")
    ap.add_argument("--vae", default="inpaint-vae", help="inpainting: the VAE (trained on MNIST-5k if missing)")
    ap.add_argument("--flow", default="inpaint-flow", help="inpainting: the flow (trained on MNIST-5k if missing)")
    ap.add_argument("--style-net", default="style-brick", help="style transfer: the feed-forward network (trained "
                                                                "on photo crops if missing)")
    ap.add_argument("--net-style", default="brick", help="style transfer: the style the network learns")
    ap.add_argument("--scorer", default="summary-scorer", help="summarization: the sentence scorer (trained on "
                                                                "ACLSum if missing)")
    ap.add_argument("--abstractor", default="summary-abstractor", help="summarization: the pointer-generator "
                                                                       "(trained on ACLSum if missing)")
    ap.add_argument("--music-gan", default="chorale-gan", help="music: the music GAN (trained on the chorales' "
                                                                "piano rolls if missing)")
    ap.add_argument("--chorale-rnn", default="chorale-rnn", help="music: the chorale RNN it is compared with")
    ap.add_argument("--melodies", type=int, default=500, help="music: melodies of each kind")
    ap.add_argument("--reuse", action="store_true", help="take models of the same name from the registry")
    ap.add_argument("--smoke", action="store_true", help="the 8x8 digits, 1 epoch, 32 images, 5 steps")
    args = ap.parse_args()
    args.masks = args.masks.split(",")
    if args.smoke:
        import atexit
        import shutil
        import tempfile

        args.n, args.n_other, args.steps, args.workers, args.style_steps, args.max_side = 32, 16, 5, 1, 5, 32
        args.n_val = 16
        args.melodies = 20
        if not args.storage:
            args.storage = tempfile.mkdtemp(prefix="genray-applications-smoke-")
            atexit.register(shutil.rmtree, args.storage, ignore_errors=True)
    torch.set_num_threads(cores())
    b = Bench(args)
    for name, part in PARTS.items():
        if args.part in ("all", name):
            t0 = time.perf_counter()
            part(b).save()
            print(f"({name}: {time.perf_counter() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
