"""genray plan: size and place the served models' replicas from a measured load probe (an LP/MILP
for replicas and CPUs per model, a QP for balanced nodes) and write the Serve config."""
from __future__ import annotations

import os

from genray.cli.common import CliError, key_values


def add_parser(sub, storage, ray) -> None:
    p = sub.add_parser("plan", parents=[storage, ray],
                       help="replicas and CPUs per model for target request rates, placed on the nodes")
    p.add_argument("--rate", action="append", required=True, metavar="MODEL=REQ_PER_S",
                   help="target request rate of a served model, e.g. --rate vae=20")
    p.add_argument("--max-latency", action="append", metavar="MODEL=SECONDS",
                   help="bound on one batch's latency for a model (rules out replica sizes that are slower)")
    p.add_argument("--nodes", help="CPUs per node: 8,8 or head=8,worker=16 (default: the cluster's nodes with "
                                   "--address, else this machine)")
    p.add_argument("--sizes", default="0.5,1,2", help="replica sizes (CPUs) to choose from")
    p.add_argument("--n", type=int, default=8, help="samples per request")
    p.add_argument("--max-batch-size", type=int, default=64, help="samples per batched forward (as served)")
    p.add_argument("--utilisation", type=float, default=0.8, help="fraction of a replica's throughput to plan for")
    p.add_argument("--peak", type=float, default=2.0, help="max_replicas serve this multiple of the target rate")
    p.add_argument("-o", "--output", default="serve-plan.yaml", help="the Serve config to write")
    p.set_defaults(fn=run)


def _nodes(text: str | None, address: str | None) -> dict[str, float]:
    if text:
        parts = [x.strip() for x in text.split(",") if x.strip()]
        try:
            if all("=" in x for x in parts):
                return {k: float(v) for k, v in (x.split("=", 1) for x in parts)}
            return {f"node{i}": float(x) for i, x in enumerate(parts)}
        except ValueError:
            raise CliError(f"--nodes expects CPUs per node such as 8,8 or head=8,worker=16, got {text!r}") from None
    if address:
        import ray

        from genray.cluster.connect import connect

        connect(address)
        return {n["NodeManagerAddress"]: n["Resources"].get("CPU", 0.0) for n in ray.nodes() if n["Alive"]}
    return {"local": float(os.cpu_count() or 1)}


def _floats(pairs: list[str] | None, flag: str) -> dict[str, float]:
    out = {}
    for k, v in key_values(pairs, flag).items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
            raise CliError(f"{flag} {k}: expected a positive number, got {v!r}")
        out[k] = float(v)
    return out


def run(args) -> int:
    import yaml

    from genray.cluster.registry import Registry
    from genray.cluster.storage import Storage
    from genray.services import capacity
    from genray.services.app import serve_config

    rates, bounds = _floats(args.rate, "--rate"), _floats(args.max_latency, "--max-latency")
    try:
        sizes = sorted({float(s) for s in args.sizes.split(",") if s.strip()})
    except ValueError:
        raise CliError(f"--sizes expects CPUs such as 0.5,1,2, got {args.sizes!r}") from None
    if not sizes or min(sizes) <= 0 or args.n < 1 or not 0 < args.utilisation <= 1 or args.peak < 1:
        raise CliError("need sizes > 0, --n >= 1, 0 < --utilisation <= 1 and --peak >= 1")
    nodes = _nodes(args.nodes, args.address)
    storage = Storage(args.storage)
    registry = Registry(storage)
    demands = []
    for name, rate in rates.items():
        model, rec = registry.load(name)
        if rec.kind != "generative":
            raise CliError(f"{rec.ref} is a {rec.kind} model: plan sizes the generation servers")
        print(f"probing {rec.ref}: {args.n} samples per request, batches of {args.max_batch_size} samples ...")
        options = capacity.probe(model, args.n, sizes, args.max_batch_size)
        for o in options:
            print(f"  {o.cpus:g} CPU: {o.throughput:.1f} req/s per replica, {o.latency_s * 1000:.0f} ms per batch")
        demands.append(capacity.Demand(name, rate, options, bounds.get(name)))
    try:
        p = capacity.plan(demands, nodes, args.utilisation, args.peak)
    except capacity.Infeasible as e:
        raise CliError(str(e)) from None
    print(f"\n{'MODEL':<20} {'RATE':>7} {'CPUS':>5} {'REPLICAS':>9} {'REQ/S':>8} {'BATCH MS':>9}")
    for s in p.sizing:
        print(f"{s.model:<20} {rates[s.model]:>7g} {s.cpus:>5g} {f'{s.replicas}..{s.max_replicas}':>9} "
              f"{s.throughput:>8.1f} {s.latency_s * 1000:>9.0f}")
    print(f"\n{p.cpus:g} of {p.capacity:g} CPUs at the target rates (LP relaxation bound {p.lp_bound:.2f})")
    for node, models in p.placement.items():
        print(f"  {node}: load {p.node_loads[node]:g} of {nodes[node]:g} CPUs: "
              + (", ".join(f"{m} x{k}" for m, k in models.items()) or "-"))
    config = serve_config(storage.uri, sorted(rates), {"replicas": capacity.serve_args(p)})
    with open(args.output, "w") as f:
        f.write("# Written by `genray plan`: `serve deploy` or `serve run` this file.\n")
        yaml.safe_dump(config, f, sort_keys=False)
    print(f"wrote {args.output}")
    return 0
