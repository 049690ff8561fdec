"""The optimization module: search spaces, Tune sweeps over 2-worker Train runs (early stopping,
constraints, several objectives, resuming, promotion) and the capacity planner's LP and QP."""
import os
import signal
import threading

import pytest
import torch

from genray.cli import main
from genray.cluster.registry import Registry
from genray.models.catalog import family_class, family_names
from genray.models.errors import ConfigError
from genray.services import capacity
from genray.trainers import space
from genray.trainers.constraints import Constraint, pareto_front
from genray.trainers.sweep import SweepSpec

TINY = {"n_layer": ("choice", [1]), "n_head": ("choice", [2]), "block_size": ("choice", [32]),
        "dropout": ("choice", [0.0]), "weight_decay": ("choice", [0.0])}


# ---- spaces, constraints, objectives (no Ray) -----------------------------------------------

@pytest.mark.parametrize("family", family_names() + ["classifier"])
def test_every_family_declares_a_valid_space_of_its_own_settings(family):
    cls = family_class(family)
    meta = {"vocab": list("abcdefghij"), "shape": [1, 8, 8], "num_classes": 10, "modality": cls.modality,
            "context": 16}
    if family == "music-gan":  # piano rolls: two channels
        meta.update(rows="bars", shape=[2, 8, 16], lowest=60)
    sp = space.resolve(cls.search_space(meta), {})
    import inspect

    arch = set(inspect.signature(cls.__init__).parameters)
    assert sp and all(name in arch or name in space.TRAINING for name in sp)
    if any(p.requires_grad for p in cls.from_config(cls.default_config(meta)).parameters()):
        assert "lr" in sp  # gradient families search their learning rate


def test_space_overrides_parse_and_translate_to_tune_domains():
    assert space.parse("lr=loguniform:1e-4:3e-3") == ("lr", ("loguniform", 1e-4, 3e-3))
    assert space.parse("n_embd=choice:64,96,128") == ("n_embd", ("choice", [64, 96, 128]))
    assert space.parse("n_layer=int:1:4") == ("n_layer", ("int", 1, 4))
    assert space.parse("cell=gru") == ("cell", ("choice", ["gru"]))
    for bad in ["lr", "lr=loguniform:0:1", "lr=uniform:3:1", "n=int:1.5:3", "n=choice:"]:
        with pytest.raises(ConfigError):
            space.parse(bad)
    sp = space.resolve({"lr": ("loguniform", 1e-4, 1e-2), "n_layer": ("choice", [1, 2])},
                       {"n_layer": ("int", 1, 3), "dropout": 0.1})
    from ray import tune

    domains = space.to_tune(sp)
    assert isinstance(domains["lr"], tune.search.sample.Float) and domains["n_layer"].lower == 1
    assert domains["n_layer"].upper == 4  # inclusive of 3
    assert space.split({"lr": 1e-3, "n_layer": 2}) == ({"n_layer": 2}, {"lr": 1e-3})
    assert space.grid_values(("loguniform", 1e-4, 1e-2)) == pytest.approx([1e-4, 1e-3, 1e-2])
    assert set(space.mutations(sp)) == {"lr"}  # dropout is fixed, n_layer is architecture


def test_space_file(tmp_path):
    f = tmp_path / "space.yaml"
    f.write_text("lr: loguniform:1e-4:1e-2\nn_embd: [choice, [32, 64]]\ndropout: 0.1\n")
    assert space.load(str(f)) == {"lr": ("loguniform", 1e-4, 1e-2), "n_embd": ("choice", [32, 64]),
                                  "dropout": ("choice", [0.1])}


def test_constraints_and_pareto_front():
    c = Constraint.parse("latency_ms<5")
    assert c.holds({"latency_ms": 4.9}) is True and c.holds({"latency_ms": 5}) is False
    assert c.holds({}) is None and str(Constraint.parse("params<=1e6")) == "params<=1e+06"
    for bad in ["latency<5", "val_nll<2", "params=3", "params<abc"]:
        with pytest.raises(ConfigError):
            Constraint.parse(bad)
    pts = [(1.0, 5.0), (2.0, 2.0), (3.0, 1.0), (2.5, 2.5), (1.0, 6.0)]
    assert pareto_front(pts) == [0, 1, 2]


