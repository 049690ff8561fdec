"""Hyperparameter sweeps on Ray Tune, each trial a Ray Train run of the one training loop.

Ray Train V2 runs under Tune as a function trainable that starts a TorchTrainer (Tuner(TorchTrainer)
is gone). The trial's driver holds a sliver of a CPU; its Train workers hold the cores, and the
number of trials run at once is what the cluster's CPUs fit, so the others wait their turn.
Each Train report is relayed to Tune through a one-slot queue, as Ray's TuneReportCallback does; that
callback forwards metrics only, and PBT needs each trial's checkpoint to clone it, so the relay here
forwards both (the checkpoint is copied into Tune's trial only under PBT). A trial's Train run is
named after the trial, so a trial that Tune retries, or a sweep that is resumed, continues from the
run's last checkpoint.

Layout under the storage root: sweeps/<sweep>/ (Tune's experiment, plus genray-sweep.json and the
pictures) and runs/sweeps/<sweep>/<trial>/ (each trial's Train run).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field

from genray.cluster.connect import quiet_data
from genray.cluster.storage import Storage
from genray.models.catalog import family_class
from genray.models.errors import ConfigError
from genray.trainers import presets, space
from genray.trainers.constraints import METRICS, Constraint, objectives
from genray.trainers.run import TrainSpec, build_trainer, describe, model_config

SEARCHERS = ("random", "grid", "tpe", "cmaes", "gp", "nsga2")
SCHEDULERS = ("fifo", "asha", "hyperband", "pbt")
# What a trial reports for each objective: the NLL objective is the trial's best epoch, which is
# also the epoch that promotion publishes.
REPORTED = {"val_nll": "best_val_nll"}
DRIVER_CPU = 0.01  # the trial's own actor: it waits on its Train run


@dataclass
class SweepSpec:
    family: str
    name: str
    dataset: str | None = None
    trials: int = 8
    max_epochs: int = 4
    workers: int = 2
    cpus_per_worker: float = 1.0
    searcher: str = "random"
    scheduler: str = "asha"
    space: dict = field(default_factory=dict)  # overrides of the family's default space
    constraints: list[str] = field(default_factory=list)  # e.g. "latency_ms<5"
    objectives: list[str] = field(default_factory=lambda: ["val_nll"])
    time_budget_s: float | None = None
    concurrency: int | None = None  # trials at once; default: as many as the CPUs fit
    seed: int = 0
    limit: int | None = None  # rows per split
    model: dict = field(default_factory=dict)  # fixed architecture settings
    train: dict = field(default_factory=dict)  # fixed training settings
    grace_period: int = 1  # epochs before ASHA / HyperBand may stop a trial
    reduction_factor: int = 3
    perturbation_interval: int = 1  # epochs between PBT's exploit/explore steps
    latency_samples: int = 4  # samples drawn to time sampling after a trial's first epoch
    max_failures: int = 1  # retries of a failed trial, each from its checkpoint
    fresh: bool = False

    def resolved(self) -> "SweepSpec":
        cls = family_class(self.family)
        if cls.nll_unit is None:
            raise ConfigError(f"tune {self.family}: the family reports no validation likelihood for schedulers and "
                              f"searchers to act on; tune a family that has one")
        TrainSpec(self.family, name=self.name, dataset=self.dataset, workers=self.workers).resolved()
        self.dataset = self.dataset or presets.default_dataset(self.family)
        if self.searcher not in SEARCHERS:
            raise ConfigError(f"searcher must be one of {list(SEARCHERS)}, got {self.searcher!r}")
        if self.scheduler not in SCHEDULERS:
            raise ConfigError(f"scheduler must be one of {list(SCHEDULERS)}, got {self.scheduler!r}")
        if self.trials < 1 or self.max_epochs < 1 or self.grace_period < 1 or self.reduction_factor < 2:
            raise ConfigError("trials, max_epochs and grace_period must be >= 1 and reduction_factor >= 2")
        if (self.concurrency is not None and self.concurrency < 1) or not self.cpus_per_worker > 0:
            raise ConfigError("concurrency must be >= 1 and cpus_per_worker > 0")
        if self.time_budget_s is not None and not self.time_budget_s > 0:
            raise ConfigError("the time budget must be > 0")
        objectives(self.objectives)
        measured = {c.metric for c in self.constraint_list} | set(self.objectives)
        if "latency_ms" in measured and cls.kind != "generative":
            raise ConfigError(f"{self.family} models do not sample: no latency_ms to constrain or optimise")
        if len(self.objectives) > 1:
            if self.scheduler != "fifo":
                raise ConfigError("several objectives: a scheduler stops trials on one metric; use --scheduler fifo")
            if self.searcher not in ("random", "tpe", "nsga2"):
                raise ConfigError("several objectives: use --searcher nsga2 (or tpe, random)")
        elif self.searcher == "nsga2":
            raise ConfigError("nsga2 searches several objectives: pass --objectives val_nll,latency_ms")
        if self.scheduler == "pbt" and self.searcher != "random":
            raise ConfigError("pbt draws its population at random and mutates it: use --searcher random")
        return self

    @property
    def constraint_list(self) -> list[Constraint]:
        return [Constraint.parse(c) for c in self.constraints]

    def search_space(self, meta: dict) -> dict[str, tuple]:
        resolved = space.resolve(family_class(self.family).search_space(meta), self.space)
        if self.scheduler == "pbt" and not space.mutations(resolved):
            raise ConfigError("pbt perturbs training settings (e.g. lr); the space has none that vary")
        return resolved

    def trial_spec(self, params: dict, run_name: str) -> TrainSpec:
        model, train = space.split(params)
        return TrainSpec(self.family, name=run_name, dataset=self.dataset, workers=self.workers,
                         epochs=self.max_epochs, seed=self.seed, limit=self.limit,
                         model={**self.model, **model}, train={**self.train, "log_every": 0, **train},
                         cpus_per_worker=self.cpus_per_worker, max_failures=1)


def runs_dir(sweep: str) -> str:
    return f"runs/sweeps/{sweep}"


def _relay(queue, ack):
    """A Train callback that forwards each report (rank 0's metrics, the checkpoint) to the trial and
    waits until Tune has taken it: a scheduler's decision comes before the next epoch, and the
    checkpoint a trial last reported is one Train still keeps."""
    from ray.train.v2.api.callback import UserCallback

    class Relay(UserCallback):
        def after_report(self, run_context, metrics, checkpoint):
            queue.put((metrics[0], checkpoint))
            ack.get()

    return Relay()


def run_trial(params: dict, *, sweep: dict, storage_root: str) -> None:
    """Tune's trainable: one Train run with the sampled `params`, its epochs reported to Tune."""
    from ray import tune
    from ray.util.queue import Queue

    spec = SweepSpec(**sweep)
    storage = Storage(storage_root)
    quiet_data()
    trial_id = tune.get_context().get_trial_id()
    start = tune.get_checkpoint()
    # A trial restarted from a Tune checkpoint (PBT's exploit: another trial's weights) trains as a
    # new Train run; a retry from the same checkpoint finds that run and resumes it.
    run_name = trial_id if start is None else f"{trial_id}-{hashlib.sha1(start.path.encode()).hexdigest()[:8]}"
    loop = {"latency_samples": spec.latency_samples, "echo": False, **({"init_checkpoint": start} if start else {})}
    queue, ack = (Queue(maxsize=1, actor_options={"num_cpus": 0}) for _ in range(2))
    run = build_trainer(spec.trial_spec(params, run_name), storage, callbacks=[_relay(queue, ack)],
                        runs=runs_dir(spec.name), loop=loop)
    failure: list[BaseException] = []

    def fit():
        try:
            run.trainer.fit()
        except BaseException as e:  # re-raised in the trial's thread, where Tune sees it
            failure.append(e)
        finally:
            queue.put(None)

    threading.Thread(target=fit, daemon=True, name=f"train-{trial_id}").start()
    keep = spec.scheduler == "pbt"
    while (item := queue.get()) is not None:
        metrics, checkpoint = item
        metrics = {**metrics, "checkpoint_path": checkpoint.path if checkpoint else None}
        if keep and checkpoint:
            # PBT clones a trial from its Tune checkpoint: a copy of the Train checkpoint, which
            # the Train run's own retention may delete before another trial restores it.
            with tempfile.TemporaryDirectory() as d, checkpoint.as_directory() as src:
                shutil.copytree(src, d, dirs_exist_ok=True)
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))
        else:
            tune.report(metrics)
        ack.put(True)  # Tune asked for the next result: the trial goes on
    if failure:
        raise failure[0]


