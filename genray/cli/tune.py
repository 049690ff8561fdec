"""genray tune: a hyperparameter sweep on Ray Tune (each trial a Ray Train run); genray sweeps: past ones."""
from __future__ import annotations

import json
import re

from genray.cli.common import CliError, key_values

_DURATION = re.compile(r"^\s*([0-9.]+)\s*([smh]?)\s*$")


def add_parser(sub, storage, ray) -> None:
    t = sub.add_parser("tune", parents=[storage, ray], help="search hyperparameters on Ray Tune, promote the best")
    t.add_argument("family", help="markov | ar | rnn | transformer | vae | flow | classifier (not gan: no likelihood)")
    t.add_argument("--name", required=True, help="the sweep's name; rerunning it resumes it")
    t.add_argument("--dataset", help="as for genray train (default: the family's)")
    t.add_argument("--trials", type=int, default=8, help="configurations to try (grid: every one, once)")
    t.add_argument("--max-epochs", type=int, default=4, help="epochs of a trial that runs to the end")
    t.add_argument("--workers", type=int, default=2, help="Ray Train workers per trial")
    t.add_argument("--cpus-per-worker", type=float, default=1.0)
    t.add_argument("--searcher", default="random", help="random | grid | tpe | cmaes | gp | nsga2 (Optuna's samplers)")
    t.add_argument("--scheduler", default="asha", help="fifo | asha | hyperband | pbt")
    t.add_argument("--space", action="append", metavar="NAME=KIND:ARGS | FILE",
                   help="override the family's search space: lr=loguniform:1e-4:3e-3, n_embd=choice:64,96,128, "
                        "n_layer=int:1:4, dropout=0.1 (fixed), or a YAML/JSON file of them")
    t.add_argument("--constraint", action="append", default=[], metavar="METRIC<BOUND",
                   help="on params, size_bytes or latency_ms (sampling, per sample), e.g. latency_ms<5")
    t.add_argument("--objectives", default="val_nll",
                   help="comma-separated, e.g. val_nll,latency_ms: a multi-objective search (nsga2)")
    t.add_argument("--time-budget", help="stop the sweep after this long: 90s, 20m, 1h")
    t.add_argument("--concurrency", type=int, help="trials at once (default: what the CPUs fit)")
    t.add_argument("--grace-period", type=int, default=1, help="asha/hyperband: epochs before a trial can be stopped")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--limit", type=int, help="use N rows of each split (a seeded sample where it fits in memory)")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="fixed architecture setting")
    t.add_argument("--train-set", action="append", metavar="KEY=VALUE", help="fixed training setting")
    t.add_argument("--max-failures", type=int, default=1, help="retries of a failed trial, from its checkpoint")
    t.add_argument("--promote", nargs="?", const="", metavar="NAME",
                   help="publish the best feasible trial to the registry (as NAME, default the sweep's name)")
    t.add_argument("--fresh", action="store_true", help="discard a previous sweep of this name instead of resuming")
    t.set_defaults(fn=run)

    s = sub.add_parser("sweeps", parents=[storage], help="list past sweeps and their best trials")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=list_sweeps)


def duration(text: str | None) -> float | None:
    if text is None:
        return None
    m = _DURATION.match(text)
    if not m:
        raise CliError(f"--time-budget expects a duration such as 90s, 20m or 1h, got {text!r}")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def search_space(settings: list[str] | None) -> dict:
    from genray.trainers import space

    out = {}
    for item in settings or []:
        if "=" not in item and item.endswith((".yaml", ".yml", ".json")):
            try:
                out.update(space.load(item))
            except OSError as e:
                raise CliError(f"--space {item}: {e.strerror}") from None
        else:
            name, dim = space.parse(item)
            out[name] = dim
    return out


def run(args) -> int:
    from genray.cluster.connect import connect
    from genray.cluster.storage import Storage
    from genray.trainers import leaderboard
    from genray.trainers.sweep import SweepSpec
    from genray.trainers.tuning import run_sweep

    spec = SweepSpec(args.family, name=args.name, dataset=args.dataset, trials=args.trials,
                     max_epochs=args.max_epochs, workers=args.workers, cpus_per_worker=args.cpus_per_worker,
                     searcher=args.searcher, scheduler=args.scheduler, space=search_space(args.space),
                     constraints=args.constraint, objectives=[o.strip() for o in args.objectives.split(",")],
                     time_budget_s=duration(args.time_budget), concurrency=args.concurrency,
                     grace_period=args.grace_period, seed=args.seed, limit=args.limit,
                     model=key_values(args.set, "--set"), train=key_values(args.train_set, "--train-set"),
                     max_failures=args.max_failures, fresh=args.fresh).resolved()
    promote_as = (args.promote or spec.name) if args.promote is not None else None
    if promote_as:
        from genray.cluster.registry import parse_ref

        parse_ref(promote_as)  # a bad name fails now, not after the sweep
    connect(args.address)
    storage = Storage(args.storage)
    print(f"sweep {spec.name}: {spec.family} on {spec.dataset}, {spec.trials} trial(s) of up to {spec.max_epochs} "
          f"epoch(s) x {spec.workers} worker(s), {spec.searcher} + {spec.scheduler}")
    out = run_sweep(spec, storage, promote_as=promote_as)
    print()
    print(leaderboard.table(out.rows, spec.objectives))
    s = out.summary
    print(f"\n{len(out.rows)} trial(s), {s['epochs_run']} epoch(s) run in {s['wall_time_s']:.0f} s; "
          f"learning curves: {s['pictures']['curves']}" + (f"; Pareto front: {s['pictures']['pareto']}"
                                                            if "pareto" in s["pictures"] else ""))
    if any(r.state == "unfinished" for r in out.rows):
        print(f"interrupted: rerun the same command to resume sweep {spec.name}" +
              ("; nothing promoted yet" if promote_as else ""))
        return 1
    if out.best is None:
        print("no feasible trial: nothing to promote")
        return 1 if promote_as else 0
    if out.promoted:
        print(f"promoted {out.best.trial} as {out.promoted.ref} (val_nll {out.best.val_nll:.4f})")
    return 0


def list_sweeps(args) -> int:
    from genray.cluster.storage import Storage
    from genray.trainers.leaderboard import summaries

    found = summaries(Storage(args.storage))
    if args.json:
        print(json.dumps([{k: v for k, v in s.items() if k != "trials"} for s in found], indent=2))
        return 0
    if not found:
        print("no sweeps yet: try `genray tune transformer --name first --trials 4 --max-epochs 2`")
        return 0
    print(f"{'SWEEP':<20} {'FAMILY':<12} {'SEARCH':<16} {'TRIALS':>6} {'EPOCHS':>6} {'BEST TRIAL':<14} "
          f"{'VAL NLL':>8} {'WALL':>6} PROMOTED")
    for s in found:
        best = s.get("best") or {}
        nll = best.get("val_nll")
        print(f"{s['name']:<20} {s['family']:<12} {s['searcher'] + '+' + s['scheduler']:<16} {len(s['trials']):>6} "
              f"{s['epochs_run']:>6} {best.get('trial', '-'):<14} {'-' if nll is None else format(nll, '.4f'):>8} "
              f"{s['wall_time_s']:>5.0f}s {s.get('promoted') or '-'}")
    return 0
