"""The layer rules (import-linter contracts in pyproject.toml) and lint hold for the whole tree,
and the contracts do catch a violation."""
import ast
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


# Above models/, a family is never special-cased by name: what a family can do is declared on its
# class (models/catalog.py) and read through models/'s catalogs.
NO_FAMILY_CHECKS = ("services", "genray/cli", "genray/client.py", "trainers", "cluster")
NO_FAMILY_TABLES = ("services", "genray/cli", "genray/client.py")  # trainers' presets are per family


def _python_files(root, parts):
    for part in parts:
        path = os.path.join(root, part)
        if path.endswith(".py") and os.path.exists(path):
            yield path
        for d, _, files in os.walk(path):
            yield from (os.path.join(d, f) for f in files if f.endswith(".py"))


def family_checks(root=ROOT) -> list[str]:
    """file:line of each comparison of a family with a family's name, and (services and the CLI) of
    each table keyed by family names."""
    from genray.models.catalog import family_names

    names = set(family_names(None))

    def named(node) -> bool:
        elts = node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else [node]
        return any(isinstance(e, ast.Constant) and e.value in names for e in elts)

    found = []
    for scope, rule in ((NO_FAMILY_CHECKS, "compare"), (NO_FAMILY_TABLES, "table")):
        for path in _python_files(root, scope):
            for node in ast.walk(ast.parse(open(path).read(), path)):
                # A comparison of a family (not a kind, not a model's name) with a family's name.
                operands = [node.left, *node.comparators] if isinstance(node, ast.Compare) else []
                hit = (rule == "compare" and any(map(named, operands))
                       and any("family" in ast.unparse(o) and not (isinstance(o, ast.Attribute) and o.attr == "kind")
                               for o in operands)
                       or rule == "table" and isinstance(node, ast.Dict) and any(k is not None and named(k)
                                                                                 for k in node.keys))
                if hit:
                    found.append(f"{os.path.relpath(path, root)}:{node.lineno}")
    return sorted(set(found))


def test_no_layer_above_models_special_cases_a_family():
    assert family_checks() == []


def test_the_family_rule_catches_a_planted_check_and_table(tmp_path):
    (tmp_path / "services").mkdir()
    (tmp_path / "services" / "planted.py").write_text(
        "def fields(config):\n"
        "    if config['family'] == 'vae':\n"
        "        return {'gan': ('n', 'seed')}\n"
        "    return config.get('family') in ('ar', 'flow')\n")
    assert family_checks(tmp_path) == ["services/planted.py:2", "services/planted.py:3", "services/planted.py:4"]
