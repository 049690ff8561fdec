"""Training progress on the driver's console: one bar per run (epoch, step, loss, rows/s, time
left), fed by the runs' rank-0 workers through a small Ray actor, so that worker output itself
can stay in Ray's log files."""
from __future__ import annotations

import threading
import time

import ray

UPDATE_EVERY_S = 0.5  # how often a worker sends its progress
# The board `genray up` trains with, by name, where the serving gateway finds the progress of the
# models it lists as still training.
PROGRESS_BOARD, PROGRESS_NAMESPACE = "genray-progress", "genray"


@ray.remote(num_cpus=0)
class ProgressBoard:
    """The latest progress of each run: {"epoch", "epochs", "step", "total", "loss", "rows_per_s"}."""

    def __init__(self):
        self.runs: dict[str, dict] = {}

    def update(self, run: str, info: dict) -> None:
        self.runs[run] = {**self.runs.get(run, {}), **info}

    def snapshot(self) -> dict[str, dict]:
        return self.runs


class Reporter:
    """A worker's side: sends at most one update every UPDATE_EVERY_S (and always the last)."""

    def __init__(self, board, run: str):
        self.board, self.run, self.last = board, run, 0.0

    def __call__(self, force: bool = False, **info) -> None:
        now = time.monotonic()
        if self.board is not None and (force or now - self.last >= UPDATE_EVERY_S):
            self.board.update.remote(self.run, info)
            self.last = now


class ConsoleProgress:
    """The driver's side: `with ConsoleProgress() as p: train(spec, storage, progress=p.board)`.
    A thread polls the board and draws the bars with rich; disabled, it does nothing."""

    def __init__(self, enabled: bool = True, poll_s: float = 0.3, named: bool = False):
        self.enabled, self.poll_s, self.named = enabled, poll_s, named
        self.board = None
        self._tasks: dict[str, int] = {}
        self._seen: dict[str, float] = {}  # when each run first reported
        self._stop = threading.Event()

    def __enter__(self) -> "ConsoleProgress":
        options = {"name": PROGRESS_BOARD, "namespace": PROGRESS_NAMESPACE, "get_if_exists": True} if self.named else {}
        if not self.enabled:
            self.board = ProgressBoard.options(**options).remote() if self.named else None
            return self
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self.board = ProgressBoard.options(**options).remote()
        console = Console()
        if not console.is_terminal:  # a log file: room for every column, no 80-column cut
            console = Console(width=160)
        self.bars = Progress(TextColumn("[bold]{task.description:<14}"), BarColumn(),
                             TextColumn("epoch {task.fields[epoch]}  step {task.completed:.0f}/{task.total:.0f}"),
                             TextColumn("{task.fields[detail]}"), TextColumn("eta"), TimeRemainingColumn(),
                             transient=False, console=console)
        self.bars.start()
        self._thread = threading.Thread(target=self._poll, daemon=True, name="progress")
        self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.refresh()

    def refresh(self) -> None:
        try:
            runs = ray.get(self.board.snapshot.remote(), timeout=5)
        except Exception:  # noqa: BLE001 - a missed poll only delays the bar
            return
        for run, info in runs.items():
            if run not in self._tasks:
                self._tasks[run] = self.bars.add_task(run, total=max(1, info.get("total") or 1), epoch="-",
                                                      detail="")
                self._seen[run] = time.monotonic()
            detail = [f"loss {info['loss']:.4f}" if info.get("loss") is not None else "",
                      f"{info['rows_per_s']:,.0f} rows/s" if info.get("rows_per_s") else "",
                      f"val {info['val_nll']:.4f}" if info.get("val_nll") is not None else "",
                      f"{time.monotonic() - self._seen[run]:.0f} s"]
            self.bars.update(self._tasks[run], completed=info.get("step", 0), total=max(1, info.get("total") or 1),
                             epoch=f"{info.get('epoch', '-')}/{info.get('epochs', '-')}",
                             detail="  ".join(d for d in detail if d))

    def print(self, *text) -> None:
        """A line above the bars (or plainly, without them)."""
        if self.enabled:  # as written: no wrapping (commands stay copyable), no markup
            self.bars.console.print(*text, soft_wrap=True, markup=False, highlight=False)
        else:
            print(*text, flush=True)

    def __exit__(self, *exc) -> None:
        if not self.enabled:
            if self.board is not None:
                ray.kill(self.board)
            return
        self._stop.set()
        self._thread.join(5)
        self.refresh()
        self.bars.stop()
        ray.kill(self.board)
