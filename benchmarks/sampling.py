"""Sampling speed of the served default transformer (the Shakespeare default architecture: block
128, 3 layers, 96 wide), 8 rows x 256 symbols, one torch thread as a model-server replica has:

- rotary positions with the rolling KV cache (what genray serves);
- the same model without a cache, recomputing the whole sequence under the same attention window
  at every step (the reference whose samples the cache must equal, and does: checked here);
- learned absolute positions (the architecture before rotary), with its cache, which serves only
  within the block, and without one (recomputing the last block at every step).

Weights are freshly initialised: speed does not depend on them, and equality is checked on them.

    python benchmarks/sampling.py [--rows 8] [--tokens 256] [--device cuda] [--results DIR] [--smoke]

Writes a JSON record (benchmarks/record.py) that docs/benchmarks.md is rendered from.
"""
from __future__ import annotations

import argparse
import atexit
import os
import shutil
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.record import Record  # noqa: E402
from genray.models import build, family_class, seeded  # noqa: E402

VOCAB = "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"  # Shakespeare's 65 characters


def model(positions: str, cache: bool, device: str):
    torch.manual_seed(0)
    config = family_class("transformer").default_config({"modality": "text", "vocab": VOCAB})
    m = build({**config, "positions": positions}).eval().to(device)
    m.use_kv_cache = cache
    return m


def timed(m, rows: int, tokens: int, repeats: int) -> tuple[float, list[str]]:
    best, out = float("inf"), []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = m.sample(rows, max_tokens=tokens, top_k=40, generator=[seeded(i) for i in range(rows)])
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--results", default=None, help="where the JSON record goes (default benchmarks/results)")
    ap.add_argument("--smoke", action="store_true", help="2 rows x 140 symbols (past the block), once")
    args = ap.parse_args()
    out = args.results
    if args.smoke:
        args.rows, args.tokens, args.repeats = 2, 140, 1
        # A smoke run's record is scratch, never benchmarks/results/.
        out = tempfile.mkdtemp(prefix="genray-sampling-smoke-")
        atexit.register(shutil.rmtree, out, ignore_errors=True)
    rec = Record("sampling", None, args, seeds=list(range(args.rows)), out_dir=out)
    torch.set_num_threads(1)
    runs = {}
    for label, positions, cache in (("rotary, rolling cache", "rope", True),
                                    ("rotary, no cache (whole sequence, same window)", "rope", False),
                                    ("learned positions, cache within the block", "learned", True),
                                    ("learned positions, no cache (last block)", "learned", False)):
        runs[label] = timed(model(positions, cache, args.device), args.rows, args.tokens, args.repeats)
    base = runs["rotary, rolling cache"][0]
    where = "1 torch thread" if args.device == "cpu" else args.device
    rec.table("sampling", f"Sampling {args.rows} x {args.tokens} symbols, served default transformer, {where}",
              ["decoding", "seconds", "symbols/s", "time / rolling cache's"],
              [[label, f"{seconds:.3f}", f"{args.rows * args.tokens / seconds:.0f}", f"{seconds / base:.2f}"]
               for label, (seconds, _) in runs.items()])
    same = runs["rotary, rolling cache"][1] == runs["rotary, no cache (whole sequence, same window)"][1]
    window = runs["rotary, no cache (whole sequence, same window)"][0] / base
    block = runs["learned positions, no cache (last block)"][0] / base
    rec.figure("speed-up over recomputing the window", round(window, 1))
    rec.figure("speed-up over the learned-position model's last-block recomputation", round(block, 1))
    print(f"\nrolling cache's speed-up over recomputing the window: {window:.1f}x "
          f"(over the learned-position model's last-block recomputation: {block:.1f}x)")
    print(f"identical samples with and without the cache, same seeds: {same}")
    rec.target("identical samples with and without the cache, same seeds", same, "==", True)
    rec.target("rolling cache's speed-up over recomputing the window", round(window, 2), ">=", 5.0)
    rec.save()
    if not same:
        raise SystemExit("the cached samples differ from the recomputed ones")


if __name__ == "__main__":
    main()
