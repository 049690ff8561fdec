"""The Ray Serve applications: for each generative registry model, an application of its own at
/v1/generate/{model} whose autoscaled, batching ModelServer ingress takes generation requests
straight from Serve's proxy; and the gateway application at the root, whose Gateway ingress
answers the rest (every capability's route, pinned versions, models still training, /v1/models,
reloads, /metrics, the playground) beside one autoscaled CapabilityServer deployment per
capability spec (services/capabilities/; ServeOptions.extras leaves any of them out)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

from genray.cluster.registry import Registry, RegistryError
from genray.cluster.storage import Storage
from genray.models.errors import ConfigError
from genray.services.auth import ENV, KEYS_FILE, KeyEntry, from_env, read_file
from genray.services.following import served_summary
from genray.services.gateway import Gateway, model_app_name
from genray.services.generate import ModelServer
from genray.services.server import CapabilityServer
from genray.services.spec import SPECS, Limits

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
    # GPUs per model-server replica (fractions share one card); with any, the replica's model runs
    # on CUDA and its samples come back as the same CPU objects.
    gpus_per_replica: float = 0.0
    # Per model, from `genray plan`: {name: {"min_replicas", "max_replicas", "cpus"}} in place of the
    # defaults above for that model's deployment.
    replicas: dict | None = None
    # API keys: a file of salted hashes (default: keys.json in the storage root) and the
    # GENRAY_API_KEYS variable of the process that builds the app. auth=False serves anyone.
    auth: bool = True
    keys_file: str | None = None
    max_body_bytes: int = 8 << 20
    # How often model servers and the gateway look for newly published versions (0: never; then
    # only POST /v1/admin/reload swaps them).
    watch_s: float = 2.0
    # A log line per generation request in the model replicas' logs (Serve's access log). Off by
    # default: the metrics count every request, and on a small machine the line costs a
    # noticeable share of a small request's CPU.
    access_log: bool = False
    # What is served beside generation (None: every capability of services/capabilities/); each is
    # a deployment of its own, so a generation-only service starts fewer replicas.
    extras: tuple[str, ...] | None = None
    # Per capability, in place of its spec's deployment limits: {"attack": {"max_queued": 16, "cpus": 1}}.
    limits: dict[str, dict] = field(default_factory=dict)

    def limits_of(self, capability: str) -> Limits:
        return replace(SPECS[capability].limits, **self.limits.get(capability, {}))


def api_keys(storage: Storage, options: ServeOptions) -> list[KeyEntry]:
    """The keys the gateway accepts; plain keys from the environment are hashed here, so that
    none reaches the deployment's configuration."""
    path = options.keys_file or (storage.path(KEYS_FILE) if storage.is_local else None)
    entries = (read_file(path) if path else []) + from_env(os.environ.get(ENV))
    if options.auth and not entries:
        raise ConfigError(f"no API keys: add one with `genray keys add NAME --scopes generate` (it goes to "
                          f"{path or 'a --keys-file'}), set {ENV}=KEY=scope+scope, or turn auth off explicitly")
    return entries


def wanted(extras: tuple[str, ...] | None) -> list[str]:
    """The capabilities served beside generation: those named (with what they are part of), or all."""
    return [n for n, spec in SPECS.items() if extras is None or n in extras or spec.part_of in extras]


def groups(capabilities: list[str]) -> dict[str, tuple[str, ...]]:
    """One deployment per capability, a capability `part_of` another on that one's: {root: members}."""
    out: dict[str, tuple[str, ...]] = {}
    for name in capabilities:
        root = SPECS[name].part_of if SPECS[name].part_of in capabilities else name
        out[root] = (*out.get(root, ()), name)
    return out


def endpoints(rec, extras: tuple[str, ...] | None = None) -> list[str]:
    """The endpoints a registry model is served at (of `extras` only, beside generation)."""
    out = ["generate"] if rec.kind == "generative" else []
    return out + [n for n in wanted(extras) if SPECS[n].serves is not None and SPECS[n].serves(rec)]


def default_cpus(models: int) -> float:
    """CPUs per model replica when `models` are served: 0.5, or less so that every model's first
    replica fits in half the cluster, leaving room to scale up."""
    import ray

    total = ray.cluster_resources().get("CPU", 1.0) if ray.is_initialized() else 1.0
    return max(0.05, min(0.5, (total - GATEWAY_CPUS) / (2 * (models + 1))))


