"""Every benchmark's --smoke mode runs end to end, so that no benchmark breaks silently. Each
runs in a process of its own, on a Ray cluster of its own where it needs one, or as a driver on
the session's; timings are printed by the benchmarks, never asserted here."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
# script -> a line its report prints once it has run every part
EXPECT = {
    "applications.py": "target: worst pair's mean texture-statistics fall >= 0.7",
    "composition.py": "target: 0 parallels, 0 range violations, key >= 95%:",
    "explain.py": "| IG on one image, concurrency 1 | served (median) |",
    "gpu_check.py": "same as cpu",
    "parallel.py": "## Recovery: a training worker on the second node SIGKILLed",
    "quality.py": "| series | quality-ar (sunspots) | one-step MSE, sunspots |",
    "robustness.py": "| eps | scored real (clean) | scored real (attacked) | fooled | time |",
    "sampling.py": "identical samples with and without the cache, same seeds: True",
    "serve_faults.py": "| process | RSS before (MiB) | RSS after | growth |",
    "serve_throughput.py": "plain FastAPI (unbatched)",
    "train_overhead.py": "epoch-time ratio genray/bare",
    "tune.py": "Tune overhead per trial:",
}


def test_every_benchmark_script_has_a_smoke_run():
    scripts = {f for f in os.listdir(os.path.join(ROOT, "benchmarks")) if f.endswith(".py")
               and "__main__" in open(os.path.join(ROOT, "benchmarks", f)).read()}
    assert scripts - {"render.py"} == set(EXPECT)  # render.py writes the doc; its check is below


def test_the_docs_tables_are_what_the_records_render():
    r = subprocess.run([sys.executable, os.path.join("benchmarks", "render.py"), "--check"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]


def test_render_fails_on_a_changed_number_and_on_a_missing_record(tmp_path):
    import json

    from benchmarks import render
    from benchmarks.record import Record

    class Args:
        n = 3

    rec = Record("demo", "part", Args(), seeds=[0, 1], out_dir=str(tmp_path))
    rec.table("t", "A table", ["model", "accuracy"], [["a", 0.5]])
    assert rec.target("accuracy >= 0.6", 0.5, ">=", 0.6) is False  # the verdict is computed, not written
    rec.save()
    doc = "Prose.\n<!-- record demo-part -->\nstale\n<!-- end record -->\nMore prose.\n"
    out = render.render(doc, str(tmp_path))
    assert "| a | 0.5000 |" in out and "**missed**" in out and out.startswith("Prose.") and "stale" not in out
    assert render.render(out, str(tmp_path)) == out
    data = json.loads((tmp_path / "demo-part.json").read_text())
    data["tables"]["t"]["rows"][0][1] = "0.9000"
    (tmp_path / "demo-part.json").write_text(json.dumps(data))
    assert render.render(out, str(tmp_path)) != out
    with pytest.raises(SystemExit, match="does not exist"):
        render.render(doc.replace("demo-part", "no-such-run"), str(tmp_path))


def _smoke(script: str, *extra: str, address: str | None = None) -> subprocess.CompletedProcess:
    """A benchmark's smoke run in a process of its own, on a Ray cluster of its own or on `address`'s."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    if address:
        env["RAY_ADDRESS"] = address
    return subprocess.run([sys.executable, os.path.join("benchmarks", script), "--smoke", *extra], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)


ON_THEIR_OWN = {"applications.py", "explain.py", "parallel.py", "robustness.py", "tune.py"}  # tests below


@pytest.mark.parametrize("script", sorted(set(EXPECT) - ON_THEIR_OWN))
def test_benchmark_smoke_mode_runs(script):
    r = _smoke(script)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert EXPECT[script] in r.stdout, r.stdout[-4000:]


