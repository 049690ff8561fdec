"""Connecting to Ray: an embedded local cluster by default, or an existing one by address."""
from __future__ import annotations

import logging
import os
import sys

LOCAL_DEFAULTS = {
    "RAY_USAGE_STATS_ENABLED": "0",
    # The embedded cluster serves one user: no token for its job API.
    "RAY_AUTH_MODE": "disabled",
    # Train's print patch echoes each worker print twice on a local cluster.
    "RAY_TRAIN_ENABLE_PRINT_PATCH": "0",
    # How often Train's controller polls its workers (default 2 s): a run's start and end are
    # noticed sooner, about 4 s less per run on a small machine, for a few cheap local calls.
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.25",
    # A local machine is never preempted: Train's preemption watcher only logs errors there.
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
}


def connect(address: str | None = None, *, num_cpus: int | None = None, metrics_port: int | None = None,
            quiet: bool = True, console: bool = True):
    """Start or join Ray once per process. `address` (or RAY_ADDRESS) joins a running cluster,
    e.g. "ray://head:10001" or "auto"; otherwise an embedded local cluster starts. console=False
    keeps the workers' output and Ray's own logs off this process's console (they stay in Ray's
    log folder, whose path is printed once)."""
    import ray
    import ray.data

    if ray.is_initialized():
        return ray.get_runtime_context()
    address = address or os.environ.get("RAY_ADDRESS")
    kwargs = {"logging_level": logging.WARNING} if quiet else {}
    if not console:
        kwargs.update(log_to_driver=False, logging_level=logging.ERROR)
    if address:
        ray.init(address=address, **kwargs)
    else:
        for k, v in LOCAL_DEFAULTS.items():
            os.environ.setdefault(k, v)
        # Train workers hold a CPU each; advertise at least four so Ray Data's read tasks
        # still get scheduled beside them on a two-core machine.
        cpus = num_cpus or max(4, os.cpu_count() or 1)
        extra = {"_metrics_export_port": metrics_port} if metrics_port else {}
        # The dashboard serves Ray's state API (Train's placement-group cleaner polls it) and
        # `ray job submit`; it picks another port when 8265 is taken.
        ray.init(num_cpus=cpus, include_dashboard=True, **extra, **kwargs)
    quiet_data()
    if not console:
        print(f"Ray's logs: {logs_dir()}  (--verbose shows them here)", file=sys.stderr, flush=True)
    return ray.get_runtime_context()


def logs_dir() -> str:
    """The log folder of this process's Ray session (workers' output, Ray's components)."""
    try:
        from ray._private.worker import _global_node

        return _global_node.get_logs_dir_path()
    except Exception:  # noqa: BLE001 - a Ray without that internal: its documented default
        return "/tmp/ray/session_latest/logs"


def quiet_data() -> None:
    """Ray Data's progress bars off for the datasets this process creates (the context travels
    with them to the tasks that run them)."""
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
