"""The Python client of genray's HTTP API. One table, ENDPOINTS, defines each endpoint once for the
sync and the async class: its path, its request fields (a TypedDict, so that an editor completes
the keyword arguments and mypy checks them) and its result (a dataclass with its images as PIL
images, its MIDI and WAV as bytes, and the JSON body as `raw`). It retries where the server asks
(503 overloaded, 429 rate-limited; its Retry-After wins), with a timeout per call.

    from genray.client import AsyncClient, Client
    with Client("http://127.0.0.1:8000", api_key=KEY) as c:   # or the GENRAY_KEY variable
        images = c.generate("vae", n=4, label=7, seed=0).samples          # [PIL.Image.Image]
        text = c.generate("transformer", prompt="ROMEO:", max_tokens=64).samples[0]
        hit = c.attack("classifier", method="pgd", eps=0.3, indices=[0, 1])   # Attacked
        hit.adversarial[0].save("adversarial.png"); print(hit.predictions_after, hit.success)
        open("chorale.mid", "wb").write(c.compose(key="G", bars=4).midi)
        print(c.summarize("textrank", paper_text, aspect="outcome").summary)
    async with AsyncClient(URL) as ac:                         # the same calls, as coroutines
        hits = await asyncio.gather(*(ac.attack("classifier", method="fgsm", eps=0.1, indices=[i])
                                      for i in range(8)))

A field an endpoint lacks, or a value of the wrong type, is a mypy error here and a 422 from the
server (GenrayError, with .field). It needs httpx and Pillow only: no Ray, no torch, no pydantic;
tests/test_client.py holds its fields and results to the server's schemas.
"""
from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import random
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import httpx

if sys.version_info >= (3, 11):
    from typing import Required, TypedDict, Unpack
else:  # pragma: no cover
    from typing_extensions import Required, TypedDict, Unpack

if TYPE_CHECKING:
    from PIL.Image import Image

RETRY_STATUSES = (429, 503)


class GenrayError(Exception):
    """An answer other than success: its HTTP status, the request field at fault (for a 422 that
    names one) and the server's detail."""

    def __init__(self, status: int, detail: Any, field: str | None = None):
        self.status, self.detail, self.field = status, detail, field
        super().__init__(f"HTTP {status}" + (f" ({field})" if field else "") + f": {_message(detail)}")


def _message(detail: Any) -> str:
    if isinstance(detail, list):
        return "; ".join(str(d.get("msg", d)) if isinstance(d, dict) else str(d) for d in detail)
    return str(detail)


# Request fields, one TypedDict per endpoint, as the server's schemas (services/capabilities/) have
# them; a field left out takes the server's default. inputs: base64 PNGs of the model's shape, or
# indices: rows of its test split. A seed is in [0, 2^31); without one, each request draws its own.
# The fields of an Endpoint's `own` are its method's own arguments (generate's n, style's content).
class GenerateFields(TypedDict, total=False):
    seed: int | None
    temperature: float
    prompt: str | Sequence[float] | None  # text, music events ('G4/1 A4/0.5'), or a series' history
    max_tokens: int
    top_k: int | None
    top_p: float | None
    stop: list[str] | None
    label: int | None
    wav: bool
    version: int | None  # or the model "NAME@VERSION"


class _Inputs(TypedDict, total=False):
    inputs: list[str]
    indices: list[int]


class AttackFields(_Inputs, total=False):
    method: Required[str]
    eps: float | None
    norm: str
    steps: int | None
    step_size: float | None
    restarts: int
    targeted: bool
    target: int | None
    seed: int | None
    classifier: str | None
    prompt: str | None
    target_text: str | None
    suffix_len: int
    samples: int


class DefendFields(_Inputs, total=False):
    method: Required[str]
    classifier: str | None


class ExplainFields(_Inputs, total=False):
    method: Required[str]
    generated: int | None
    prompt: str | None
    series: Sequence[float] | None
    target: int | str | None
    baseline: str | float | None
    n_steps: int | None
    n_samples: int | None
    patch: int | None
    evaluate: bool
    format: str  # json | png: the picture alone (see Explained)
    seed: int | None
    feature: int | None
    grid: int
    dims: list[int] | None
    n: int
    classifier: str | None