def build_apps(storage_uri: str, refs: list[str] | None = None, options: ServeOptions | None = None,
               pending: dict[str, dict] | None = None, name: str = "genray", route_prefix: str = "/") -> list:
    """The Serve applications (serve.RunTarget) for registry models `refs` (default: the latest
    version of every model that has an endpoint): the gateway `name` at `route_prefix`, and each
    generative model's own application at {route_prefix}/v1/generate/{model}. `pending`: models
    still being trained, {name: {"family", ...}}, listed as training and answered 503 until served."""
    from ray.serve import RunTarget

    o = options or ServeOptions()
    registry = Registry(Storage(storage_uri))
    keys = api_keys(registry.storage, o)
    records = ([registry.record(r) for r in refs] if refs is not None
               else [r for r in registry.list() if endpoints(r, o.extras)])
    if not records and not pending:
        raise RegistryError(f"no models to serve in {storage_uri}; train one with `genray train`")
    for rec in records:
        if not endpoints(rec, o.extras):
            raise RegistryError(f"{rec.ref} is a {rec.kind} model with no endpoint to serve it at")
    # A model named without a version follows the registry: a newer version is served when it is
    # published (within watch_s) or at POST /v1/admin/reload.
    pinned = {r.partition("@")[0] for r in refs or [] if "@" in r}
    cpus = o.cpus_per_replica if o.cpus_per_replica is not None else default_cpus(len(records))
    board = f"genray-metrics-{name}"
    models = {rec.name: {"summary": served_summary(rec), "config": rec.config, "endpoints": endpoints(rec, o.extras)}
              for rec in records}
    generative = [rec for rec in records if rec.kind == "generative"]
    targets = [RunTarget(_model_server(rec, o, cpus, keys, registry.storage.uri, rec.name not in pinned, board),
                         model_app_name(name, rec.name), f"{route_prefix.rstrip('/')}/v1/generate/{rec.name}")
               for rec in generative]
    deployments = {}
    for root, members in groups(wanted(o.extras)).items():
        refs_of = {r.name: r.ref for r in records if set(members) & set(models[r.name]["endpoints"])}
        if any(SPECS[c].serves is None or SPECS[c].builtins for c in members) or refs_of:
            server = _capability_server(root, members, o, cpus, registry.storage.uri, refs_of)
            deployments.update({c: server for c in members})
    servers = tuple(r.name for r in generative)
    # One gateway replica: it holds the metrics board and answers what is not a model's own route.
    gateway = Gateway.options(num_replicas=1, ray_actor_options={"num_cpus": GATEWAY_CPUS},
                              max_ongoing_requests=4 * o.max_ongoing_requests,
                              max_queued_requests=4 * o.max_queued_requests).bind(
        models, servers, deployments, o.request_timeout_s, keys, o.auth, o.max_body_bytes, registry.storage.uri,
        tuple(n for n in servers if n not in pinned), o.watch_s,
        {n: v for n, v in (pending or {}).items() if n not in models}, board)
    # The gateway last: it looks its model applications up when it starts.
    return targets + [RunTarget(gateway, name, route_prefix)]


def _autoscaling(o: ServeOptions, target_ongoing: int) -> dict:
    return {"min_replicas": 1, "max_replicas": o.max_replicas, "target_ongoing_requests": target_ongoing,
            "upscale_delay_s": 3, "downscale_delay_s": 60}


def _model_server(rec, o: ServeOptions, cpus: float, keys: list[KeyEntry], storage_uri: str, follows: bool,
                  board: str):
    """A generative model's autoscaled, batching ModelServer, with the plan's bounds where
    `genray plan` wrote them."""
    planned = (o.replicas or {}).get(rec.name, {})
    own_cpus = planned.get("cpus", cpus)
    return ModelServer.options(
        name=f"model-{rec.name}", autoscaling_config={**_autoscaling(o, 16), **{
            k: planned[k] for k in ("min_replicas", "max_replicas") if k in planned}},
        max_ongoing_requests=o.max_ongoing_requests, max_queued_requests=o.max_queued_requests,
        # Serve's proxy answers a request over the queue limit itself: 503 and when to retry.
        backpressure_config={"status_code": 503, "retry_after_s": 1},
        logging_config={"enable_access_log": o.access_log},
        ray_actor_options={"num_cpus": own_cpus, "num_gpus": o.gpus_per_replica},
    ).bind(storage_uri=storage_uri, ref=rec.ref, max_batch_size=o.max_batch_size,
           batch_wait_timeout_s=o.batch_wait_timeout_s, threads=max(1, round(own_cpus)),
           device="cuda" if o.gpus_per_replica else "cpu", follow=follows, watch_s=o.watch_s, keys=keys,
           auth=o.auth, max_body_bytes=o.max_body_bytes, request_timeout_s=o.request_timeout_s,
           metrics_board=board)


