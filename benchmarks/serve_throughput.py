"""Serving throughput of POST /v1/generate/vae: a loopback load generator at several concurrencies
against (1) genray on Ray Serve (the model's own application: Serve's proxy, then the batching
replicas) and (2) a plain unbatched FastAPI server (uvicorn, one process) holding the same model,
compared with (3) the raw batched model in-process, and with (4) the load generator's own limit
against a no-op server that answers the same bytes at once.

    python benchmarks/serve_throughput.py [--n 8] [--seconds 8] [--concurrency 1 8 32] [--pin 1] [--results DIR]

Every request asks for `n` samples; throughput is in samples/s. The load generator (aiohttp) runs
in a process of its own on the same machine, sharing its cores, as a client on loopback would;
with --pin K it is confined to K cores (the servers keep them all) and every load point is run
again that way. At the highest concurrency it prints where the time goes: CPU milliseconds per
request in each process (generator, Serve's proxy, the model replica, Ray's own), and inside the
replica the wall time per request spent in the handler, waiting for a batch, sampling and encoding.
Writes a JSON record (benchmarks/record.py) that docs/benchmarks.md is rendered from.
"""
from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TWO_REPLICAS = {"vae": {"min_replicas": 2, "max_replicas": 2, "cpus": 1}}
sys.path.insert(0, ROOT)

from benchmarks.record import Record  # noqa: E402

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

# Answers every request with the bytes of a real response, at once: the load generator's ceiling.
NOOP_SERVER = """
import sys, uvicorn
body = open(sys.argv[1], "rb").read()
headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _load(url: str, n: int, concurrency: int, seconds: float, headers: dict) -> dict:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=headers,
                                     timeout=aiohttp.ClientTimeout(total=60)) as session:
        deadline = time.perf_counter() + seconds

        async def user(i: int):
            nonlocal errors
            k = 0
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                async with session.post(url, json={"n": n, "seed": i * 100_000 + k}) as r:
                    await r.read()
                    ok = r.status == 200
                k += 1
                if ok:
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(user(i) for i in range(concurrency)))
        wall = time.perf_counter() - t0
    lat = sorted(latencies) or [float("nan")]
    return {"samples_per_s": len(latencies) * n / wall, "requests": len(latencies) + errors,
            "p50_ms": 1000 * lat[len(lat) // 2], "p99_ms": 1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))],
            "errors": errors}


def generator_main(args: list[str]) -> None:
    """The load generator's process: `--load URL N CONCURRENCY SECONDS HEADERS_JSON [CPUS]`."""
    url, n, concurrency, seconds, headers = args[0], int(args[1]), int(args[2]), float(args[3]), json.loads(args[4])
    if len(args) > 5:
        os.sched_setaffinity(0, set(range(int(args[5]))))
    result = asyncio.run(_load(url, n, concurrency, seconds, headers))
    result["cpu_s"] = sum(os.times()[:2])
    print(json.dumps(result))


class CpuMeter:
    """CPU seconds of processes, by group, between start() and stop()."""

    def __init__(self, groups: dict[str, list[int]]):
        import psutil

        self.procs = {g: [psutil.Process(p) for p in pids] for g, pids in groups.items()}

    def _now(self) -> dict[str, float]:
        import psutil

        out = {}
        for group, procs in self.procs.items():
            total = 0.0
            for p in procs:
                try:
                    t = p.cpu_times()
                    total += t.user + t.system
                except psutil.Error:
                    pass
            out[group] = total
        return out

    def start(self):
        self.t0 = self._now()
        return self

    def stop(self) -> dict[str, float]:
        t1 = self._now()
        return {g: t1[g] - self.t0[g] for g in t1}


def load(url: str, n: int, concurrency: int, seconds: float, headers: dict | None = None,
         cpus: int | None = None, meter: CpuMeter | None = None) -> dict:
    """One load point, from the generator's own process (pinned to `cpus` cores if given)."""
    cmd = [sys.executable, os.path.abspath(__file__), "--load", url, str(n), str(concurrency), str(seconds),
           json.dumps(headers or {})] + ([str(cpus)] if cpus else [])
    if meter:
        meter.start()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if meter:
        result["cpu"] = meter.stop()
    return result


