"""What a sweep leaves: one row per trial (its configuration, epochs, best validation NLL, measured
properties, state, feasibility, rank), the Pareto front of several objectives, the learning-curve
and Pareto pictures, the summary file `genray sweeps` lists, and the live progress lines."""
from __future__ import annotations

import io
import math
from dataclasses import asdict, dataclass, field

from ray.tune import Callback

from genray.cluster.storage import Storage
from genray.trainers.constraints import pareto_front
from genray.trainers.sweep import REPORTED, SweepSpec, finite

SUMMARY = "genray-sweep.json"
MEASURED = ("params", "size_bytes", "latency_ms")


@dataclass
class TrialRow:
    trial: str
    config: dict
    epochs: int
    val_nll: float | None  # the best epoch's
    state: str  # "done" | "stopped" (by the scheduler) | "infeasible" | "error" | "unfinished" (interrupted)
    feasible: bool
    measured: dict = field(default_factory=dict)
    history: list = field(default_factory=list)  # [(epoch, val_nll)] in report order
    checkpoint_path: str | None = None
    error: str | None = None
    rank: int | None = None
    pareto: bool = False

    def objective(self, name: str):
        return self.val_nll if name == "val_nll" else self.measured.get(name)


def rows(grid, spec: SweepSpec) -> list[TrialRow]:
    """Tune's ResultGrid -> ranked rows: feasible finished trials first by the first objective."""
    constraints = spec.constraint_list
    # Tune's status of each trial, in the grid's order; unfinished ones were interrupted (Ctrl-C,
    # the time budget) and resume with the sweep.
    trials = getattr(getattr(grid, "_experiment_analysis", None), "trials", None) or []
    statuses = [t.status for t in trials] if len(trials) == len(grid) else ["TERMINATED"] * len(grid)
    out = []
    for result, status in zip(grid, statuses):
        last = result.metrics or {}
        frame = result.metrics_dataframe
        history = [] if frame is None or "val_nll" not in frame else \
            [(int(e), float(v)) for e, v in zip(frame["epoch"], frame["val_nll"]) if finite(v)]
        best = last.get(REPORTED["val_nll"])
        broken = [c for c in constraints if c.holds(last) is False]
        epoch = int(last.get("epoch", 0))
        state = "error" if result.error else "infeasible" if broken else \
            "unfinished" if status != "TERMINATED" else "stopped" if epoch < spec.max_epochs else "done"
        out.append(TrialRow(
            trial=last.get("trial_id") or result.path.rstrip("/").rsplit("/", 1)[-1], config=dict(result.config),
            epochs=len(history) or epoch, val_nll=best if finite(best) else None, state=state,
            # a constraint on something the trial never measured cannot be vouched for
            feasible=state in ("done", "stopped") and finite(best) and all(c.holds(last) is True for c in constraints),
            measured={k: last[k] for k in MEASURED if k in last}, history=history,
            checkpoint_path=last.get("checkpoint_path"),
            error=f"{type(result.error).__name__}: {result.error}"[:300] if result.error else None))
    feasible = sorted((r for r in out if r.feasible and finite(r.objective(spec.objectives[0]))),
                      key=lambda r: r.objective(spec.objectives[0]))
    for i, r in enumerate(feasible):
        r.rank = i + 1
    if len(spec.objectives) > 1:
        scored = [r for r in feasible if all(finite(r.objective(o)) for o in spec.objectives)]
        for i in pareto_front([tuple(r.objective(o) for o in spec.objectives) for r in scored]):
            scored[i].pareto = True
    return sorted(out, key=lambda r: (r.rank is None, r.rank or 0, r.trial))


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def config_text(config: dict) -> str:
    return " ".join(f"{k}={_fmt(v)}" for k, v in sorted(config.items()))


