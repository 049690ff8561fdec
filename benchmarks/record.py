"""One JSON record per benchmark run, the only source of docs/benchmarks.md's tables.

    rec = Record("robustness", "evasion", args, seeds=[0])
    rec.table("evasion", "Evasion: ...", header, rows)          # printed as Markdown, and kept
    rec.target("adversarial worst case >= 0.70", value, ">=", 0.70)   # met or missed, computed here
    rec.save()                                                  # benchmarks/results/robustness-evasion.json

A record holds the commit (and whether the tree had uncommitted changes), the date, the cores,
the command line, the seeds, the wall time, every table and figure, and each target with its
verdict. benchmarks/render.py writes the records' tables into docs/benchmarks.md; a test fails
when the doc and the records disagree. A smoke run writes its record beside its scratch storage,
never into benchmarks/results/.
"""
from __future__ import annotations

import datetime
import json
import operator
import os
import shlex
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results")
OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt, "==": operator.eq}


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def cell(v) -> str:
    """A table value as the doc shows it: 4 decimals for floats, as written otherwise."""
    if isinstance(v, bool) or v is None:
        return {True: "yes", False: "no", None: "-"}[v]
    return f"{v:.4f}" if isinstance(v, float) else str(v)


class Record:
    def __init__(self, benchmark: str, part: str | None, args, seeds: list[int] | None = None,
                 out_dir: str | None = None):
        self.name = benchmark + (f"-{part}" if part else "")
        self.out_dir = out_dir or RESULTS
        self.t0 = time.perf_counter()
        self.data = {
            "benchmark": benchmark, "part": part,
            "commit": _git("rev-parse", "HEAD") or None,
            # Code that differs from the commit (the doc and the records themselves do not count).
            "dirty": bool(_git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!docs",
                               ":!benchmarks/results", ":!README.md")),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "cores": os.cpu_count(),
            "command": "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0], ROOT),
                                                                      *sys.argv[1:]]),
            "seeds": list(seeds or []),
            "settings": {k: v for k, v in vars(args).items() if isinstance(v, (str, int, float, bool, type(None)))},
            "tables": {}, "figures": {}, "targets": [],
        }

    def table(self, key: str, title: str, header: list[str], rows: list[list], note: str | None = None) -> None:
        """Keep a table and print it as Markdown."""
        rows = [[cell(v) for v in r] for r in rows]
        self.data["tables"][key] = {"title": title, "header": list(header), "rows": rows, "note": note}
        print("\n" + render_table(self.data["tables"][key]), flush=True)

    def figure(self, key: str, value) -> None:
        self.data["figures"][key] = value

    def target(self, name: str, value: float, op: str, bound: float) -> bool:
        """A target's verdict, computed: `value op bound`. Printed as 'target: NAME: VALUE op BOUND: met|missed'."""
        met = bool(OPS[op](value, bound))
        self.data["targets"].append({"name": name, "value": value, "op": op, "bound": bound, "met": met})
        print(f"target: {name}: {cell(value)} {op} {cell(bound)}: {'met' if met else 'missed'}", flush=True)
        return met

    def save(self) -> str:
        self.data["wall_s"] = round(time.perf_counter() - self.t0, 1)
        os.makedirs(self.out_dir, exist_ok=True)
        path = os.path.join(self.out_dir, f"{self.name}.json")
        with open(path, "w") as f:
            json.dump(self.data, f, indent=1, sort_keys=True)
            f.write("\n")
        print(f"record: {path}", flush=True)
        return path


def render_table(t: dict) -> str:
    lines = [f"{t['title']}", "", "| " + " | ".join(t["header"]) + " |", "|" + "---|" * len(t["header"])]
    lines += ["| " + " | ".join(r) + " |" for r in t["rows"]]
    if t.get("note"):
        lines += ["", t["note"]]
    return "\n".join(lines)
