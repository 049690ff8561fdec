"""Every benchmark's --smoke mode runs end to end, so that no benchmark breaks silently. Each
runs in a process of its own (they start their own Ray where they need one); timings are printed
by the benchmarks, never asserted here."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# script -> a line its report prints once it has run every part
EXPECT = {
    "applications.py": "target: style distance -70% (on both networks)",
    "composition.py": "target: 0 parallels, 0 range violations, key >= 95%:",
    "explain.py": "| IG on one image, concurrency 1 | served (median) |",
    "gpu_check.py": "same as cpu",
    "parallel.py": "## Recovery: a training worker on the second node SIGKILLed",
    "quality.py": "| series | quality-ar (sunspots) | one-step MSE |",
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
    assert scripts == set(EXPECT)


def _smoke(script: str, *extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return subprocess.run([sys.executable, os.path.join("benchmarks", script), "--smoke", *extra], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("script", sorted(set(EXPECT) - {"applications.py"}))
def test_benchmark_smoke_mode_runs(script):
    r = _smoke(script)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert EXPECT[script] in r.stdout, r.stdout[-4000:]


def test_applications_smoke_runs_on_the_session_models(trained, storage):
    """On the session's digit VAE and flow, style network, music GAN, chorale RNN and summarizers, so
    that it trains nothing (and starts no Ray); after the other smokes, which start Ray clusters of
    their own while the session's is not yet up."""
    r = _smoke("applications.py", "--storage", storage.uri, "--vae", "vae", "--flow", "flow", "--scorer", "summarizer",
               "--abstractor", "abstractor", "--style-net", "brick-net", "--music-gan", "chorale-gan", "--chorale-rnn",
               "chorale", "--reuse")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert EXPECT["applications.py"] in r.stdout, r.stdout[-4000:]
    assert "## Style transfer: a feed-forward network for brick" in r.stdout, r.stdout[-4000:]
    assert "target: the music GAN's pitch-class distance" in r.stdout, r.stdout[-4000:]
    assert "target: the sentence scorer (3 sentences) beats lead-3 on ROUGE-2" in r.stdout, r.stdout[-4000:]
