"""genray.client against the server's own definitions, without a server: its request fields and
results are the schemas' (services/capabilities/, services/schemas.py), mypy checks calls by
them, and its sync and async classes decode, retry and raise through a real httpx transport
(httpx.MockTransport: HTTP answers, no cluster). The test against a served cluster is in
tests/test_serving/test_python_client.py."""
from __future__ import annotations

import asyncio
import base64
import inspect
import io
import json
import subprocess
import sys
import textwrap
import typing
from dataclasses import fields, is_dataclass
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from PIL import Image
from pydantic import BaseModel

import genray.client as client
from genray.client import ENDPOINTS, AsyncClient, Attacked, Client, Composition, Explained, Generated, GenrayError
from genray.services.schemas import GenerateRequest, GenerateResponse
from genray.services.spec import SPECS

ROOT = Path(__file__).resolve().parents[1]
URL = "http://genray.test"
SCHEMAS = {"generate": (GenerateRequest, GenerateResponse, True),
           **{name: (spec.request, spec.response, spec.in_path) for name, spec in SPECS.items()}}


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_each_endpoint_has_its_schemas_fields_and_result(name):
    """A field added to (or renamed in) a request or response schema fails here until the client
    has it too: its TypedDict, the arguments its method takes itself, and its result dataclass."""
    request, response, in_path = SCHEMAS[name]
    assert name in ENDPOINTS, f"genray/client.py has no endpoint {name!r}: add it to ENDPOINTS"
    ep = ENDPOINTS[name]
    schema = set(request.model_fields)
    assert set(ep.own) <= schema
    assert set(ep.fields.__annotations__) == schema - set(ep.own)
    required = {f for f, info in request.model_fields.items() if info.is_required()}
    hints = typing.get_type_hints(ep.fields, include_extras=True)  # Required[...]: the annotations are strings
    assert {f for f, hint in hints.items() if typing.get_origin(hint) is typing.Required} == required - set(ep.own)
    assert {f.name for f in fields(ep.result)} == set(response.model_fields) | {"raw"}
    decoded = typing.get_type_hints(ep.result, localns={"Image": Image.Image})
    for f, info in response.model_fields.items():  # a list of objects (infill's fills): a list of dataclasses
        for row in _models(info.annotation):
            (mine,) = typing.get_args(decoded[f]) or (decoded[f],)
            assert is_dataclass(mine) and {g.name for g in fields(mine)} == set(row.model_fields), f
    assert ep.path == (f"/v1/{name}/{{model}}" if in_path else f"/v1/{name}")
    sync, coroutine = getattr(Client, name), getattr(AsyncClient, name)
    assert inspect.iscoroutinefunction(coroutine)
    for method in (sync, coroutine):
        params = inspect.signature(method).parameters
        assert ("model" in params) == in_path and inspect.signature(method).return_annotation == ep.result.__name__


def _models(annotation) -> list[type[BaseModel]]:
    """The pydantic models an annotation holds (Fill in list[Fill])."""
    args = typing.get_args(annotation) or (annotation,)
    return [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]


SNIPPET = '''\
from genray.client import AsyncClient, Client

async def main(ac: AsyncClient) -> None:
    hit = await ac.attack("classifier", method="fgsm", eps=0.1, indices=[0])
    print(hit.success)
    await ac.attack("classifier", method="fgsm", eps=[0.1])  # error
    print((await ac.compose(key="C")).nonsense)  # error

with Client("http://127.0.0.1:8000") as c:
    hit = c.attack("classifier", method="pgd", eps=0.3, steps=40, indices=[0, 1, 2, 3])
    hit.adversarial[0].save("adversarial.png")
    print(hit.predictions_before, hit.predictions_after, hit.success, hit.summary, hit.raw)
    gen = c.generate("vae", 4, label=7, seed=0, temperature=1)
    print(gen.samples, gen.version)
    chorale = c.compose(key="G", bars=4, melody=["G4/1", "A4/1"], wav=True)
    print(chorale.midi[:4], chorale.wav, chorale.analysis["key"])
    print(c.summarize("lead", ["A b.", "C d."], aspect="outcome", max_sentences=2).sentences)
    print(c.style("astronaut", "brick", steps=10, strength=0.5).image.size)
    print(c.explain("classifier", method="ig", indices=[0], format="png").pictures[0].size)
    print(c.explain("ar", method="exact", series=[1, 2.5], baseline=0).scores)
    print(c.inpaint("vae", indices=[2], mask="bottom", n=2).mask.size)
    print(c.infill("transformer", "To be, or ___ to be", top=3).fills[0].log_prob)
    print(c.defend("vae", method="purify", inputs=["iVBORw0KGgo="]).purified)
    c.attack("classifier", method="pgd", epsilon=0.3)  # error
    c.inpaint("vae", indices=[0], steps="ten")  # error
    c.explain(method="ig", indices=[0])  # error
    print(hit.clean_predictions)  # error
'''