def table(rows_: list[TrialRow], objectives: list[str]) -> str:
    """The leaderboard as aligned text."""
    extra = [o for o in objectives if o != "val_nll"] + [m for m in MEASURED if m not in objectives]
    head = ["rank", "trial", "state", "epochs", "val_nll", *extra, "config"]
    body = [[str(r.rank or "-") + ("*" if r.pareto else ""), r.trial, r.state, str(r.epochs),
             _fmt(r.val_nll) if r.val_nll is not None else "-",
             *[_fmt(r.measured[m]) if m in r.measured else "-" for m in extra], config_text(r.config)]
            for r in rows_]
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    lines = ["  ".join(x.ljust(w) for x, w in zip(line, widths)).rstrip() for line in [head, *body]]
    return "\n".join(lines)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def curves_png(rows_: list[TrialRow], title: str) -> bytes:
    """Validation NLL per epoch, one line per trial; early-stopped trials end early."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.2))
    ax = fig.subplots()
    for r in rows_:
        if r.history:
            epochs, values = zip(*r.history)
            ax.plot(epochs, values, marker="o", ms=3, lw=1.2, alpha=0.85,
                    label=f"{r.trial} ({r.state})", ls="-" if r.feasible else ":")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation NLL")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if len(rows_) <= 12:
        ax.legend(fontsize=7)
    return _png(fig)


def pareto_png(rows_: list[TrialRow], objectives: list[str], title: str) -> bytes:
    """Feasible trials on the first two objectives, the non-dominated ones joined as the front."""
    from matplotlib.figure import Figure

    x_name, y_name = objectives[:2]
    pts = [(r.objective(x_name), r.objective(y_name), r) for r in rows_ if r.feasible
           and finite(r.objective(x_name)) and finite(r.objective(y_name))]
    fig = Figure(figsize=(6, 4.2))
    ax = fig.subplots()
    ax.scatter([p[0] for p in pts if not p[2].pareto], [p[1] for p in pts if not p[2].pareto],
               c="#999999", label="dominated")
    front = sorted((p for p in pts if p[2].pareto), key=lambda p: p[0])
    ax.plot([p[0] for p in front], [p[1] for p in front], "o-", c="#d62728", label="Pareto front")
    for x, y, r in front:
        ax.annotate(r.trial, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(x_name)
    ax.set_ylabel(y_name)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def save(storage: Storage, spec: SweepSpec, rows_: list[TrialRow], space_: dict, wall_time_s: float,
         promoted: str | None = None) -> dict:
    """Write the summary and pictures beside Tune's experiment; returns the summary."""
    base = storage.path("sweeps", spec.name)
    pictures = {"curves": f"{base}/curves.png"}
    storage.write_bytes(pictures["curves"], curves_png(rows_, f"{spec.name}: {spec.searcher} + {spec.scheduler}"))
    if len(spec.objectives) > 1:
        pictures["pareto"] = f"{base}/pareto.png"
        storage.write_bytes(pictures["pareto"], pareto_png(rows_, spec.objectives, spec.name))
    best = next((r for r in rows_ if r.rank == 1), None)
    summary = {"name": spec.name, "family": spec.family, "dataset": spec.dataset, "searcher": spec.searcher,
               "scheduler": spec.scheduler, "objectives": spec.objectives, "constraints": spec.constraints,
               "space": {k: list(v) for k, v in space_.items()}, "max_epochs": spec.max_epochs,
               "workers": spec.workers, "wall_time_s": wall_time_s,
               "epochs_run": sum(r.epochs for r in rows_), "best": asdict(best) if best else None,
               "pareto": [r.trial for r in rows_ if r.pareto], "promoted": promoted, "pictures": pictures,
               "trials": [asdict(r) for r in rows_]}
    storage.write_json(f"{base}/{SUMMARY}", summary)
    return summary


def summaries(storage: Storage) -> list[dict]:
    out = []
    for name in storage.listdir(storage.path("sweeps")):
        path = storage.path("sweeps", name, SUMMARY)
        if storage.exists(path):
            out.append(storage.read_json(path))
    return out


class Progress(Callback):
    """One line per trial event on the console: trial, configuration, epoch, metric, state."""

    def __init__(self, spec: SweepSpec, echo=print):
        self.max_epochs, self.echo = spec.max_epochs, echo
        self.constraints = spec.constraint_list
        self.keys = [k for k in spec.objectives if k != "val_nll"]

    def on_trial_start(self, iteration, trials, trial, **info):
        self.echo(f"  {trial.trial_id:<14} start     {config_text(trial.config)}")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        broken = [str(c) for c in self.constraints if c.holds(result) is False]
        extra = "".join(f" {k}={_fmt(result[k])}" for k in self.keys if k in result)
        state = f"infeasible ({', '.join(broken)})" if broken else "running"
        nll = result.get("val_nll", math.nan)
        self.echo(f"  {trial.trial_id:<14} epoch {int(result.get('epoch', 0))}/{self.max_epochs} "
                  f"val_nll={nll:.4f}{extra}  {state}")

    def on_trial_complete(self, iteration, trials, trial, **info):
        epoch = int((trial.last_result or {}).get("epoch", 0))
        ended = "finished" if epoch >= self.max_epochs else f"stopped after epoch {epoch}"
        self.echo(f"  {trial.trial_id:<14} {ended}")

    def on_trial_error(self, iteration, trials, trial, **info):
        self.echo(f"  {trial.trial_id:<14} failed (retried from its checkpoint while retries remain)")

