"""One capability, one spec. Each module of services/capabilities/ declares an endpoint once: its
request and response schemas (the only home of its defaults and limits), the checks pydantic
cannot do alone, which registry models it serves, a Ray-free `run(job, request)` that the CLI and
the server share, its metric labels and its deployment's limits. The gateway's routes, the
Serve applications, /metrics and the client are built by loops over SPECS."""
from __future__ import annotations

import importlib
import logging
import pkgutil
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

from pydantic import BaseModel

from genray.models.errors import Cancelled, InputError

if TYPE_CHECKING:
    from genray.services.workbench import Workbench

log = logging.getLogger("ray.serve")
INTERNAL = "internal error; the server's log has the details"
INVALID = "_invalid"  # a metric label for a method the model does not take (never what a caller typed)


@dataclass(frozen=True)
class Failure:
    """A request that failed, as it crosses from a deployment to the gateway: the HTTP status,
    the message, and for bad input (422) the request field at fault."""
    status: int
    message: str
    field: str | None = None

    def detail(self):
        """The error body's detail: a 422 names its field as FastAPI's own validation errors do."""
        from genray.services.schemas import field_error

        return [field_error(self.field or "body", self.message)] if self.status == 422 else self.message


def failure(e: Exception) -> Failure:
    """An exception as the caller's Failure: bad input is a 422 naming its field, a caller that went
    away a 499; anything else is a defect, logged with its traceback and answered 500."""
    if isinstance(e, InputError):
        return Failure(422, str(e), e.field)
    if isinstance(e, Cancelled):
        return Failure(499, "the caller went away")
    log.error("request failed", exc_info=e)
    return Failure(500, INTERNAL)


@dataclass(frozen=True)
class Raw:
    """An answer that is not JSON (an explanation's picture): sent as it is."""
    content: bytes
    media_type: str


@dataclass(frozen=True)
class Limits:
    """A capability's deployment. Requests at a time per replica and the queue before 503s keep a
    burst of slow requests (attacks: hundreds of passes each) from starving generation; `cpus` is
    the most a replica reserves (less on a small cluster, so that model servers can scale up).
    `threaded`: a request computes in a worker thread (the caller's going away cancels it), else
    inline in the replica's event loop (one request at a time, no thread hop)."""
    max_ongoing: int = 1
    max_queued: int = 8
    cpus: float = 0.1
    target_ongoing: int = 1
    threaded: bool = True


@dataclass
class Job:
    """What a capability's run gets besides its request: the replica's models, rows and classifiers
    (a Workbench), the served name, its registry ref (None for a built-in such as the extractive
    summarizers), and whether the caller has gone away."""
    bench: Workbench
    model: str
    ref: str | None = None
    cancelled: Callable[[], bool] = lambda: False

    def load(self):
        """The served registry model and its record."""
        return self.bench.model(self.ref)


@dataclass(frozen=True)
class Metric:
    """A metric of a capability's own beyond its requests and latency: a prometheus_client kind,
    a name under genray_, its help and labels."""
    kind: str  # counter | summary
    name: str
    doc: str
    labels: tuple[str, ...]


@dataclass(frozen=True)
class Capability:
    name: str  # POST /v1/{name}/{model}, or /v1/{name} without a model in the path
    summary: str  # the OpenAPI operation's description
    request: type[BaseModel]
    response: type[BaseModel]
    run: Callable[[Job, Any], Any]  # -> the response's fields, or Raw; raises InputError for bad input
    # Which registry records it serves (record -> bool); None: none (built-ins only).
    serves: Callable[[Any], bool] | None = None
    check: Callable[[Any, dict], list[dict]] = lambda req, config: []  # 422 entries for this model's config
    method: Callable[[Any, dict], str] = lambda req, config: "default"  # the metric label, or INVALID
    scope: str = "generate"  # what the caller's key must allow
    in_path: bool = True
    builtins: Mapping[str, dict] = field(default_factory=dict)  # served names that are no registry model
    body_model: str | None = None  # a request field that names a registry model (style: "model")
    limits: Limits = Limits()
    part_of: str | None = None  # served whenever that capability is (defend with attack)
    metrics: tuple[Metric, ...] = ()
    observe: Callable[[dict, str, str, Any, dict], None] | None = None  # (own metrics, model, method, req, result)
    media: tuple[str, ...] = ()  # other media types a 200 may be (Raw answers), for the OpenAPI document


def execute(spec: Capability, job: Job, req) -> Any:
    """Run a request: its answer, or the Failure to send back (one error path for every deployment
    and for the CLI). A request without a seed draws one here."""
    if getattr(req, "seed", 0) is None:
        req = req.model_copy(update={"seed": secrets.randbelow(2**31)})
    try:
        return spec.run(job, req)
    except Exception as e:  # noqa: BLE001 - every failure becomes this request's Failure
        return failure(e)


def count_bools(counter, labels: tuple[str, ...], values) -> None:
    """Count values under a last label "true" or "false"."""
    for value in (True, False):
        n = sum(1 for v in values if bool(v) is value)
        if n:
            counter.labels(*labels, str(value).lower()).inc(n)


def _discover() -> dict[str, Capability]:
    from genray.services import capabilities

    specs = {}
    for info in sorted(pkgutil.iter_modules(capabilities.__path__), key=lambda m: m.name):
        spec = importlib.import_module(f"{capabilities.__name__}.{info.name}").SPEC
        specs[spec.name] = spec
    return specs


SPECS: dict[str, Capability] = _discover()
