"""Driver side of a training run, in three steps that Tune can also take apart (fit many trials,
publish one): build_trainer (data -> TorchTrainer(train_loop_per_worker)), fit, publish (the
best epoch's weights -> the registry)."""
from __future__ import annotations

import math
import posixpath
import time
from dataclasses import dataclass, field

from genray.cluster.registry import ModelRecord, Registry, parse_ref
from genray.cluster.storage import Storage
from genray.models.catalog import build, family_class
from genray.models.errors import ConfigError, DataError
from genray.models.robustness.poison import Poison
from genray.trainers import datasets, poisoning, presets, strategies
from genray.trainers.config import TrainConfig
from genray.trainers.loop import LoopConfig, restore, train_loop_per_worker


@dataclass
class TrainSpec:
    """What a user asks for. Unset values come from the family's presets (trainers/presets.py)."""
    family: str
    name: str | None = None
    dataset: str | None = None
    workers: int = 2
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    seed: int = 0
    limit: int | None = None  # rows per split, for quick runs
    model: dict = field(default_factory=dict)  # overrides of the family's default architecture
    train: dict = field(default_factory=dict)  # overrides of training settings (TrainConfig fields)
    poison: dict | None = None  # a poisoning of the training split (models.robustness.Poison fields)
    exclude: list[str] = field(default_factory=list)  # row keys a defense removes from the training split
    cpus_per_worker: float = 1.0
    use_gpu: bool = False
    placement: str = "PACK"  # Ray's placement of the workers: PACK (fewest nodes) or SPREAD (across nodes)
    max_failures: int = 1
    fresh: bool = False  # discard the run's checkpoints instead of resuming

    def resolved(self) -> "TrainSpec":
        """Checks the arguments and fills in the name and data set (before any data is read)."""
        family_class(self.family)  # fails early on an unknown family
        self.name = self.name or self.family
        parse_ref(self.name)
        self.dataset = self.dataset or presets.default_dataset(self.family)
        if self.dataset is None:
            raise ConfigError(f"family {self.family!r} has no default data set: pass one")
        if self.workers < 1:
            raise ConfigError("workers must be >= 1")
        if self.placement not in ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"):
            raise ConfigError(f"placement must be PACK, SPREAD, STRICT_PACK or STRICT_SPREAD, got {self.placement!r}")
        self.training_config("text")  # bad training settings fail here too
        self.poisoning()
        return self

    def poisoning(self) -> Poison | None:
        try:
            return Poison.from_dict(self.poison) if self.poison else None
        except TypeError as e:
            raise ConfigError(f"poison settings {self.poison}: {e}") from None

    def training_config(self, modality: str) -> TrainConfig:
        explicit = {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr, "seed": self.seed}
        return presets.training_config(self.family, modality,
                                       {**self.train, **{k: v for k, v in explicit.items() if v is not None}})


def model_config(spec: TrainSpec, meta: dict) -> dict:
    cls = family_class(spec.family)
    if not cls.supports(meta["modality"]):
        raise DataError(f"family {spec.family!r} does not model {meta['modality']} (data set {spec.dataset!r})")
    config = {**cls.default_config(meta), **spec.model, "family": cls.family}
    try:
        build(config)  # a bad override fails here, before any worker starts
    except (TypeError, ValueError) as e:
        raise ConfigError(f"model settings {spec.model}: {e}") from None
    return config


@dataclass
class TrainRun:
    """A TorchTrainer ready to fit, with what publishing its result needs."""
    spec: TrainSpec
    trainer: object  # ray.train.torch.TorchTrainer; None for a run only being published
    model_config: dict
    train_config: TrainConfig
    meta: dict  # the prepared data set's

    def fit(self):
        """Runs (or resumes) the training; returns Ray Train's Result and the wall time."""
        t0 = time.time()
        result = self.trainer.fit()
        return result, time.time() - t0


def describe(spec: TrainSpec, storage: Storage) -> TrainRun:
    """The run a spec asks for (data set prepared, settings checked), without a trainer yet."""
    spec = spec.resolved()
    meta = datasets.prepare(spec.dataset, storage)
    config = model_config(spec, meta)
    tc = spec.training_config(meta["modality"])
    if tc.defense != "none" and family_class(spec.family).kind != "classifier":
        raise ConfigError(f"defense {tc.defense!r} trains image classifiers, not {spec.family} models")
    strategies.check(build(config), tc, spec.workers)
    return TrainRun(spec, None, config, tc, meta)


