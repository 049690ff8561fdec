"""Following the registry from a Serve replica: a background watch, and a record as /v1/models
shows it."""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

log = logging.getLogger("ray.serve")


def watch(every_s: float, step: Callable[[], object], name: str) -> None:
    """Run step() every every_s seconds in a daemon thread; a failure (a registry hiccup) is
    logged and the watch goes on."""
    def loop() -> None:
        while True:
            time.sleep(every_s)
            try:
                step()
            except Exception:  # noqa: BLE001
                log.warning("%s failed", name, exc_info=True)

    threading.Thread(target=loop, daemon=True, name=name).start()


def served_summary(rec) -> dict:
    """A registry record's summary, its metrics without the per-epoch history."""
    return {**rec.summary(), "metrics": {k: v for k, v in rec.metrics.items() if k != "history"}}
