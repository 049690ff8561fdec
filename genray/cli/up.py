"""genray up: serve at once, train the default models the registry lacks while serving (each
joins as soon as it is published), then train the quick ones cut short again at full budget (the
better version replaces the quick one without a restart)."""
from __future__ import annotations

import time

from genray.cli.serve import Service, StopSignal, add_http_options


def add_parser(sub, storage, ray) -> None:
    c = sub.add_parser("up", parents=[storage, ray], help="serve, and train any missing default models meanwhile")
    add_http_options(c)
    c.add_argument("--workers", type=int, default=2, help="training workers for missing models")
    c.add_argument("--only", help="comma-separated default models to train and serve (default: all of them)")
    c.add_argument("--no-improve", action="store_true",
                   help="keep the quick versions (skip retraining gan, flow and chorale-gan at their full "
                        "budget)")
    c.set_defaults(fn=run)


def run(args) -> int:
    from genray.cli.common import CliError
    from genray.cluster.connect import connect
    from genray.cluster.progress import ConsoleProgress
    from genray.cluster.registry import Registry
    from genray.cluster.storage import Storage
    from genray.trainers.presets import QUICK, improvable
    from genray.trainers.run import TrainSpec, train

    storage = Storage(args.storage)
    wanted = [n.strip() for n in args.only.split(",")] if args.only else list(QUICK)
    unknown = sorted(set(wanted) - set(QUICK))
    if unknown:
        raise CliError(f"no default model named {unknown}; the defaults: {', '.join(QUICK)}")
    have = set(Registry(storage).names())
    missing = {n: QUICK[n] for n in wanted if n not in have}
    improve = {} if args.no_improve else {n: s for n, s in improvable().items() if n in wanted}
    connect(args.address, console=args.verbose)
    stop = StopSignal(interrupt=True)
    service = Service(args, storage, None, expected=len(have | set(wanted)), only=wanted if args.only else None)
    try:
        with ConsoleProgress(enabled=not args.verbose, named=True) as progress:
            pending = {n: {"family": s["family"]} for n, s in missing.items()}
            progress.print(service.banner(service.deploy(pending), list(pending)))
            for name, spec in missing.items():
                rec = _train(train, TrainSpec(name=name, workers=args.workers, **spec), storage, progress, stop)
                del pending[name]
                service.deploy(pending)  # the new model joins; the others keep serving
                progress.print(f"{rec.ref} serves now")
            for name, spec in improve.items():
                if Registry(storage).record(name).metrics.get("budget") != "full":
                    rec = _train(train, TrainSpec(name=name, workers=args.workers, **spec), storage, progress, stop,
                                 extra={"budget": "full"})
                    progress.print(f"{rec.ref} (full budget) replaces the quick version")
        while not stop.wait(1.0):
            pass
    except (KeyboardInterrupt, SystemExit):  # Ray Train's fit may turn the interrupt into an exit
        pass
    service.stop()
    return 0


def _train(train, spec, storage, progress, stop: StopSignal, extra: dict | None = None):
    t0 = time.time()
    rec = train(spec, storage, progress=progress.board)
    stop.install()  # Ray Train's fit leaves a SIGINT handler of its own behind
    if extra:
        from genray.cluster.registry import Registry

        rec = Registry(storage).update_metrics(rec.ref, extra)
    m = rec.metrics
    quality = f"val_nll={m['val_nll']:.4f} {m['nll_unit']}" if "val_nll" in m else "no likelihood"
    progress.print(f"published {rec.ref}: {quality} in {time.time() - t0:.0f} s")
    return rec