class InpaintFields(_Inputs, total=False):
    mask: str
    fraction: float
    method: str | None
    n: int
    steps: int
    seed: int | None
    label: int | None


class StyleFields(TypedDict, total=False):
    model: str | None  # instead of style: a style network
    strength: float
    steps: int
    max_side: int
    loss: str
    seed: int | None


class SummarizeFields(TypedDict, total=False):
    aspect: str
    max_sentences: int | None
    max_tokens: int | None
    seed: int | None


class InfillFields(TypedDict, total=False):
    length: int | None
    candidates: int
    top: int
    temperature: float
    seed: int | None


class ComposeFields(TypedDict, total=False):
    key: str
    bars: int
    melody: str | list[str] | None
    seed: int | None
    wav: bool


# Results: the response's fields, decoded.

A = TypeVar("A", bound="Answer")


def _image(data: str | bytes) -> Image:
    """A PNG (base64, or its bytes) as a loaded PIL image."""
    from PIL import Image as PILImage

    img = PILImage.open(io.BytesIO(base64.b64decode(data) if isinstance(data, str) else data))
    img.load()
    return img


def _each(value: Any, decode) -> Any:
    return None if value is None else [decode(v) for v in value] if isinstance(value, list) else decode(value)


@dataclass(kw_only=True)
class Answer:
    """What every result starts with: the served model (or built-in method) that answered and its
    registry version (None for a built-in); `raw` is the JSON body as it came."""
    model: str
    version: int | None = None
    raw: dict = field(default_factory=dict, repr=False)
    _pngs: ClassVar[tuple[str, ...]] = ()  # fields of base64 PNGs, decoded to PIL images
    _files: ClassVar[tuple[str, ...]] = ()  # fields of base64 files, decoded to bytes
    _rows: ClassVar[dict[str, type]] = {}  # fields of JSON objects, decoded to dataclasses
    _modal: ClassVar[bool] = False  # decoding needs the model's modality (from GET /v1/models)

    @classmethod
    def decode(cls: type[A], body: dict, modalities: Mapping[str, str]) -> A:
        """The result of a JSON body; a field this client does not know (a newer server's) stays in raw."""
        names = {f.name for f in fields(cls)} - {"raw"}
        out = {k: v for k, v in body.items() if k in names}
        for k in cls._pngs:
            out[k] = _each(out.get(k), _image)
        for k in cls._files:
            out[k] = _each(out.get(k), base64.b64decode)
        for k, row in cls._rows.items():
            out[k] = _each(out.get(k), lambda d, row=row: row(**{f.name: d.get(f.name) for f in fields(row)}))
        return cls(**out, raw=body)


@dataclass
class Music:
    events: str  # joined by spaces: 'G4/1 A4/0.5 R/1'
    midi: bytes
    wav: bytes | None = None


def _music(s: dict) -> Music:
    return Music(s["events"], base64.b64decode(s["midi"]), base64.b64decode(s["wav"]) if s.get("wav") else None)


SAMPLES: dict[str, Callable[[Any], Any]] = {"image": _image, "music": _music, "text": str, "series": list}


def _decode_sample(modality: str | None, s: Any) -> Any:
    """One sample by its modality: a PIL image, Music, a string (text) or a list of numbers (series)."""
    if modality not in SAMPLES:
        raise ValueError(f"unknown modality {modality!r}: this client decodes {sorted(SAMPLES)}")
    return SAMPLES[modality](s)


@dataclass(kw_only=True)
class Generated(Answer):
    samples: list[Any]  # PIL images, strings, Music or number lists
    _modal: ClassVar[bool] = True

    @classmethod
    def decode(cls, body: dict, modalities: Mapping[str, str]) -> Generated:
        modality = modalities.get(body["model"])
        if modality is None:
            raise ValueError(f"model {body['model']!r} is not listed by /v1/models: its modality is unknown")
        return cls(model=body["model"], version=body.get("version"), raw=body,
                   samples=[_decode_sample(modality, s) for s in body["samples"]])


