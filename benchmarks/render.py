"""Write the benchmark records (benchmarks/results/*.json) into docs/benchmarks.md.

    python benchmarks/render.py           # rewrite the doc's record blocks (make bench-docs)
    python benchmarks/render.py --check   # exit 1 if the doc differs from what the records render

A record block in the doc is

    <!-- record robustness-evasion -->
    (generated: provenance, every table, every target with its verdict)
    <!-- end record -->

and everything between the two markers is generated; prose around the blocks is the doc's own.
A block naming a record that does not exist is an error: a number without a run has no place.
"""
from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.record import RESULTS, ROOT, cell, render_table  # noqa: E402

DOC = os.path.join(ROOT, "docs", "benchmarks.md")
BLOCK = re.compile(r"(<!-- record (?P<name>[\w.-]+) -->\n)(?P<body>.*?)(<!-- end record -->)", re.S)


def render_record(r: dict) -> str:
    commit = (r.get("commit") or "unknown")[:10] + (" with uncommitted changes" if r.get("dirty") else "")
    seeds = r.get("seeds") or []
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[0] + len(seeds))):
        seeds = f", seeds {seeds[0]}..{seeds[-1]}"
    else:
        seeds = f", seeds {', '.join(map(str, seeds))}" if seeds else ""
    out = [f"Recorded by `{r['command']}` at commit `{commit}` on {r['date'][:10]}, {r['cores']} cores, "
           f"{r['wall_s']:.0f} s{seeds} (`benchmarks/results/{os.path.basename(r['_path'])}`).", ""]
    for t in r["tables"].values():
        out += [render_table(t), ""]
    if r.get("targets"):
        out.append("| target | measured | bound | verdict |")
        out.append("|---|---|---|---|")
        for t in r["targets"]:
            out.append(f"| {t['name']} | {cell(t['value'])} | {t['op']} {cell(t['bound'])} | "
                       f"{'**met**' if t['met'] else '**missed**'} |")
        out.append("")
    return "\n".join(out)


def load(name: str, results: str) -> dict:
    path = os.path.join(results, f"{name}.json")
    if not os.path.exists(path):
        raise SystemExit(f"docs/benchmarks.md names record {name!r}, but {path} does not exist")
    with open(path) as f:
        r = json.load(f)
    r["_path"] = path
    return r


def render(doc: str, results: str = RESULTS) -> str:
    return BLOCK.sub(lambda m: m.group(1) + render_record(load(m.group("name"), results)) + m.group(4), doc)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="exit 1 if the doc differs from the rendered records")
    ap.add_argument("--doc", default=DOC)
    ap.add_argument("--results", default=RESULTS)
    args = ap.parse_args()
    with open(args.doc) as f:
        doc = f.read()
    new = render(doc, args.results)
    if args.check:
        if new != doc:
            sys.stdout.writelines(difflib.unified_diff(doc.splitlines(True), new.splitlines(True), "doc", "rendered"))
            print(f"\n{args.doc} differs from its records: run `make bench-docs`")
            return 1
        print(f"{args.doc}: {len(BLOCK.findall(doc))} record blocks match their records")
        return 0
    with open(args.doc, "w") as f:
        f.write(new)
    print(f"rendered {len(BLOCK.findall(new))} record blocks into {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
