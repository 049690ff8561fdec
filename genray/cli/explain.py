"""genray explain: why a registry model gives its output, the same way /v1/explain answers (the
request is checked by the same schema and run by the same code): attributions over a digit, a
prompt's characters or a series' lags, with faithfulness numbers; partial dependence and latent
traversals for the latent models."""
from __future__ import annotations

import base64

from genray.cli.common import CliError


def add_parser(sub, storage, ray) -> None:
    e = sub.add_parser("explain", parents=[storage], help="explain a registry model's output (attributions, "
                                                          "PDP/ICE, latent traversals)")
    e.add_argument("model", help="NAME or NAME@VERSION")
    e.add_argument("--method", default="ig", help="saliency | ig (default) | smoothgrad | gradshap | occlusion | "
                                                  "kernelshap | lime; markov: exact; vae, gan, ar: pdp; vae, gan: "
                                                  "traversal")
    e.add_argument("--input", action="append", help="image models: a PNG file (repeatable)")
    e.add_argument("--index", type=int, action="append", help="image models: a test row, its position in the "
                                                                     "class-stratified evaluation order (repeatable)")
    e.add_argument("--generated", type=int, help="gan: explain this many of its own samples")
    e.add_argument("--prompt", help="text and music models: the prompt")
    e.add_argument("--series", help="ar: the history, comma-separated numbers")
    e.add_argument("--target", help="a class (image models), or the next symbol or a continuation (text, music)")
    e.add_argument("--baseline", help="images: zero | blur | a grey level; text: zero | one symbol; ar: a number")
    e.add_argument("--n-steps", type=int, help="ig: integration steps")
    e.add_argument("--n-samples", type=int, help="smoothgrad, gradshap, kernelshap, lime: samples")
    e.add_argument("--patch", type=int, help="images: feature patch size (occlusion, kernelshap, lime)")
    e.add_argument("--evaluate", action="store_true", help="faithfulness: deletion and insertion AUC against random "
                                                           "and edge rankings, infidelity, max-sensitivity")
    e.add_argument("--feature", type=int, help="pdp: latent dimension (vae, gan) or lag (ar)")
    e.add_argument("--grid", type=int, help="pdp, traversal: points along the feature (default 9)")
    e.add_argument("--dims", help="traversal: comma-separated latent dimensions")
    e.add_argument("--classifier", help="pdp: the classifier whose belief the curves read")
    e.add_argument("--seed", type=int, help="the sampling methods' and a gan's draws (default: drawn anew)")
    e.add_argument("-o", "--output", help="the picture (.png), the shaded prompt (.html) or everything (.json)")
    e.set_defaults(fn=run)


def _number(text: str):
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def request(args, kind: str) -> dict:
    """The /v1/explain request body the arguments make."""
    body = {"method": args.method, **({"evaluate": True} if args.evaluate else {})}
    if args.input:
        body["inputs"] = []
        for path in args.input:
            try:
                with open(path, "rb") as f:
                    body["inputs"].append(base64.b64encode(f.read()).decode())
            except OSError as err:
                raise CliError(f"--input {path}: {err.strerror}") from None
    if args.series is not None:
        try:
            body["series"] = [float(v) for v in args.series.split(",") if v.strip()]
        except ValueError:
            raise CliError("--series takes comma-separated numbers") from None
    if args.dims is not None:
        try:
            body["dims"] = [int(v) for v in args.dims.split(",")]
        except ValueError:
            raise CliError("--dims takes comma-separated integers") from None
    if args.target is not None:
        body["target"] = _number(args.target) if kind == "image" else args.target
    if args.baseline is not None:
        body["baseline"] = args.baseline if kind == "prompt" else _number(args.baseline)
    for flag, key in (("index", "indices"), ("generated", "generated"), ("prompt", "prompt"), ("n_steps", "n_steps"),
                      ("n_samples", "n_samples"), ("patch", "patch"), ("feature", "feature"),
                      ("classifier", "classifier"), ("grid", "grid"), ("seed", "seed")):
        if getattr(args, flag) is not None:
            body[key] = getattr(args, flag)
    if args.output and args.output.endswith(".png"):
        body["format"] = "png"
    return body


def run(args) -> int:
    import json
    import time

    from genray.cli.common import run_capability
    from genray.cluster.registry import Registry
    from genray.cluster.storage import Storage
    from genray.models.explain.catalog import explain_methods, input_kind
    from genray.services.spec import Raw

    storage = Storage(args.storage)
    rec = Registry(storage).record(args.model)
    if not explain_methods(rec.config):
        raise CliError(f"{rec.ref} is a {rec.config['family']} model, which genray explain does not cover")
    body = request(args, input_kind(rec.config))
    t0 = time.perf_counter()
    out = run_capability("explain", storage.uri, rec.ref, body)
    seconds = time.perf_counter() - t0
    if isinstance(out, Raw):
        with open(args.output, "wb") as f:
            f.write(out.content)
        print(f"{rec.ref}: {args.method} -> wrote {args.output} ({seconds:.1f} s)")
        return 0
    _print(rec, args.method, out)
    if args.output:
        with open(args.output, "w") as f:
            if args.output.endswith(".html"):
                if not out.get("html"):
                    raise CliError("an .html output is the shaded prompt of a text or music model")
                f.write("<br>\n".join(out["html"]) + "\n")
            else:
                json.dump(out, f)
        print(f"wrote {args.output}")
    print(f"({seconds:.1f} s)")
    return 0


def _print(rec, method: str, out: dict) -> None:
    from genray.models.explain.catalog import input_kind

    if "curves" in out and "ice" in out.get("curves", {}):
        c = out["curves"]
        print(f"{rec.ref}: {method} of {c['feature']} -> {c['readout']}")
        for g, p in zip(c["grid"], c["pdp"]):
            print(f"  {g:9.3f}  {p:.4f}")
        return
    if "curves" in out:  # a traversal: the picture is the answer
        print(f"{rec.ref}: traversal of latent dimensions {out['curves']['dims']} (write it with -o FILE.png)")
        return
    for i, d in enumerate(out["described"]):
        about = ", ".join(f"{k} {v!r}" for k, v in d.items())
        print(f"{rec.ref}: {method}, input {i}: {about}; score {out['scores'][i]:.4f}"
              + (f" (baseline {out['baseline_scores'][i]:.4f})" if out.get("baseline_scores") else ""))
        if out.get("symbols"):
            print("  " + "  ".join(f"{s!r}:{a:+.3f}" for s, a in zip(out["symbols"][i], out["attributions"][i])))
        elif input_kind(rec.config) == "series":
            vals = out["attributions"][i]
            print("  lags (newest first): " + " ".join(f"{a:+.4f}" for a in reversed(vals[-min(16, len(vals)):])))
    if "relative_delta" in out.get("diagnostics", {}):
        print("  ig completeness delta / |f(x) - f(baseline)|: "
              + " ".join(f"{v:.2e}" for v in out["diagnostics"]["relative_delta"]))
    f = out.get("faithfulness")
    if f:
        for key in ("deletion", "insertion"):
            mean = lambda v: sum(v) / len(v)  # noqa: E731
            r = [v for v in f[key]["ratio_to_random"] if v is not None]
            print(f"  {key} AUC {mean(f[key]['auc']):.4f}, random {mean(f[key]['random_auc']):.4f}"
                  + (f", mean ratio to random {mean(r):.3f}" if r else ""))
        print(f"  infidelity {sum(f['infidelity']) / len(f['infidelity']):.4g}, max-sensitivity "
              f"{sum(f['max_sensitivity']) / len(f['max_sensitivity']):.4g}")