def build_trainer(spec: TrainSpec, storage: Storage, callbacks: list | None = None, *, runs: str = "runs",
                  loop: dict | None = None) -> TrainRun:
    """A TorchTrainer for the spec; its checkpoints go to <storage>/<runs>/<spec.name>. `loop` adds
    settings of the train loop (LoopConfig fields: init_checkpoint, latency_samples, echo, progress)."""
    run, loop_cfg, data = _part(spec, storage, loop or {})
    if spec.fresh:
        storage.delete_dir(storage.path(runs, spec.name))
    _check_resumable(storage, storage.path(runs, spec.name), run.train_config)
    run.trainer = _trainer(spec, spec.name, [loop_cfg], data, storage, runs, callbacks)
    return run


def _part(spec: TrainSpec, storage: Storage, loop: dict) -> tuple[TrainRun, LoopConfig, dict]:
    """What one model's training needs: the run's description, the loop's config and the Ray
    datasets (named "train" and "val", or "train.<part>" and "val.<part>" in a bundle)."""
    run = describe(spec, storage)
    spec, meta, config, tc = run.spec, run.meta, run.model_config, run.train_config
    poison = spec.poisoning()
    if poison:
        poison.check(meta)
    in_memory = datasets.fits_in_memory(meta, storage)
    data = datasets.ray_datasets(meta, storage, spec.limit, materialize=in_memory,
                                 train_transform=poisoning.train_transform(meta, poison, frozenset(spec.exclude)))
    rows = min(meta["train_rows"], spec.limit or meta["train_rows"]) - len(spec.exclude)
    steps_per_epoch = math.ceil(math.ceil(rows / spec.workers) / tc.batch_size)
    loop_cfg = LoopConfig(**{"model": config, "train": tc, "meta": meta, "name": spec.name, "in_memory": in_memory,
                             "total_steps": steps_per_epoch * tc.epochs, **loop})
    return run, loop_cfg, {loop_cfg.data_key(split): ds for split, ds in data.items()}


def _trainer(spec: TrainSpec, name: str, loops: list[LoopConfig], data: dict, storage: Storage, runs: str,
             callbacks: list | None):
    """The TorchTrainer of one model's loop, or of a bundle's loops run one after another."""
    import ray.train
    from ray.train.torch import TorchTrainer

    from genray.trainers.shards import Shards

    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"loop": loops[0] if len(loops) == 1 else loops},  # Ray Train passes the loop a dict
        # With GPUs, Ray Train's process group is NCCL's; on CPUs, gloo's.
        scaling_config=ray.train.ScalingConfig(num_workers=spec.workers, use_gpu=spec.use_gpu,
                                               resources_per_worker={"CPU": spec.cpus_per_worker},
                                               placement_strategy=spec.placement),
        run_config=ray.train.RunConfig(
            name=name, storage_path=storage.uri.rstrip("/") + "/" + runs, callbacks=callbacks,
            failure_config=ray.train.FailureConfig(max_failures=spec.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2)),
        datasets=data,
        # Every worker scores the whole validation split: an equal split would drop rows (all of
        # them when there are fewer rows than workers, as for a short series).
        dataset_config=Shards.cut(data, {cfg.data_key("train"): cfg.in_memory for cfg in loops}, spec.workers),
    )


def _check_resumable(storage: Storage, run_dir: str, tc: TrainConfig) -> None:
    """A run resumes its last checkpoint under the strategy that wrote it (a sharded checkpoint
    holds the optimizer's state in that strategy's shards)."""
    names = storage.listdir(run_dir) if storage.exists(run_dir) else []
    states = sorted(f"{run_dir}/{n}/state.json" for n in names if n.startswith("checkpoint_")
                    and storage.exists(f"{run_dir}/{n}/state.json"))  # named by time
    if states:
        was = storage.read_json(states[-1]).get("strategy", "ddp")
        if was != tc.strategy:
            raise ConfigError(f"the run's checkpoint was trained with strategy {was!r}: resume it with that "
                              f"strategy, or start afresh (--fresh)")