def test_mypy_checks_calls_by_the_endpoints_fields_and_results(tmp_path):
    """An unknown field, a wrong type, a missing model and a result's unknown attribute are mypy
    errors, each on its own line; the correct calls are not."""
    snippet = tmp_path / "snippet.py"
    snippet.write_text(SNIPPET)
    r = subprocess.run([sys.executable, "-m", "mypy", "--ignore-missing-imports", "--follow-imports=silent",
                        "--no-error-summary", "--cache-dir", str(tmp_path / "cache"), str(snippet)],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    flagged = {int(line.split(":")[1]) for line in r.stdout.splitlines() if ": error:" in line}
    wanted = {i for i, line in enumerate(SNIPPET.splitlines(), 1) if line.endswith("# error")}
    assert len(wanted) == 6 and flagged == wanted, r.stdout + r.stderr


def _png(level: int = 128) -> str:
    buf = io.BytesIO()
    Image.new("L", (8, 8), level).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


ATTACK = {"model": "classifier", "version": 3, "method": "pgd", "summary": {"success_rate": 0.5},
          "clean": [_png(0), _png(10)], "adversarial": [_png(20), _png(30)], "reconstructions": [],
          "predictions_before": [7, 2], "predictions_after": [1, 2], "success": [True, False],
          "linf": [0.3, 0.3], "l2": [1.5, 1.2], "suffix": None}


def _server(answers: list, seen: list):
    """A transport that answers each request with the next of `answers` (status, body, headers)."""
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path, json.loads(request.content or b"null")))
        status, body, headers = answers.pop(0)
        return httpx.Response(status, json=body, headers=headers)
    return httpx.MockTransport(handle)


def _check_attacked(hit):
    assert isinstance(hit, Attacked) and (hit.model, hit.version, hit.method) == ("classifier", 3, "pgd")
    assert [im.getpixel((0, 0)) for im in hit.clean + hit.adversarial] == [0, 10, 20, 30]
    assert all(isinstance(im, Image.Image) and im.size == (8, 8) for im in hit.adversarial)
    assert hit.predictions_after == [1, 2] and hit.success == [True, False] and hit.raw == ATTACK


def test_sync_and_async_clients_decode_an_attack_into_images():
    seen: list = []
    with Client(URL, transport=_server([(200, ATTACK, {})], seen)) as c:
        _check_attacked(c.attack("classifier", method="pgd", eps=0.3, indices=[0, 1]))
    assert seen == [("POST", "/v1/attack/classifier", {"method": "pgd", "eps": 0.3, "indices": [0, 1]})]

    async def run():
        async with AsyncClient(URL, transport=_server([(200, ATTACK, {})] * 2, seen)) as ac:
            return await asyncio.gather(*(ac.attack("classifier", method="pgd", eps=0.3, indices=[i])
                                          for i in range(2)))

    for hit in asyncio.run(run()):
        _check_attacked(hit)


def test_a_503_is_retried_after_the_servers_retry_after(monkeypatch):
    slept: list = []

    async def asleep(seconds):
        slept.append(seconds)

    monkeypatch.setattr(client, "time", SimpleNamespace(sleep=slept.append))
    monkeypatch.setattr(client, "asyncio", SimpleNamespace(sleep=asleep))
    busy = (503, {"detail": "model 'classifier' is overloaded; retry later"}, {"Retry-After": "2"})
    seen: list = []
    with Client(URL, transport=_server([busy, busy, (200, ATTACK, {})], seen)) as c:
        _check_attacked(c.attack("classifier", method="pgd", eps=0.3, indices=[0, 1]))
    assert slept == [2.0, 2.0] and len(seen) == 3

    async def run():
        async with AsyncClient(URL, transport=_server([busy, (200, ATTACK, {})], seen)) as ac:
            return await ac.attack("classifier", method="pgd", eps=0.3, indices=[0, 1])

    _check_attacked(asyncio.run(run()))
    assert slept == [2.0] * 3 and len(seen) == 5
    with Client(URL, retries=1, transport=_server([busy, busy], seen)) as c, pytest.raises(GenrayError) as e:
        c.attack("classifier", method="pgd", eps=0.3, indices=[0])
    assert e.value.status == 503 and "overloaded" in str(e.value) and len(seen) == 7


