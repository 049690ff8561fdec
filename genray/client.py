"""The Python client of genray's HTTP API: typed calls that return decoded objects (PIL images,
text, MIDI and WAV bytes, number lists), retries with backoff where the server asks for them (503
overloaded, 429 rate-limited; its Retry-After wins), a timeout per call, and the same in async.

    from genray.client import Client
    with Client("http://127.0.0.1:8000", api_key=KEY) as c:   # or the GENRAY_KEY variable
        images = c.generate("vae", n=4, label=7, seed=0).samples     # [PIL.Image.Image]
        text = c.generate("transformer", prompt="ROMEO:", max_tokens=64).samples[0]

It needs httpx and Pillow only: no Ray, no torch.
"""
from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Iterable, Iterator

import httpx

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


@dataclass
class Music:
    events: list[str]
    midi: bytes
    wav: bytes | None = None


@dataclass
class Generated:
    model: str
    version: int
    samples: list  # PIL images, strings, Music, or lists of numbers, by the model's modality
    raw: dict = field(repr=False, default_factory=dict)


def _image(b64: str):
    from PIL import Image

    img = Image.open(io.BytesIO(base64.b64decode(b64)))
    img.load()
    return img


def _decode_sample(modality: str, s: Any):
    if modality == "image":
        return _image(s)
    if modality == "music":
        return Music(s["events"], base64.b64decode(s["midi"]), base64.b64decode(s["wav"]) if s.get("wav") else None)
    return s  # text: a string; series: a list of numbers


def _decode_images(body: dict, *keys: str) -> dict:
    """The response with its lists of base64 PNGs (adversarial, purified, pictures) as images."""
    return {k: [_image(v) for v in body[k]] if k in keys and isinstance(body.get(k), list) else body[k]
            for k in body}


def _summary_body(text: str | list[str], aspect: str, fields: dict) -> dict:
    return {"sentences" if isinstance(text, list) else "text": text, "aspect": aspect, **fields}


def _decode_audio(body: dict) -> dict:
    """A composition with its MIDI (and WAV) as bytes."""
    return {**body, "midi": base64.b64decode(body["midi"]),
            "wav": base64.b64decode(body["wav"]) if body.get("wav") else None}


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

    def _generated(self, body: dict) -> Generated:
        modality = self._modalities.get(body["model"], "text")
        return Generated(body["model"], body["version"], [_decode_sample(modality, s) for s in body["samples"]], body)

    def _learn(self, models: list[dict]) -> list[dict]:
        self._modalities.update({m["name"]: m["modality"] for m in models})
        return models


class Client(_Base):
    """Calls genray's HTTP API. `timeout` is per call (seconds); a 503 or 429 (or a 5xx from the
    serving layer rather than from genray) is retried up to `retries` times, waiting Retry-After
    or `backoff` x 2^attempt seconds."""

    def __init__(self, url: str = "http://127.0.0.1:8000", api_key: str | None = None, *, timeout: float = 120.0,
                 retries: int = 3, backoff: float = 0.5):
        super().__init__(url, api_key, timeout, retries, backoff)
        self._http = httpx.Client(base_url=self.url, headers=self.headers, timeout=timeout)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *_) -> None:
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

    def health(self) -> dict:
        return self._call("GET", "/healthz").json()

    def models(self) -> list[dict]:
        """Every served model: name, family, modality, version, metrics and endpoints."""
        return self._learn(self._call("GET", "/v1/models").json()["models"])

    def generate(self, model: str, n: int = 1, *, timeout: float | None = None, **fields) -> Generated:
        """n samples (fields as `POST /v1/generate/{model}` takes them: seed, prompt, max_tokens, ...)."""
        if model not in self._modalities:
            self.models()
        body = self._call("POST", f"/v1/generate/{model}", {"n": n, **fields}, timeout).json()
        return self._generated(body)

    def stream(self, model: str, *, timeout: float | None = None, **fields) -> Iterator[str]:
        """One sample of a text or music model as it is decoded: its pieces (text, or music events
        joined by spaces), over server-sent events. A failure after the stream began raises
        GenrayError with the server's status; one before it, as generate() does (with retries)."""
        body = {**fields, "stream": True, "n": 1}
        for attempt in range(self.retries + 1):
            with self._http.stream("POST", f"/v1/generate/{model}", json=body, timeout=timeout or self.timeout) as resp:
                if resp.status_code == 200:
                    yield from _pieces(resp.iter_lines())
                    return
                resp.read()
            if not _retryable(resp) or attempt == self.retries:
                _raise_for(resp)
            time.sleep(_delay(resp, attempt, self.backoff))

    def compose(self, key: str = "C", bars: int = 8, *, timeout: float | None = None, **fields) -> dict:
        """A four-part chorale (fields: seed, melody to harmonise, wav), its MIDI and WAV as bytes."""
        return _decode_audio(self._call("POST", "/v1/compose", {"key": key, "bars": bars, **fields}, timeout).json())

    def inpaint(self, model: str, *, timeout: float | None = None, **fields) -> dict:
        """Completions of an image's hidden pixels (fields: image or index, mask, n, steps, ...), decoded."""
        return _decode_images(self._call("POST", f"/v1/inpaint/{model}", fields, timeout).json(), "images")

    def style(self, content: str, style: str | None = None, *, timeout: float | None = None, **fields) -> dict:
        """content, style: base64 PNG/JPEG or a built-in photograph's name (or, in place of style, model:
        a style network); the result as an image."""
        body = {"content": content, **({"style": style} if style is not None else {}), **fields}
        return {**(r := self._call("POST", "/v1/style", body, timeout).json()), "image": _image(r["image"])}

    def summarize(self, model: str, text: str | list[str], aspect: str = "challenge", *,
                  timeout: float | None = None, **fields) -> dict:
        """One aspect of a document (text, or its sentences as a list) by a summarizer or a built-in
        method (lead, random, textrank, lexrank); fields: max_sentences, max_tokens, seed."""
        return self._call("POST", f"/v1/summarize/{model}", _summary_body(text, aspect, fields), timeout).json()

    def attack(self, model: str, *, timeout: float | None = None, **fields) -> dict:
        """The attack's answer, its adversarial images decoded."""
        return _decode_images(self._call("POST", f"/v1/attack/{model}", fields, timeout).json(),
                              "clean", "adversarial", "reconstructions")

    def defend(self, model: str, *, timeout: float | None = None, **fields) -> dict:
        return _decode_images(self._call("POST", f"/v1/defend/{model}", fields, timeout).json(), "purified")

    def explain(self, model: str, *, timeout: float | None = None, **fields) -> dict:
        """The explanation, its pictures decoded (with format "png", the picture itself)."""
        resp = self._call("POST", f"/v1/explain/{model}", fields, timeout)
        if resp.headers.get("content-type", "").startswith("image/"):
            from PIL import Image

            return {"picture": Image.open(io.BytesIO(resp.content))}
        return _decode_images(resp.json(), "pictures")


