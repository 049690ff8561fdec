"""genray up: train the quick default models the registry lacks, then serve them all."""
from __future__ import annotations

import time

from genray.cli.serve import add_http_options, serve_forever


def add_parser(sub, storage, ray) -> None:
    c = sub.add_parser("up", parents=[storage, ray], help="train any missing default models, then serve them all")
    add_http_options(c)
    c.add_argument("--workers", type=int, default=2, help="training workers for missing models")
    c.set_defaults(fn=run)


def run(args) -> int:
    from genray.cluster.connect import connect
    from genray.cluster.progress import ConsoleProgress
    from genray.cluster.registry import Registry
    from genray.cluster.storage import Storage
    from genray.trainers.presets import QUICK
    from genray.trainers.run import TrainSpec, train

    storage = Storage(args.storage)
    have = set(Registry(storage).names())
    missing = [name for name in QUICK if name not in have]
    connect(args.address, console=args.verbose)
    if missing:
        print(f"training the default models the registry lacks (first start only): {', '.join(missing)}",
              flush=True)
    with ConsoleProgress(enabled=not args.verbose) as progress:
        for name in missing:
            t0 = time.time()
            rec = train(TrainSpec(name=name, workers=args.workers, **QUICK[name]), storage, progress=progress.board)
            quality = (f"val_nll={rec.metrics['val_nll']:.4f} {rec.metrics['nll_unit']}"
                       if "val_nll" in rec.metrics else "no likelihood")
            (progress.bars.console.print if progress.enabled else print)(
                f"published {rec.ref}: {quality} in {time.time() - t0:.0f} s")
    return serve_forever(args, storage, None)
