"""Faithfulness and latency of every explanation method on genray's models, and the serving
overhead of /v1/explain against a direct Captum call.

    python benchmarks/explain.py [--storage DIR] [--n 50] [--families classifier,vae,...] [--alias FAMILY=NAME,...]
                                 [--smoke]

Models are trained on Ray Train and published (or taken from the registry where a model of the
same name exists: the robustness benchmark's names, so one storage trains each once). For each
(family, method): the mean deletion and insertion AUC over a random ranking's (deletion below 1
and insertion above 1 beat it) and over an edge detector's (images), Captum's infidelity and
max-sensitivity, IG's completeness delta relative to |f(x) - f(baseline)|, and the seconds per
explanation (the method alone, on one thread). Then the classifier's IG served over HTTP at
concurrency 1, against the same IG called in-process. Images are a class-stratified sample of the
test split (the first --n of its evaluation order, models/splits.py), prompts and series windows
come from a seeded sample of test rows; the run writes a JSON record (benchmarks/record.py).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.record import Record  # noqa: E402
from genray.cluster.datacache import evaluation_rows  # noqa: E402
from genray.cluster.registry import Registry  # noqa: E402
from genray.cluster.storage import Storage  # noqa: E402
from genray.models.explain import METHODS, explain  # noqa: E402
from genray.models.explain.faithfulness import evaluate  # noqa: E402
from genray.models.splits import sample_order  # noqa: E402
from genray.trainers.run import TrainSpec, train  # noqa: E402

# family -> (registry name, TrainSpec arguments); the image models and the transformer share the
# robustness benchmark's models.
MODELS = {
    "classifier": ("robust-standard", {"family": "classifier", "dataset": "mnist"}),
    "vae": ("robust-vae", {"family": "vae", "dataset": "mnist"}),
    "flow": ("robust-flow", {"family": "flow", "dataset": "mnist", "epochs": 6}),
    "gan": ("explain-gan", {"family": "gan", "dataset": "mnist", "epochs": 10}),
    "transformer": ("robust-text-clean", {"family": "transformer", "dataset": "shakespeare"}),
    "markov": ("explain-markov", {"family": "markov", "dataset": "shakespeare"}),
    "ar": ("explain-ar", {"family": "ar", "dataset": "sunspots"}),
}
SMOKE = {  # family -> TrainSpec arguments on top of MODELS' for --smoke
    "classifier": {"dataset": "digits", "epochs": 1, "limit": 512},
    "transformer": {"epochs": 1, "limit": 256, "model": {"n_layer": 1, "n_embd": 32, "n_head": 2, "block_size": 64}},
    "markov": {"limit": 256},
    "ar": {},
}
PROMPT_CHARS = 32
SERVED_REQUESTS = 20


def aliases(args) -> dict[str, str]:
    """Registry models in a family's role (--alias): trained nowhere here."""
    return dict(pair.split("=", 1) for pair in args.alias.split(",") if pair)


def model(args, registry, storage, family: str):
    alias = aliases(args).get(family)
    if alias:
        return registry.load(alias)
    name, spec = MODELS[family]
    if args.smoke:
        name, spec = f"smoke-{family}", {**spec, **SMOKE[family]}
    if name not in registry.names():
        train(TrainSpec(name=name, workers=args.workers, fresh=True, **spec), storage)
    return registry.load(name)