def _capability_server(capability: str, members: tuple[str, ...], o: ServeOptions, cpus: float, storage_uri: str,
                       refs: dict[str, str]):
    """A capability's deployment beside generation (with the capabilities part of it): autoscaled
    replicas of its own, few requests at a time and a short queue (its spec's limits), reserving no
    more than a model replica does, so that it never takes the room the model servers scale into."""
    limits = o.limits_of(capability)
    return CapabilityServer.options(
        name=capability, autoscaling_config=_autoscaling(o, limits.target_ongoing),
        max_ongoing_requests=limits.max_ongoing, max_queued_requests=limits.max_queued,
        ray_actor_options={"num_cpus": min(cpus, limits.cpus)},
    ).bind(storage_uri, members, refs, max(1, round(cpus)))


def deploy(storage_uri: str, refs: list[str] | None = None, options: ServeOptions | None = None,
           pending: dict[str, dict] | None = None, name: str = "genray", route_prefix: str = "/") -> None:
    """Build and run the applications on the connected cluster (Serve started), replacing any
    of the same names."""
    from ray import serve

    serve.run_many(build_apps(storage_uri, refs, options, pending, name, route_prefix))


def undeploy(name: str = "genray", timeout_s: float = 120.0) -> None:
    """Delete the gateway application `name` and its models' applications, all at once."""
    import time

    from ray import serve

    apps = [a for a in serve.status().applications if a == name or a.startswith(f"{name}-")]
    for app in apps:
        serve.delete(app, _blocking=False)
    deadline = time.monotonic() + timeout_s
    while set(apps) & set(serve.status().applications) and time.monotonic() < deadline:
        time.sleep(0.2)


def serve_config(storage_uri: str, refs: list[str], args: dict, name: str = "genray",
                 route_prefix: str = "/") -> dict:
    """The `serve deploy` config of what deploy() runs: the gateway application, and each
    generative model's own; `args` (ServeOptions fields) go to every one of them."""
    registry = Registry(Storage(storage_uri))
    base = {"storage": storage_uri, "name": name, **args}
    base_path = route_prefix.rstrip("/")
    apps = [{"name": model_app_name(name, rec.name), "route_prefix": f"{base_path}/v1/generate/{rec.name}",
             "import_path": "genray.services.app:model_app", "args": {**base, "model": ref}}
            for ref in refs for rec in [registry.record(ref)] if rec.kind == "generative"]
    return {"applications": [{"name": name, "route_prefix": route_prefix, "import_path": "genray.services.app:app",
                              "args": {**base, "models": list(refs)}}] + apps}


def app(args: dict):
    """Application builder for `serve run` / `serve deploy` config files: the gateway application,
    import_path: genray.services.app:app, args: {storage: URI, models: [refs], max_replicas: N, ...}.
    Each generative model needs its application as well (model_app), named {gateway's name}-{model}
    at {gateway's route prefix}/v1/generate/{model}."""
    args = dict(args)
    name = args.pop("name", "genray")
    storage = args.pop("storage", None) or Storage().uri
    refs = args.pop("models", None)
    return build_apps(storage, refs, ServeOptions(**args), name=name)[-1].target


def model_app(args: dict):
    """Application builder of one model's generation route for config files:
    import_path: genray.services.app:model_app, args: {storage, model: ref, name: the gateway
    application's name, and the same options as the gateway's}."""
    args = dict(args)
    name = args.pop("name", "genray")
    storage = args.pop("storage", None) or Storage().uri
    ref = args.pop("model")
    args.pop("models", None)  # the gateway's list, where a config shares one set of options
    return build_apps(storage, [ref], ServeOptions(**args), name=name)[0].target