def make_searcher(spec: SweepSpec, running: int):
    """Tune's searcher for the spec: its own variant generator (seeded) for random and grid,
    Optuna's samplers for the rest."""
    if spec.searcher in ("random", "grid"):
        from ray.tune.search import BasicVariantGenerator

        return BasicVariantGenerator(random_state=spec.seed, max_concurrent=running)
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    from genray.trainers.samplers import NSGAIISampler

    samplers = {"tpe": lambda: optuna.samplers.TPESampler(seed=spec.seed),
                "cmaes": lambda: optuna.samplers.CmaEsSampler(seed=spec.seed, warn_independent_sampling=False),
                "gp": lambda: optuna.samplers.GPSampler(seed=spec.seed),
                # The first generation is random: a small sweep gets a small one, so it evolves.
                "nsga2": lambda: NSGAIISampler(seed=spec.seed, population_size=min(50, max(4, spec.trials // 3)))}
    metric = [REPORTED.get(o, o) for o in spec.objectives]
    mode = [METRICS[o] for o in spec.objectives]
    if len(metric) == 1:
        metric, mode = metric[0], mode[0]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from ray.tune.search import ConcurrencyLimiter

    return ConcurrencyLimiter(OptunaSearch(sampler=samplers[spec.searcher](), metric=metric, mode=mode), running)


def make_scheduler(spec: SweepSpec, space_: dict):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, HyperBandScheduler, PopulationBasedTraining

    # Schedulers act on each epoch's validation NLL; "epoch" counts on across a trial's restarts.
    common = {"time_attr": "epoch", "metric": "val_nll", "mode": "min"}
    if spec.scheduler == "asha":
        return ASHAScheduler(max_t=spec.max_epochs, grace_period=spec.grace_period,
                             reduction_factor=spec.reduction_factor, **common)
    if spec.scheduler == "hyperband":
        return HyperBandScheduler(max_t=spec.max_epochs, reduction_factor=spec.reduction_factor, **common)
    if spec.scheduler == "pbt":
        running = concurrency(spec)
        if running < 2:
            raise ConfigError("pbt exploits trials running beside each other; the cluster fits one at a time "
                              "(use fewer --workers per trial)")
        # At least one trial in the top and the bottom quantile of those running.
        return PopulationBasedTraining(perturbation_interval=spec.perturbation_interval,
                                       hyperparam_mutations=space.mutations(space_),
                                       quantile_fraction=min(0.5, max(0.25, 1.0 / running + 1e-6)),
                                       resample_probability=0.25, synch=False, **common)
    return FIFOScheduler()


def concurrency(spec: SweepSpec) -> int:
    """Trials that run at once: what the cluster's CPUs fit (each trial's workers hold theirs), or
    fewer if asked. The rest wait as PENDING; none fails for want of resources."""
    import ray

    cpus, need = ray.cluster_resources().get("CPU", 1), spec.workers * spec.cpus_per_worker
    if need + DRIVER_CPU > cpus:
        raise ConfigError(f"a trial's {spec.workers} worker(s) need {need:g} CPUs (and its driver "
                          f"{DRIVER_CPU:g}); the cluster has {cpus:g}")
    fits = max(1, int((cpus - 1) // need))  # one CPU left for Ray Data's tasks
    return min(fits, spec.concurrency) if spec.concurrency else fits


def experiment_path(storage: Storage, name: str) -> str:
    return storage.uri.rstrip("/") + f"/sweeps/{name}"


def tune_sweep(spec: SweepSpec, storage: Storage, callbacks: list | None = None):
    """Run (or resume) the sweep; returns Tune's ResultGrid, the space searched and the wall time."""
    from ray import tune

    spec = spec.resolved()
    run = describe(spec.trial_spec({}, "probe"), storage)
    space_ = spec.search_space(run.meta)
    _check_values(spec, run, space_)
    path = experiment_path(storage, spec.name)
    if spec.fresh:
        storage.delete_dir(storage.path("sweeps", spec.name))
        storage.delete_dir(storage.path(runs_dir(spec.name)))
    _same_as_before(spec, storage)
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, sweep=asdict(spec), storage_root=storage.uri), {"cpu": DRIVER_CPU})
    t0 = time.time()
    if tune.Tuner.can_restore(path):
        tuner = tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=True)
        # Tune restores the first run's callbacks, pickled with the experiment (their echo a closed
        # console, say): this call's progress goes where this caller says. Ray has no public setter.
        local = getattr(tuner, "_local_tuner", None)
        if local is not None:
            local.get_run_config().callbacks = callbacks
    else:
        param_space, samples = space.to_tune(space_), spec.trials
        if spec.searcher == "grid":
            param_space, size = space.to_grid(space_)
            if size > spec.trials:
                raise ConfigError(f"the grid has {size} configurations and --trials is {spec.trials}: "
                                  f"narrow the space with --space, or raise --trials")
            samples = 1
        tuner = tune.Tuner(
            trainable, param_space=param_space,
            tune_config=tune.TuneConfig(search_alg=make_searcher(spec, concurrency(spec)),
                                        scheduler=make_scheduler(spec, space_), num_samples=samples,
                                        time_budget_s=spec.time_budget_s),
            run_config=tune.RunConfig(
                name=spec.name, storage_path=storage.uri.rstrip("/") + "/sweeps", verbose=0,
                callbacks=callbacks, stop=Infeasible(spec.constraint_list),
                failure_config=tune.FailureConfig(max_failures=spec.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=None)))
    grid = tuner.fit()
    return grid, space_, time.time() - t0


SPEC = "genray-spec.json"
# What a rerun may change: how long and how wide it runs, not what it searches.
MAY_CHANGE = {"fresh", "time_budget_s", "concurrency", "max_failures"}


def _same_as_before(spec: SweepSpec, storage: Storage) -> None:
    """A sweep resumes with the settings it started with (Tune restores its searcher, space and
    stopper): a rerun that asks for other ones is refused rather than mixed in."""
    path = storage.path("sweeps", spec.name, SPEC)
    mine = {k: v for k, v in json.loads(json.dumps(asdict(spec))).items() if k not in MAY_CHANGE}
    if storage.exists(path):
        before = {k: v for k, v in storage.read_json(path).items() if k not in MAY_CHANGE}
        changed = sorted(k for k in mine if before.get(k) != mine[k])
        if changed:
            raise ConfigError(f"sweep {spec.name!r} was started with other {', '.join(changed)}: rerun it with the "
                              f"same settings to resume, or pass --fresh to start it over")
    else:
        storage.write_json(path, mine)


def _check_values(spec: SweepSpec, run, space_: dict) -> None:
    """Each dimension's values (a range's ends) make a valid training config and model, an
    architecture value on the first value of the other architecture dimensions: a misspelt name or a
    bad value fails here, not in every trial."""
    import inspect

    arch = set(inspect.signature(family_class(spec.family).__init__).parameters) - {"self"}
    # Training settings stand alone; an architecture setting goes with the others (n_embd and n_head).
    base = {name: space.grid_values(dim, 2)[0] for name, dim in space_.items() if name not in space.TRAINING}
    for name in space_:
        if name not in space.TRAINING and name not in arch:
            raise ConfigError(f"search space {name!r}: not a training setting nor a {spec.family} setting")
    for name, dim in space_.items():
        for value in space.grid_values(dim, 2):
            try:
                _probe(spec, run, {name: value} if name in space.TRAINING else {**base, name: value})
            except (ConfigError, TypeError, ValueError) as e:
                raise ConfigError(f"search space {name!r}: the value {value!r} fails: {e}") from None


def _probe(spec: SweepSpec, run, params: dict) -> None:
    trial = spec.trial_spec(params, "probe")
    model_config(trial, run.meta)
    trial.training_config(run.meta["modality"])


class Infeasible:
    """Tune stopper: a trial that breaks a constraint stops at its first report (the measured
    properties are fixed by the architecture), so no epochs go to a model that cannot be promoted."""

    def __init__(self, constraints: list[Constraint]):
        self.constraints = constraints

    def __call__(self, trial_id: str, result: dict) -> bool:
        return any(c.holds(result) is False for c in self.constraints)


def quiet_tune() -> None:
    """Tune's own console output (its boxes and tables) off: the sweep prints its progress."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("RAY_TUNE_DISABLE_DEPRECATION_WARNINGS", "1")


def finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