def inputs(family: str, m, rec, storage, n: int):
    """What each family explains in the benchmark: test images (class-stratified), prompts cut
    from a seeded sample of test rows, or a seeded sample of the test series' windows; and the
    target (a GAN's discriminator is asked about each image's own class)."""
    if family in ("classifier", "vae", "flow", "gan"):
        test = evaluation_rows(rec, storage, "test", n=n)
        return test["image"].float() / 255.0, (test["label"] if family == "gan" else None)
    if family in ("transformer", "markov"):
        rows = evaluation_rows(rec, storage, "test", n=n)["tokens"]
        return [m.vocab.decode(r[:PROMPT_CHARS].tolist()) for r in rows], None
    # A seeded sample of the windows of 2 x max_order values slid along every test series row (the
    # first n would all come from the first row).
    w = 2 * m.max_order
    rows = evaluation_rows(rec, storage, "test")["series"]
    windows = [r[i:i + w].tolist() for r in rows for i in range(0, len(r) - w + 1, max(1, m.max_order // 4))]
    return [windows[i] for i in sample_order(len(windows), None, n)], None


def mean(values) -> float | None:
    v = [x for x in values if x is not None]
    return statistics.fmean(v) if v else None


def fmt(v) -> str:
    return "-" if v is None else (f"{v:.3g}" if abs(v) < 0.01 or abs(v) >= 1000 else f"{v:.3f}")


# The bar for image explanations on a stratified digit sample: deletion AUC at most 0.6x a
# random ranking's and at most the Sobel edge ranking's.
TARGET_METHODS = ("ig", "smoothgrad", "gradshap")
means: dict[tuple[str, str], dict] = {}


def faithfulness(args, family: str, m, rec, storage) -> list[list]:
    x, target = inputs(family, m, rec, storage, args.n)
    rows = []
    methods = ("exact",) if family == "markov" else METHODS
    for method in methods:
        opts = {"n_samples": 16} if args.smoke and method in ("kernelshap", "lime", "smoothgrad", "gradshap") else {}
        seconds, scores = [], {"del": [], "ins": [], "del_edge": [], "ins_edge": [], "infid": [], "sens": [],
                               "delta": []}
        items = x if isinstance(x, list) else list(x.split(1))
        for i, item in enumerate(items):
            t = None if target is None else target[i:i + 1]
            t0 = time.perf_counter()
            ex = explain(m, item, method=method, target=t, **opts)
            seconds.append(time.perf_counter() - t0)
            if method == "exact":
                scores["delta"].append(0.0)
                continue
            r = evaluate(ex, metrics=i < args.metric_inputs, **opts)
            scores["del"] += r["deletion"]["ratio_to_random"]
            scores["ins"] += r["insertion"]["ratio_to_random"]
            scores["del_edge"] += r["deletion"].get("ratio_to_edge", [])
            scores["ins_edge"] += r["insertion"].get("ratio_to_edge", [])
            scores["infid"] += r.get("infidelity", [])
            scores["sens"] += r.get("max_sensitivity", [])
            scores["delta"] += r.get("completeness_relative_delta", [])
        rows.append([family, method, len(items), *(fmt(mean(scores[k])) for k in scores),
                     f"{statistics.median(seconds):.3f}"])
        means[(family, method)] = {k: mean(v) for k, v in scores.items()}
        print("  measured:", rows[-1], file=sys.stderr, flush=True)
    return rows


def serving_overhead(args, storage) -> list[list]:
    """Median latency of the classifier's IG over HTTP (one request at a time) against the same
    IG in-process on one thread, at the default 64 steps and at 256: the server's share is
    validation, the hops through the proxy and the gateway to the explanation replica, the
    heatmap PNG and JSON, a fixed cost that more steps dilute."""
    import httpx
    from captum.attr import IntegratedGradients
    from ray import serve

    from genray.services.app import ServeOptions, deploy, undeploy

    name = aliases(args).get("classifier") or ("smoke-classifier" if args.smoke else MODELS["classifier"][0])
    m, rec = Registry(storage).load(name)
    m.eval()
    x = evaluation_rows(rec, storage, "test", n=SERVED_REQUESTS)["image"].float() / 255.0
    from serve_throughput import free_port  # benchmarks/ is this script's first import path

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    # Loopback only, timing explanations: no API keys.
    deploy(storage.uri, [rec.ref], ServeOptions(max_replicas=1, auth=False), name="explain-bench")
    served, direct = {64: [], 256: []}, {64: [], 256: []}
    threads = torch.get_num_threads()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as c:
            c.post(f"/v1/explain/{rec.name}", json={"method": "ig", "indices": [0]})  # warm
            for steps in served:
                for i in range(SERVED_REQUESTS):
                    t0 = time.perf_counter()
                    r = c.post(f"/v1/explain/{rec.name}", json={"method": "ig", "indices": [i], "n_steps": steps})
                    served[steps].append(time.perf_counter() - t0)
                    assert r.status_code == 200, r.text
        torch.set_num_threads(1)  # as the replica runs
        ig = IntegratedGradients(m)
        ig.attribute(x[:1], target=0, n_steps=64)  # warm
        for steps in direct:
            for i in range(SERVED_REQUESTS):
                t0 = time.perf_counter()
                with torch.no_grad():
                    target = int(m(x[i:i + 1]).argmax(1))
                ig.attribute(x[i:i + 1], target=target, n_steps=steps, internal_batch_size=256)
                direct[steps].append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads)
        undeploy("explain-bench")
    rows = []
    for steps in served:
        s, d = statistics.median(served[steps]), statistics.median(direct[steps])
        rows.append([f"{steps} steps", f"{s * 1000:.1f} ms", f"{d * 1000:.1f} ms", f"{s / d:.2f}x"])
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--storage", default=None)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--n", type=int, default=50, help="inputs explained per (family, method)")
    ap.add_argument("--metric-inputs", type=int, default=10,
                    help="of those, how many also get Captum's infidelity and max-sensitivity (the costly part)")
    ap.add_argument("--families", default=",".join(MODELS),
                    help=f"any of {','.join(MODELS)}")
    ap.add_argument("--no-serving", action="store_true", help="skip the served-latency comparison")
    ap.add_argument("--alias", default="", help="FAMILY=NAME,...: explain registry model NAME for that family "
                                                "instead of training its model")
    ap.add_argument("--results", default=None, help="where the JSON record goes (default benchmarks/results)")
    ap.add_argument("--smoke", action="store_true", help="the 8x8 digits, 1 epoch, 3 inputs, small samples")
    args = ap.parse_args()
    if args.smoke:
        import atexit
        import shutil
        import tempfile

        args.n, args.metric_inputs, args.workers = 3, 1, 1
        args.families = ",".join(SMOKE)
        if not args.storage:
            args.storage = tempfile.mkdtemp(prefix="genray-explain-smoke-")
            atexit.register(shutil.rmtree, args.storage, ignore_errors=True)
    families = args.families.split(",")
    unknown = sorted(set(families) - set(MODELS))
    if unknown:
        ap.error(f"unknown families {unknown}; known: {list(MODELS)}")
    torch.set_num_threads(1)  # one thread per explanation, as a replica runs it
    from genray.cluster.connect import connect

    record = Record("explain", None, args, seeds=[0],  # from the start: its wall time covers the run
                    out_dir=os.path.join(args.storage, "results") if args.smoke else args.results)
    connect()
    storage = Storage(args.storage)
    registry = Registry(storage)
    rows = []
    for family in families:
        m, rec = model(args, registry, storage, family)
        m.eval()
        rows += faithfulness(args, family, m, rec, storage)
    header = ["family", "method", "inputs", "deletion / random", "insertion / random", "deletion / edge",
              "insertion / edge", "infidelity", "max-sensitivity", "IG delta (relative)", "s per explanation"]
    record.table("faithfulness", f"Faithfulness on test inputs ({args.n} per method; images class-stratified)",
                 header, rows)
    for method in TARGET_METHODS:
        m_ = means.get(("classifier", method))
        if m_ and m_["del"] is not None:
            record.target(f"classifier {method}: deletion AUC / random <= 0.6", m_["del"], "<=", 0.6)
        if m_ and m_["del_edge"] is not None:
            record.target(f"classifier {method}: deletion AUC / Sobel edges <= 1.0", m_["del_edge"], "<=", 1.0)
    if not args.no_serving:
        record.table("serving", "IG on one test image, served against in-process",
                     ["IG on one image, concurrency 1", "served (median)", "direct Captum call (median)",
                      "served / direct"], serving_overhead(args, storage))
    record.save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
