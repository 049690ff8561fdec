"""The Ray Serve application: one autoscaled, batching ModelServer deployment per generative
registry model, behind one Gateway that validates, routes and keeps the metrics."""
from __future__ import annotations

from dataclasses import dataclass

from genray.cluster.registry import Registry, RegistryError
from genray.cluster.storage import Storage
from genray.services.gateway import Gateway
from genray.services.generate import ModelServer

GATEWAY_CPUS = 0.25


@dataclass
class ServeOptions:
    max_replicas: int = 2
    # Samples (rows), not requests. On CPUs a 64-row forward is as fast per sample as any larger one,
    # and one request's 64 samples always fit in a batch.
    max_batch_size: int = 64
    batch_wait_timeout_s: float = 0.005
    max_ongoing_requests: int = 64
    max_queued_requests: int = 256
    # CPUs reserved per replica (torch threads: this, rounded, at least 1). None: 0.5, or less so
    # that every model's first replica fits in half the cluster, leaving room to scale up.
    cpus_per_replica: float | None = None
    request_timeout_s: float = 120.0


def build_app(storage_uri: str, refs: list[str] | None = None, options: ServeOptions | None = None):
    """The Serve application for registry models `refs` (default: the latest version of every
    generative model)."""
    o = options or ServeOptions()
    registry = Registry(Storage(storage_uri))
    records = [registry.record(r) for r in refs] if refs else [r for r in registry.list() if r.kind == "generative"]
    if not records:
        raise RegistryError(f"no models to serve in {storage_uri}; train one with `genray train`")
    for rec in records:
        if rec.kind != "generative":
            raise RegistryError(f"{rec.ref} is a {rec.kind}, not a generative model: it has nothing to serve")
    autoscaling = {"min_replicas": 1, "max_replicas": o.max_replicas, "target_ongoing_requests": 16,
                   "upscale_delay_s": 3, "downscale_delay_s": 60}
    cpus = o.cpus_per_replica
    if cpus is None:
        import ray

        total = ray.cluster_resources().get("CPU", 1.0) if ray.is_initialized() else 1.0
        cpus = max(0.05, min(0.5, (total - GATEWAY_CPUS) / (2 * len(records))))
    servers, models = {}, {}
    for rec in records:
        servers[rec.name] = ModelServer.options(
            name=f"model-{rec.name}", autoscaling_config=autoscaling,
            max_ongoing_requests=o.max_ongoing_requests, max_queued_requests=o.max_queued_requests,
            ray_actor_options={"num_cpus": cpus},
        ).bind(registry.storage.uri, rec.ref, o.max_batch_size, o.batch_wait_timeout_s, max(1, round(cpus)))
        summary = rec.summary()
        summary["metrics"] = {k: v for k, v in rec.metrics.items() if k != "history"}
        models[rec.name] = {"summary": summary, "config": rec.config}
    # One gateway replica keeps /metrics whole; the model servers are what scales.
    return Gateway.options(num_replicas=1, ray_actor_options={"num_cpus": GATEWAY_CPUS},
                           max_ongoing_requests=4 * o.max_ongoing_requests,
                           max_queued_requests=4 * o.max_queued_requests).bind(models, servers, o.request_timeout_s)


def app(args: dict):
    """Application builder for `serve run` / `serve deploy` config files:
    import_path: genray.services.app:app, args: {storage: URI, models: [refs], max_replicas: N, ...}."""
    args = dict(args)
    storage = args.pop("storage", None) or Storage().uri
    refs = args.pop("models", None)
    return build_app(storage, refs, ServeOptions(**args))

