"""Theory-based SATB chorales scored by the music21 rule checker, beside Bach's chorales scored the same way.

Composes --n chorales of --bars bars (seeds 0..n-1, keys drawn among the 24 by a seeded generator) and counts,
with models/composition/analysis.py, parallel fifths, parallel octaves/unisons, notes outside the SATB ranges,
voice crossings, and how often music21's key analysis (Aarden-Essen) finds the requested key. Then the same
counts for Bach's chorales in music21's corpus (all those with parts named Soprano, Alto, Tenor and Bass, or
the first --bach of them), and for the composer's harmonisations of Bach's soprano lines. A Bach chorale's
reference key is its key signature's major or relative minor, whichever its bass ends on; chorales that end
elsewhere (modal endings) are left out of the key column. One process.

    python benchmarks/composition.py [--n 100] [--bars 8] [--bach N] [--results DIR] [--smoke]

Writes a JSON record (benchmarks/record.py) that docs/benchmarks.md is rendered from.
"""
from __future__ import annotations

import argparse
import atexit
import os
import random
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.record import Record  # noqa: E402
from genray.models.codecs.music import from_stream  # noqa: E402
from genray.models.composition import analysis, theory  # noqa: E402
from genray.models.errors import InputError  # noqa: E402


@dataclass
class Tally:
    chorales: int = 0
    fifths: int = 0
    octaves: int = 0
    ranges: int = 0
    crossings: int = 0
    keyed: int = 0  # chorales with a reference key
    agree: int = 0
    make_s: float = 0.0  # composing or parsing
    check_s: float = 0.0
    misses: list[str] = field(default_factory=list)

    def add(self, report: analysis.Report, want: str | None) -> None:
        self.chorales += 1
        self.fifths += report.parallel_fifths
        self.octaves += report.parallel_octaves
        self.ranges += report.range_violations
        self.crossings += report.crossings
        if report.key_agrees is not None:
            self.keyed += 1
            self.agree += report.key_agrees
            if not report.key_agrees:
                self.misses.append(f"{want} -> {report.key}")

    def key_pct(self) -> float:
        return 100.0 * self.agree / max(1, self.keyed)

    def row(self, label: str) -> list[str]:
        n = max(1, self.chorales)
        cells = [f"{x} ({x / n:.2f})" for x in (self.fifths, self.octaves, self.ranges, self.crossings)]
        key = f"{self.agree}/{self.keyed} = {self.key_pct():.1f}%"
        return [label, str(self.chorales), *cells, key, f"{self.make_s / n:.3f} + {self.check_s / n:.3f}"]


def composed(n: int, bars: int) -> Tally:
    tally, pick = Tally(), random.Random(0)
    for seed in range(n):
        key = pick.choice(theory.KEYS)
        t0 = time.perf_counter()
        chorale = theory.compose(key, bars, seed=seed)
        t1 = time.perf_counter()
        tally.add(analysis.check(chorale.to_stream(), key), key)
        tally.make_s += t1 - t0
        tally.check_s += time.perf_counter() - t1
    return tally


def bach(limit: int | None) -> tuple[Tally, Tally, int, int]:
    """Bach's chorales, and the composer's harmonisations of their soprano lines in their reference keys
    (those that fit: a melody outside the soprano range or with notes foreign to the key is skipped)."""
    from music21 import corpus

    chorales, harmonised, skipped, unharmonised = Tally(), Tally(), 0, 0
    t0 = time.perf_counter()
    for score in corpus.chorales.Iterator(numberingSystem="riemenschneider", returnType="stream"):
        parts = analysis.four_parts(score)
        if parts is None:
            skipped += 1
            t0 = time.perf_counter()
            continue
        want = analysis.reference_key(score)
        t1 = time.perf_counter()
        chorales.add(analysis.check(score, want), want)
        chorales.make_s += t1 - t0
        chorales.check_s += time.perf_counter() - t1
        if want is not None:
            t1 = time.perf_counter()
            try:
                chorale = theory.compose(want, 1, melody=from_stream(parts[0]))
            except InputError:
                unharmonised += 1
            else:
                t2 = time.perf_counter()
                harmonised.add(analysis.check(chorale.to_stream(), want), want)
                harmonised.make_s += t2 - t1
                harmonised.check_s += time.perf_counter() - t2
        if limit is not None and chorales.chorales >= limit:
            break
        t0 = time.perf_counter()
    return chorales, harmonised, skipped, unharmonised


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100, help="chorales to compose")
    ap.add_argument("--bars", type=int, default=8)
    ap.add_argument("--bach", type=int, default=None, help="score only the first N Bach chorales (default: all)")
    ap.add_argument("--results", default=None, help="where the JSON record goes (default benchmarks/results)")
    ap.add_argument("--smoke", action="store_true", help="5 chorales and 3 of Bach's")
    args = ap.parse_args()
    out = args.results
    if args.smoke:
        args.n, args.bach = 5, 3
        # A smoke run's record is scratch, never benchmarks/results/.
        out = tempfile.mkdtemp(prefix="genray-composition-smoke-")
        atexit.register(shutil.rmtree, out, ignore_errors=True)
    rec = Record("composition", None, args, seeds=list(range(args.n)), out_dir=out)
    import music21

    t0 = time.perf_counter()
    ours = composed(args.n, args.bars)
    ours_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    theirs, harmonised, skipped, unharmonised = bach(args.bach)
    bach_s = time.perf_counter() - t0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    rec.table("chorales", f"SATB chorales scored by one rule checker (music21 {music21.__version__}, {cores} cores, "
              "one process)",
              ["chorales", "n", "parallel fifths (per chorale)", "parallel octaves/unisons", "range violations",
               "crossings", "key analysis = requested key", "s per chorale (compose or parse + check)"],
              [ours.row(f"composed ({args.bars} bars, random keys, seeds 0..{args.n - 1})"),
               theirs.row("Bach (music21 corpus)"),
               harmonised.row("composer's harmonisations of Bach's soprano lines")])
    print(f"\ncomposing: {ours_s:.1f} s for {args.n}; Bach: {bach_s:.1f} s for {theirs.chorales} "
          f"({skipped} without four named voices skipped, {theirs.chorales - theirs.keyed} without a reference key "
          f"left out of the key column, {unharmonised} melodies not harmonisable in their key)")
    for key, value in (("composing s", round(ours_s, 1)), ("Bach s", round(bach_s, 1)),
                       ("Bach chorales scored", theirs.chorales), ("Bach skipped (not four named voices)", skipped),
                       ("Bach without a reference key", theirs.chorales - theirs.keyed),
                       ("Bach melodies not harmonisable", unharmonised), ("composed key misses", ours.misses)):
        rec.figure(key, value)
    if ours.misses:
        print(f"composed chorales whose key analysis disagrees (requested -> found): {', '.join(ours.misses)}")
    # All three evaluated (no short-circuit): each verdict is recorded.
    met = all([rec.target("composed: parallel fifths and octaves/unisons", ours.fifths + ours.octaves, "==", 0),
               rec.target("composed: range violations", ours.ranges, "==", 0),
               rec.target("composed: key analysis = requested key (%)", ours.key_pct(), ">=", 95.0)])
    print(f"target: 0 parallels, 0 range violations, key >= 95%: {'met' if met else 'missed'} "
          f"({ours.fifths + ours.octaves} parallels, {ours.ranges} range violations, key {ours.key_pct():.1f}%)")
    rec.save()


if __name__ == "__main__":
    main()