class AsyncClient(_Base):
    """Client's calls as coroutines, over one httpx.AsyncClient."""

    def __init__(self, url: str = "http://127.0.0.1:8000", api_key: str | None = None, *, timeout: float = 120.0,
                 retries: int = 3, backoff: float = 0.5):
        super().__init__(url, api_key, timeout, retries, backoff)
        self._http = httpx.AsyncClient(base_url=self.url, headers=self.headers, timeout=timeout)

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *_) -> None:
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

    async def health(self) -> dict:
        return (await self._call("GET", "/healthz")).json()

    async def models(self) -> list[dict]:
        return self._learn((await self._call("GET", "/v1/models")).json()["models"])

    async def generate(self, model: str, n: int = 1, *, timeout: float | None = None, **fields) -> Generated:
        if model not in self._modalities:
            await self.models()
        body = (await self._call("POST", f"/v1/generate/{model}", {"n": n, **fields}, timeout)).json()
        return self._generated(body)

    async def stream(self, model: str, *, timeout: float | None = None, **fields) -> AsyncIterator[str]:
        """Client.stream as an async iterator."""
        body = {**fields, "stream": True, "n": 1}
        for attempt in range(self.retries + 1):
            async with self._http.stream("POST", f"/v1/generate/{model}", json=body,
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

    async def compose(self, key: str = "C", bars: int = 8, *, timeout: float | None = None, **fields) -> dict:
        body = {"key": key, "bars": bars, **fields}
        return _decode_audio((await self._call("POST", "/v1/compose", body, timeout)).json())

    async def inpaint(self, model: str, *, timeout: float | None = None, **fields) -> dict:
        return _decode_images((await self._call("POST", f"/v1/inpaint/{model}", fields, timeout)).json(), "images")

    async def style(self, content: str, style: str | None = None, *, timeout: float | None = None,
                    **fields) -> dict:
        body = {"content": content, **({"style": style} if style is not None else {}), **fields}
        r = (await self._call("POST", "/v1/style", body, timeout)).json()
        return {**r, "image": _image(r["image"])}

    async def summarize(self, model: str, text: str | list[str], aspect: str = "challenge", *,
                        timeout: float | None = None, **fields) -> dict:
        body = _summary_body(text, aspect, fields)
        return (await self._call("POST", f"/v1/summarize/{model}", body, timeout)).json()

    async def attack(self, model: str, *, timeout: float | None = None, **fields) -> dict:
        return _decode_images((await self._call("POST", f"/v1/attack/{model}", fields, timeout)).json(),
                              "clean", "adversarial", "reconstructions")

    async def defend(self, model: str, *, timeout: float | None = None, **fields) -> dict:
        return _decode_images((await self._call("POST", f"/v1/defend/{model}", fields, timeout)).json(), "purified")

    async def explain(self, model: str, *, timeout: float | None = None, **fields) -> dict:
        resp = await self._call("POST", f"/v1/explain/{model}", fields, timeout)
        if resp.headers.get("content-type", "").startswith("image/"):
            from PIL import Image

            return {"picture": Image.open(io.BytesIO(resp.content))}
        return _decode_images(resp.json(), "pictures")
