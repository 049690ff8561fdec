"""genray models: list the registry."""
from __future__ import annotations

import json


def add_parser(sub, storage, ray) -> None:
    m = sub.add_parser("models", parents=[storage], help="list registry models")
    m.add_argument("--json", action="store_true")
    m.set_defaults(fn=run)


def run(args) -> int:
    from genray.cluster.registry import Registry
    from genray.cluster.storage import Storage

    records = Registry(Storage(args.storage)).list()
    if args.json:
        print(json.dumps([{**r.summary(), "metrics": {k: v for k, v in r.metrics.items() if k != "history"}}
                          for r in records], indent=2))
        return 0
    if not records:
        print("no models yet: try `genray train vae`")
        return 0
    print(f"{'NAME':<24} {'VER':>4} {'KIND':<11} {'FAMILY':<12} {'MODALITY':<9} {'VAL NLL':>10} UNIT")
    for r in records:
        s = r.summary()
        nll = r.metrics.get("val_nll")
        print(f"{r.name:<24} {r.version:>4} {s['kind']:<11} {s['family']:<12} {s['modality']:<9} "
              f"{'-' if nll is None else format(nll, '.4f'):>10} {r.metrics.get('nll_unit', '')}")
    return 0
