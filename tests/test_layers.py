"""The layer rules (import-linter contracts in pyproject.toml) and lint hold for the whole tree,
and the contracts do catch a violation."""
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)


def _run(*cmd, cwd=ROOT):
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)


def test_import_contracts_hold():
    r = _run(os.path.join(BIN, "lint-imports"), "--no-cache")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "3 kept, 0 broken" in r.stdout


def test_ruff_passes():
    r = _run(os.path.join(BIN, "ruff"), "check", ".")
    assert r.returncode == 0, r.stdout + r.stderr


def test_contracts_catch_a_model_that_imports_ray_a_server_that_imports_a_trainer_and_a_client_on_torch(tmp_path):
    copy = tmp_path / "repo"
    shutil.copytree(ROOT, copy, symlinks=True, ignore=shutil.ignore_patterns(".venv", ".git", "*.egg-info",
                                                                            "__pycache__", ".gpudata"))
    (copy / "models" / "leak.py").write_text("import ray\n")
    (copy / "services" / "leak.py").write_text("from genray.trainers import run\n")
    client = copy / "genray" / "client.py"
    client.write_text(client.read_text() + "\nimport torch  # noqa: E402\n")
    env = {**os.environ, "PYTHONPATH": str(copy)}
    r = subprocess.run([os.path.join(BIN, "lint-imports"), "--no-cache"], cwd=copy, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1
    assert "genray.models.leak -> ray" in r.stdout and "genray.services.leak -> genray.trainers.run" in r.stdout
    assert "genray.client -> torch" in r.stdout