def ray_processes() -> dict[str, list[int]]:
    """pids of the local Ray cluster's processes by role: Serve's proxy, the model replica, the
    gateway, the rest of Serve (controller, other replicas) and Ray's core (raylet, GCS, workers)."""
    import psutil

    groups: dict[str, list[int]] = {"proxy": [], "model replica": [], "gateway": [], "other Serve": [],
                                    "Ray core": []}
    for p in psutil.process_iter(["cmdline", "name"]):
        line = " ".join(p.info["cmdline"] or [])
        if "ray::ProxyActor" in line:
            groups["proxy"].append(p.pid)
        elif "model-vae" in line and "ray::ServeReplica" in line:
            groups["model replica"].append(p.pid)
        elif "ray::ServeReplica" in line and ":Gateway" in line:
            groups["gateway"].append(p.pid)
        elif "ray::Serve" in line:
            groups["other Serve"].append(p.pid)
        elif p.pid != os.getpid() and ("ray/core/src" in line or "raylet" in (p.info["name"] or "")
                                       or "gcs_server" in (p.info["name"] or "") or "ray::" in line
                                       or "default_worker.py" in line or "dashboard" in line):
            groups["Ray core"].append(p.pid)
    return groups


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


def wait_until_up(url: str) -> None:
    import httpx

    for _ in range(300):
        try:
            httpx.post(url, json={"n": 1}, timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def start_server(code: str, *args: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", code, *args, str(port)], cwd=ROOT)
    url = f"http://127.0.0.1:{port}/v1/generate/vae"
    wait_until_up(url)
    return proc, url


def print_profile(name: str, r: dict, timings: dict | None = None) -> dict:
    """Print where one load point's time went; the same figures, for the record."""
    per_req = r["requests"] or 1
    cpu = {g: round(1000 * s / per_req, 2) for g, s in {"load generator": r["cpu_s"], **r.get("cpu", {})}.items()}
    out = {"CPU ms per request": {**cpu, "total": round(sum(cpu.values()), 2)}}
    print(f"  {name}: CPU ms per request: {', '.join(f'{g} {v:.2f}' for g, v in cpu.items())}; "
          f"total {out['CPU ms per request']['total']:.2f}")
    if timings:
        k = timings["requests"] or 1
        ms = {part: round(1000 * timings[f"{key}_s"] / k, 2)
              for part, key in (("handler", "handler"), ("waiting for a batch", "queued"), ("sampling", "forward"),
                                ("encoding", "encode"))}
        per_batch = timings["requests"] / max(1, timings["batches"])
        out |= {"replica ms per request": ms, "requests per batch": round(per_batch, 1),
                "client p50 ms": round(r["p50_ms"], 2)}
        print(f"  {name}: inside one replica, ms per request: handler {ms['handler']:.2f} "
              f"(waiting for a batch {ms['waiting for a batch']:.2f}, sampling {ms['sampling']:.2f}, encoding "
              f"{ms['encoding']:.2f}); {per_batch:.1f} requests per batch; client p50 {r['p50_ms']:.2f}")
    return out


def main() -> int:
    if sys.argv[1:2] == ["--load"]:
        generator_main(sys.argv[2:])
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=8, help="samples per request")
    p.add_argument("--seconds", type=float, default=8.0, help="load duration per point")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--pin", type=int, default=0, help="also run every point with the generator on this many cores")
    p.add_argument("--results", default=None, help="where the JSON record goes (default benchmarks/results)")
    p.add_argument("--smoke", action="store_true", help="two short load points: checks the script runs")
    args = p.parse_args()
    out = args.results
    if args.smoke:
        args.n, args.seconds, args.concurrency, args.pin = 2, 0.5, [4], 1
        # A smoke run's record is scratch, never benchmarks/results/.
        out = tempfile.mkdtemp(prefix="genray-serve-throughput-smoke-")
        atexit.register(shutil.rmtree, out, ignore_errors=True)
    # Seeds 0 (the VAE's weights) and i * 100,000 + k, the k-th request of caller i.
    rec = Record("serve_throughput", None, args, seeds=[0], out_dir=out)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

    import torch
    from ray import serve

    from genray.cluster.connect import connect
    from genray.cluster.registry import Registry
    from genray.cluster.storage import Storage
    from genray.models import build
    from genray.services.app import ServeOptions, deploy
    from genray.services.auth import KEYS_FILE, add_key
    from genray.trainers import datasets
    from genray.trainers.run import TrainSpec, model_config

    pins = [None] + ([args.pin] if args.pin else [])
    rows: dict[str, dict] = {}  # server -> {(concurrency, pin): result}
    timings: dict[tuple, dict] = {}
    top = max(args.concurrency)
    with tempfile.TemporaryDirectory() as home:
        storage = Storage(home)
        # Throughput does not depend on what the weights learned: serve a freshly initialised VAE.
        torch.manual_seed(0)
        meta = datasets.prepare("mnist", storage)
        Registry(storage).publish("vae", build(model_config(TrainSpec("vae").resolved(), meta)), {})
        key = {"authorization": f"Bearer {add_key(storage.path(KEYS_FILE), 'bench', ['generate'])}"}

        connect()
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        # Two replicas of one CPU (one torch thread) each: Serve uses both cores by scaling out, as
        # the raw limit uses them with two threads. Generation only: no idle capability replicas.
        deploy(storage.uri, ["vae"], ServeOptions(replicas=TWO_REPLICAS, extras=()), name="bench")
        url = f"http://127.0.0.1:{port}/v1/generate/vae"
        replica = serve.get_deployment_handle("model-vae", "bench-vae")
        meter = CpuMeter(ray_processes())
        load(url, args.n, 4, min(2.0, args.seconds), key)  # warm-up
        import httpx

        body = httpx.post(url, json={"n": args.n}, headers=key).content  # a real response, for the no-op server
        rows["genray (Ray Serve, one hop)"] = {}
        for pin in pins:
            for c in args.concurrency:
                before = replica.stats.remote().result()["timings"]
                r = load(url, args.n, c, args.seconds, key, pin, meter if c == top else None)
                after = replica.stats.remote().result()["timings"]
                timings[(c, pin)] = {k: after[k] - before[k] for k in after}
                rows["genray (Ray Serve, one hop)"][(c, pin)] = r
        serve.shutdown()
        import ray

        ray.shutdown()

        for name, code, extra in (("plain FastAPI (unbatched)", PLAIN_SERVER, storage.uri),
                                  ("no-op server (generator limit)", NOOP_SERVER, None)):
            if extra is None:
                extra = os.path.join(home, "response.json")
                with open(extra, "wb") as f:
                    f.write(body)
            proc, url = start_server(code, extra)
            try:
                meter = CpuMeter({"server": [proc.pid]})
                load(url, args.n, 4, min(2.0, args.seconds))
                rows[name] = {(c, pin): load(url, args.n, c, args.seconds, None, pin, meter if c == top else None)
                              for pin in pins for c in args.concurrency}
            finally:
                proc.terminate()
                proc.wait(10)
        raw, raw_encoded, best = raw_limit(storage.uri, args.n, min(2.0, args.seconds))

    title = (f"VAE (MNIST 28x28), {args.n} samples per request ({len(body):,} bytes of JSON), {args.seconds:.0f} s "
             f"per point, 2 model replicas of 1 CPU; servers and load generator share {os.cpu_count()} cores")
    print(f"\n{title}")
    print(f"raw in-process limit ({torch.get_num_threads()} threads, best batch {best}): "
          f"{raw:,.0f} samples/s sampling only, {raw_encoded:,.0f} samples/s with PNG+base64 encoding")
    for key, value in (("raw in-process threads", torch.get_num_threads()), ("raw in-process best batch", best),
                       ("raw samples/s, sampling only", round(raw)),
                       ("raw samples/s, with encoding", round(raw_encoded)), ("response bytes", len(body))):
        rec.figure(key, value)
    header = ["server", "generator", "conc", "samples/s", "req/s", "p50 ms", "p99 ms", "errors", "/raw", "/raw+enc"]
    table = [[name, pin and f"{pin} core" or "free", c, f"{r['samples_per_s']:,.0f}",
              f"{r['samples_per_s'] / args.n:,.0f}", f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}", r["errors"],
              f"{r['samples_per_s'] / raw:.2f}", f"{r['samples_per_s'] / raw_encoded:.2f}"]
             for name, points in rows.items() for (c, pin), r in points.items()]
    widths = (32, 10, 5, 11, 8, 9, 9, 7, 6, 9)  # the aligned table, for reading in a terminal
    print(f"{header[0]:<{widths[0]}}" + "".join(f"{h:>{w}}" for h, w in zip(header[1:], widths[1:])))
    for cells in table:
        print(f"{cells[0]:<{widths[0]}}" + "".join(f"{v:>{w}}" for v, w in zip(cells[1:], widths[1:])))
    rec.table("load", title, header, table)
    print(f"\nwhere the time goes at concurrency {top}:")
    for name, points in rows.items():
        for pin in pins:
            label = f"{name}, generator {'on ' + str(pin) + ' core' if pin else 'free'}"
            rec.figure(f"profile: {label}", print_profile(label, points[(top, pin)],
                                                          timings.get((top, pin)) if "genray" in name else None))
    for pin in pins:
        g = rows["genray (Ray Serve, one hop)"][(top, pin)]["samples_per_s"]
        f = rows["plain FastAPI (unbatched)"][(top, pin)]["samples_per_s"]
        noop = rows["no-op server (generator limit)"][(top, pin)]["samples_per_s"]
        at = f"at concurrency {top}, generator {'on ' + str(pin) + ' core' if pin else 'free'}"
        print(f"{at}: generator limit / raw+encode = {noop / raw_encoded:.2f}")
        rec.figure(f"{at}: generator limit / raw+encode", round(noop / raw_encoded, 2))
        rec.target(f"{at}: genray / raw+encode", g / raw_encoded, ">=", 0.8)
        rec.target(f"{at}: genray / plain FastAPI", g / f, ">=", 3)
    rec.save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
