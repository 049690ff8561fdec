"""Driver side of a training run: data -> TorchTrainer(train_loop_per_worker) -> registry."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from cluster.registry import ModelRecord, Registry, parse_ref
from cluster.storage import Storage
from models.base import build, family_class
from trainers import datasets
from trainers.loop import restore, train_loop_per_worker

# Each family's default data set and loop settings: quick on a laptop, overridable. The batch
# size is per worker; small text batches make more steps in the same time, which pays on CPUs.
DEFAULTS = {
    "markov": {"dataset": "shakespeare", "epochs": 1, "batch_size": 256},
    "transformer": {"dataset": "shakespeare", "epochs": 1, "batch_size": 8, "log_every": 200},
    "rnn": {"dataset": "shakespeare", "epochs": 3, "batch_size": 16, "log_every": 200},
    "vae": {"dataset": "mnist", "epochs": 30, "batch_size": 128},
    "gan": {"dataset": "mnist", "epochs": 30, "batch_size": 64},
    "flow": {"dataset": "mnist", "epochs": 24, "batch_size": 64},
    "ar": {"dataset": "sunspots", "epochs": 1, "batch_size": 64},
}
# Where a family models another modality than its default data set's, these settings win.
MODALITY_DEFAULTS = {
    ("markov", "music"): {"batch_size": 256},
    ("transformer", "music"): {"epochs": 12, "batch_size": 16},
    ("rnn", "music"): {"epochs": 16, "batch_size": 16},
}


@dataclass
class TrainSpec:
    family: str
    name: str | None = None
    dataset: str | None = None
    workers: int = 2
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    seed: int = 0
    limit: int | None = None  # rows per split, for quick runs
    model: dict = field(default_factory=dict)  # overrides of the family's default config
    cpus_per_worker: float = 1.0
    use_gpu: bool = False
    max_failures: int = 1
    fresh: bool = False  # discard the run's checkpoints instead of resuming

    def resolved(self) -> "TrainSpec":
        """Checks the arguments and fills in the name and data set (before any data is read)."""
        family_class(self.family)  # fails early on an unknown family
        self.name = self.name or self.family
        parse_ref(self.name)
        self.dataset = self.dataset or DEFAULTS.get(self.family, {}).get("dataset")
        if self.workers < 1 or (self.epochs or 1) < 1 or (self.batch_size or 1) < 1:
            raise ValueError("workers, epochs and batch_size must be >= 1")
        return self

    def loop_settings(self, modality: str) -> dict:
        d = {**DEFAULTS.get(self.family, {}), **MODALITY_DEFAULTS.get((self.family, modality), {})}
        return {"epochs": self.epochs or d.get("epochs", 1), "batch_size": self.batch_size or d.get("batch_size", 64),
                "log_every": d.get("log_every", 50)}


def model_config(spec: TrainSpec, meta: dict) -> dict:
    cls = family_class(spec.family)
    if not cls.supports(meta["modality"]):
        raise datasets.DataError(f"family {spec.family!r} does not model {meta['modality']} "
                                 f"(data set {spec.dataset!r})")
    config = {**cls.default_config(meta), **spec.model, "family": cls.family}
    build(config)  # a bad override fails here, before any worker starts
    return config


def train(spec: TrainSpec, storage: Storage) -> ModelRecord:
    import ray.train
    from ray.train.torch import TorchTrainer

    spec = spec.resolved()
    meta = datasets.prepare(spec.dataset, storage)
    config = model_config(spec, meta)
    run_dir = storage.path("runs", spec.name)
    if spec.fresh:
        storage.delete_dir(run_dir)
    in_memory = datasets.fits_in_memory(meta, storage)
    data = datasets.ray_datasets(meta, storage, spec.limit, materialize=in_memory)
    settings = spec.loop_settings(meta["modality"])
    loop_cfg = {"model": config, "meta": meta, **settings, "lr": spec.lr, "seed": spec.seed, "name": spec.name,
                "in_memory": in_memory}
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=loop_cfg,
        scaling_config=ray.train.ScalingConfig(num_workers=spec.workers, use_gpu=spec.use_gpu,
                                               resources_per_worker={"CPU": spec.cpus_per_worker}),
        run_config=ray.train.RunConfig(
            name=spec.name, storage_path=storage.uri.rstrip("/") + "/runs",
            failure_config=ray.train.FailureConfig(max_failures=spec.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2)),
        datasets=data,
        # Every worker scores the whole validation split: an equal split would drop rows (all of
        # them when there are fewer rows than workers, as for a short series).
        dataset_config=ray.train.DataConfig(datasets_to_split=["train"]),
    )
    t0 = time.time()
    result = trainer.fit()
    wall = time.time() - t0
    if result.checkpoint is None:
        raise RuntimeError(f"run {spec.name!r} finished without a checkpoint")
    model = build(config)
    state = restore(result.checkpoint, model, best=True)
    history = state["history"]
    chosen = history[state["best_epoch"] - 1] if "best_epoch" in state else (history[-1] if history else {})
    metrics = {**{k: v for k, v in chosen.items() if k != "epoch"}, "epochs": len(history), "history": history,
               "published_epoch": chosen.get("epoch"),
               "dataset": spec.dataset, "workers": spec.workers, "cpus_per_worker": spec.cpus_per_worker,
               "wall_time_s": wall, "limit": spec.limit}
    return Registry(storage).publish(spec.name, model, metrics)

