"""The Grafana dashboard and the Prometheus configs: every panel's PromQL parses (Prometheus'
own promtool), names metrics that genray's gateway or the installed Ray Serve export, and the
configs load."""
import glob
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DASHBOARD = os.path.join(ROOT, "deploy", "grafana", "genray-dashboard.json")
# Grafana's own variables are not PromQL: promtool sees what Grafana sends.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1m"}


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool", path=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    assert found, "promtool is missing: `make test` takes it from Debian's prometheus package"
    return found


def _exprs() -> list[tuple[str, str]]:
    with open(DASHBOARD) as f:
        dash = json.load(f)
    out = [(p["title"], t["expr"]) for p in dash["panels"] for t in p["targets"]]
    assert len(dash["panels"]) >= 10 and out
    return out


def test_every_panel_expression_parses(promtool, tmp_path):
    rules = ["groups:", "  - name: genray-dashboard", "    rules:"]
    for i, (_, expr) in enumerate(_exprs()):
        for var, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(var, value)
        rules += [f"      - record: genray:panel_{i}", f"        expr: {json.dumps(expr)}"]
    path = tmp_path / "dashboard-rules.yml"
    path.write_text("\n".join(rules) + "\n")
    r = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{len(_exprs())} rules found" in r.stdout

    broken = tmp_path / "broken.yml"
    broken.write_text(path.read_text().replace("sum by (model, status)", "sum by (model, status", 1))
    assert subprocess.run([promtool, "check", "rules", str(broken)], capture_output=True).returncode != 0


def test_panels_name_metrics_that_exist():
    from prometheus_client import generate_latest

    from genray.services.metrics import ServiceMetrics
    from genray.services.spec import SPECS

    m = ServiceMetrics(SPECS.values())
    m.request("generate", "vae", "json", 200, 0.1)
    m.generated("vae", 1, 1)
    for spec in SPECS.values():
        m.request(spec.name, "c", "m", 200, 1.0)
    exported = set(re.findall(r"^(genray_\w+?)(?:\{| )", generate_latest(m.registry).decode(), re.M))
    serve_source = "".join(open(f).read() for f in glob.glob(os.path.join(
        os.path.dirname(__import__("ray.serve").serve.__file__), "_private", "*.py")))
    ray_serve = {"ray_" + n for n in re.findall(r'"(serve_\w+)"', serve_source)}
    used = {name for _, expr in _exprs() for name in re.findall(r"\b((?:genray|ray_serve)_\w+)", expr)}
    missing = sorted(n for n in used if n not in exported | ray_serve)
    assert not missing, missing
    assert {"genray_generate_requests_total", "genray_generate_latency_seconds_bucket", "genray_batch_size_bucket",
            "ray_serve_deployment_queued_queries", "ray_serve_deployment_replica_healthy",
            "genray_attack_requests_total", "genray_explain_requests_total"} <= used


@pytest.mark.parametrize("config", ["deploy/prometheus.yml", "deploy/observe/prometheus.yml"])
def test_prometheus_configs_load(promtool, config):
    r = subprocess.run([promtool, "check", "config", "--syntax-only", os.path.join(ROOT, config)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
