"""genray attack: attacks on a registry model, on its data set's test images (the first -n of the
test split's class-stratified evaluation order, models/splits.py): evasion of a
classifier; for a vae, an input whose reconstruction decodes as --target; for a gan, real images
its discriminator scores as fake; for a char LM, a prompt suffix that makes --target-text likely."""
from __future__ import annotations

from genray.cli.common import CliError


def add_parser(sub, storage, ray) -> None:
    a = sub.add_parser("attack", parents=[storage], help="attack a registry model: a classifier (FGSM, PGD, "
                                                         "Carlini-Wagner, APGD, Square, AutoAttack), vae, gan or "
                                                         "char LM")
    a.add_argument("model", help="NAME or NAME@VERSION")
    a.add_argument("--method", help="classifiers: fgsm | pgd (default) | cw | apgd | square | autoattack (the "
                                    "standard ensemble); the only one the model "
                                    "takes otherwise (vae: reconstruction, gan: discriminator, char LMs: suffix)")
    a.add_argument("--eps", type=float, help="perturbation budget in the norm, images in [0, 1]")
    a.add_argument("--norm", default="linf", help="linf | l2 (cw: l2)")
    a.add_argument("--steps", type=int, help="iterations (default 40; 100 for apgd, square and autoattack)")
    a.add_argument("--step-size", type=float)
    a.add_argument("--restarts", type=int, default=1, help="random starts (pgd, apgd)")
    a.add_argument("--target", type=int, help="make a targeted attack towards this class (vae: required)")
    a.add_argument("--prompt", default="", help="char LMs: the prompt")
    a.add_argument("--target-text", help="char LMs: the continuation to make likely")
    a.add_argument("--suffix-len", type=int, default=10, help="char LMs: suffix characters")
    a.add_argument("-n", type=int, default=256, help="test images to attack: a class-stratified sample "
                                                          "(the first n of the evaluation order)")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("-o", "--output", help="PNG grid: clean, adversarial and difference rows (first 16 images)")
    a.set_defaults(fn=run)


def run(args) -> int:
    import time

    from genray.cluster.registry import Registry
    from genray.cluster.storage import Storage
    from genray.models.robustness.catalog import attack_methods

    storage = Storage(args.storage)
    model, rec = Registry(storage).load(args.model)
    methods = attack_methods(rec.config)
    if not methods:
        raise CliError(f"{rec.ref} is a {rec.config['family']} model, which takes no attack; genray attack takes "
                       f"a classifier, a vae, a gan or a char LM")
    method = args.method or ("pgd" if "pgd" in methods else methods[0])
    if method not in methods:
        raise CliError(f"{rec.ref} takes --method {' | '.join(methods)}, not {method!r}")
    t0 = time.perf_counter()
    if method == "suffix":
        _suffix(model, rec, args)
    else:
        if args.eps is None:
            raise CliError("--eps is required for an attack on images")
        if not 1 <= args.n <= 10_000:
            raise CliError("-n must be in [1, 10000]")
        _images(model, rec, method, args, storage)
    print(f"({time.perf_counter() - t0:.1f} s)")
    return 0


def _suffix(model, rec, args) -> None:
    from genray.models.robustness import suffix_attack

    if not args.target_text:
        raise CliError("--target-text is required for a suffix attack")
    r = suffix_attack(model, args.prompt, args.target_text, suffix_len=args.suffix_len, steps=args.steps or 40,
                      seed=args.seed)
    print(f"{rec.ref}: suffix {r.suffix!r} after {r.steps} steps of greedy coordinate gradient")
    print(f"  log P({args.target_text!r} | prompt) {r.logprob_before:.3f} -> {r.logprob_after:.3f} nats with the "
          f"suffix; sampled continuations that start with it: {r.hit_rate_before:.3f} -> {r.hit_rate_after:.3f}")


def _images(model, rec, method: str, args, storage) -> None:
    import torch

    from genray.cluster.datacache import evaluation_rows
    from genray.models.codecs.images import grid, to_png
    from genray.models.errors import InputError
    from genray.services.capabilities.attack import attack_images
    from genray.services.workbench import Workbench

    val = evaluation_rows(rec, storage, "test", n=args.n)
    x, y = val["image"].float() / 255.0, val.get("label")
    if method == "reconstruction" and args.target is None:
        raise CliError("--target (the class the reconstructions should show) is required for a vae")
    try:  # the endpoint's dispatch, and its classifier lookup (the default one, of the same image shape)
        r = attack_images(model, method, x, y, eps=args.eps, norm=args.norm, steps=args.steps,
                          step_size=args.step_size, seed=args.seed, restarts=args.restarts,
                          targeted=args.target is not None, target=args.target,
                          judge=lambda: Workbench(storage.uri, {}).judge(None, rec))
    except InputError as e:
        raise CliError(f"{e.field}: {e}" if e.field else str(e)) from None
    where = f"on {len(x)} test images of {rec.metrics['dataset']} (class-stratified)"
    rows = [x]
    if method == "reconstruction":
        s = r.summary()
        print(f"{rec.ref}: reconstructions aimed at class {args.target} {where}")
        print(f"  target rate {s['clean_target_rate']:.4f} -> {s['target_rate']:.4f}, mean L2 {s['mean_l2']:.4f}")
        rows += [r.x_adv, r.recon]
    elif method == "discriminator":
        s = r.summary()
        print(f"{rec.ref}: discriminator {where}: scored real {s['real_rate_before']:.4f} -> "
              f"{s['real_rate_after']:.4f}, fooled {s['fooled_rate']:.4f}")
        rows += [r.x_adv]
    else:
        s = r.summary()
        goal = f"targeted at class {args.target}" if args.target is not None else "untargeted"
        steps = f"{args.steps} steps" if args.steps else "default steps"
        print(f"{rec.ref}: {method} {args.norm} eps={args.eps:g}, {steps}, {goal}, {where}")
        for part, acc in (s.get("parts") or {}).items():
            print(f"  after {part:<8} robust accuracy {acc:.4f}")
        print(f"  clean accuracy {s['clean_accuracy']:.4f}   robust accuracy {s['robust_accuracy']:.4f}   "
              f"attack success {s['success_rate']:.4f}")
        print(f"  perturbation: mean L-inf {s['mean_linf']:.4f} (max {s['max_linf']:.4f}), "
              f"mean L2 {s['mean_l2']:.4f}")
        rows += [r.x_adv]
    if args.output:
        k = min(16, len(x))
        diff = (rows[1][:k] - x[:k]).abs()
        diff = diff / diff.flatten(1).max(1).values.clamp(min=1e-12).view(-1, 1, 1, 1)  # each scaled to its max
        with open(args.output, "wb") as f:
            f.write(to_png(grid(torch.cat([row[:k] for row in rows] + [diff]), ncol=k)))
        print(f"wrote {args.output}: clean, adversarial{', reconstruction' if len(rows) > 2 else ''} and "
              f"|difference| (scaled) rows")