@pytest.mark.parametrize("kwargs, message", [
    ({"family": "gan"}, "no validation likelihood"),
    ({"searcher": "annealing"}, "searcher must be one of"),
    ({"scheduler": "asha", "objectives": ["val_nll", "latency_ms"], "searcher": "nsga2"}, "use --scheduler fifo"),
    ({"searcher": "nsga2", "scheduler": "fifo"}, "several objectives"),
    ({"scheduler": "pbt", "searcher": "tpe"}, "use --searcher random"),
    ({"objectives": ["accuracy"]}, "objectives must be"),
    ({"constraints": ["speed<3"]}, "measured metrics are"),
    ({"family": "classifier", "constraints": ["latency_ms<5"]}, "do not sample"),
    ({"concurrency": 0}, "concurrency must be >= 1"),
])
def test_bad_sweeps_are_refused_before_anything_runs(kwargs, message):
    args = {"family": "transformer", "name": "bad", **kwargs}
    with pytest.raises(ConfigError, match=message):
        SweepSpec(**args).resolved()


def test_cli_refuses_tune_gan_with_a_clear_message(capsys, storage):
    assert main(["tune", "gan", "--name", "g", "--storage", storage.uri]) == 2
    assert "no validation likelihood" in capsys.readouterr().err


def test_concurrent_publishes_of_one_name_take_distinct_versions(storage):
    model = family_class("ar")(max_order=2)
    registry = Registry(storage)
    versions, start = [], threading.Barrier(6)

    def publish():
        start.wait()
        versions.append(registry.publish("race", model, {"val_nll": 0.0}).version)

    threads = [threading.Thread(target=publish) for _ in range(6)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sorted(versions) == [1, 2, 3, 4, 5, 6] and registry.versions("race") == [1, 2, 3, 4, 5, 6]


# ---- sweeps on the session's Ray cluster ----------------------------------------------------

@pytest.fixture(scope="module")
def asha(ray_cluster, storage):
    """ASHA over a learning-rate grid of two 2-worker trials, one at a time (two 2-worker runs would
    share two cores); the bad rate comes after the good one, which ASHA's first rung then stops."""
    from genray.trainers.tuning import run_sweep

    spec = SweepSpec("transformer", name="asha", searcher="grid", scheduler="asha", max_epochs=3, workers=2,
                     limit=128, grace_period=1, reduction_factor=2, concurrency=1,
                     space={**TINY, "n_embd": ("choice", [16]), "lr": ("choice", [1e-2, 1e-5])})
    lines = []
    return run_sweep(spec, storage, promote_as="tuned", echo=lines.append), lines


def test_asha_stops_a_trial_early_and_promotes_the_best_with_its_provenance(asha, storage):
    out, lines = asha
    assert len(out.rows) == 2 and not [r for r in out.rows if r.state == "error"]
    stopped = [r for r in out.rows if r.state == "stopped"]
    assert stopped and all(r.epochs < 3 for r in stopped)
    best = out.best
    assert best.state == "done" and best.config["lr"] == 1e-2 and best.val_nll == min(
        r.val_nll for r in out.rows)
    rec = Registry(storage).record("tuned")
    assert rec.ref == out.promoted.ref
    sweep = rec.metrics["sweep"]
    assert sweep["name"] == "asha" and sweep["rank"] == 1 and sweep["trial"] == best.trial
    assert sweep["searcher"] == "grid" and sweep["config"]["lr"] == 1e-2
    assert rec.metrics["val_nll"] == pytest.approx(best.val_nll)  # the published epoch is the best one
    assert any("epoch 1/3" in line for line in lines) and any("stopped after epoch" in line for line in lines)
    summary = storage.read_json(storage.path("sweeps", "asha", "genray-sweep.json"))
    assert summary["promoted"] == rec.ref and summary["epochs_run"] == sum(r.epochs for r in out.rows) < 6
    assert storage.read_bytes(summary["pictures"]["curves"])[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_rerun_with_other_settings_is_refused_and_bad_spaces_fail_before_any_trial(asha, storage):
    from genray.trainers.sweep import tune_sweep

    changed = SweepSpec("transformer", name="asha", searcher="grid", scheduler="asha", max_epochs=3, workers=2,
                        limit=128, grace_period=1, reduction_factor=2,
                        space={**TINY, "n_embd": ("choice", [32]), "lr": ("choice", [1e-2, 1e-5])})
    with pytest.raises(ConfigError, match="was started with other space"):
        tune_sweep(changed, storage)
    with pytest.raises(ConfigError, match="the grid has 6 configurations and --trials is 4"):
        tune_sweep(SweepSpec("transformer", name="big-grid", searcher="grid", trials=4, limit=128,
                             space={**TINY, "n_embd": ("choice", [16, 32]), "lr": ("loguniform", 1e-3, 1e-2)}),
                   storage)
    for bad, match in [({"lr": ("choice", ["abc"])}, "'lr': the value 'abc' fails"),
                       ({"n_layr": ("choice", [2])}, "not a training setting nor a transformer setting")]:
        with pytest.raises(ConfigError, match=match):
            tune_sweep(SweepSpec("transformer", name="bad-space", limit=128, space=bad), storage)


def test_promoted_model_samples(asha, storage):
    model, rec = Registry(storage).load("tuned")
    text = model.sample(2, generator=torch.Generator().manual_seed(0), max_tokens=20)
    assert len(text) == 2 and all(len(t) == 20 for t in text)


def test_genray_sweeps_lists_the_sweep(asha, storage, capsys):
    assert main(["sweeps", "--storage", storage.uri]) == 0
    out = capsys.readouterr().out
    assert "asha" in out and asha[0].best.trial in out and "tuned@" in out


def test_multi_objective_sweep_with_a_constraint(ray_cluster, storage):
    """NSGA-II on (NLL, sampling latency); a parameter budget marks the wide models infeasible."""
    from genray.trainers.tuning import run_sweep

    spec = SweepSpec("transformer", name="pareto", searcher="nsga2", scheduler="fifo", trials=3, max_epochs=1,
                     workers=1, limit=128, objectives=["val_nll", "latency_ms"], constraints=["params<12000"],
                     space={**TINY, "n_embd": ("choice", [16, 48]), "lr": ("loguniform", 1e-3, 1e-2)}, seed=5)
    out = run_sweep(spec, storage, echo=lambda line: None)
    infeasible = [r for r in out.rows if r.state == "infeasible"]
    feasible = [r for r in out.rows if r.feasible]
    assert infeasible and all(r.config["n_embd"] == 48 and r.rank is None for r in infeasible)
    assert feasible and all(r.measured["params"] < 12000 and r.measured["latency_ms"] > 0 for r in feasible)
    front = [r for r in feasible if r.pareto]
    assert front
    for r in front:  # nothing feasible dominates a member of the front
        assert not any(o.val_nll <= r.val_nll and o.measured["latency_ms"] <= r.measured["latency_ms"] and
                       (o.val_nll, o.measured["latency_ms"]) != (r.val_nll, r.measured["latency_ms"])
                       for o in feasible)
    dominated = [r for r in feasible if not r.pareto]
    for r in dominated:
        assert any(o.val_nll <= r.val_nll and o.measured["latency_ms"] <= r.measured["latency_ms"] for o in front)
    assert storage.read_bytes(out.summary["pictures"]["pareto"])[:4] == b"\x89PNG"


def test_an_interrupted_sweep_resumes_without_rerunning_finished_trials(ray_cluster, storage, capsys, monkeypatch):
    """Ctrl-C (SIGINT) stops a sweep after its first trial; rerunning it finishes the rest only."""
    from genray.trainers.tuning import run_sweep

    spec = dict(family="transformer", name="resumed", searcher="grid", scheduler="fifo", max_epochs=1,
                workers=1, concurrency=1, limit=128,
                space={**TINY, "n_embd": ("choice", [16]), "lr": ("choice", [3e-3, 8e-3])})
    monkeypatch.setenv("TUNE_GLOBAL_CHECKPOINT_S", "0")
    finished = []

    def ctrl_c_after_the_first_trial(line: str) -> None:
        # Tune's loop, where the progress lines come from, runs on this (the main) thread: its
        # SIGINT handler is the one a user's Ctrl-C reaches.
        if line.strip().endswith("finished") and not finished:
            finished.append(line.split()[0])
            os.kill(os.getpid(), signal.SIGINT)

    run_sweep(SweepSpec(**spec), storage, echo=ctrl_c_after_the_first_trial)
    assert finished, "the first trial never finished"
    finished = finished[0]
    capsys.readouterr()

    out = run_sweep(SweepSpec(**spec), storage)
    started = [line.split()[0] for line in capsys.readouterr().out.splitlines() if " start " in line]
    assert len(out.rows) == 2 and all(r.state == "done" for r in out.rows)
    assert finished in {r.trial for r in out.rows} and finished not in started  # not run again
    assert len(started) == 1 and sum(r.epochs for r in out.rows) == 2


# ---- the capacity planner --------------------------------------------------------------------

A = capacity.Demand("A", 45, [capacity.Option(1, 10, 0.5), capacity.Option(2, 22, 0.2)])
B = capacity.Demand("B", 8, [capacity.Option(1, 5, 0.1)])


def test_lp_sizing_meets_the_rates_at_the_known_optimum():
    """A needs 45 req/s: five 1-CPU replicas (50 req/s, 5 CPUs) beat three 2-CPU ones (6 CPUs); B
    needs two. The optimum is 7 CPUs, the LP relaxation's bound below it."""
    p = capacity.size([A, B], capacity=8, utilisation=1.0)
    got = {s.model: (s.cpus, s.replicas) for s in p.sizing}
    assert got == {"A": (1, 5), "B": (1, 2)} and p.cpus == 7
    assert p.lp_bound == pytest.approx(45 / 22 * 2 + 8 / 5) and p.lp_bound <= p.cpus
    assert all(s.throughput >= d.rate for s, d in zip(p.sizing, [A, B]))
    # A latency bound rules the 1-CPU size out: three 2-CPU replicas.
    slow = capacity.Demand("A", 45, A.options, max_latency_s=0.3)
    assert {s.model: (s.cpus, s.replicas) for s in capacity.size([slow, B], 10, utilisation=1.0).sizing}["A"] == (2, 3)
    with pytest.raises(capacity.Infeasible):
        capacity.size([A, B], capacity=6, utilisation=1.0)  # 7 CPUs are the least that meet the rates
    # Headroom: at 80% utilisation A needs 56.25 req/s (6 CPUs either way), B 10 (2 CPUs).
    assert capacity.size([A, B], 16).cpus == 8


def test_qp_placement_balances_node_loads_within_capacity():
    p = capacity.size([A, B], capacity=8, utilisation=1.0)
    placement, loads = capacity.place(p.sizing, {"a": 4, "b": 4})
    assert sorted(loads.values()) == [3.0, 4.0]  # 7 CPUs: the most even integer split
    assert sum(placement[n].get("A", 0) for n in placement) == 5
    # A small node takes what fits; the rest of the load goes to the big one: loads 2 and 5.
    placement, loads = capacity.place(p.sizing, {"small": 2, "big": 8})
    assert loads == {"small": 2.0, "big": 5.0}
    with pytest.raises(capacity.Infeasible):
        capacity.place(p.sizing, {"a": 3, "b": 3})
    # Three 2-CPU replicas fit two 3-CPU nodes as fractions, not as whole replicas.
    with pytest.raises(capacity.Infeasible, match="do not pack"):
        capacity.place([capacity.Sizing("C", 2, 3, 3, 30.0, 0.1)], {"a": 3, "b": 3})
    assert capacity.serve_args(p)["A"] == {"min_replicas": 5, "max_replicas": 5, "cpus": 1}


def test_a_run_started_from_another_runs_checkpoint_takes_its_own_lr(asha, storage):
    """PBT's exploit: the restored optimizer and schedule state carry the old lr; the new config wins."""
    from ray.train import Checkpoint

    from genray.trainers.run import TrainSpec, build_trainer

    best = asha[0].best
    spec = TrainSpec("transformer", name="exploit", workers=2, limit=128, epochs=4, lr=7e-3,
                     model={"n_layer": 1, "n_head": 2, "block_size": 32, "n_embd": 16, "dropout": 0.0},
                     train={"weight_decay": 0.0, "log_every": 0})
    run = build_trainer(spec, storage, loop={"init_checkpoint": Checkpoint(best.checkpoint_path,
                                                                           filesystem=storage.fs)})
    result, _ = run.fit()
    assert result.metrics["epoch"] == 4  # continued after the checkpoint's third epoch
    assert result.metrics["lr"] == pytest.approx(7e-3) and best.config["lr"] == 1e-2


def test_genray_plan_probes_served_models_and_writes_their_autoscaling_bounds(trained, storage, tmp_path, capsys):
    import yaml

    from genray.services.app import ServeOptions, app, build_apps, model_app

    out = tmp_path / "plan.yaml"
    assert main(["plan", "--storage", storage.uri, "--rate", "vae=40", "--rate", "markov=5", "--sizes", "0.5,1",
                 "--n", "4", "--max-batch-size", "32", "--nodes", "a=2,b=2", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "LP relaxation bound" in printed and "a: load" in printed
    args = yaml.safe_load(out.read_text())["applications"][0]["args"]
    replicas = args["replicas"]
    assert set(replicas) == {"vae", "markov"} and args["models"] == ["markov", "vae"]
    for plan in replicas.values():
        assert 1 <= plan["min_replicas"] <= plan["max_replicas"] and plan["cpus"] in (0.5, 1.0)
    assert sum(p["min_replicas"] * p["cpus"] for p in replicas.values()) <= 4
    build_apps(storage.uri, ["vae", "markov"], ServeOptions(replicas=replicas, auth=False))  # the app takes the plan
    # The file `serve deploy` reads: the gateway, and each generative model's own application.
    apps = yaml.safe_load(out.read_text())["applications"]
    assert [(a["name"], a["route_prefix"]) for a in apps] == [
        ("genray", "/"), ("genray-markov", "/v1/generate/markov"), ("genray-vae", "/v1/generate/vae")]
    for a in apps:
        builder = {"genray.services.app:app": app, "genray.services.app:model_app": model_app}[a["import_path"]]
        assert builder({**a["args"], "auth": False}) is not None
    assert main(["plan", "--storage", storage.uri, "--rate", "vae=1e9", "--nodes", "2", "-o", str(out)]) == 2
    assert "no plan meets the target rates" in capsys.readouterr().err