@dataclass(kw_only=True)
class Attacked(Answer):
    method: str
    summary: dict[str, Any]
    clean: list[Image] = field(default_factory=list)
    adversarial: list[Image] = field(default_factory=list)
    reconstructions: list[Image] = field(default_factory=list)  # vae
    predictions_before: list[int] = field(default_factory=list)
    predictions_after: list[int] = field(default_factory=list)
    success: list[bool] = field(default_factory=list)
    linf: list[float] = field(default_factory=list)
    l2: list[float] = field(default_factory=list)
    suffix: str | None = None  # text models
    _pngs: ClassVar[tuple[str, ...]] = ("clean", "adversarial", "reconstructions")


@dataclass(kw_only=True)
class Defended(Answer):
    method: str
    purified: list[Image] = field(default_factory=list)
    predictions_before: list[int] = field(default_factory=list)
    predictions_after: list[int] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)  # detect: bits/dim
    flagged: list[bool] = field(default_factory=list)
    threshold: float | None = None
    _pngs: ClassVar[tuple[str, ...]] = ("purified",)


@dataclass(kw_only=True)
class Explained(Answer):
    """With format "png" the server sends the picture alone: then `pictures` holds it as the one
    image, model is the name asked for, version None, and the other fields are empty."""
    method: str
    described: list[dict[str, Any]] = field(default_factory=list)
    attributions: list[Any] = field(default_factory=list)
    symbols: list[list[str]] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    baseline_scores: list[float] = field(default_factory=list)
    diagnostics: dict[str, Any] = field(default_factory=dict)
    faithfulness: dict[str, Any] | None = None
    pictures: list[Image] = field(default_factory=list)
    html: list[str] = field(default_factory=list)
    curves: dict[str, Any] | None = None
    _pngs: ClassVar[tuple[str, ...]] = ("pictures",)


@dataclass(kw_only=True)
class Inpainted(Answer):
    method: str
    images: list[Image]  # n completions per input, in input order
    mask: Image
    psnr: list[float] | None = None  # with indices
    _pngs: ClassVar[tuple[str, ...]] = ("images", "mask")


@dataclass(kw_only=True)
class Styled(Answer):
    image: Image
    summary: dict[str, float]
    _pngs: ClassVar[tuple[str, ...]] = ("image",)


@dataclass(kw_only=True)
class Summarized(Answer):
    aspect: str
    summary: str
    sentences: list[int] | None = None  # extractive: the kept sentences' indices
    source: list[int] | None = None  # abstractive: the sentences its extractor gave it
    seconds: float


@dataclass
class Fill:
    fill: str  # the characters in the gap
    text: str  # the whole text with the gap filled
    log_prob: float  # log p(text) under the model, in nats


@dataclass(kw_only=True)
class Infilled(Answer):
    fills: list[Fill]  # most probable first
    _rows: ClassVar[dict[str, type]] = {"fills": Fill}


@dataclass(kw_only=True)
class Composition(Answer):
    key: str
    voices: dict[str, list[str]]  # Soprano, Alto, Tenor, Bass as note events
    chords: list[str | None]
    midi: bytes
    wav: bytes | None = None
    analysis: dict[str, Any]  # music21's check
    _files: ClassVar[tuple[str, ...]] = ("midi", "wav")


# The endpoints, for both clients.

R = TypeVar("R", bound=Answer)


@dataclass(frozen=True)
class Endpoint(Generic[R]):
    """POST `path` ({model}: the served model's name), with the request fields of `fields` (a
    TypedDict) and those of `own` that its method takes as its own arguments; answered by `result`."""
    name: str
    path: str
    fields: type
    result: type[R]
    own: tuple[str, ...] = ()

    def url(self, model: str | None) -> str:
        return self.path.format(model=model)