def publish(run: TrainRun, result, wall_time_s: float, storage: Storage, name: str | None = None,
            extra: dict | None = None) -> ModelRecord:
    """Publish the weights of the run's best-validation epoch (its last, for a family without a
    likelihood) to the registry, with the history and the settings that produced them (and
    `extra` metrics). `result` is Ray Train's Result or a checkpoint of the run."""
    checkpoint = getattr(result, "checkpoint", result)
    if checkpoint is None:
        raise RuntimeError(f"run {run.spec.name!r} finished without a checkpoint")
    model = build(run.model_config)
    state = restore(checkpoint, model, best=True)
    history = state["history"]
    chosen = history[state["best_epoch"] - 1] if "best_epoch" in state else (history[-1] if history else {})
    spec = run.spec
    metrics = {**{k: v for k, v in chosen.items() if k != "epoch"}, "epochs": len(history), "history": history,
               "published_epoch": chosen.get("epoch"), "dataset": spec.dataset, "workers": spec.workers,
               "cpus_per_worker": spec.cpus_per_worker, "wall_time_s": wall_time_s, "limit": spec.limit,
               # where the data cache keeps the set's meta: serving and defenses read its held-out rows
               "data_meta": posixpath.join(posixpath.dirname(run.meta["val"]), "meta.json"),
               "training": run.train_config.to_dict()}
    if spec.poison or spec.exclude:
        metrics.update(poison=spec.poisoning().to_dict() if spec.poison else None, excluded_rows=len(spec.exclude))
    metrics.update(extra or {})
    return Registry(storage).publish(name or spec.name, model, metrics)


def train(spec: TrainSpec, storage: Storage, progress=None) -> ModelRecord:
    """Build, fit and publish: one training run from a spec to a registry version. `progress`: a
    cluster.progress.ProgressBoard the run's rank-0 worker reports to (instead of printing)."""
    run = build_trainer(spec, storage, loop={"progress": progress} if progress is not None else None)
    result, wall = run.fit()
    return publish(run, result, wall, storage)


def train_bundle(specs: list[TrainSpec], storage: Storage, name: str, *, runs: str = "runs") -> dict[str, ModelRecord]:
    """Several models trained one after another in one Ray Train run, on one group of workers: the
    run's start-up (workers, process group, data), 10-20 s on a small machine, is paid once instead of
    once a model. Each model is published as soon as its last epoch is reported; the specs share their
    workers' settings. Rerunning the bundle resumes at the model its last checkpoint was written by."""
    from ray.train.v2.api.callback import UserCallback

    first = specs[0]
    shared = ("workers", "cpus_per_worker", "use_gpu", "placement", "max_failures")
    if any(getattr(s, k) != getattr(first, k) for s in specs for k in shared):
        raise ConfigError(f"a bundle's models share their workers: {', '.join(shared)} must be equal")
    names = [spec.resolved().name for spec in specs]
    if len(set(names)) < len(names):
        raise ConfigError(f"a bundle's models need distinct names, got {names}")
    parts = [_part(spec, storage, {"part": spec.name}) for spec in specs]
    if any(s.fresh for s in specs):
        storage.delete_dir(storage.path(runs, name))

    class Publisher(UserCallback):
        """On Train's controller: publishes a model when its last epoch's checkpoint is reported."""

        def __init__(self, runs_by_part: dict[str, TrainRun]):
            self.runs = runs_by_part

        def after_report(self, run_context, metrics, checkpoint):
            run = self.runs[metrics[0]["part"]]
            if checkpoint is not None and metrics[0]["epoch"] == run.train_config.epochs:
                publish(run, checkpoint, metrics[0]["part_s"], storage)

    data = {k: ds for _, _, part_data in parts for k, ds in part_data.items()}
    publisher = Publisher({run.spec.name: run for run, _, _ in parts})
    _trainer(first, name, [cfg for _, cfg, _ in parts], data, storage, runs, [publisher]).fit()
    registry = Registry(storage)
    return {n: registry.record(n) for n in names}