def test_parallel_smoke_trains_hybrid_and_a_two_node_run_survives_a_killed_worker(tmp_path):
    """On a real 2-node cluster of its own (a head and a worker raylet, 2 CPUs each): the hybrid 2 x 2
    mesh on 4 workers, then 2 workers spread over both nodes, the one on the second node SIGKILLed
    after the first checkpoint; the run resumes from it, finishes and publishes."""
    import json

    from genray.cluster.registry import Registry
    from genray.cluster.storage import Storage

    r = _smoke("parallel.py", "--storage", str(tmp_path), "--results", str(tmp_path / "results"),
               "--precision", "bf16")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert EXPECT["parallel.py"] in r.stdout, r.stdout[-4000:]
    record = json.loads((tmp_path / "results" / "parallel.json").read_text())
    assert record["figures"]["recovery: a worker was killed"] is True, "training finished before a worker was killed"
    registry = Registry(Storage(str(tmp_path)))
    m = registry.record("nodes-killed").metrics
    assert m["nodes"] == 2  # SPREAD: one worker on each node
    assert m["training"]["precision"] == "bf16"
    assert [h["epoch"] for h in m["history"]] == [1, 2, 3]
    assert m["history"][-1]["val_nll"] < m["history"][0]["val_nll"]
    hybrid = registry.record("par-hybrid").metrics
    assert hybrid["workers"] == 4 and hybrid["training"]["strategy"] == "hybrid"
    assert hybrid["split_layer_share"] <= 0.3  # tensor-split over 2, then sharded over 2


def test_tune_smoke_runs_on_the_session_cluster(ray_cluster):
    r = _smoke("tune.py", address=_address())
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert EXPECT["tune.py"] in r.stdout, r.stdout[-4000:]


def _address() -> str:
    import ray

    return ray.get_runtime_context().gcs_address


def _session_models(storage, names, tmp_path) -> None:
    """The session's models, copied into a registry of a smoke's own (which may add models to it)."""
    import shutil

    for name in names:
        shutil.copytree(storage.path("models", name), tmp_path / "models" / name)


def test_explain_smoke_runs_on_the_session_models(trained, storage, tmp_path):
    # On a Ray cluster of its own: the Serve instance its served part starts would outlive it on the
    # session's, on another port than the serving tests' own.
    _session_models(storage, ("classifier", "transformer", "markov", "ar"), tmp_path)
    r = _smoke("explain.py", "--storage", str(tmp_path), "--alias",
               "classifier=classifier,transformer=transformer,markov=markov,ar=ar")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert EXPECT["explain.py"] in r.stdout, r.stdout[-4000:]


def test_robustness_smoke_writes_a_record_per_part_with_computed_verdicts(trained, storage, tmp_path):
    """On the session's digit classifier, VAE, flow and GAN (copied into a registry of its own, so
    that its poisoned and sanitized models stay out of the session's), training only what they
    cannot stand in for: the adversarial and poisoned models."""
    import json

    _session_models(storage, ("classifier", "vae", "flow", "gan"), tmp_path)
    r = _smoke("robustness.py", "--storage", str(tmp_path), "--alias",
               "robust-standard=classifier,robust-vae=vae,robust-flow=flow,robust-gan=gan", address=_address())
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert EXPECT["robustness.py"] in r.stdout, r.stdout[-4000:]
    records = {p.stem: json.loads(p.read_text()) for p in (tmp_path / "results").glob("*.json")}
    assert set(records) == {f"robustness-{p}" for p in ("evasion", "backdoor", "detection", "generative")}
    evasion = records["robustness-evasion"]
    assert evasion["command"].startswith("python benchmarks/robustness.py --smoke") and evasion["wall_s"] > 0
    header = evasion["tables"]["evasion"]["header"]
    assert {"PGD-100x5 .3", "AutoAttack .3", "worst case .3"} <= set(header)
    assert [c[0] for c in evasion["tables"]["sanity"]["rows"]] == ["eps grows", "more effort", "black box",
                                                                    "unbounded"]
    for t in evasion["targets"]:
        assert t["met"] == {">=": t["value"] >= t["bound"], "==": t["value"] == t["bound"]}[t["op"]]


def test_applications_smoke_runs_on_the_session_models(trained, storage):
    """On the session's digit VAE and flow, style network, music GAN, chorale RNN and summarizers, so
    that it trains nothing (and starts no Ray); after the other smokes, which start Ray clusters of
    their own while the session's is not yet up."""
    r = _smoke("applications.py", "--storage", storage.uri, "--vae", "vae", "--flow", "flow", "--scorer", "summarizer",
               "--abstractor", "abstractor", "--style-net", "brick-net", "--music-gan", "chorale-gan", "--chorale-rnn",
               "chorale", "--reuse")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert EXPECT["applications.py"] in r.stdout, r.stdout[-4000:]
    assert "Style transfer: a feed-forward network for brick" in r.stdout, r.stdout[-4000:]
    assert "target: the music GAN's pitch-class distance over" in r.stdout, r.stdout[-4000:]
    assert "target: the sentence scorer (3 sentences) beats lead-3 on ROUGE-2" in r.stdout, r.stdout[-4000:]