GENERATE = Endpoint("generate", "/v1/generate/{model}", GenerateFields, Generated, own=("n", "stream"))
ATTACK = Endpoint("attack", "/v1/attack/{model}", AttackFields, Attacked)
COMPOSE = Endpoint("compose", "/v1/compose", ComposeFields, Composition)
DEFEND = Endpoint("defend", "/v1/defend/{model}", DefendFields, Defended)
EXPLAIN = Endpoint("explain", "/v1/explain/{model}", ExplainFields, Explained)
INFILL = Endpoint("infill", "/v1/infill/{model}", InfillFields, Infilled, own=("text",))
INPAINT = Endpoint("inpaint", "/v1/inpaint/{model}", InpaintFields, Inpainted)
STYLE = Endpoint("style", "/v1/style", StyleFields, Styled, own=("content", "style"))
SUMMARIZE = Endpoint("summarize", "/v1/summarize/{model}", SummarizeFields, Summarized, own=("text", "sentences"))
ENDPOINTS: dict[str, Endpoint[Any]] = {e.name: e for e in (GENERATE, ATTACK, COMPOSE, DEFEND, EXPLAIN, INFILL,
                                                           INPAINT, STYLE, SUMMARIZE)}


def _summary(text: str | list[str], fields: Mapping[str, object]) -> dict[str, object]:
    return {"sentences" if isinstance(text, list) else "text": text, **fields}


def _style(content: str, style: str | None, fields: Mapping[str, object]) -> dict[str, object]:
    return {"content": content, **({"style": style} if style is not None else {}), **fields}


def _raise_for(resp: httpx.Response) -> None:
    if resp.status_code < 400:
        return
    try:
        detail = resp.json().get("detail", resp.text)
    except ValueError:
        detail = resp.text
    where = None
    if resp.status_code == 422 and isinstance(detail, list) and detail and isinstance(detail[0], dict):
        loc = detail[0].get("loc") or []
        where = ".".join(str(p) for p in loc[1:]) or None  # ["body", field, ...]
    raise GenrayError(resp.status_code, detail, where)


def _pieces(lines: Iterable[str]) -> Iterator[str]:
    """The decoded pieces of server-sent `data:` lines; an error event raises GenrayError."""
    for line in lines:
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        event = json.loads(line[len("data: "):])
        if "error" in event:
            raise GenrayError(event.get("status", 500), event["error"])
        piece = event.get("text", event.get("events"))
        if piece:
            yield piece


def _retryable(resp: httpx.Response) -> bool:
    """503 (overloaded, a lost replica) and 429 (rate limited); and a 5xx that genray did not
    answer itself (no JSON detail: Serve's proxy lost the replica running the request). Every
    call of the API is free of side effects, so repeating one is safe."""
    if resp.status_code in RETRY_STATUSES:
        return True
    if resp.status_code < 500 or resp.status_code == 504:
        return False
    try:
        return "detail" not in resp.json()
    except ValueError:
        return True


def _delay(resp: httpx.Response, attempt: int, backoff: float) -> float:
    """Retry-After when the server sends one (seconds), else exponential backoff with jitter."""
    after = resp.headers.get("retry-after", "")
    if after.replace(".", "", 1).isdigit():
        return float(after)
    return backoff * (2 ** attempt) * (0.5 + random.random() / 2)


class _Base:
    def __init__(self, url: str, api_key: str | None, timeout: float, retries: int, backoff: float):
        self.url, self.timeout, self.retries, self.backoff = url.rstrip("/"), timeout, retries, backoff
        api_key = api_key or os.environ.get("GENRAY_KEY")
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._modalities: dict[str, str] = {}

    def _unknown(self, ep: Endpoint[Any], model: str | None) -> bool:
        """Whether decoding this answer needs a model's modality not yet learnt."""
        return ep.result._modal and (model or "").partition("@")[0] not in self._modalities

    def _answer(self, ep: Endpoint[R], model: str | None, body: Mapping[str, object], resp: httpx.Response) -> R:
        if resp.headers.get("content-type", "").startswith("image/"):  # explain's format "png": the picture alone
            return ep.result.decode({"model": model, "version": None, "method": body.get("method", ""),
                                     "pictures": [resp.content]}, self._modalities)
        return ep.result.decode(resp.json(), self._modalities)

    def _learn(self, models: list[dict]) -> list[dict]:
        self._modalities.update({m["name"]: m["modality"] for m in models if m.get("modality")})
        return models


