"""The `genray` command line: train, models, eval, sample, serve, up.

Every command that needs Ray joins --address / RAY_ADDRESS, or starts an embedded local cluster.
Models, checkpoints and cached data live under --storage / GENRAY_HOME (default ~/.genray).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time

from cluster.storage import Storage

# What `genray up` trains when the registry lacks it: a quick model of every family, and the
# sequence families on music too (name -> family, data set and loop overrides).
QUICK_DEFAULTS = {
    "markov": {"family": "markov"},
    "ar": {"family": "ar"},
    "vae": {"family": "vae"},
    "rnn": {"family": "rnn"},
    "transformer": {"family": "transformer"},
    "gan": {"family": "gan", "epochs": 10},
    "flow": {"family": "flow", "epochs": 3},
    "chorale-rnn": {"family": "rnn", "dataset": "chorales"},
}


class CliError(Exception):
    """A user error: printed as one line, exit status 2."""


def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _overrides(pairs: list[str]) -> dict:
    out = {}
    for p in pairs or []:
        key, eq, value = p.partition("=")
        if not eq or not key:
            raise CliError(f"--set expects KEY=VALUE, got {p!r}")
        out[key] = _parse_value(value)
    return out


# ---- commands ----------------------------------------------------------------------------------

def cmd_train(args) -> int:
    from cluster.connect import connect
    from trainers.run import TrainSpec, train

    spec = TrainSpec(args.family, name=args.name, dataset=args.dataset, workers=args.workers, epochs=args.epochs,
                     batch_size=args.batch_size, lr=args.lr, seed=args.seed, limit=args.limit,
                     model=_overrides(args.set), use_gpu=args.gpu, cpus_per_worker=args.cpus_per_worker,
                     max_failures=args.max_failures, fresh=args.fresh)
    spec.resolved()  # bad arguments fail before Ray starts
    connect(args.address)
    rec = train(spec, Storage(args.storage))
    m = rec.metrics
    quality = f"val_nll={m['val_nll']:.4f} {m['nll_unit']}" if "val_nll" in m else "no likelihood"
    print(f"published {rec.ref}: {quality} after {m['epochs']} epoch(s), "
          f"{m['wall_time_s']:.0f} s on {m['workers']} worker(s)")
    return 0


def cmd_models(args) -> int:
    from cluster.registry import Registry

    records = Registry(Storage(args.storage)).list()
    if args.json:
        print(json.dumps([{**r.summary(), "metrics": {k: v for k, v in r.metrics.items() if k != "history"}}
                          for r in records], indent=2))
        return 0
    if not records:
        print("no models yet: try `genray train vae`")
        return 0
    print(f"{'NAME':<20} {'VER':>4} {'FAMILY':<12} {'MODALITY':<9} {'VAL NLL':>10} UNIT")
    for r in records:
        s = r.summary()
        nll = r.metrics.get("val_nll")
        print(f"{r.name:<20} {r.version:>4} {s['family']:<12} {s['modality']:<9} "
              f"{'-' if nll is None else format(nll, '.4f'):>10} {r.metrics.get('nll_unit', '')}")
    return 0


def cmd_eval(args) -> int:
    from trainers.evaluate import evaluate

    r = evaluate(args.model, Storage(args.storage), batch_size=args.batch_size).metrics["eval"]
    parts = []
    if "heldout_nll" in r:
        bpd = f" = {r['heldout_bits_per_dim']:.4f} bits/dim" if "heldout_bits_per_dim" in r else ""
        parts.append(f"held-out NLL {r['heldout_nll']:.4f} {r['nll_unit']}{bpd}")
    if "forecast_mse" in r:
        parts.append(f"one-step forecast MSE {r['forecast_mse']:.4g}")
    if "fid" in r:
        parts.append(f"digit-FID {r['fid']:.2f} ({r['fid_samples']} samples; real images score "
                     f"{r['fid_real_floor']:.2f})")
    if "label_accuracy" in r:
        parts.append(f"label accuracy {r['label_accuracy']:.3f}")
    print(f"{args.model}: {'; '.join(parts)} on {r['rows']} {r['split']} rows of {r['dataset']} "
          f"(stored in metrics.json)")
    return 0


def cmd_sample(args) -> int:
    import torch
    from pydantic import ValidationError

    from cluster.registry import Registry
    from models.base import seeded
    from models.codecs.images import grid, to_png
    from services.schemas import GenerateRequest, check_applies

    registry = Registry(Storage(args.storage))
    model, rec = registry.load(args.model)
    prompt = args.prompt
    if prompt is not None and model.modality == "series":
        try:
            prompt = [float(v) for v in prompt.replace(",", " ").split()]
        except ValueError:
            raise CliError("--prompt for a series model is numbers separated by spaces or commas") from None
    fields = {k: v for k, v in {"n": args.n, "seed": args.seed, "prompt": prompt, "max_tokens": args.max_tokens,
                                "temperature": args.temperature, "top_k": args.top_k, "label": args.label}.items()
              if v is not None}
    try:
        req = GenerateRequest(**fields)
    except ValidationError as e:
        raise CliError("; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())) from None
    errors = check_applies(req, rec.config)
    if errors:
        raise CliError("; ".join(e["msg"] for e in errors))
    opts = req.model_dump(exclude_unset=True, exclude={"n", "seed"})
    samples = model.sample(req.n, generator=seeded(req.seed), **opts)
    if model.modality == "image":
        if not args.output:
            raise CliError("image samples need -o FILE.png")
        with open(args.output, "wb") as f:
            f.write(to_png(grid(torch.as_tensor(samples))))
        print(f"wrote {req.n} samples of {rec.ref} to {args.output}")
    elif model.modality == "music" and args.output:
        paths = _write_music(samples, args.output)
        print(f"wrote {req.n} samples of {rec.ref} to {', '.join(paths)}")
    else:
        if model.modality == "music":
            samples = [" ".join(s) for s in samples]
        elif model.modality == "series":
            samples = [" ".join(f"{v:.6g}" for v in s) for s in samples]
        text = "\n\n".join(str(s) for s in samples) + "\n"
        if args.output:
            with open(args.output, "w", encoding="utf-8") as f:
                f.write(text)
            print(f"wrote {req.n} samples of {rec.ref} to {args.output}")
        else:
            sys.stdout.write(text)
    return 0


def _write_music(samples: list[list[str]], output: str) -> list[str]:
    """Each sample as OUTPUT.mid (or OUTPUT-K.mid for several); a .wav output renders audio."""
    from models.codecs import music

    stem, dot, ext = output.rpartition(".")
    if not dot or ext.lower() not in ("mid", "midi", "wav"):
        raise CliError("music samples are written to FILE.mid or FILE.wav")
    encode = music.to_wav if ext.lower() == "wav" else music.to_midi
    paths = [output if len(samples) == 1 else f"{stem}-{i}.{ext}" for i in range(len(samples))]
    for path, s in zip(paths, samples):
        with open(path, "wb") as f:
            f.write(encode(s))
    return paths


def _examples(port: int, names: list[str]) -> str:
    base = f"http://127.0.0.1:{port}"
    lines = [f"curl -s {base}/v1/models", f"curl -s {base}/healthz", f"curl -s {base}/metrics | grep genray_"]
    for image_model, body in (("vae", '{"n": 4, "label": 7, "seed": 1}'), ("gan", '{"n": 4, "label": 3, "seed": 1}'),
                              ("flow", '{"n": 4, "temperature": 0.7, "seed": 1}')):
        if image_model in names:
            lines.append(f"curl -s -X POST {base}/v1/generate/{image_model} -H 'content-type: application/json' "
                         f"-d '{body}'")
    for text_model in ("transformer", "rnn", "markov"):
        if text_model in names:
            lines.append(f"curl -s -X POST {base}/v1/generate/{text_model} -H 'content-type: application/json' "
                         "-d '{\"prompt\": \"ROMEO:\", \"max_tokens\": 200, \"temperature\": 0.8, \"seed\": 1}'")
    if "ar" in names:
        lines.append(f"curl -s -X POST {base}/v1/generate/ar -H 'content-type: application/json' "
                     "-d '{\"prompt\": [30, 60, 110, 150, 120, 80, 40, 20, 10, 15], \"max_tokens\": 12, \"seed\": 1}'")
    if "chorale-rnn" in names:
        lines.append(f"curl -s -X POST {base}/v1/generate/chorale-rnn -H 'content-type: application/json' "
                     "-d '{\"prompt\": \"G4/1 G4/1 D5/1\", \"max_tokens\": 64, \"seed\": 1}' "
                     "| python3 -c 'import sys, json, base64; s = json.load(sys.stdin)[\"samples\"][0]; "
                     "print(s[\"events\"]); open(\"chorale.mid\", \"wb\").write(base64.b64decode(s[\"midi\"]))'")
    return "\n".join(lines)


def _serve_forever(args, storage: Storage) -> int:
    from ray import serve

    from services.app import ServeOptions, build_app

    application = build_app(storage.uri, args.models, ServeOptions(max_replicas=args.max_replicas))
    serve.start(http_options={"host": args.host, "port": args.port})
    serve.run(application, name="genray", route_prefix="/")
    from cluster.registry import Registry

    names = args.models or Registry(storage).names()
    print(f"\ngenray is serving {', '.join(names)} on http://{args.host}:{args.port}  (Ctrl-C stops)\n")
    print(_examples(args.port, names), flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(1.0):
        pass
    print("\nstopping genray ...", flush=True)
    import ray

    if _joined_cluster(args):
        serve.delete("genray")  # leave a shared cluster's other applications running
    else:
        ray.shutdown()  # the embedded cluster goes with its process
    return 0


def _joined_cluster(args) -> bool:
    return bool(getattr(args, "address", None) or os.environ.get("RAY_ADDRESS"))


def cmd_serve(args) -> int:
    from cluster.connect import connect

    connect(args.address)
    return _serve_forever(args, Storage(args.storage))


def cmd_up(args) -> int:
    """Train quick default models that the registry lacks, then serve them all."""
    from cluster.connect import connect
    from cluster.registry import Registry
    from trainers.run import TrainSpec, train

    storage = Storage(args.storage)
    registry = Registry(storage)
    missing = [name for name in QUICK_DEFAULTS if name not in registry.names()]
    connect(args.address)
    for i, name in enumerate(missing, 1):
        print(f"\n=== [{i}/{len(missing)}] training the default {name} model (first start only) ===", flush=True)
        t0 = time.time()
        rec = train(TrainSpec(name=name, workers=args.workers, **QUICK_DEFAULTS[name]), storage)
        quality = (f"val_nll={rec.metrics['val_nll']:.4f} {rec.metrics['nll_unit']}" if "val_nll" in rec.metrics
                   else "no likelihood")
        print(f"=== {rec.ref}: {quality} in {time.time() - t0:.0f} s ===", flush=True)
    args.models = None
    return _serve_forever(args, storage)


# ---- parser ------------------------------------------------------------------------------------

def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="genray", description="Train, sample and serve generative models on Ray.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--storage", default=None, help="storage root: a path or a URI (default $GENRAY_HOME or ~/.genray)")
    ray_opts = argparse.ArgumentParser(add_help=False)
    ray_opts.add_argument("--address", default=None, help="Ray cluster to join (default $RAY_ADDRESS, else an embedded local one)")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", parents=[common, ray_opts], help="train a model on Ray Train and publish it")
    t.add_argument("family", help="markov | ar | rnn | transformer | vae | gan | flow")
    t.add_argument("--dataset", help="shakespeare | mnist | digits | chorales | sunspots | macro | a path "
                                     "(text file, image folder, folder of MIDI/scores, .parquet)")
    t.add_argument("--name", help="registry name and run name (default: the family)")
    t.add_argument("--workers", type=int, default=2)
    t.add_argument("--epochs", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--limit", type=int, help="use only the first N rows of each split")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="model config override, e.g. --set n_layer=6")
    t.add_argument("--gpu", action="store_true", help="one GPU per worker")
    t.add_argument("--cpus-per-worker", type=float, default=1.0)
    t.add_argument("--max-failures", type=int, default=1, help="worker failures to recover from")
    t.add_argument("--fresh", action="store_true", help="start over instead of resuming the run's checkpoint")
    t.set_defaults(fn=cmd_train)

    m = sub.add_parser("models", parents=[common], help="list registry models")
    m.add_argument("--json", action="store_true")
    m.set_defaults(fn=cmd_models)

    e = sub.add_parser("eval", parents=[common], help="held-out NLL (and digit-FID, forecast MSE) of a registry "
                                                      "model, stored in its metrics.json")
    e.add_argument("model", help="NAME or NAME@VERSION")
    e.add_argument("--batch-size", type=int, default=256)
    e.set_defaults(fn=cmd_eval)

    s = sub.add_parser("sample", parents=[common], help="generate from a registry model in-process")
    s.add_argument("model", help="NAME or NAME@VERSION")
    s.add_argument("-n", type=int, default=1)
    s.add_argument("-o", "--output", help="output file: PNG grid for images, FILE.mid or FILE.wav for music, "
                                          "text otherwise (default stdout)")
    s.add_argument("--seed", type=int)
    s.add_argument("--prompt", help="text; music events ('G4/1 A4/0.5'); numbers for a series")
    s.add_argument("--max-tokens", type=int)
    s.add_argument("--temperature", type=float)
    s.add_argument("--top-k", type=int)
    s.add_argument("--label", type=int)
    s.set_defaults(fn=cmd_sample)

    for name, fn, helptext in (("serve", cmd_serve, "serve registry models over HTTP with Ray Serve"),
                               ("up", cmd_up, "train any missing default models, then serve them all")):
        c = sub.add_parser(name, parents=[common, ray_opts], help=helptext)
        c.add_argument("--host", default="127.0.0.1")
        c.add_argument("--port", type=int, default=8000)
        c.add_argument("--max-replicas", type=int, default=2, help="autoscaling limit per model")
        if name == "serve":
            c.add_argument("--models", nargs="*", help="NAME or NAME@VERSION (default: latest of every model)")
        else:
            c.add_argument("--workers", type=int, default=2, help="training workers for missing models")
        c.set_defaults(fn=fn)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from cluster.registry import RegistryError

    try:
        return args.fn(args)
    except (CliError, RegistryError, ValueError) as e:  # DataError is a ValueError
        print(f"genray {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
