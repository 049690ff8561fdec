"""Serving throughput of /v1/generate/{vae}: a loopback load generator at several concurrencies
against (1) genray on Ray Serve (dynamic batching) and (2) a plain unbatched FastAPI server
(uvicorn, one process) holding the same model, compared with (3) the raw batched model in-process.

    python benchmarks/serve_throughput.py [--n 8] [--seconds 8] [--concurrency 1 8 32]

Every request asks for `n` samples; throughput is in samples/s. The load generator runs on the
same machine as the servers and shares its cores, as a client on loopback would.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time

import httpx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

PLAIN_SERVER = """
import sys, torch, uvicorn
from fastapi import FastAPI
from genray.cluster.registry import Registry
from genray.cluster.storage import Storage
from genray.models import modalities
from genray.models.base import seeded
from genray.services.schemas import GenerateRequest
model, rec = Registry(Storage(sys.argv[1])).load("vae")
image = modalities.get("image")
app = FastAPI()

@app.post("/v1/generate/vae")
def generate(req: GenerateRequest):
    samples = model.sample(req.n, generator=seeded(req.seed), label=req.label)
    return {"model": "vae", "version": rec.version, "samples": [image.to_json(s, {}) for s in samples]}

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def load(url: str, n: int, concurrency: int, seconds: float, headers: dict | None = None) -> dict:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits, headers=headers) as client:
        async def user(i: int):
            nonlocal errors
            k = 0
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                r = await client.post(url, json={"n": n, "seed": i * 100_000 + k})
                k += 1
                if r.status_code == 200:
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(user(i) for i in range(concurrency)))
        wall = time.perf_counter() - t0
    lat = sorted(latencies) or [float("nan")]
    return {"samples_per_s": len(latencies) * n / wall, "p50_ms": 1000 * lat[len(lat) // 2],
            "p99_ms": 1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))], "errors": errors}


def raw_limit(storage_uri: str, n: int, seconds: float) -> tuple[float, float, int]:
    """The model alone in-process, on all cores, at its best batch size: samples/s for sampling
    only, and for sampling plus PNG/base64 encoding (the work a server does per sample)."""

    from genray.cluster.registry import Registry
    from genray.cluster.storage import Storage
    from genray.models import modalities
    from genray.models.base import seeded

    model, _ = Registry(Storage(storage_uri)).load("vae")
    image = modalities.get("image")

    def rate(batch: int, encode: bool) -> float:
        done, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            gens = [g for i in range(max(1, batch // n)) for g in [seeded(i)] * n]
            s = model.sample(len(gens), generator=gens)
            if encode:
                [image.to_json(x, {}) for x in s]
            done += len(gens)
        return done / (time.perf_counter() - t0)

    best = max((64, 256, 1024), key=lambda b: rate(b, False))
    return rate(best, False), rate(best, True), best


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=8, help="samples per request")
    p.add_argument("--seconds", type=float, default=8.0, help="load duration per point")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--smoke", action="store_true", help="two short load points: checks the script runs")
    args = p.parse_args()
    if args.smoke:
        args.n, args.seconds, args.concurrency = 2, 0.5, [1, 4]
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

    import torch
    from ray import serve

    from genray.cluster.connect import connect
    from genray.cluster.registry import Registry
    from genray.cluster.storage import Storage
    from genray.models import build
    from genray.services.app import ServeOptions, build_app
    from genray.trainers.run import TrainSpec, model_config

    with tempfile.TemporaryDirectory() as home:
        storage = Storage(home)
        # Throughput does not depend on what the weights learned: serve a freshly initialised VAE.
        from genray.trainers import datasets

        torch.manual_seed(0)
        meta = datasets.prepare("mnist", storage)
        Registry(storage).publish("vae", build(model_config(TrainSpec("vae").resolved(), meta)), {})
        from genray.services.auth import KEYS_FILE, add_key

        key = {"authorization": f"Bearer {add_key(storage.path(KEYS_FILE), 'bench', ['generate'])}"}

        results: dict[str, dict[int, dict]] = {"genray (Ray Serve, batched)": {}, "plain FastAPI (unbatched)": {}}
        connect()
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        # One replica with both cores' threads, as the raw limit has: batching against no batching.
        serve.run(build_app(storage.uri, ["vae"], ServeOptions(max_replicas=1, cpus_per_replica=2)),
                  name="bench", route_prefix="/")
        url = f"http://127.0.0.1:{port}/v1/generate/vae"
        asyncio.run(load(url, args.n, 4, min(2.0, args.seconds), key))  # warm-up
        for c in args.concurrency:
            results["genray (Ray Serve, batched)"][c] = asyncio.run(load(url, args.n, c, args.seconds, key))
        serve.shutdown()
        import ray

        ray.shutdown()

        plain_port = free_port()
        proc = subprocess.Popen([sys.executable, "-c", PLAIN_SERVER, storage.uri, str(plain_port)], cwd=ROOT)
        try:
            url = f"http://127.0.0.1:{plain_port}/v1/generate/vae"
            for _ in range(200):
                try:
                    httpx.post(url, json={"n": 1}, timeout=2)
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            asyncio.run(load(url, args.n, 4, min(2.0, args.seconds)))
            for c in args.concurrency:
                results["plain FastAPI (unbatched)"][c] = asyncio.run(load(url, args.n, c, args.seconds))
        finally:
            proc.terminate()
            proc.wait(10)
        raw, raw_encoded, best = raw_limit(storage.uri, args.n, min(2.0, args.seconds))

    print(f"\nVAE (MNIST 28x28), {args.n} samples per request, {args.seconds:.0f} s per point, "
          f"1 model replica; servers and load generator share {os.cpu_count()} cores")
    print(f"raw in-process limit ({torch.get_num_threads()} threads, best batch {best}): "
          f"{raw:,.0f} samples/s sampling only, {raw_encoded:,.0f} samples/s with PNG+base64 encoding")
    print(f"{'server':<30}{'conc':>5}{'samples/s':>11}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
          f"{'/raw':>7}{'/raw+enc':>9}")
    for name, rows in results.items():
        for c, r in rows.items():
            print(f"{name:<30}{c:>5}{r['samples_per_s']:>11,.0f}{r['p50_ms']:>9.1f}{r['p99_ms']:>9.1f}"
                  f"{r['errors']:>8}{r['samples_per_s'] / raw:>7.2f}{r['samples_per_s'] / raw_encoded:>9.2f}")
    top = max(args.concurrency)
    g, f = results["genray (Ray Serve, batched)"][top], results["plain FastAPI (unbatched)"][top]
    print(f"\nat concurrency {top}: genray / raw+encode = {g['samples_per_s'] / raw_encoded:.2f} (target >= 0.8), "
          f"genray / plain FastAPI = {g['samples_per_s'] / f['samples_per_s']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