class Client(_Base):
    """Calls genray's HTTP API. `timeout` is per call (seconds); a 503 or 429 (or a 5xx from the
    serving layer rather than from genray) is retried up to `retries` times, waiting Retry-After
    or `backoff` x 2^attempt seconds."""

    def __init__(self, url: str = "http://127.0.0.1:8000", api_key: str | None = None, *, timeout: float = 120.0,
                 retries: int = 3, backoff: float = 0.5, transport: httpx.BaseTransport | None = None):
        super().__init__(url, api_key, timeout, retries, backoff)
        self._http = httpx.Client(base_url=self.url, headers=self.headers, timeout=timeout, transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, body: dict | None = None, timeout: float | None = None) -> httpx.Response:
        for attempt in range(self.retries + 1):
            resp = self._http.request(method, path, json=body, timeout=timeout or self.timeout)
            if not _retryable(resp) or attempt == self.retries:
                break
            time.sleep(_delay(resp, attempt, self.backoff))
        _raise_for(resp)
        return resp

    def _request(self, ep: Endpoint[R], model: str | None, body: Mapping[str, object], timeout: float | None) -> R:
        if self._unknown(ep, model):
            self.models()
        return self._answer(ep, model, body, self._call("POST", ep.url(model), dict(body), timeout))

    def health(self) -> dict:
        return self._call("GET", "/healthz").json()

    def models(self) -> list[dict]:
        """Every served model: name, family, modality, version, metrics and endpoints."""
        return self._learn(self._call("GET", "/v1/models").json()["models"])

    def stream(self, model: str, *, timeout: float | None = None, **fields: Unpack[GenerateFields]) -> Iterator[str]:
        """One sample of a text or music model as it is decoded: its pieces (text, or music events
        joined by spaces), over server-sent events. A failure after the stream began raises
        GenrayError with the server's status; one before it, as generate() does (with retries)."""
        body = {**fields, "stream": True, "n": 1}
        for attempt in range(self.retries + 1):
            with self._http.stream("POST", GENERATE.url(model), json=body, timeout=timeout or self.timeout) as resp:
                if resp.status_code == 200:
                    yield from _pieces(resp.iter_lines())
                    return
                resp.read()
            if not _retryable(resp) or attempt == self.retries:
                _raise_for(resp)
            time.sleep(_delay(resp, attempt, self.backoff))

    def generate(self, model: str, n: int = 1, *, timeout: float | None = None,
                 **fields: Unpack[GenerateFields]) -> Generated:
        """n samples (model "NAME@VERSION" pins a version), decoded by the model's modality."""
        return self._request(GENERATE, model, {"n": n, **fields}, timeout)

    def attack(self, model: str, *, timeout: float | None = None, **fields: Unpack[AttackFields]) -> Attacked:
        return self._request(ATTACK, model, fields, timeout)

    def defend(self, model: str, *, timeout: float | None = None, **fields: Unpack[DefendFields]) -> Defended:
        return self._request(DEFEND, model, fields, timeout)

    def explain(self, model: str, *, timeout: float | None = None, **fields: Unpack[ExplainFields]) -> Explained:
        return self._request(EXPLAIN, model, fields, timeout)

    def infill(self, model: str, text: str, *, timeout: float | None = None,
               **fields: Unpack[InfillFields]) -> Infilled:
        """Fills of the gap (a run of underscores) in a text, most probable first."""
        return self._request(INFILL, model, {"text": text, **fields}, timeout)

    def inpaint(self, model: str, *, timeout: float | None = None, **fields: Unpack[InpaintFields]) -> Inpainted:
        return self._request(INPAINT, model, fields, timeout)

    def style(self, content: str, style: str | None = None, *, timeout: float | None = None,
              **fields: Unpack[StyleFields]) -> Styled:
        """content, style: base64 PNG/JPEG or a built-in photograph's name (or, in place of style,
        model: a style network)."""
        return self._request(STYLE, None, _style(content, style, fields), timeout)

    def summarize(self, model: str, text: str | list[str], *, timeout: float | None = None,
                  **fields: Unpack[SummarizeFields]) -> Summarized:
        """One aspect of a document (its text, or its sentences as a list)."""
        return self._request(SUMMARIZE, model, _summary(text, fields), timeout)

    def compose(self, *, timeout: float | None = None, **fields: Unpack[ComposeFields]) -> Composition:
        return self._request(COMPOSE, None, fields, timeout)