def test_a_422_raises_naming_the_field_without_a_retry():
    bad = (422, {"detail": [{"loc": ["body", "eps"], "msg": "eps must be at most 1", "type": "value_error"}]}, {})
    seen: list = []
    with Client(URL, transport=_server([bad], seen)) as c, pytest.raises(GenrayError) as e:
        c.attack("classifier", method="pgd", eps=3.0, indices=[0])
    assert (e.value.status, e.value.field) == (422, "eps") and "at most 1" in str(e.value) and len(seen) == 1


def test_generation_decodes_by_modality_and_an_unknown_one_raises():
    models = {"models": [{"name": "vae", "modality": "image"}, {"name": "holo", "modality": "hologram"},
                         {"name": "busy", "status": "training", "endpoints": []}]}
    seen: list = []
    answers = [(200, models, {}), (200, {"model": "vae", "version": 2, "samples": [_png(5)]}, {}),
               (200, {"model": "holo", "version": 1, "samples": [[1, 2]]}, {})]
    with Client(URL, transport=_server(answers, seen)) as c:
        gen = c.generate("vae@2", n=1, seed=4)
        assert isinstance(gen, Generated) and gen.version == 2 and gen.samples[0].getpixel((0, 0)) == 5
        with pytest.raises(ValueError, match="hologram"):
            c.generate("holo")
    assert [s[1] for s in seen] == ["/v1/models", "/v1/generate/vae@2", "/v1/generate/holo"]
    assert seen[1][2] == {"n": 1, "seed": 4}


def test_other_endpoints_bodies_and_decoding():
    midi = base64.b64encode(b"MThd....").decode()
    chorale = {"model": "theory", "version": None, "key": "G major", "voices": {"Soprano": ["G4/1"]},
               "chords": ["I"], "midi": midi, "wav": None, "analysis": {"key_agrees": True}}
    picture = base64.b64decode(_png(99))
    seen: list = []
    summary = {"model": "lead", "version": None, "aspect": "outcome", "summary": "A b.", "sentences": [0],
               "source": None, "seconds": 0.01}
    fills = {"model": "transformer", "version": 1, "fills": [{"fill": "not", "text": "To be, or not to be",
                                                              "log_prob": -9.5}]}
    transport = _server([(200, chorale, {}), (200, summary, {}), (200, fills, {})], seen)
    with Client(URL, transport=transport) as c:
        made = c.compose(key="G", bars=1)
        assert isinstance(made, Composition) and made.midi == b"MThd...." and made.wav is None
        assert c.summarize("lead", ["A b.", "C d."], aspect="outcome").sentences == [0]
        assert c.infill("transformer", "To be, or ___ to be", top=1).fills == [
            client.Fill("not", "To be, or not to be", -9.5)]
    assert [s[1:] for s in seen] == [("/v1/compose", {"key": "G", "bars": 1}),
                                     ("/v1/summarize/lead", {"sentences": ["A b.", "C d."], "aspect": "outcome"}),
                                     ("/v1/infill/transformer", {"text": "To be, or ___ to be", "top": 1})]
    png = httpx.MockTransport(lambda request: httpx.Response(200, content=picture,
                                                             headers={"content-type": "image/png"}))
    with Client(URL, transport=png) as c:
        shown = c.explain("classifier", method="ig", indices=[0], format="png")
    assert isinstance(shown, Explained) and shown.method == "ig" and shown.pictures[0].getpixel((0, 0)) == 99


def test_the_client_imports_neither_the_server_nor_its_libraries():
    code = "import sys, genray.client; print(sorted({m.split('.')[0] for m in sys.modules} & {'ray', 'torch', " \
           "'pydantic', 'numpy'}), 'genray.services' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=ROOT)
    assert r.stdout.split() == ["[]", "False"], r.stdout + r.stderr
