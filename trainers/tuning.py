"""A sweep from request to registry: run it on Tune, rank its trials, draw them, and promote the
best feasible one's weights."""
from __future__ import annotations

from dataclasses import dataclass

from genray.cluster.registry import ModelRecord
from genray.cluster.storage import Storage
from genray.trainers import leaderboard
from genray.trainers.leaderboard import TrialRow
from genray.trainers.run import describe, publish
from genray.trainers.sweep import SweepSpec, quiet_tune, tune_sweep


@dataclass
class SweepOutcome:
    spec: SweepSpec
    rows: list[TrialRow]
    summary: dict
    promoted: ModelRecord | None

    @property
    def best(self) -> TrialRow | None:
        return next((r for r in self.rows if r.rank == 1), None)


def promote(spec: SweepSpec, row: TrialRow, storage: Storage, name: str, wall_time_s: float) -> ModelRecord:
    """Publish a trial's best-epoch weights under `name`, with the sweep's provenance."""
    from ray.train import Checkpoint

    if not row.feasible or not row.checkpoint_path:
        raise ValueError(f"trial {row.trial} is not a feasible finished trial with a checkpoint")
    run = describe(spec.trial_spec(row.config, row.trial), storage)
    provenance = {"name": spec.name, "trial": row.trial, "rank": row.rank, "config": row.config,
                  "searcher": spec.searcher, "scheduler": spec.scheduler, "objectives": spec.objectives,
                  "constraints": spec.constraints, "measured": row.measured}
    return publish(run, Checkpoint(row.checkpoint_path, filesystem=storage.fs), wall_time_s, storage, name=name,
                   extra={"sweep": provenance})


def run_sweep(spec: SweepSpec, storage: Storage, promote_as: str | None = None, echo=print) -> SweepOutcome:
    """Run or resume the sweep named spec.name; with promote_as, publish its best feasible trial."""
    quiet_tune()
    grid, space_, wall = tune_sweep(spec, storage, callbacks=[leaderboard.Progress(spec, echo)])
    rows = leaderboard.rows(grid, spec)
    summary = leaderboard.save(storage, spec, rows, space_, wall)
    best = next((r for r in rows if r.rank == 1), None)
    record = None
    # An interrupted sweep promotes nothing: its best so far may not be its best.
    if promote_as and best and not any(r.state == "unfinished" for r in rows):
        record = promote(spec, best, storage, promote_as, wall)
        summary = leaderboard.save(storage, spec, rows, space_, wall, promoted=record.ref)
    return SweepOutcome(spec, rows, summary, record)