class AsyncClient(_Base):
    """Client's calls as coroutines, over one httpx.AsyncClient."""

    def __init__(self, url: str = "http://127.0.0.1:8000", api_key: str | None = None, *, timeout: float = 120.0,
                 retries: int = 3, backoff: float = 0.5, transport: httpx.AsyncBaseTransport | None = None):
        super().__init__(url, api_key, timeout, retries, backoff)
        self._http = httpx.AsyncClient(base_url=self.url, headers=self.headers, timeout=timeout, transport=transport)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, body: dict | None = None,
                    timeout: float | None = None) -> httpx.Response:
        for attempt in range(self.retries + 1):
            resp = await self._http.request(method, path, json=body, timeout=timeout or self.timeout)
            if not _retryable(resp) or attempt == self.retries:
                break
            await asyncio.sleep(_delay(resp, attempt, self.backoff))
        _raise_for(resp)
        return resp

    async def _request(self, ep: Endpoint[R], model: str | None, body: Mapping[str, object],
                       timeout: float | None) -> R:
        if self._unknown(ep, model):
            await self.models()
        return self._answer(ep, model, body, await self._call("POST", ep.url(model), dict(body), timeout))

    async def health(self) -> dict:
        return (await self._call("GET", "/healthz")).json()

    async def models(self) -> list[dict]:
        return self._learn((await self._call("GET", "/v1/models")).json()["models"])

    async def stream(self, model: str, *, timeout: float | None = None,
                     **fields: Unpack[GenerateFields]) -> AsyncIterator[str]:
        """Client.stream as an async iterator."""
        body = {**fields, "stream": True, "n": 1}
        for attempt in range(self.retries + 1):
            async with self._http.stream("POST", GENERATE.url(model), json=body,
                                         timeout=timeout or self.timeout) as resp:
                if resp.status_code == 200:
                    async for line in resp.aiter_lines():
                        for piece in _pieces([line]):
                            yield piece
                    return
                await resp.aread()
            if not _retryable(resp) or attempt == self.retries:
                _raise_for(resp)
            await asyncio.sleep(_delay(resp, attempt, self.backoff))

    async def generate(self, model: str, n: int = 1, *, timeout: float | None = None,
                       **fields: Unpack[GenerateFields]) -> Generated:
        return await self._request(GENERATE, model, {"n": n, **fields}, timeout)

    async def attack(self, model: str, *, timeout: float | None = None, **fields: Unpack[AttackFields]) -> Attacked:
        return await self._request(ATTACK, model, fields, timeout)

    async def defend(self, model: str, *, timeout: float | None = None, **fields: Unpack[DefendFields]) -> Defended:
        return await self._request(DEFEND, model, fields, timeout)

    async def explain(self, model: str, *, timeout: float | None = None,
                      **fields: Unpack[ExplainFields]) -> Explained:
        return await self._request(EXPLAIN, model, fields, timeout)

    async def infill(self, model: str, text: str, *, timeout: float | None = None,
                     **fields: Unpack[InfillFields]) -> Infilled:
        return await self._request(INFILL, model, {"text": text, **fields}, timeout)

    async def inpaint(self, model: str, *, timeout: float | None = None,
                      **fields: Unpack[InpaintFields]) -> Inpainted:
        return await self._request(INPAINT, model, fields, timeout)

    async def style(self, content: str, style: str | None = None, *, timeout: float | None = None,
                    **fields: Unpack[StyleFields]) -> Styled:
        return await self._request(STYLE, None, _style(content, style, fields), timeout)

    async def summarize(self, model: str, text: str | list[str], *, timeout: float | None = None,
                        **fields: Unpack[SummarizeFields]) -> Summarized:
        return await self._request(SUMMARIZE, model, _summary(text, fields), timeout)

    async def compose(self, *, timeout: float | None = None, **fields: Unpack[ComposeFields]) -> Composition:
        return await self._request(COMPOSE, None, fields, timeout)
